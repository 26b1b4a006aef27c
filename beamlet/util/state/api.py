"""The state API: list, get and summarize what a cluster is doing (Ray's
ray.util.state, with its parameters and field names).

Where each kind comes from (docs/gcs.md has the schema):

    tasks             live from every raylet (tasks not ended, with their
                      pending reasons) + the GCS's finished-task records of
                      every job (beamlet:task_events:<job>, the newest
                      TASK_EVENTS_PER_JOB per job); one row per task id
    actors            the GCS actor records, with the live state, pid and
                      pending reason of the raylet that hosts each
    placement_groups  the GCS group records, with the live state and reason
    objects, workers  live from every raylet
    nodes, jobs       the GCS records

"Live" is one CALL "state" to the local raylet, which asks the other nodes'
raylets (PEER_STATE) and answers with every node's rows; a node that does not
answer makes the call raise RayStateApiException (raise_on_missing_output=True,
the default) or warn.  Filters are applied where the rows are made (each raylet
sends only matching rows, at most `limit` of them) and again here.
"""
import collections
import json
import warnings

from ... import connection
from ..._private import ids, state_rows
from ...gcs.client import GcsClient, StateReader
from ...object_ref import ObjectRef
from .common import ID_COLUMNS, SCHEMAS
from .exception import RayStateApiException

DEFAULT_LIMIT = 100
DEFAULT_TIMEOUT = 30
# rows a summary looks at per source (as Ray's RAY_MAX_LIMIT_FROM_API_SERVER)
MAX_LIMIT = 10_000
LIVE = ("tasks", "actors", "objects", "workers", "placement_groups")


class _Source:
    """Where the state is read: the raylet of this machine (its CALL "state"
    covers every node) and the GCS.  With no address, this process's cluster
    (the driver's, or a worker's own); else the cluster `address` names, as the
    CLI finds it ("auto": the latest started on this machine)."""

    def __init__(self, address, timeout, password=None):
        self.timeout = timeout
        self._owned = None
        if address is None and password is None and connection.is_connected():
            self.core = connection.core()
            self.gcs = connection.gcs()
            self.reader = StateReader(self.gcs.r)
            return
        from ...node import find_cluster, resolve_address
        try:
            info = find_cluster(resolve_address(address, default="auto"))
        except ConnectionError as e:
            raise RayStateApiException(f"cannot reach a beamlet cluster: {e}") from None
        self._open(info["raylet_socket"], GcsClient(info["redis_host"],
                                                    info["redis_port"],
                                                    password or info["password"]))

    @classmethod
    def of_node(cls, raylet_socket, gcs_host, gcs_port, password,
                timeout=DEFAULT_TIMEOUT):
        """A source that reads the cluster through the raylet at `raylet_socket`,
        kept open by a process that queries often (the dashboard: pass it to
        query() as `_source`); close() it when done."""
        self = cls.__new__(cls)
        self.timeout = timeout
        self._open(raylet_socket, GcsClient(gcs_host, gcs_port, password))
        return self

    def _open(self, raylet_socket, gcs):
        from ...worker.core_worker import CoreWorker
        try:
            core = CoreWorker(raylet_socket, "cli")
        except OSError as e:
            gcs.r.close()
            raise RayStateApiException(
                f"cannot reach this machine's raylet at {raylet_socket} "
                f"({e.strerror or e}): its node is not running.") from None
        self.core, self.gcs, self._owned = core, gcs, (core, gcs)
        self.reader = StateReader(gcs.r)

    def close(self):
        if self._owned is not None:
            core, gcs = self._owned
            core.close()
            try:
                gcs.r.close()
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def live(self, kind, filters, limit, detail, raise_on_missing_output):
        ans = self.core.call("state", kind, [list(f) for f in filters], limit,
                             bool(detail), timeout=self.timeout)
        if ans is None:
            raise RayStateApiException(
                f"listing {kind} took more than timeout={self.timeout} s (a raylet "
                f"did not answer in time); pass a larger timeout.")
        if ans.get("errors"):
            msg = (f"some nodes did not answer, so {kind} of theirs are missing: "
                   + "; ".join(ans["errors"]))
            if raise_on_missing_output:
                raise RayStateApiException(
                    msg + " (raise_on_missing_output=False lists what answered)")
            warnings.warn(msg, stacklevel=4)
        return ans


