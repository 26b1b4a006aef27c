// beamlet dashboard: refresh the server-rendered tables from their JSON
// endpoints, and tail a log.  No framework, nothing from the network.
"use strict";

function esc(v) {
  if (v === null || v === undefined) return "";
  return String(v).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#x27;"}[c]));
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  n = Number(n);
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
}

function num(v) {
  return typeof v === "number" ? String(Number(v.toPrecision(6))) : esc(v);
}

// as pages.py's short_id: ids of one process share their first half
function shortId(v) {
  return v.length <= 14 ? v : v.slice(0, 6) + "\u2026" + v.slice(-6);
}

function pad(n) { return String(n).padStart(2, "0"); }

function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms.toFixed(0) + " ms";
  return ms < 600000 ? (ms / 1000).toFixed(1) + " s" : (ms / 60000).toFixed(0) + " min";
}

// The same formats as pages.py's FORMATS (the first paint is the server's).
const FORMATS = {
  text: esc,
  num: num,
  bytes: v => esc(bytes(v)),
  time: v => esc(time(v)),
  clock: v => v ? '<span title="' + esc(time(v)) + '">' + esc(time(v).slice(11)) +
    "</span>" : "",
  duration: v => esc(duration(v)),
  usage: v => {
    if (!v || !v[1]) return "";
    const show = v[2] === "bytes" ? bytes : num;
    return '<meter min="0" max="' + Number(v[1]) + '" value="' + Number(v[0]) +
      '"></meter> ' + esc(show(v[0])) + " / " + esc(show(v[1]));
  },
  counts: d => Object.keys(d || {}).sort().map(k =>
    '<span class="state-' + esc(k) + '">' + esc(k) + "</span> " + esc(d[k])).join(", "),
  reason: d => d ? '<span class="reason" title="' + esc(d.code) + '">' + esc(d.text) +
    "</span>" : "",
  id: v => v ? '<span class="id" title="' + esc(v) + '">' + esc(shortId(String(v))) +
    "</span>" : "",
  state: v => v ? '<span class="state-' + esc(v) + '">' + esc(v) + "</span>" : "",
  link: v => v ? '<a href="' + esc(v[1]) + '">' + esc(v[0]) + "</a>" : "",
  bool: v => v ? "yes" : "",
};

function renderRows(table, rows) {
  const cols = JSON.parse(table.dataset.columns);
  if (!rows || rows.length === 0) {
    return '<tr class="empty"><td colspan="' + cols.length + '">' +
      esc(table.dataset.empty) + "</td></tr>";
  }
  return rows.map(r => "<tr>" + cols.map(([key, , fmt]) =>
    '<td class="c-' + key + '">' + FORMATS[fmt](r[key]) + "</td>").join("") +
    "</tr>").join("");
}

function showError(msg) {
  const el = document.getElementById("error");
  if (!el) return;
  el.textContent = msg || "";
  el.hidden = !msg;
}

async function getJSON(url) {
  const resp = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  if (resp.status === 401) {
    window.location = "/login?next=" + encodeURIComponent(location.pathname +
                                                          location.search);
    throw new Error("logged out");
  }
  return resp.json();
}

async function refreshTables() {
  const tables = Array.from(document.querySelectorAll("table[data-source]"));
  const sources = [...new Set(tables.map(t => t.dataset.source))];
  for (const src of sources) {
    const ans = await getJSON(src + location.search);
    if (ans.error) { showError(ans.error); continue; }
    showError("");
    for (const t of tables.filter(t => t.dataset.source === src)) {
      t.tBodies[0].innerHTML = renderRows(t, ans[t.dataset.key]);
    }
    const shown = document.getElementById("shown");
    if (shown && ans.shown !== undefined) shown.textContent = ans.shown;
  }
}

async function tailLog() {
  const pre = document.getElementById("log");
  if (!pre) return;
  const q = "?node=" + encodeURIComponent(pre.dataset.node) + "&name=" +
    encodeURIComponent(pre.dataset.name) + "&offset=" + pre.dataset.offset;
  const ans = await getJSON("/api/log" + q);
  if (ans.error) { showError(ans.error); return; }
  if (ans.data) {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(ans.data));
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  pre.dataset.offset = ans.offset;
}

async function poll() {
  const live = document.getElementById("live");
  try {
    await refreshTables();
    await tailLog();
    document.body.dataset.live = "1";
    if (live) { live.textContent = "live " + time(Date.now()).slice(11); }
  } catch (e) {
    if (live) live.textContent = "not refreshed: " + e.message;
  }
  setTimeout(poll, Number(document.body.dataset.pollMs) || 2000);
}

document.addEventListener("DOMContentLoaded", poll);
