"""The dashboard's HTML: one function per page, server-rendered from the same
data the JSON endpoints serve (data.py), so a page is complete without script;
static/dashboard.js then refreshes its tables from those endpoints.

A table is declared once, as columns (key, heading, format): rendered here for
the first paint, and embedded in the page (`data-columns`) for the script, which
formats cells the same way (FORMATS below and `fmt` in dashboard.js).
"""
import html
import json
import time
import zlib

from . import data

NAV = [("/", "Cluster"), ("/jobs", "Jobs"), ("/tasks", "Tasks"), ("/actors", "Actors"),
       ("/objects", "Objects"), ("/logs", "Logs"), ("/timeline", "Timeline")]
POLL_MS = 2000


def esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


# ------------------------------------------------------------------ cell formats
def _bytes(n) -> str:
    if n is None:
        return ""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else esc(v)


def _time(ms) -> str:
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _clock(ms) -> str:
    """The time of day (the date in the tooltip)."""
    if not ms:
        return ""
    return f'<span title="{esc(_time(ms))}">' \
        f'{time.strftime("%H:%M:%S", time.localtime(ms / 1000))}</span>'


def _duration(ms) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s" if ms < 600_000 else f"{ms / 60000:.0f} min"


def _usage(v) -> str:
    """[used, total, unit]: 'used / total' and a bar."""
    if not v or v[1] in (None, 0):
        return ""
    used, total, unit = v
    show = _bytes if unit == "bytes" else _num
    return (f'<meter min="0" max="{float(total)!r}" value="{float(used)!r}"></meter> '
            f'{esc(show(used))} / {esc(show(total))}')


def _counts(d) -> str:
    return ", ".join(f'<span class="state-{esc(k)}">{esc(k)}</span> {esc(n)}'
                     for k, n in sorted((d or {}).items()))


def _reason(d) -> str:
    if not d:
        return ""
    return f'<span class="reason" title="{esc(d.get("code"))}">{esc(d.get("text"))}</span>'


def short_id(v) -> str:
    """An id as shown: its first and last 6 digits (ids made by one process
    share their first half, and differ at the end)."""
    v = str(v)
    return v if len(v) <= 14 else f"{v[:6]}…{v[-6:]}"


def _id(v) -> str:
    if not v:
        return ""
    return f'<span class="id" title="{esc(v)}">{esc(short_id(v))}</span>'


def _state(v) -> str:
    return f'<span class="state-{esc(v)}">{esc(v)}</span>' if v else ""


def _link(v) -> str:
    if not v:
        return ""
    text, href = v
    return f'<a href="{esc(href)}">{esc(text)}</a>'


FORMATS = {
    "text": esc, "num": _num, "bytes": lambda v: esc(_bytes(v)), "time":
    lambda v: esc(_time(v)), "clock": _clock, "duration": lambda v: esc(_duration(v)),
    "usage": _usage, "counts": _counts, "reason": _reason,
    "id": _id, "state": _state, "link": _link,
    "bool": lambda v: "yes" if v else "",
}


class Table:
    """A table of a page: where its rows come from (an endpoint and the key of
    its answer) and its columns [(key, heading, format)]."""

    def __init__(self, name, source, columns, empty="nothing to show"):
        self.name = name
        self.source = source
        self.columns = columns
        self.empty = empty

    def render(self, rows) -> str:
        spec = json.dumps([[k, h, f] for k, h, f in self.columns])
        head = "".join(f"<th>{esc(h)}</th>" for _, h, _ in self.columns)
        return (f'<table class="grid" id="t-{self.name}" data-source="{esc(self.source)}"'
                f' data-key="{self.name}" data-columns="{esc(spec)}" '
                f'data-empty="{esc(self.empty)}"><thead><tr>{head}</tr></thead>'
                f'<tbody>{self.body(rows)}</tbody></table>')

    def body(self, rows) -> str:
        if not rows:
            return (f'<tr class="empty"><td colspan="{len(self.columns)}">'
                    f'{esc(self.empty)}</td></tr>')
        out = []
        for r in rows:
            cells = "".join(f'<td class="c-{k}">{FORMATS[f](r.get(k))}</td>'
                            for k, _, f in self.columns)
            out.append(f"<tr>{cells}</tr>")
        return "".join(out)


