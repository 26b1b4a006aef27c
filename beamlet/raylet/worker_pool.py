"""The raylet's worker pool: worker processes, their states, starting, reaping,
and forwarding their output to the drivers.

Owns: every worker process of this node (Worker records by id), the stacks of
  idle ones (one per runtime environment), how many are starting (per
  environment) and how many failed to start in a row, the soft limit on their
  number (past it, one more starts per backoff period: a pool never grows
  without bound, and never stops growing when blocked tasks need more), the
  coroutines that read the workers' stdout/stderr, and each worker's log files
  (logs/worker-<worker id>-<pid>.out|.err in the session directory: every line
  it wrote, capped at WORKER_LOG_MAX_BYTES per file with one rotated copy).
Runtime environments: a worker is started for one environment (a task's
  `runtime_env` key, None: the node's plain one) and only ever runs tasks of
  that environment, as Ray's pool is keyed by environment: its process gets
  the environment's env_vars when it starts, and sets up the rest itself
  (runtime_env/setup.py).  `keep_idle` idle workers are kept however long they
  idle (of any environments); those beyond end after IDLE_WORKER_S, those idle
  longest first.
Uses: GcsWriter.put (each line of output goes to its job's log channel), a
  callback `on_start_failed(error or None)` (the task scheduler: retry, or fail
  the queue once workers keep failing to start), and `env_of(key)` (the shell:
  a runtime environment by key, from the GCS).
Messages: none directly; the shell hands it HELLO from a worker (`connected`)
  and a worker's lost connection (`lost`).  The task scheduler and the actors
  decide what a worker runs: they set a Worker's task/next/actor fields and its
  BUSY/BLOCKED/ACTOR state; the pool owns STARTING/IDLE/DEAD and the processes.

A line a worker writes while it runs a task starts with "\x1e<task id>\x1f"
(worker/main.py): the raylet takes it off before publishing the line to the
driver and keeps it in the log file, where `beamlet logs --task-id` finds it.
"""
import asyncio
import collections
import enum
import os
import time


from .. import exceptions
from .._private import config, ids, process
from .._private import protocol as P
from ..gcs import keys
from ..runtime_env.resolve import expand_env_vars
from .common import log

# The components it uses (GcsWriter) are named in annotations only, as strings: the
# shell (raylet.py) wires them together, so their modules need not import each other
# (no import circle).

# At most this many workers start at once (each costs ~0.1 s of CPU to boot).
MAX_STARTING = 8
# A worker that does not connect this many times in a row: starting is broken.
START_FAILURES_FATAL = 5
# The longest wait between two starts past the soft limit.
CAP_BACKOFF_MAX_S = 10.0
# Exited workers remembered for `beamlet list workers` (the newest).
EXITED_KEPT = 1000
# A line of output longer than this is cut into pieces of this size.
LINE_MAX = 1 << 20


class WState(enum.Enum):
    STARTING = "STARTING"   # process started, not yet connected
    IDLE = "IDLE"           # connected, no task
    BUSY = "BUSY"           # running a normal task
    BLOCKED = "BLOCKED"     # running a task that waits in get/wait (CPU lent back)
    ACTOR = "ACTOR"         # dedicated to an actor
    DEAD = "DEAD"


