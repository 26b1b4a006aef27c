"""The rows of the state API (pure): what a raylet reports and the GCS keeps for
tasks, actors, objects, workers, ... as plain dicts with Ray's field names, and
the filters that select them.  The raylets filter at the source (a CALL "state"
answers only matching rows, and at most `limit` of them), the clients
(beamlet/util/state) merge the sources and filter again; both use `matches`.

Task states are Ray's (ray.util.state.common.TaskState.state), mapped from the
raylet's own (raylet/scheduler.py TaskState):

    WAITING_FOR_ARGS       -> PENDING_ARGS_AVAIL   (actor calls: PENDING_ACTOR_TASK_ARGS_FETCH)
    WAITING_FOR_RESOURCES  -> PENDING_NODE_ASSIGNMENT (actor calls in their actor's
                              queue: PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY; a
                              task sent ahead to a busy worker: SUBMITTED_TO_WORKER)
    RUNNING                -> RUNNING (its worker blocked in get/wait: RUNNING_IN_RAY_GET)
    FORWARDED              -> PENDING_NODE_ASSIGNMENT until the node it went to reports it
    FINISHED / FAILED      -> FINISHED / FAILED
    CANCELLED              -> FAILED with error_type TASK_CANCELLED (as Ray)
"""

KINDS = ("tasks", "actors", "objects", "nodes", "workers", "placement_groups", "jobs")

NORMAL, CREATION, ACTOR_CALL = "NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK"
TASK_TYPES = (NORMAL, CREATION, ACTOR_CALL)   # by protocol kind (0, 1, 2)
DONE_STATES = ("FINISHED", "FAILED")

# beamlet exception class -> Ray's error_type of a task that failed with it
ERROR_TYPES = {
    "WorkerCrashedError": "WORKER_DIED",
    "ActorDiedError": "ACTOR_DIED",
    "ActorUnavailableError": "ACTOR_UNAVAILABLE",
    "TaskCancelledError": "TASK_CANCELLED",
    "NodeDiedError": "NODE_DIED",
    "ObjectLostError": "OBJECT_LOST",
    "OwnerDiedError": "OWNER_DIED",
    "TaskUnschedulableError": "TASK_UNSCHEDULABLE_ERROR",
    "ActorUnschedulableError": "ACTOR_UNSCHEDULABLE_ERROR",
    "OutOfMemoryError": "OUT_OF_MEMORY",
    "RaySystemError": "RAY_SYSTEM_ERROR",
}
TASK_EXCEPTION = "TASK_EXECUTION_EXCEPTION"   # the task's own code raised


def error_type(exc_class_name: str) -> str:
    return ERROR_TYPES.get(exc_class_name, TASK_EXCEPTION)


def check_filters(filters) -> list:
    """[(key, "=" | "!=", value), ...] as given to list_*(filters=...); a
    ValueError names what is wrong."""
    if filters is None:
        return []
    if not isinstance(filters, (list, tuple)):
        raise ValueError(f"filters must be a list of (key, predicate, value) tuples, "
                         f"e.g. [('state', '=', 'RUNNING')]; got {filters!r}.")
    out = []
    for f in filters:
        if not isinstance(f, (list, tuple)) or len(f) != 3:
            raise ValueError(f"each filter is a (key, predicate, value) tuple, e.g. "
                             f"('state', '=', 'RUNNING'); got {f!r}.")
        key, op, value = f
        if op not in ("=", "!="):
            raise ValueError(f"Unsupported filter predicate {op!r} in {tuple(f)!r}: the "
                             f"predicates are '=' and '!='.")
        out.append((str(key), op, value))
    return out


def _norm(v) -> str:
    # string comparisons are case-insensitive (as Ray's); numbers compare as
    # numbers written the same way (1 == 1.0 == "1")
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).lower()


def matches(row: dict, filters) -> bool:
    for key, op, value in filters:
        equal = _norm(row.get(key)) == _norm(value)
        if equal != (op == "="):
            return False
    return True


def select(rows, filters, limit):
    """(matching rows, at most `limit` of them, newest last; how many matched)."""
    out = [r for r in rows if matches(r, filters)] if filters else list(rows)
    n = len(out)
    if limit is not None and n > limit:
        out = out[-limit:]
    return out, n


def merge_tasks(live: list, finished: list) -> list:
    """One row per task: a task id reported by several sources (a task sent to
    another node is listed by its submitter as waiting and by the node that runs
    it; a finished record may be written while a raylet still lists the task)
    keeps the most advanced row."""
    rank = {"FINISHED": 5, "FAILED": 5, "RUNNING": 4, "RUNNING_IN_RAY_GET": 4,
            "SUBMITTED_TO_WORKER": 3, "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY": 2,
            "PENDING_NODE_ASSIGNMENT": 1}
    best = {}
    for row in list(finished) + list(live):
        tid = row["task_id"]
        old = best.get(tid)
        if old is None:
            best[tid] = row
            continue
        a, b = rank.get(old["state"], 0), rank.get(row["state"], 0)
        # a forwarded copy (submitter side) loses to the node that runs it
        if b > a or (b == a and old.get("forwarded") and not row.get("forwarded")):
            best[tid] = row
    return sorted(best.values(), key=lambda r: (r.get("creation_time_ms") or 0,
                                                r["task_id"]))


def row_from_record(rec) -> dict:
    """A finished task's GCS record (raylet/scheduler.py task_record) as a row."""
    (tid, job, kind, name, actor, state, err, pid, wid, created, start, end,
     resources, pg, attempt, node) = rec[:16]
    if state == "FAILED" and not err:
        err = TASK_EXCEPTION
    hexs = (lambda b: b.hex() if b else None)
    return {
        "task_id": tid.hex(), "attempt_number": attempt, "name": name, "state": state,
        "job_id": job.hex(), "actor_id": hexs(actor), "type": TASK_TYPES[kind],
        "func_or_class_name": f"{name}.__init__" if kind == 1 else name,
        "parent_task_id": None, "node_id": hexs(node), "worker_id": hexs(wid),
        "worker_pid": pid, "error_type": err, "pending_reason": None,
        "language": "PYTHON", "required_resources": resources,
        "placement_group_id": hexs(pg),
        "creation_time_ms": int(created * 1000),
        "start_time_ms": int(start * 1000) if start else None,
        "end_time_ms": int(end * 1000),
        "events": [{"state": s, "created_ms": int(ts * 1000)} for s, ts in
                   (("PENDING_ARGS_AVAIL", created), ("RUNNING", start), (state, end))
                   if ts],
    }