NODES = Table("nodes", "/api/cluster", [
    ("node_id", "Node", "id"), ("node_ip", "Address", "text"),
    ("hostname", "Host", "text"), ("is_head_node", "Head", "bool"),
    ("state", "State", "state"), ("cpu", "CPU", "usage"), ("gpu", "GPU", "usage"),
    ("memory", "Memory (logical)", "usage"), ("object_store", "Object store", "usage"),
    ("workers", "Workers", "num"), ("running", "Running tasks", "num")])
RESOURCES = Table("resources", "/api/cluster", [
    ("resource", "Resource", "text"), ("usage", "Used / total (alive nodes)", "usage")])
JOBS = Table("jobs", "/api/jobs", [
    ("job_id", "Job", "id"), ("status", "Status", "state"),
    ("namespace", "Namespace", "text"), ("driver_pid", "Driver pid", "num"),
    ("driver_node_id", "Driver node", "id"), ("start_time", "Started", "time"),
    ("end_time", "Ended", "time"), ("tasks", "Tasks", "counts")], "no jobs yet")
TASK_SUMMARY = Table("summary", "/api/tasks", [
    ("func_or_class_name", "Function", "text"), ("type", "Type", "text"),
    ("state_counts", "Tasks by state", "counts"), ("total", "Total", "num")],
    "no tasks yet")
TASKS = Table("tasks", "/api/tasks", [
    ("task_id", "Task", "id"), ("name", "Name", "text"), ("state", "State", "state"),
    ("type", "Type", "text"), ("job_id", "Job", "id"), ("node_id", "Node", "id"),
    ("worker_pid", "Worker pid", "num"), ("start_time_ms", "Started", "clock"),
    ("duration_ms", "Took", "duration"), ("error_type", "Error", "text"),
    ("pending_reason", "Pending reason", "reason")], "no task matches")
ACTORS = Table("actors", "/api/actors", [
    ("actor_id", "Actor", "id"), ("class_name", "Class", "text"),
    ("name", "Name", "text"), ("state", "State", "state"), ("pid", "Pid", "num"),
    ("node_id", "Node", "id"), ("num_restarts", "Restarts", "num"),
    ("num_pending_calls", "Pending calls", "num"),
    ("pending_reason", "Pending reason", "reason"), ("death", "Death cause", "text")],
    "no actors yet")
OBJECT_SUMMARY = Table("summary", "/api/objects", [
    ("node_id", "Node", "id"), ("objects", "Objects", "num"),
    ("bytes", "Bytes", "bytes"), ("spilled", "Spilled bytes", "bytes"),
    ("pinned", "Pinned objects", "num")], "no objects")
OBJECTS = Table("objects", "/api/objects", [
    ("object_id", "Object", "id"), ("object_size", "Size", "bytes"),
    ("where", "Where", "text"), ("spilled", "Spilled", "bool"),
    ("pinned", "Pinned", "bool"), ("reference_type", "Reference", "text"),
    ("owner", "Owner pid", "num"), ("node_id", "Node", "id"),
    ("refcount", "Refs", "num"), ("holders", "Held by", "text"),
    ("task_status", "Made by task", "state")], "no objects")
LOG_FILES = Table("files", "/api/logs", [
    ("node_id", "Node", "id"), ("file", "File", "link"), ("pid", "Pid", "num"),
    ("size", "Size", "bytes"), ("mtime_ms", "Modified", "time")], "no log files")


ACTIVE = ' class="active"'


def layout(title: str, active: str, body: str, cluster: str = "") -> str:
    nav = "".join(f'<a href="{href}"{ACTIVE if href == active else ""}>{esc(name)}</a>'
                  for href, name in NAV)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)} · beamlet</title>"
            "<link rel=\"stylesheet\" href=\"/static/dashboard.css\">"
            "<script src=\"/static/dashboard.js\" defer></script></head>"
            f"<body data-poll-ms=\"{POLL_MS}\"><header><span class=\"brand\">beamlet</span>"
            f"<nav>{nav}</nav><span class=\"cluster\">{esc(cluster)}</span>"
            "<span id=\"live\" class=\"live\" title=\"refreshed from the cluster\">"
            "</span></header>"
            f"<main><h1>{esc(title)}</h1>{body}</main></body></html>")


