"""The local scheduler's state (pure: no I/O).

Task states and their legal transitions are written once, in TRANSITIONS:

    WAITING_FOR_ARGS -> WAITING_FOR_RESOURCES -> RUNNING -> FINISHED | FAILED
    (and from any waiting state: -> CANCELLED, FAILED; RUNNING -> WAITING_FOR_RESOURCES
    when a crashed worker's task is retried; WAITING_FOR_RESOURCES -> FORWARDED)

`Resources` tracks a node's totals and what is free, with GPU ids handed out per
task.  The raylet (the asyncio shell) asks `ResourceSet` questions and moves tasks;
it never edits the counts by hand.
"""
import collections
import enum
import time


class TaskState(enum.Enum):
    WAITING_FOR_ARGS = "WAITING_FOR_ARGS"
    WAITING_FOR_RESOURCES = "WAITING_FOR_RESOURCES"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    FORWARDED = "FORWARDED"
    CANCELLED = "CANCELLED"


S = TaskState
TRANSITIONS = {
    S.WAITING_FOR_ARGS: {S.WAITING_FOR_RESOURCES, S.FAILED, S.CANCELLED},
    S.WAITING_FOR_RESOURCES: {S.RUNNING, S.FAILED, S.CANCELLED, S.FORWARDED},
    S.RUNNING: {S.FINISHED, S.FAILED, S.WAITING_FOR_RESOURCES, S.CANCELLED},
    S.FINISHED: set(),
    S.FAILED: set(),
    # a forwarded task ends when its results come back from the node that ran it,
    # or is placed again when that node dies
    S.FORWARDED: {S.FINISHED, S.FAILED, S.WAITING_FOR_RESOURCES, S.CANCELLED},
    S.CANCELLED: set(),
}


class IllegalTransition(RuntimeError):
    pass


class Task:
    __slots__ = ("spec", "state", "missing", "worker", "retries_left", "history",
                 "gpu_ids", "held", "warned_infeasible", "cancelled", "pool",
                 "started", "force_cancel", "urgent", "error_type", "run_start")

    def __init__(self, spec):
        self.spec = spec
        self.state = S.WAITING_FOR_ARGS
        self.missing = 0           # count of ref args not yet sealed
        self.worker = None
        self.retries_left = spec.max_retries
        self.history = [(time.time(), S.WAITING_FOR_ARGS)]
        self.gpu_ids = []
        self.held = []             # oids this task keeps alive until it ends
        self.warned_infeasible = False
        self.cancelled = False
        self.pool = None           # the ResourceSet it took resources from
        self.started = 0.0         # time.monotonic() when it started running
        self.force_cancel = False  # cancel(force=True) of a task sent ahead
        self.urgent = False        # a blocked task waits for it: queue it first
        self.error_type = None     # class name of the error the raylet failed it with
        self.run_start = 0.0       # wall time an actor call started (call_done)

    def move(self, new_state):
        if new_state not in TRANSITIONS[self.state]:
            story = ", ".join(f"{s.value}@{t:.3f}" for t, s in self.history[-6:])
            raise IllegalTransition(
                f"task {self.spec.name} {self.spec.task_id.hex()}: "
                f"{self.state.value} -> {new_state.value} (history: {story})")
        self.state = new_state
        if len(self.history) < 16:
            self.history.append((time.time(), new_state))


# the raylet's clocks: task starts are time.monotonic() (cheap, on the hot
# path); rows show wall times
_WALL_OFFSET = time.time() - time.monotonic()
_RAY_KINDS = ("NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK")


def ray_state(t) -> str:
    """The task's state in Ray's vocabulary (beamlet/_private/state_rows.py)."""
    st = t.state
    actor_call = t.spec.kind == 2
    if st is S.RUNNING:
        w = t.worker
        return "RUNNING_IN_RAY_GET" if w is not None and w.state.value == "BLOCKED" \
            and w.task is t else "RUNNING"
    if st is S.WAITING_FOR_ARGS:
        return "PENDING_ACTOR_TASK_ARGS_FETCH" if actor_call else "PENDING_ARGS_AVAIL"
    if st is S.WAITING_FOR_RESOURCES:
        if actor_call:
            return "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"
        return "SUBMITTED_TO_WORKER" if t.worker is not None else \
            "PENDING_NODE_ASSIGNMENT"
    if st is S.FORWARDED:
        return "PENDING_NODE_ASSIGNMENT"
    if st is S.CANCELLED:
        return "FAILED"
    return st.value