def _check(kind, filters, limit, timeout):
    filters = state_rows.check_filters(filters)
    cols = SCHEMAS[kind].columns()
    for key, _op, _v in filters:
        if key not in cols:
            raise ValueError(f"{key!r} is not a column of {kind}: filter on one of "
                             f"{sorted(cols)}.")
    if type(limit) is not int or limit <= 0:
        raise ValueError(f"limit must be a positive int, got {limit!r}.")
    if timeout is not None and (type(timeout) is bool or
                                not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds, got "
                         f"{timeout!r}.")
    return filters


def _rows(src, kind, filters, limit, detail, raise_on_missing_output):
    """Every source's rows of `kind`, merged, filtered, the newest `limit`."""
    if kind == "tasks":
        live = src.live(kind, filters, limit, True, raise_on_missing_output)["rows"]
        jobs = src.reader.jobs()
        # the GCS cannot filter: with filters, every record kept is looked at
        records, kept = src.reader.finished_tasks([j["_id"] for j in jobs],
                                                  None if filters else limit)
        done = [state_rows.row_from_record(r) for r in records]
        _warn_trimmed(jobs, kept)
        rows = state_rows.merge_tasks(live, done)
    elif kind == "actors":
        live = src.live(kind, [], MAX_LIMIT, True, raise_on_missing_output)["rows"]
        rows = _merge_by_id(live, [_actor_from_gcs(a) for a in src.reader.actors()],
                            "actor_id")
    elif kind == "placement_groups":
        live = src.live(kind, [], MAX_LIMIT, True, raise_on_missing_output)["rows"]
        rows = _merge_by_id(live, [_pg_from_gcs(p) for p in
                                   src.reader.placement_groups()], "placement_group_id")
    elif kind in LIVE:
        rows = src.live(kind, filters, limit, True, raise_on_missing_output)["rows"]
    elif kind == "nodes":
        rows = [_node_from_gcs(n) for n in src.gcs.nodes()]
    else:
        rows = [_job_from_gcs(j) for j in src.reader.jobs()]
    return state_rows.select(rows, filters, limit)


def _merge_by_id(live, recorded, key):
    """GCS records, each overlaid with the live row of the node that has it."""
    out = {r[key]: r for r in recorded}
    for r in live:
        base = out.get(r[key], {})
        out[r[key]] = {**base, **{k: v for k, v in r.items() if v is not None or
                                  k not in base}}
    return list(out.values())


def _warn_trimmed(jobs, kept):
    for j in jobs:
        n, k = int(j.get("tasks_finished") or 0), kept.get(j["_id"], 0)
        if n > k:
            warnings.warn(
                f"job {j['_id']} finished {n} tasks; the GCS keeps the newest {k} of "
                f"them (BEAMLET_TASK_EVENTS_PER_JOB; and only those that ended since "
                f"its Redis last started), so the older ones are not listed.",
                stacklevel=4)


def _actor_from_gcs(a) -> dict:
    res = a.get("resources")
    return {
        "actor_id": a["_id"], "class_name": a.get("class"), "state": a.get("state"),
        "job_id": a.get("job") or None, "name": a.get("name", ""),
        "node_id": a.get("node") or None, "pid": int(a["pid"]) if a.get("pid", "0")
        != "0" else None, "ray_namespace": a.get("namespace"), "pending_reason": None,
        "required_resources": json.loads(res) if res else None,
        "death_cause": {"message": a["death_cause"]} if a.get("death_cause") else None,
        "is_detached": a.get("detached") == "1",
        "num_restarts": int(a.get("restarts") or 0),
        "num_restarts_due_to_lineage_reconstruction": 0,
        "call_site": a.get("call_site") or None,
        "worker_id": a.get("worker_id") or None, "repr_name": ""}