def _error(msg) -> str:
    return f'<p class="error" id="error">{esc(msg)}</p>' if msg else \
        '<p class="error" id="error" hidden></p>'


def page_cluster(view, query) -> str:
    d = data.cluster(view)
    return layout("Cluster", "/", _error(d.get("error")) +
                  "<h2>Nodes</h2>" + NODES.render(d.get("nodes")) +
                  "<h2>Resources</h2>" + RESOURCES.render(d.get("resources")),
                  view.title())


def page_jobs(view, query) -> str:
    d = data.jobs(view)
    return layout("Jobs", "/jobs", _error(d.get("error")) + JOBS.render(d.get("jobs")),
                  view.title())


def _filter_form(query) -> str:
    state = (query.get("state") or [""])[-1]
    options = "".join(f'<option value="{esc(s)}"{" selected" if s == state else ""}>'
                      f'{esc(s or "any state")}</option>'
                      for s in ("",) + data.TASK_STATES)
    name = (query.get("name") or [""])[-1]
    job = (query.get("job_id") or [""])[-1]
    return ('<form class="filters" id="filters" method="get" action="/tasks">'
            f'<label>State <select name="state">{options}</select></label>'
            f'<label>Name contains <input name="name" value="{esc(name)}"></label>'
            f'<label>Job <input name="job_id" value="{esc(job)}" size="10"></label>'
            '<button type="submit">Filter</button></form>')


def page_tasks(view, query) -> str:
    d = data.tasks(view, query)
    shown = (f'<p class="note" id="shown">{esc(d.get("shown", ""))}</p>')
    return layout("Tasks", "/tasks", _error(d.get("error")) +
                  "<h2>By function</h2>" + TASK_SUMMARY.render(d.get("summary")) +
                  "<h2>Tasks</h2>" + _filter_form(query) + shown +
                  TASKS.render(d.get("tasks")), view.title())


def page_actors(view, query) -> str:
    d = data.actors(view)
    return layout("Actors", "/actors", _error(d.get("error")) +
                  ACTORS.render(d.get("actors")), view.title())


def page_objects(view, query) -> str:
    d = data.objects(view)
    return layout("Objects and memory", "/objects", _error(d.get("error")) +
                  "<h2>Per node</h2>" + OBJECT_SUMMARY.render(d.get("summary")) +
                  "<h2>Objects</h2>" + OBJECTS.render(d.get("objects")), view.title())


def page_logs(view, query) -> str:
    d = data.logs(view)
    node = (query.get("node") or [""])[-1]
    name = (query.get("file") or [""])[-1]
    viewer = ""
    if node and name:
        tail = data.log_tail(view, node, name, None)
        viewer = (f'<h2>{esc(name)} <span class="id">{esc(short_id(node))}</span></h2>'
                  + _error(tail.get("error")) +
                  f'<pre class="log" id="log" data-node="{esc(node)}" '
                  f'data-name="{esc(name)}" data-offset="{esc(tail.get("offset", 0))}">'
                  f'{esc(tail.get("data", ""))}</pre>')
    return layout("Logs", "/logs", _error(d.get("error")) + viewer +
                  "<h2>Log files</h2>" + LOG_FILES.render(d.get("files")), view.title())


def page_timeline(view, query) -> str:
    events = data.timeline(view)
    err = None
    if isinstance(events, dict):
        err, events = events.get("error"), []
    svg = gantt_svg(events)
    spans = sum(1 for e in events if e.get("ph") == "X")
    return layout("Timeline", "/timeline", _error(err) +
                  '<p class="note">One row per worker process, one bar per task '
                  f'execution ({spans} shown). <a id="download" '
                  'href="/api/timeline?download=1" download="timeline.json">Download '
                  'the trace (JSON)</a> to open it in ui.perfetto.dev or '
                  'chrome://tracing.</p>' + svg, view.title())


PAGES = {"/": page_cluster, "/jobs": page_jobs, "/tasks": page_tasks,
         "/actors": page_actors, "/objects": page_objects, "/logs": page_logs,
         "/timeline": page_timeline}


# ------------------------------------------------------------------ the Gantt chart
ROW_H, LABEL_W, CHART_W = 22, 220, 900
PALETTE = 8     # span colours (classes p0..p7 in dashboard.css), by function name