def run_start(t) -> float:
    """When `t` (its last attempt) started running, wall time, 0 if it did not:
    its RUNNING transition (the clock its end is read with), an actor call's
    corrected start (Actors.call_done), else its dispatch time."""
    if t.run_start:
        return t.run_start
    for ts, s in reversed(t.history):
        if s is S.RUNNING:
            return ts
    return t.started + _WALL_OFFSET if t.started else 0.0


def task_row(t, node_hex: str, worker=None, reason=None, detail=True) -> dict:
    """A task as a state-API row (Ray's TaskState fields; `worker`: the Worker
    that runs or ran it when the task does not say, as for actor calls)."""
    spec = t.spec
    w = t.worker or worker
    hist = t.history
    state = ray_state(t)
    done = t.state in (S.FINISHED, S.FAILED, S.CANCELLED)
    err = "TASK_CANCELLED" if t.state is S.CANCELLED else t.error_type
    if err is None and t.state is S.FAILED:
        err = "TASK_EXECUTION_EXCEPTION"
    start = run_start(t)
    kind = _RAY_KINDS[spec.kind]
    name = spec.name
    row = {
        "task_id": spec.task_id.hex(),
        "attempt_number": max(0, spec.max_retries - t.retries_left)
        if spec.max_retries >= 0 else 0,
        "name": name, "state": state, "job_id": spec.job_id.hex(),
        "actor_id": spec.actor_id.hex() if spec.actor_id else None,
        "type": kind,
        "func_or_class_name": f"{name}.__init__" if spec.kind == 1 else name,
        "parent_task_id": None,
        "node_id": node_hex if t.state is not S.FORWARDED else None,
        "worker_id": w.worker_id.hex() if w is not None and state != \
            "PENDING_NODE_ASSIGNMENT" else None,
        "worker_pid": w.pid if w is not None and state != "PENDING_NODE_ASSIGNMENT"
        else None,
        "error_type": err,
        "pending_reason": reason,
    }
    if t.state is S.FORWARDED:
        row["forwarded"] = True
    if detail:
        sched = spec.scheduling
        row.update({
            "language": "PYTHON",
            "required_resources": dict(spec.resources),
            "placement_group_id": sched[1].hex() if sched and sched[0] == "PG"
            else None,
            "creation_time_ms": int(hist[0][0] * 1000),
            "start_time_ms": int(start * 1000) if start and t.state is not
            S.WAITING_FOR_ARGS else None,
            "end_time_ms": int(hist[-1][0] * 1000) if done else None,
            "events": [{"state": s.value, "created_ms": int(ts * 1000)}
                       for ts, s in hist],
        })
    return row


def task_record(t) -> list:
    """A finished task as the GCS keeps it: a compact list, packed with the others
    of its job and node in one batch (gcs/client.py add_task_events; built on the
    raylet's loop for every task that ends, so it is kept cheap; the reader adds
    the batch's job and node and beamlet/_private/state_rows.row_from_record
    expands it to a row).  None for a task that ran on another node (that node
    records it)."""
    hist = t.history
    if len(hist) > 1 and hist[-2][1] is S.FORWARDED or \
            len(hist) == 16 and any(s is S.FORWARDED for _, s in hist):
        return None
    spec = t.spec
    w = t.worker
    st = t.state
    sched = spec.scheduling
    if st is S.CANCELLED:
        state, err = "FAILED", "TASK_CANCELLED"
    else:
        state, err = st.value, t.error_type
    pid, wid = (w.pid, w.worker_id) if w is not None else (None, None)
    return [spec.task_id, spec.kind, spec.name, spec.actor_id, state, err, pid, wid,
            hist[0][0], run_start(t), hist[-1][0], spec.resources,
            sched[1] if sched and sched[0] == "PG" else None,
            spec.max_retries - t.retries_left if spec.max_retries > 0 else 0]


EPS = 1e-9


