"""What the dashboard shows, as the JSON its endpoints serve: built on the state
API (beamlet.util.state) and the timeline, never on state of its own.

Each function takes the ClusterView (which cluster to ask) and returns a dict of
table name -> rows shaped for pages.py's columns, or {"error": why} when the
cluster did not answer (the page shows it; the next poll tries again).
"""
import collections
import re
import threading
import time
import urllib.parse

from .._private.timeline import trace_events
from ..util import state

TASK_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
               "RUNNING", "FINISHED", "FAILED")
TABLE_LIMIT = 500          # rows a table shows at most (the newest)
SCAN_LIMIT = 10_000        # rows read to count or sum (as Ray's API server limit)
QUERY_TIMEOUT_S = 10
LOG_TAIL_BYTES = 64 * 1024  # of a log file a page shows first, and per poll after
_TASK_TAG = re.compile("(?m)^\x1e[0-9a-f]*\x1f")


class ClusterView:
    """The cluster the dashboard shows, read through one state API source kept
    open (the head node's raylet and the GCS), opened again after a failure."""

    def __init__(self, raylet_socket: str, gcs_host: str, gcs_port: int, token: str):
        self.raylet_socket = raylet_socket
        self.gcs_host, self.gcs_port = gcs_host, gcs_port
        self.token = token
        self.lock = threading.Lock()
        self.source = None

    def title(self) -> str:
        return f"{self.gcs_host}:{self.gcs_port}"

    def query(self, kind, filters=None, limit=TABLE_LIMIT) -> list:
        """The state API's records of `kind` (every node's), as dicts."""
        src = self._source()
        try:
            rows, _total = state.api.query(kind, filters=filters, limit=limit,
                                           detail=True, raise_on_missing_output=False,
                                           _source=src)
        except Exception:
            self._drop(src)
            raise
        return [r.asdict() for r in rows]

    def logs(self) -> list:
        """Every node's log files (state API rows)."""
        return self._with(lambda src: state.api.log_index(_source=src))

    def read_log(self, node, name, offset, max_bytes) -> dict:
        return self._with(lambda src: state.api.read_log_bytes(
            node, name, offset, max_bytes, _source=src))

    def _with(self, read):
        src = self._source()
        try:
            return read(src)
        except Exception:
            self._drop(src)
            raise

    def _source(self):
        with self.lock:
            if self.source is None or self.source.core.closed:
                self.source = state.api._Source.of_node(
                    self.raylet_socket, self.gcs_host, self.gcs_port, self.token,
                    timeout=QUERY_TIMEOUT_S)
            return self.source

    def _drop(self, src):
        """A query failed: the next one connects again (the node may be back)."""
        with self.lock:
            if self.source is src:
                self.source = None
        src.close()

    def close(self):
        with self.lock:
            src, self.source = self.source, None
        if src is not None:
            src.close()


def _guard(build):
    """Run `build`; a cluster that does not answer becomes {"error": ...}."""
    def run(*a, **kw):
        try:
            return build(*a, **kw)
        except Exception as e:   # shown on the page; the next poll tries again
            return {"error": f"the cluster did not answer: {type(e).__name__}: {e}"}
    run.__name__ = build.__name__
    run.__doc__ = build.__doc__
    return run


def _usage(total: dict, avail: dict, name: str, unit=""):
    t = (total or {}).get(name)
    if not t:
        return None
    return [max(0.0, t - (avail or {}).get(name, 0.0)), t, unit]


@_guard
def cluster(view) -> dict:
    nodes = view.query("nodes", limit=SCAN_LIMIT)
    workers = collections.Counter(
        w.get("node_id") for w in view.query("workers", limit=SCAN_LIMIT)
        if w.get("is_alive") and w.get("worker_type") == "WORKER")
    running = collections.Counter(
        t.get("node_id") for t in view.query("tasks", [("state", "=", "RUNNING")],
                                             SCAN_LIMIT))
    rows, totals, used = [], collections.Counter(), collections.Counter()
    for n in nodes:
        total, avail = n.get("resources_total") or {}, n.get("resources_available") or {}
        alive = n.get("state") == "ALIVE"
        if alive:
            for k, v in total.items():
                totals[k] += v
                used[k] += max(0.0, v - avail.get(k, 0.0))
        store = n.get("object_store_memory")
        rows.append({
            "node_id": n["node_id"], "node_ip": n.get("node_ip"),
            "hostname": n.get("hostname"), "is_head_node": n.get("is_head_node"),
            "state": n.get("state"),
            "cpu": _usage(total, avail, "CPU"), "gpu": _usage(total, avail, "GPU"),
            "memory": _usage(total, avail, "memory", "bytes"),
            "object_store": [n.get("object_store_used") or 0, store, "bytes"]
            if store else None,
            "workers": workers.get(n["node_id"], 0) if alive else None,
            "running": running.get(n["node_id"], 0) if alive else None})
    rows.sort(key=lambda r: (not r["is_head_node"], r["state"] != "ALIVE",
                             r["node_id"]))
    resources = [{"resource": k, "usage": [used[k], totals[k],
                                           "bytes" if "memory" in k else ""]}
                 for k in sorted(totals)]
    return {"nodes": rows, "resources": resources}


@_guard
def jobs(view) -> dict:
    per_job = collections.defaultdict(collections.Counter)
    for t in view.query("tasks", limit=SCAN_LIMIT):
        per_job[t.get("job_id")][t.get("state")] += 1
    rows = []
    for j in view.query("jobs", limit=SCAN_LIMIT):
        pid = str((j.get("driver_info") or {}).get("pid") or "")
        rows.append({**j, "driver_pid": int(pid) if pid.isdigit() else None,
                     "tasks": dict(per_job.get(j["job_id"], {}))})
    rows.sort(key=lambda r: r.get("start_time") or 0, reverse=True)
    return {"jobs": rows}