def gantt_svg(events) -> str:
    """An SVG Gantt chart of a Chrome trace: a row per (pid, tid) that has
    duration events ("X"), labelled with the trace's process/thread names."""
    names = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") in ("process_name", "thread_name"):
            names[(e.get("name"), e.get("pid"), e.get("tid"))] = \
                (e.get("args") or {}).get("name")
    spans = [e for e in events if e.get("ph") == "X" and e.get("dur") is not None]
    if not spans:
        return '<p class="empty" id="no-spans">No task has run yet.</p>'
    rows = sorted({(str(e.get("pid")), str(e.get("tid"))) for e in spans})
    index = {r: i for i, r in enumerate(rows)}
    t0 = min(e["ts"] for e in spans)
    t1 = max(e["ts"] + e["dur"] for e in spans)
    scale = CHART_W / max(t1 - t0, 1.0)
    height = ROW_H * len(rows) + 30
    out = [f'<svg class="gantt" id="gantt" xmlns="http://www.w3.org/2000/svg" '
           f'width="{LABEL_W + CHART_W + 10}" height="{height}" '
           f'viewBox="0 0 {LABEL_W + CHART_W + 10} {height}">']
    for (pid, tid), i in index.items():
        label = names.get(("thread_name", _key(pid), _key(tid))) or f"pid {tid}"
        proc = names.get(("process_name", _key(pid), None)) or pid
        y = i * ROW_H
        out.append(f'<text class="row-label" x="4" y="{y + 15}">'
                   f'{esc(str(proc)[:14])} · {esc(str(label)[:16])}</text>')
        out.append(f'<line x1="{LABEL_W}" y1="{y + ROW_H}" x2="{LABEL_W + CHART_W}" '
                   f'y2="{y + ROW_H}" class="row-line"/>')
    for e in spans:
        i = index[(str(e.get("pid")), str(e.get("tid")))]
        x = LABEL_W + (e["ts"] - t0) * scale
        w = max(e["dur"] * scale, 1.0)
        args = e.get("args") or {}
        state = args.get("state", "")
        name = str(e.get("name"))
        tip = f'{name} ({e["dur"] / 1000:.1f} ms) {state}'.strip()
        colour = zlib.crc32(name.encode()) % PALETTE
        out.append(f'<rect class="span p{colour} state-{esc(state)}" x="{x:.1f}" '
                   f'y="{i * ROW_H + 3}" width="{w:.1f}" height="{ROW_H - 6}" '
                   f'data-name="{esc(name)}" data-task-id='
                   f'"{esc(args.get("task_id", ""))}"><title>{esc(tip)}</title></rect>')
        if w > 7 * len(name) + 6:
            out.append(f'<text class="span-label" x="{x + 3:.1f}" y="{i * ROW_H + 15}">'
                       f'{esc(name)}</text>')
    y = ROW_H * len(rows) + 20
    out.append(f'<text class="axis" x="{LABEL_W}" y="{y}">0 s</text>'
               f'<text class="axis" x="{LABEL_W + CHART_W}" y="{y}" '
               f'text-anchor="end">{(t1 - t0) / 1e6:.3f} s</text></svg>')
    return "".join(out)


def _key(v):
    """Trace pids/tids are ints or strings; rows are keyed by their text."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def login_page(why=None, next_path="/") -> str:
    msg = f'<p class="error">{esc(why)}</p>' if why else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>beamlet dashboard: log in</title><style>"
            "body{font:15px system-ui,sans-serif;margin:4em auto;max-width:34em}"
            "input{font:inherit;width:100%;padding:.3em}.error{color:#b00}"
            "button{font:inherit;margin-top:.6em}</style></head><body>"
            "<h1>beamlet dashboard</h1>" + msg +
            "<p>This dashboard shows a cluster to whoever holds its token. Open the "
            "link printed by <code>beamlet.init()</code> or <code>beamlet start "
            "--head</code>, or paste the cluster token (the <code>password</code> in "
            "the session's <code>cluster.json</code>):</p>"
            "<form method=\"post\" action=\"/login\">"
            f"<input type=\"hidden\" name=\"next\" value=\"{esc(next_path)}\">"
            "<input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" "
            "autofocus placeholder=\"cluster token\">"
            "<button type=\"submit\">Log in</button></form></body></html>")