def _pg_from_gcs(p) -> dict:
    bundles = json.loads(p.get("bundles") or "[]")
    nodes = json.loads(p.get("bundle_nodes") or "[]")
    created = p.get("state") == "CREATED"
    return {
        "placement_group_id": p["_id"], "name": p.get("name", ""),
        "creator_job_id": p.get("job") or None, "state": p.get("state"),
        "strategy": p.get("strategy"), "pending_reason": None,
        "bundles": [{"bundle_id": i, "unit_resources": b,
                     "node_id": nodes[i] if created and i < len(nodes) else None}
                    for i, b in enumerate(bundles)],
        "is_detached": None, "stats": {"scheduling_state": p.get("state")}}


def _node_from_gcs(n) -> dict:
    started = n.get("started_at")
    return {
        "node_id": n["node_id"], "node_ip": n.get("address"),
        "is_head_node": n.get("is_head") == "1", "state": n.get("state"),
        "state_message": n.get("death_reason") or None,
        "node_name": n.get("address"), "resources_total": n.get("resources_total", {}),
        "labels": {}, "start_time_ms": int(float(started) * 1000) if started else None,
        "end_time_ms": None,
        "resources_available": n.get("resources_available"),
        "object_store_memory": int(n["object_store_memory"])
        if n.get("object_store_memory") else None,
        "object_store_used": int(n["object_store_used"])
        if n.get("object_store_used") else None,
        "hostname": n.get("hostname"), "raylet_pid": int(n["pid"]) if n.get("pid")
        else None, "session_dir": n.get("session_dir"), "demand": n.get("demand")}


def _job_from_gcs(j) -> dict:
    started, ended = j.get("started_at"), j.get("end_time")
    meta = j.get("metadata")
    return {
        "job_id": j["_id"], "submission_id": None, "type": "DRIVER",
        "status": j.get("state", "RUNNING"), "entrypoint": "",
        "message": None, "error_type": None,
        "driver_info": {"id": j["_id"], "pid": j.get("driver_pid"),
                        "node_ip_address": None},
        "start_time": int(float(started) * 1000) if started else None,
        "end_time": int(float(ended) * 1000) if ended else None,
        "metadata": json.loads(meta) if meta else {}, "runtime_env": None,
        "driver_node_id": j.get("node") or None, "driver_exit_code": None,
        "namespace": j.get("namespace")}