class ResourceSet:
    """A node's resources: totals, what is free, and which GPU ids are free.
    The node's set is shared by the raylet's components that hand out resources
    (local scheduler, placement constraints, cluster placement): they change it
    only through these methods and read `total` / `available`."""
    INTERFACE = ("feasible", "fits", "acquire", "release", "snapshot", "total",
                 "available")

    def __init__(self, total: dict):
        self.total = {k: float(v) for k, v in total.items() if v}
        self.available = dict(self.total)
        n_gpus = int(self.total.get("GPU", 0))
        # free fraction of each GPU id; fractional requests pack onto one id
        self.gpu_free = [1.0] * n_gpus

    def feasible(self, req: dict) -> bool:
        """Could this node ever run `req` (with nothing else running)?"""
        for k, v in req.items():
            if v > self.total.get(k, 0.0) + EPS:
                return False
        if req.get("GPU", 0) > 1 and req["GPU"] != int(req["GPU"]):
            return False
        return True

    def fits(self, req: dict) -> bool:
        avail = self.available
        for k, v in req.items():
            if v > avail.get(k, 0.0) + EPS:
                return False
        g = req.get("GPU", 0)
        if 0 < g < 1 and not any(f + EPS >= g for f in self.gpu_free):
            return False
        return True

    def acquire(self, req: dict) -> list:
        """Take `req` (which must fit); returns the GPU ids assigned."""
        avail = self.available
        for k, v in req.items():
            avail[k] = avail.get(k, 0.0) - v
        g = req.get("GPU", 0)
        ids = []
        if g >= 1:
            for i, f in enumerate(self.gpu_free):
                if len(ids) == int(g):
                    break
                if f >= 1.0 - EPS:
                    self.gpu_free[i] = 0.0
                    ids.append(i)
        elif g > 0:
            # pack: the most used GPU that still has room
            best = min((i for i, f in enumerate(self.gpu_free) if f + EPS >= g),
                       key=lambda i: self.gpu_free[i])
            self.gpu_free[best] -= g
            ids.append(best)
        return ids

    def release(self, req: dict, gpu_ids: list) -> None:
        avail = self.available
        for k, v in req.items():
            avail[k] = min(self.total.get(k, 0.0), avail.get(k, 0.0) + v)
        g = req.get("GPU", 0)
        for i in gpu_ids:
            self.gpu_free[i] = min(1.0, self.gpu_free[i] + (g if g < 1 else 1.0))

    def snapshot(self) -> dict:
        return {k: round(v, 6) for k, v in self.available.items()}


class ReadyQueue:
    """Tasks waiting for resources, in submission order.  Tasks with the same
    resource shape form one FIFO; the scheduler looks only at the head of each,
    so the cost of a scheduling pass does not grow with the queue's length."""

    def __init__(self):
        self.by_shape = collections.OrderedDict()
        self.count = 0

    @staticmethod
    def shape(spec):
        """Tasks with equal resources, placement constraints and runtime
        environment (their workers are pooled by it) share a FIFO."""
        sched = spec.scheduling
        return (tuple(sorted(spec.resources.items())),
                tuple(sched) if sched and sched[0] in ("PG", "NODE") else None,
                spec.runtime_env)

    def push(self, task, front=False):
        key = self.shape(task.spec)
        q = self.by_shape.get(key)
        if q is None:
            q = self.by_shape[key] = collections.deque()
        if front:
            q.appendleft(task)
        else:
            q.append(task)
        self.count += 1

    def heads(self):
        """(shape key, deque) pairs whose deque is non-empty."""
        return [(k, q) for k, q in self.by_shape.items() if q]

    def to_front(self, task) -> bool:
        """Move queued `task` to the front of its FIFO (a blocked task waits for
        it); whether it was queued.  Searched from the back: the tasks a
        blocked one waits for are usually the ones it has just submitted."""
        q = self.by_shape.get(self.shape(task.spec))
        if not q:
            return False
        n = len(q)
        for i, t in enumerate(reversed(q)):
            if t is task:
                del q[n - 1 - i]
                q.appendleft(task)
                return True
        return False

    def remove(self, task) -> bool:
        q = self.by_shape.get(self.shape(task.spec))
        if q is not None:
            try:
                q.remove(task)
                self.count -= 1
                return True
            except ValueError:
                pass
        return False

    def __len__(self):
        return self.count

    def demand(self) -> list:
        return [{"resources": dict(k[0]), "count": len(q)}
                for k, q in self.by_shape.items() if q]