class LogFile:
    """A worker's stdout or stderr, as a file of the session's logs directory:
    buffered (flushed each heartbeat and when the stream ends), at most
    WORKER_LOG_MAX_BYTES, then moved to NAME.1 (replacing an older one)."""
    __slots__ = ("path", "f", "size")

    def __init__(self, path):
        self.path = path
        self.f = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.f is None:
            try:
                self.f = open(self.path, "ab")
            except OSError:
                return
        if self.size + len(data) > config.WORKER_LOG_MAX_BYTES and self.size:
            self.f.close()
            try:
                os.replace(self.path, self.path + ".1")
                self.f = open(self.path, "ab")
            except OSError:
                self.f = None
                return
            self.size = 0
        self.f.write(data)
        self.size += len(data)

    def flush(self) -> None:
        if self.f is not None:
            try:
                self.f.flush()
            except OSError:
                pass

    def close(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None


TAG, TAG_END = b"\x1e"[0], b"\x1f"


class Worker:
    __slots__ = ("worker_id", "proc", "pid", "conn", "state", "task", "actor",
                 "idle_since", "job_id", "started_at", "lent", "log_name", "ahead",
                 "revoking", "owned", "oom", "env", "logs")

    def __init__(self, worker_id, proc, env=None):
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
        # normal tasks sent ahead, in order: the first starts when `task` is
        # DONE (LocalScheduler.send_ahead)
        self.ahead = collections.deque()
        self.revoking = []      # the tasks REVOKEs asked back, until RETURNED
        self.log_name = ""
        self.logs = ()          # its LogFiles: stdout, stderr
        # live objects and actors this process owns (put / created): while any,
        # it is not ended as idle (ObjectStore and Actors count them)
        self.owned = 0
        # why the memory monitor killed it (memory_monitor.py), else None
        self.oom = None
        self.env = env          # the runtime environment's key (None: plain)


class WorkerPool:
    # `node_id` is read-only for the others
    INTERFACE = ("wire", "start", "start_worker", "start_workers", "get", "all",
                 "connected", "pop_idle", "make_idle", "remove", "signal", "lost",
                 "check", "state_counts", "peak_count", "output_tasks", "kill_all",
                 "starting_count", "ended", "node_id", "drain_output", "flush_logs")

    def __init__(self, socket_path: str, session_dir: str, node_id: bytes,
                 keep_idle: int = 1, soft_limit: int = 8):
        self.socket_path = socket_path
        self.session_dir = session_dir
        self.node_id = node_id
        self.keep_idle = keep_idle  # idle workers kept however long they idle
        self.soft_limit = soft_limit  # workers (not actors') before starts slow down
        self.over_at = 0.0         # past the limit: no start before this time
        self.over_backoff = config.WORKER_CAP_BACKOFF_S
        self.over_wake = None      # the timer that schedules again after a backoff
        self.peak = 0              # the most worker processes alive at once
        self.workers = {}          # worker_id -> Worker
        # env key -> stack of idle Workers (LIFO keeps caches warm)
        self.idle = collections.defaultdict(list)
        self.starting = 0
        self.starting_env = collections.Counter()   # env key -> workers starting
        self.start_failures = 0
        self.readers = set()       # tasks forwarding workers' stdout/stderr
        # the last workers that exited: (Worker, how, wall time), for the state API
        self.exited = collections.deque(maxlen=EXITED_KEPT)
        self.loop = None
        self.publish = None
        self.on_start_failed = None
        self.env_of = None

    def wire(self, gcs: "GcsWriter", on_start_failed, env_of) -> None:
        self.publish = gcs.put
        self.on_start_failed = on_start_failed
        self.env_of = env_of

    def start(self, loop) -> None:
        self.loop = loop

    def start_worker(self, env=None) -> Worker:
        """Start a worker for runtime environment `env` (a key; None: plain)."""
        wid = ids.random_id(16)
        argv = ["--socket", self.socket_path, "--worker-id", wid.hex(),
                "--session-dir", self.session_dir]
        extra_env = None
        if env is not None:
            argv += ["--runtime-env", env]
            # set when the process starts (LD_LIBRARY_PATH and the like are read
            # only then); ${NAME} refers to this node's environment, as in Ray
            try:
                desc = self.env_of(env) or {}
            except Exception as e:   # the GCS is unreachable: the worker says so
                log(f"runtime env {env} not read from the GCS: {e}")
                desc = {}
            extra_env = expand_env_vars(desc.get("env_vars") or {}, os.environ)
        proc = process.spawn_python(
            "beamlet.worker.main", argv, extra_env=extra_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        w = Worker(wid, proc, env)
        self.workers[wid] = w
        self.peak = max(self.peak, len(self.workers))
        self.starting += 1
        self.starting_env[env] += 1
        w.log_name = f"pid={w.pid}"
        base = os.path.join(self.session_dir, "logs", f"worker-{wid.hex()}-{w.pid}")
        w.logs = (LogFile(base + ".out"), LogFile(base + ".err"))
        for stream, is_err in ((w.proc.stdout, False), (w.proc.stderr, True)):
            # keep a strong reference: the loop holds tasks weakly, and so does the
            # pipe's StreamReaderProtocol its reader, so an unreferenced reading
            # task is garbage-collected mid-read and the worker's output is lost
            t = self.loop.create_task(self.forward_output(w, stream, is_err))
            self.readers.add(t)
            t.add_done_callback(self.readers.discard)
        return w

    def start_workers(self, want: int, job_id: bytes = b"", env=None) -> None:
        """`want` workers of runtime environment `env` could start work now (for
        a task of `job_id`): start as many (at most MAX_STARTING at once,
        counting those of that environment already starting), and past the soft
        limit one per backoff period."""
        need = min(want, MAX_STARTING) - self.starting_env[env]
        if need <= 0:
            return
        room = self.soft_limit - self.count(WState.STARTING, WState.IDLE, WState.BUSY,
                                            WState.BLOCKED)
        if room <= 0:
            self.over_limit(room, job_id, env)
            need = 0
        else:
            self.over_backoff = config.WORKER_CAP_BACKOFF_S   # under the limit again
        for _ in range(min(need, max(room, 0))):
            self.start_worker(env)

    def over_limit(self, room, job_id, env=None) -> None:
        """Past the soft limit: start one worker if the backoff has passed
        (saying so), else schedule again when it will have."""
        now = time.monotonic()
        if now < self.over_at:
            if self.over_wake is None:
                def wake():
                    self.over_wake = None
                    self.on_start_failed(None)   # (None: schedule again)
                self.over_wake = self.loop.call_at(
                    self.loop.time() + self.over_at - now, wake)
            return
        n = self.soft_limit - room
        msg = (f"{n + 1} worker processes on this node, above its soft limit of "
               f"{self.soft_limit} (BEAMLET_WORKER_SOFT_LIMIT): tasks blocked in "
               f"get()/wait() each hold a worker. More workers start one at a time, "
               f"the next in {self.over_backoff:.0f} s at the earliest; "
               f"tasks that wait for other tasks' results are better written with "
               f"those results as arguments.")
        log("worker pool:", msg)
        if job_id:
            self.publish("publish", keys.errors_channel(job_id), msg)
        self.over_at = now + self.over_backoff
        self.over_backoff = min(self.over_backoff * 2, CAP_BACKOFF_MAX_S)
        self.start_worker(env)

    async def forward_output(self, w, stream, is_err):
        """Read a worker's stdout/stderr: each line goes to the worker's log file
        and is published to its job's driver."""
        reader = asyncio.StreamReader(limit=LINE_MAX)
        await self.loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream)
        logfile = w.logs[is_err]
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    # a line longer than LINE_MAX: take what is there as a line
                    line = await reader.read(LINE_MAX)
                except Exception:
                    break
                if not line:
                    break
                logfile.write(line if line[-1:] == b"\n" else line + b"\n")
                if line[0] == TAG:      # the task it ran: for the log file only
                    end = line.find(TAG_END)
                    line = line[end + 1:] if end > 0 else line
                text = line.decode(errors="replace").rstrip("\n")
                if not text.startswith("("):
                    text = f"(pid={w.pid}) {text}"
                job = w.job_id
                if job:
                    self.publish("publish", keys.logs_channel(job),
                                 ("E" if is_err else "O") + text)
                else:
                    log("worker output:", text)
        finally:
            logfile.close()

    async def drain_output(self, timeout) -> None:
        """The workers were killed: read what is still in their pipes (to EOF,
        at most `timeout` seconds), so that their last lines reach the drivers
        and the log files."""
        if self.readers:
            await asyncio.wait(list(self.readers), timeout=timeout)

    def flush_logs(self) -> None:
        for w in self.workers.values():
            for f in w.logs:
                f.flush()

    def output_tasks(self) -> list:
        return list(self.readers)

    def get(self, worker_id):
        return self.workers.get(worker_id)

    def all(self):
        """Every worker (a live view: copy it to change the pool while iterating)."""
        return self.workers.values()

    def peak_count(self) -> int:
        """The most worker processes this node had alive at once."""
        return self.peak

    def state_counts(self) -> dict:
        return {s.value: self.count(s) for s in WState}

    def check(self) -> None:
        """Every heartbeat: workers that died before connecting, idle ones to end;
        the log files get what was written since the last one."""
        self.flush_logs()
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.state is WState.STARTING and w.proc.poll() is not None:
                self.remove(w)
                self.start_failures += 1
                log(f"worker {w.pid} failed to start: "
                    f"{process.describe_exit(w.proc.returncode)}")
                if self.start_failures >= START_FAILURES_FATAL:
                    self.on_start_failed(exceptions.RaySystemError(
                        "beamlet workers fail to start; see the logs in "
                        f"{self.session_dir}/logs"))
                else:
                    self.on_start_failed(None)
        # idle workers beyond keep_idle (whatever their environment: those idle
        # longest first, so the pool follows what the node's tasks run in) end
        # once they idled long enough
        idle = [w for w in self.workers.values() if w.state is WState.IDLE]
        excess = len(idle) - self.keep_idle
        for w in sorted(idle, key=lambda w: w.idle_since):
            if excess <= 0:
                break
            if now - w.idle_since > config.IDLE_WORKER_S and not w.owned:
                w.conn.send([P.EXIT, "idle"])
                self.remove(w)
                excess -= 1

    def lost(self, w):
        """`w`'s connection closed.  Removed on purpose before (actor killed or
        freed): reap the process, return None.  Else it exited or crashed: it
        leaves the pool; returns how it exited (for the error of its task)."""
        if w.state is WState.DEAD:
            if w.proc is not None and w.proc.poll() is None:
                self.loop.call_later(0.5, w.proc.poll)
            self.exited.append((w, None, time.time()))
            return None
        self.remove(w)
        code = w.proc.poll() if w.proc else None
        if code is None and w.proc:
            try:
                code = w.proc.wait(0.5)
            except Exception:
                code = None
        how = process.describe_exit(code)
        self.exited.append((w, how, time.time()))
        return how

    def starting_count(self) -> int:
        """Workers started that have not connected yet."""
        return self.starting

    def ended(self) -> list:
        """(Worker, how it exited or None when the raylet ended it, wall time) of
        the last EXITED_KEPT workers that exited."""
        return list(self.exited)

    def _started(self, w: Worker) -> None:
        """`w` is no longer starting (it connected, or it is gone)."""
        self.starting -= 1
        self.starting_env[w.env] -= 1
        if not self.starting_env[w.env]:
            del self.starting_env[w.env]

    def connected(self, w: Worker, conn) -> None:
        w.conn = conn
        if w.state is WState.STARTING:
            self._started(w)
        w.state = WState.IDLE
        w.idle_since = time.monotonic()
        self.idle[w.env].append(w)
        self.start_failures = 0

    def pop_idle(self, env=None):
        """An idle worker of runtime environment `env` (None: plain), or None."""
        stack = self.idle.get(env)
        while stack:
            w = stack.pop()
            if w.state is WState.IDLE:
                return w
        return None

    def make_idle(self, w: Worker) -> None:
        w.state = WState.IDLE
        w.task = None
        w.idle_since = time.monotonic()
        self.idle[w.env].append(w)

    def remove(self, w: Worker) -> None:
        if w.state is WState.STARTING:
            self._started(w)
        w.state = WState.DEAD
        self.workers.pop(w.worker_id, None)
        try:
            self.idle[w.env].remove(w)
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