def query(kind, address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT,
          detail=False, raise_on_missing_output=True, password=None, _source=None):
    """(records of `kind`, how many matched before `limit`): what list_<kind>
    returns, and the count the CLI shows (`password`: the cluster token, when
    it is not the one in this machine's session files; `_source`: an open
    _Source.of_node to read through instead of connecting for this query)."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown kind {kind!r}: one of {sorted(SCHEMAS)}.")
    filters = _check(kind, filters, limit, timeout)
    if _source is not None:
        rows, total = _rows(_source, kind, filters, limit, detail,
                            raise_on_missing_output)
    else:
        with _Source(address, timeout, password) as src:
            rows, total = _rows(src, kind, filters, limit, detail,
                                raise_on_missing_output)
    schema = SCHEMAS[kind]
    return [schema.from_row(r, detail) for r in rows], total


def _list(kind, address, filters, limit, timeout, detail, raise_on_missing_output):
    return query(kind, address, filters, limit, timeout, detail,
                 raise_on_missing_output)[0]


def _get(kind, id, address, timeout, src=None):
    if isinstance(id, ObjectRef):
        id = (ids.task_of(id.id) if kind == "tasks" else id.id).hex()
    if not isinstance(id, str) or not id:
        raise TypeError(f"get_{kind[:-1]}() takes an id as a hex string, got {id!r}.")
    filters = [(ID_COLUMNS[kind], "=", id)]
    if src is not None:      # (a query that is already connected)
        rows, _ = _rows(src, kind, filters, MAX_LIMIT, True, False)
        return [SCHEMAS[kind].from_row(r, True) for r in rows]
    return _list(kind, address, filters, MAX_LIMIT, timeout, True, False)


# ------------------------------------------------------------------ list
def list_tasks(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT,
               detail=False, raise_on_missing_output=True, _explain=False):
    """Tasks of the cluster (every node), not ended and finished: TaskState
    records (`pending_reason` says why one waits)."""
    return _list("tasks", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


def list_actors(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT,
                detail=False, raise_on_missing_output=True, _explain=False):
    """Actors of the cluster, alive and dead: ActorState records."""
    return _list("actors", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


def list_objects(address=None, filters=None, limit=DEFAULT_LIMIT,
                 timeout=DEFAULT_TIMEOUT, detail=False, raise_on_missing_output=True,
                 _explain=False):
    """Objects in the object stores of every node: ObjectState records."""
    return _list("objects", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


def list_nodes(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT,
               detail=False, raise_on_missing_output=True, _explain=False):
    """Nodes the cluster has known, alive and dead: NodeState records."""
    return _list("nodes", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


def list_workers(address=None, filters=None, limit=DEFAULT_LIMIT,
                 timeout=DEFAULT_TIMEOUT, detail=False, raise_on_missing_output=True,
                 _explain=False):
    """Worker processes (and drivers) of every node, with the last ones that
    exited: WorkerState records."""
    return _list("workers", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


def list_placement_groups(address=None, filters=None, limit=DEFAULT_LIMIT,
                          timeout=DEFAULT_TIMEOUT, detail=False,
                          raise_on_missing_output=True, _explain=False):
    """Placement groups: PlacementGroupState records."""
    return _list("placement_groups", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


def list_jobs(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT,
              detail=False, raise_on_missing_output=True, _explain=False):
    """Jobs (drivers) of the cluster: JobState records."""
    return _list("jobs", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


# ------------------------------------------------------------------ get
def _one(found):
    return found[-1] if found else None


def get_task(id, address=None, timeout=DEFAULT_TIMEOUT, _explain=False):
    """The task of `id` (a task id in hex, or an ObjectRef it returns), or None."""
    return _one(_get("tasks", id, address, timeout))


def get_actor(id, address=None, timeout=DEFAULT_TIMEOUT, _explain=False):
    """The actor of `id` (hex), or None."""
    return _one(_get("actors", id, address, timeout))


def get_node(id, address=None, timeout=DEFAULT_TIMEOUT, _explain=False):
    """The node of `id` (hex), or None."""
    return _one(_get("nodes", id, address, timeout))


def get_worker(id, address=None, timeout=DEFAULT_TIMEOUT, _explain=False):
    """The worker of `id` (hex), or None."""
    return _one(_get("workers", id, address, timeout))


def get_placement_group(id, address=None, timeout=DEFAULT_TIMEOUT, _explain=False):
    """The placement group of `id` (hex), or None."""
    return _one(_get("placement_groups", id, address, timeout))


def get_job(id, address=None, timeout=DEFAULT_TIMEOUT, _explain=False):
    """The job of `id` (hex), or None."""
    return _one(_get("jobs", id, address, timeout))


def get_objects(id, address=None, timeout=DEFAULT_TIMEOUT, _explain=False):
    """The copies of object `id` (hex or an ObjectRef) on every node: a list."""
    return _get("objects", id, address, timeout)


# ------------------------------------------------------------------ summaries
def summarize_tasks(address=None, timeout=DEFAULT_TIMEOUT, raise_on_missing_output=True,
                    _explain=False, _password=None):
    """Counts of tasks per function (or actor method) and state, as Ray's:
    {"cluster": {"summary": {name: {"func_or_class_name", "type", "state_counts"}},
    "total_tasks", "total_actor_tasks", "total_actor_scheduled", "summary_by"}}."""
    tasks = query("tasks", address, None, MAX_LIMIT, timeout, False,
                  raise_on_missing_output, _password)[0]
    summary = {}
    totals = collections.Counter()
    for t in tasks:
        key = t.func_or_class_name
        s = summary.setdefault(key, {"func_or_class_name": key, "type": t.type,
                                     "state_counts": {}})
        s["state_counts"][t.state] = s["state_counts"].get(t.state, 0) + 1
        totals[t.type] += 1
    return {"cluster": {"summary": summary,
                        "total_tasks": totals[state_rows.NORMAL],
                        "total_actor_tasks": totals[state_rows.ACTOR_CALL],
                        "total_actor_scheduled": totals[state_rows.CREATION],
                        "summary_by": "func_name"}}


def summarize_actors(address=None, timeout=DEFAULT_TIMEOUT, raise_on_missing_output=True,
                     _explain=False, _password=None):
    """Counts of actors per class and state, as Ray's: {"cluster": {"summary":
    {class: {"class_name", "state_counts"}}, "total_actors", "summary_by"}}."""
    actors = query("actors", address, None, MAX_LIMIT, timeout, False,
                   raise_on_missing_output, _password)[0]
    summary = {}
    for a in actors:
        s = summary.setdefault(a.class_name, {"class_name": a.class_name,
                                              "state_counts": {}})
        s["state_counts"][a.state] = s["state_counts"].get(a.state, 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(actors),
                        "summary_by": "class"}}


def summarize_objects(address=None, timeout=DEFAULT_TIMEOUT,
                      raise_on_missing_output=True, _explain=False, _password=None):
    """Object counts and sizes, as Ray's (grouped by call site, which beamlet
    does not record: one group, "disabled")."""
    objs = query("objects", address, None, MAX_LIMIT, timeout, False,
                 raise_on_missing_output, _password)[0]
    summary = {}
    for o in objs:
        s = summary.setdefault(o.call_site, {
            "total_objects": 0, "total_size_mb": 0.0, "total_num_workers": set(),
            "total_num_nodes": set(), "task_state_counts": {}, "ref_type_counts": {}})
        s["total_objects"] += 1
        s["total_size_mb"] += (o.object_size or 0) / 2**20
        if o.pid:
            s["total_num_workers"].add(o.pid)
        s["total_num_nodes"].add(o.node_id)
        s["task_state_counts"][o.task_status] = \
            s["task_state_counts"].get(o.task_status, 0) + 1
        s["ref_type_counts"][o.reference_type] = \
            s["ref_type_counts"].get(o.reference_type, 0) + 1
    for s in summary.values():
        s["total_num_workers"] = len(s["total_num_workers"])
        s["total_num_nodes"] = len(s["total_num_nodes"])
    return {"cluster": {"summary": summary, "total_objects": len(objs),
                        "total_size_mb": sum(s["total_size_mb"]
                                             for s in summary.values()),
                        "callsite_enabled": False, "summary_by": "callsite"}}


# ------------------------------------------------------------------ logs
# Every node keeps its processes' output in its session's logs/ directory:
# raylet.out/.err, monitor, redis and, for each worker process, every line it
# wrote (worker-<worker id>-<pid>.out|.err; a line printed during a task starts
# with "\x1e<task id>\x1f", which get_log takes off).  Its raylet lists and
# reads them (CALL "logs", "log_read"), for another node through that node's
# raylet.
LOG_CHUNK = 1 << 20
_TAG, _TAG_END = "\x1e", "\x1f"


def list_logs(address=None, node_id=None, node_ip=None, glob_filter=None,
              timeout=DEFAULT_TIMEOUT, _password=None) -> dict:
    """node id -> the names of its log files (every node, or `node_id`'s /
    `node_ip`'s), those matching `glob_filter` if given."""
    import fnmatch
    with _Source(address, timeout, _password) as src:
        files = _log_files(src, node_id, node_ip)
    return {n: [f["name"] for f in fs if glob_filter is None or
                fnmatch.fnmatch(f["name"], glob_filter)]
            for n, fs in files.items()}


def log_index(_source) -> list:
    """Every node's log files as rows (node_id, name, size, mtime, pid,
    worker_id), read through an open source (the dashboard's)."""
    return [dict(f, node_id=n) for n, fs in sorted(_log_files(_source).items())
            for f in fs]


def read_log_bytes(node_id, name, offset, max_bytes, _source) -> dict:
    """{"data": bytes, "size", "offset"} of log file `name` of node `node_id`
    from byte `offset` (< 0: that many from the end), at most `max_bytes`."""
    return _LogReader(_source, node_id, name, None, "utf-8", "replace").read(
        offset, max_bytes)


def _log_files(src, node_id=None, node_ip=None) -> dict:
    ans = src.core.call("logs", timeout=src.timeout)
    if ans is None:
        raise RayStateApiException(f"listing log files took more than "
                                   f"timeout={src.timeout} s.")
    out = {}
    ips = {n["node_id"]: n.get("address") for n in src.gcs.nodes()} if node_ip else {}
    for n, files in ans.items():
        if isinstance(files, dict):
            raise RayStateApiException(f"node {n[:12]} did not answer: {files['error']}")
        if (node_id is None or n == node_id) and (node_ip is None or ips.get(n) == node_ip):
            out[n] = files
    if node_id is not None and node_id not in out:
        raise RayStateApiException(f"no alive node {node_id} (`beamlet list nodes`).")
    return out


def _log_target(src, filename, actor_id, task_id, pid, node_id, suffix):
    """(node id, file name, task id hex or None) of what get_log reads."""
    files = _log_files(src, node_id)
    if filename:
        hits = [(n, filename) for n, fs in files.items() for f in fs
                if f["name"] == filename]
        return (*_only(hits, f"log file {filename!r}", node_id), None)
    worker = node = None
    if actor_id or task_id:
        kind, id, ran = (("actor", actor_id, "with a worker") if actor_id else
                         ("task", task_id, "that ran on a worker"))
        rec = _one(_get(kind + "s", id, None, src.timeout, src))
        if rec is None or not rec.worker_id:
            raise ValueError(f"no {kind} {id} {ran} (`beamlet list {kind}s`).")
        worker, node = rec.worker_id, rec.node_id
    names = [(n, f["name"]) for n, fs in files.items() for f in fs
             if f.get("worker_id") is not None and f["name"].endswith("." + suffix)
             and (pid is None or f.get("pid") == int(pid))
             and (worker is None or f["worker_id"] == worker)
             and (node is None or n == node)]
    what = f"pid {pid}" if pid is not None else f"worker {worker}"
    return (*_only(names, f"worker log ({suffix}) of {what}", node or node_id),
            task_id)


def _only(hits, what, node_id):
    """The one (node, file name) of `hits`; else a ValueError saying what to do."""
    if not hits:
        raise ValueError(f"no {what} on {'node ' + node_id if node_id else 'any node'}"
                         f" (`beamlet logs` lists the files).")
    if len(hits) > 1:
        raise ValueError(f"several nodes have a {what}: give node_id (one of "
                         f"{sorted({n for n, _ in hits})}).")
    return hits[0]


def get_log(address=None, node_id=None, node_ip=None, filename=None, actor_id=None,
            task_id=None, pid=None, follow=False, tail=-1, timeout=DEFAULT_TIMEOUT,
            suffix="out", encoding="utf-8", errors="strict", _interval=None,
            _password=None):
    """The lines of a log file, as a generator (Ray's get_log): a file by name
    (`filename`, with `node_id` when several nodes have one), or the output of
    a worker (`pid`), of the worker that hosts an actor (`actor_id`) or of one
    task (`task_id`: only the lines it printed).  `suffix`: "out" (stdout) or
    "err" (stderr).  `tail`: the last N lines only (-1: all).  `follow`: then
    wait for more, every `_interval` seconds (0.5), until the caller stops.
    What to read and the lines already there are found by the call itself (a
    bad argument raises here, and with `follow` every line written after the
    call comes), the generator yields them."""
    if suffix not in ("out", "err"):
        raise ValueError(f"suffix must be 'out' or 'err', got {suffix!r}.")
    if not (filename or actor_id or task_id or pid is not None):
        raise ValueError("get_log() needs one of filename, actor_id, task_id or pid.")
    if isinstance(task_id, ObjectRef):
        task_id = ids.task_of(task_id.id).hex()
    src = _Source(address, timeout, _password)
    try:
        node, name, task = _log_target(src, filename, actor_id, task_id, pid, node_id,
                                       suffix)
        log = _LogReader(src, node, name, task, encoding, errors)
        first = log.last_lines(tail)
    except BaseException:
        src.close()
        raise
    return _log_lines(src, log, first, follow, 0.5 if _interval is None else _interval)


def _log_lines(src, log, first, follow, interval):
    import time
    try:
        yield from first
        while follow:
            time.sleep(interval)
            yield from log.more()
        yield from log.rest()
    finally:
        src.close()


class _LogReader:
    """One log file of one node, read through the raylets (CALL "log_read"), a
    chunk at a time: its last lines, then what is written after them."""

    def __init__(self, src, node, name, task, encoding, errors):
        self.src, self.node, self.name, self.task = src, node, name, task
        self.encoding, self.errors = encoding, errors
        self.offset = 0          # read up to here ...
        self.pending = b""       # ... but for this start of a line

    def read(self, offset, n):
        ans = self.src.core.call("log_read", self.node, self.name, offset, n,
                                 timeout=self.src.timeout)
        if ans is None or "error" in ans:
            raise RayStateApiException(f"reading {self.name} of node {self.node[:12]}: "
                                       f"{ans['error'] if ans else 'no answer'}")
        return ans

    def read_range(self, a, b) -> bytes:
        parts = []
        while a < b:
            data = self.read(a, min(LOG_CHUNK, b - a))["data"]
            if not data:
                break
            parts.append(data)
            a += len(data)
        return b"".join(parts)

    def lines_of(self, data: bytes) -> list:
        """The lines of `data` as text, without their task tags (only those of
        the task when one is given)."""
        out = []
        # (split on newlines only: str.splitlines would also cut at the tag's
        # \x1e and \x1f, which are line separators to it)
        parts = data.decode(self.encoding, self.errors).split("\n")
        last = parts.pop()
        for raw in [p + "\n" for p in parts] + ([last] if last else []):
            if raw.startswith(_TAG):
                tag, _, raw = raw[1:].partition(_TAG_END)
                if self.task is not None and tag != self.task:
                    continue
            elif self.task is not None:
                continue
            out.append(raw)
        return out

    def last_lines(self, tail) -> list:
        """The whole lines there now (the last `tail` of them; tail < 0: all)."""
        size = self.read(0, 0)["size"]
        if tail is None or tail < 0:
            data = self.read_range(0, size)
        else:
            # back from the end, a chunk at a time, until `tail` lines are in hand
            start, data = size, b""
            while start > 0:
                start = max(0, start - LOG_CHUNK)
                data = self.read_range(start, size)
                whole = data if start == 0 else data[data.find(b"\n") + 1:]
                if len(self.lines_of(whole)) > tail:
                    break
            if start > 0:
                data = data[data.find(b"\n") + 1:]     # (a line cut in the middle)
        cut = data.rfind(b"\n") + 1
        lines, self.pending, self.offset = self.lines_of(data[:cut]), data[cut:], size
        if tail is not None and tail >= 0:
            lines = lines[-tail:] if tail else []
        return lines

    def more(self) -> list:
        """The whole lines written since the last read."""
        size = self.read(0, 0)["size"]
        if size < self.offset:   # moved to .1 (its cap): the new file from its start
            self.offset, self.pending = 0, b""
        if size == self.offset:
            return []
        data = self.pending + self.read_range(self.offset, size)
        self.offset = size
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        return self.lines_of(data[:cut])

    def rest(self) -> list:
        """A last line without its newline (the file ends in it)."""
        rest, self.pending = self.pending, b""
        return self.lines_of(rest) if rest else []
