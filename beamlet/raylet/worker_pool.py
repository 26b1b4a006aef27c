"""The raylet's worker pool: worker processes, their states, starting and reaping."""
import enum
import os
import time

from .._private import ids, process


class WState(enum.Enum):
    STARTING = "STARTING"   # process started, not yet connected
    IDLE = "IDLE"           # connected, no task
    BUSY = "BUSY"           # running a normal task
    BLOCKED = "BLOCKED"     # running a task that waits in get/wait (CPU lent back)
    ACTOR = "ACTOR"         # dedicated to an actor
    DEAD = "DEAD"


class Worker:
    __slots__ = ("worker_id", "proc", "pid", "conn", "state", "task", "actor",
                 "idle_since", "job_id", "started_at", "lent", "log_name", "next",
                 "revoking")

    def __init__(self, worker_id, proc):
        self.worker_id = worker_id
        self.proc = proc
        self.pid = proc.pid if proc else None
        self.conn = None
        self.state = WState.STARTING
        self.task = None
        self.actor = None
        self.idle_since = time.monotonic()
        self.job_id = b""
        self.started_at = time.monotonic()
        self.lent = None        # resources lent back while blocked
        # a normal task sent ahead, to start when `task` is DONE (raylet.send_ahead)
        self.next = None
        self.revoking = None    # the task a REVOKE asked back, until RETURNED
        self.log_name = ""


class WorkerPool:
    def __init__(self, socket_path: str, session_dir: str, node_id: bytes):
        self.socket_path = socket_path
        self.session_dir = session_dir
        self.node_id = node_id
        self.workers = {}          # worker_id -> Worker
        self.idle = []             # stack of idle Workers (LIFO keeps caches warm)
        self.starting = 0
        self.start_failures = 0

    def start_worker(self, stdout, stderr) -> Worker:
        wid = ids.random_id(16)
        proc = process.spawn_python(
            "beamlet.worker.main",
            ["--socket", self.socket_path, "--worker-id", wid.hex(),
             "--session-dir", self.session_dir],
            stdout=stdout, stderr=stderr)
        w = Worker(wid, proc)
        self.workers[wid] = w
        self.starting += 1
        return w

    def connected(self, w: Worker, conn) -> None:
        w.conn = conn
        if w.state is WState.STARTING:
            self.starting -= 1
        w.state = WState.IDLE
        w.idle_since = time.monotonic()
        self.idle.append(w)
        self.start_failures = 0

    def pop_idle(self):
        while self.idle:
            w = self.idle.pop()
            if w.state is WState.IDLE:
                return w
        return None

    def make_idle(self, w: Worker) -> None:
        w.state = WState.IDLE
        w.task = None
        w.idle_since = time.monotonic()
        self.idle.append(w)

    def remove(self, w: Worker) -> None:
        if w.state is WState.STARTING:
            self.starting -= 1
        w.state = WState.DEAD
        self.workers.pop(w.worker_id, None)
        try:
            self.idle.remove(w)
        except ValueError:
            pass

    def count(self, *states) -> int:
        return sum(1 for w in self.workers.values() if w.state in states)

    def kill_all(self) -> None:
        procs = [w.proc for w in self.workers.values() if w.proc]
        for p in procs:
            try:
                p.kill()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(2)
            except Exception:
                pass
        self.workers.clear()
        self.idle.clear()

    @staticmethod
    def signal(w: Worker, sig) -> None:
        if w.pid:
            try:
                os.kill(w.pid, sig)
            except OSError:
                pass