def _one(query, name):
    values = query.get(name) or [""]
    return values[-1].strip()


@_guard
def tasks(view, query) -> dict:
    """The tasks table (filtered by the query's state, name, job_id) and the
    counts per function; both from one read of the tasks."""
    want_state, job, name = _one(query, "state"), _one(query, "job_id"), \
        _one(query, "name")
    if want_state and want_state not in TASK_STATES:
        return {"error": f"state {want_state!r} is not a task state: one of "
                         f"{', '.join(TASK_STATES)}"}
    everything = view.query("tasks", limit=SCAN_LIMIT)
    summary = {}
    for t in everything:
        key = t.get("func_or_class_name") or t.get("name")
        s = summary.setdefault(key, {"func_or_class_name": key, "type": t.get("type"),
                                     "state_counts": collections.Counter(),
                                     "total": 0})
        s["state_counts"][t.get("state")] += 1
        s["total"] += 1
    rows = [t for t in everything
            if (not want_state or t.get("state") == want_state)
            and (not job or t.get("job_id") == job)
            and (not name or name in (t.get("name") or ""))]
    rows.sort(key=lambda r: (r.get("start_time_ms") or r.get("creation_time_ms")
                             or 0), reverse=True)
    now = time.time() * 1000
    for r in rows[:TABLE_LIMIT]:
        start = r.get("start_time_ms")
        r["duration_ms"] = None if not start else (r.get("end_time_ms") or now) - start
    what = " and ".join(f"{k} {v!r}" for k, v in
                        (("state", want_state), ("name containing", name),
                         ("job", job)) if v)
    shown = f"{len(rows)} tasks" + (f" with {what}" if what else "") + \
        (f" (the newest {TABLE_LIMIT} shown)" if len(rows) > TABLE_LIMIT else "")
    return {"tasks": rows[:TABLE_LIMIT], "shown": shown,
            "summary": sorted(({**s, "state_counts": dict(s["state_counts"])}
                               for s in summary.values()),
                              key=lambda s: str(s["func_or_class_name"]))}


@_guard
def actors(view) -> dict:
    rows = []
    for a in view.query("actors", limit=TABLE_LIMIT):
        cause = a.get("death_cause") or {}
        rows.append({**a, "death": cause.get("message") if isinstance(cause, dict)
                     else str(cause)})
    rows.sort(key=lambda r: (r.get("state") == "DEAD", r.get("class_name") or ""))
    return {"actors": rows}


@_guard
def objects(view) -> dict:
    rows, per_node = [], {}
    for o in view.query("objects", limit=SCAN_LIMIT):
        spilled = o.get("where") == "spilled" or o.get("state") == "SPILLED"
        pinned = bool(o.get("pins"))
        size = o.get("object_size") or 0
        s = per_node.setdefault(o.get("node_id"), {
            "node_id": o.get("node_id"), "objects": 0, "bytes": 0, "spilled": 0,
            "pinned": 0})
        s["objects"] += 1
        s["bytes"] += size
        s["spilled"] += size if spilled else 0
        s["pinned"] += pinned
        rows.append({**o, "spilled": spilled, "pinned": pinned, "owner": o.get("pid"),
                     "holders": ", ".join(map(str, o.get("holders") or []))})
    rows.sort(key=lambda r: r.get("object_size") or 0, reverse=True)
    return {"objects": rows[:TABLE_LIMIT], "summary": list(per_node.values())}


@_guard
def logs(view) -> dict:
    """Every node's log files, each a link to its page (newest first)."""
    rows = [{"node_id": f["node_id"], "pid": f.get("pid"), "size": f["size"],
             "mtime_ms": int(f["mtime"] * 1000),
             "file": [f["name"], "/logs?" + urllib.parse.urlencode(
                 {"node": f["node_id"], "file": f["name"]})]}
            for f in view.logs()]
    rows.sort(key=lambda r: r["mtime_ms"], reverse=True)
    return {"files": rows[:TABLE_LIMIT]}


@_guard
def log_tail(view, node, name, offset) -> dict:
    """What log file `name` of `node` holds from byte `offset` (None: its last
    LOG_TAIL_BYTES), as text, and the offset to ask from next."""
    if not node or not name:
        return {"error": "give node= and name= (the Logs page lists them)."}
    ans = view.read_log(node, name, -LOG_TAIL_BYTES if offset is None else offset,
                        LOG_TAIL_BYTES)
    data = ans["data"]
    if offset is None and ans["offset"] > 0:
        data = data[data.find(b"\n") + 1:]      # (the first line is cut)
    text = data.decode("utf-8", "replace")
    # a log line printed during a task carries its id (\x1e<id>\x1f): not shown
    text = _TASK_TAG.sub("", text)
    return {"data": text, "offset": ans["offset"] + len(ans["data"])}


@_guard
def timeline(view) -> list:
    """The Chrome trace of `beamlet timeline` (the same events, from the same
    task records: the newest SCAN_LIMIT tasks)."""
    return trace_events(view.query("tasks", limit=SCAN_LIMIT))


# endpoint path -> (builder, whether it takes the query)
ENDPOINTS = {"/api/cluster": (cluster, False), "/api/jobs": (jobs, False),
             "/api/tasks": (tasks, True), "/api/actors": (actors, False),
             "/api/objects": (objects, False), "/api/logs": (logs, False)}
