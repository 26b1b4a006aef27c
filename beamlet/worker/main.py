"""A worker process: runs the tasks its raylet sends, one at a time, or hosts an actor.

    raylet ──EXECUTE──▶ main loop ──▶ run task ──DONE──▶ raylet
                            │
                            └─ actor with max_concurrency > 1: a thread pool;
                               async actor: one asyncio loop in a thread

Output written to stdout/stderr is prefixed per line with "(task_name pid=N)" and
reaches the driver through the raylet.
"""
import argparse
import concurrent.futures
import inspect
import json
import os
import signal
import sys
import threading
import traceback

import cloudpickle

from .. import exceptions
from .._private import process, ray_alias, serialization
from .._private import protocol as P
from . import core_worker
from .core_worker import CoreWorker, TaskContext


class _Cancelled(KeyboardInterrupt):
    """cancel() of the running task (SIGINT from the raylet).  A KeyboardInterrupt,
    as in Ray, so `finally` blocks run and user code may catch it."""


# Raised by exit_actor(). Defined in beamlet.actor, not here: this module runs as
# __main__ in a worker, so a class defined here would not be the one raised.
from ..actor import ActorExit  # noqa: E402


class PrefixedStream:
    """A text stream that prefixes each line with the running task's name."""

    def __init__(self, fd, worker):
        self.fd = fd
        self.worker = worker
        self.partial = ""
        self.lock = threading.Lock()

    def write(self, s):
        if not s:
            return 0
        with self.lock:
            text = self.partial + s
            lines = text.split("\n")
            self.partial = lines.pop()
            if lines:
                prefix = f"({self.worker.current_name()} pid={os.getpid()}) "
                data = "".join(prefix + line + "\n" for line in lines)
                os.write(self.fd, data.encode("utf-8", "replace"))
        return len(s)

    def flush(self):
        with self.lock:
            if self.partial:
                prefix = f"({self.worker.current_name()} pid={os.getpid()}) "
                os.write(self.fd, (prefix + self.partial + "\n").encode("utf-8", "replace"))
                self.partial = ""

    def isatty(self):
        return False

    def fileno(self):
        return self.fd

    @property
    def encoding(self):
        return "utf-8"


class Worker:
    def __init__(self, args):
        self.core = CoreWorker(args.socket, "worker", worker_id=bytes.fromhex(args.worker_id))
        core_worker.global_worker = self.core
        self.functions = {}
        self.actor = None            # the actor instance this worker hosts
        self.actor_id = None
        self.actor_name = ""
        self.pool = None             # thread pool (threaded actors)
        self.aloop = None            # event loop (async actors)
        self.running_name = threading.local()
        self.ip = self.core.node_info.get("node_ip", "127.0.0.1")
        self.in_task = False
        self.running_task = None     # id of the task the main thread runs
        self.early_interrupt = False  # SIGINT came while no task was running
        self.cancel_path = process.cancel_file(args.session_dir, args.worker_id)
        self.jobs_seen = set()       # jobs whose driver's sys.path we added
        signal.signal(signal.SIGINT, self.on_sigint)

    def on_sigint(self, signum, frame):
        # cancel(): interrupt the task the raylet named, never the worker's own
        # loop nor a task that started after the cancelled one ended
        if threading.current_thread() is not threading.main_thread():
            return
        if not self.in_task:
            self.early_interrupt = True   # maybe for a task not yet read: see execute
            return
        self.check_cancelled()

    def check_cancelled(self):
        try:
            with open(self.cancel_path) as f:
                target = f.read().strip()
        except OSError:
            return
        if self.running_task is not None and target == self.running_task.hex():
            raise _Cancelled()

    def current_name(self):
        return getattr(self.running_name, "v", None) or self.actor_name or "worker"

    def load(self, key):
        fn = self.functions.get(key)
        if fn is None:
            blob = self.core.call("fetch_function", key)
            if blob is None:
                raise exceptions.RaySystemError(
                    f"function {key.hex()} was not found in the GCS")
            fn = self.functions[key] = cloudpickle.loads(blob)
        return fn

    # ------------------------------------------------------------------ loop
    def run(self):
        conn = self.core.conn
        while True:
            msg = conn.next_push()
            kind = msg[0]
            if kind == P.EXECUTE:
                spec = P.TaskSpec.from_wire(msg[1])
                if spec.kind == P.ACTOR_TASK and self.pool is not None:
                    self.pool.submit(self.execute, spec, msg[2], msg[3])
                elif spec.kind == P.ACTOR_TASK and self.aloop is not None:
                    import asyncio  # imported lazily: only async actors use it
                    asyncio.run_coroutine_threadsafe(
                        self.execute_async(spec, msg[2], msg[3]), self.aloop)
                else:
                    self.execute(spec, msg[2], msg[3])
            elif kind == P.EXIT:
                self.exit(0)

    def exit(self, code):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        try:
            self.core.conn.flush()
        except Exception:
            pass
        os._exit(code)

    # ------------------------------------------------------------------ tasks
    def resolve_args(self, spec, descs):
        args = []
        refs = iter(descs)
        ref_ids = iter(spec.ref_args())
        for a in spec.args:
            if a[0] == P.ARG_VALUE:
                args.append(serialization.deserialize(a[1]))
            else:
                value, is_error = self.core.descriptor_value(next(refs), next(ref_ids))
                if is_error:
                    raise value.as_instanceof_cause() if isinstance(
                        value, exceptions.TaskError) else value
                args.append(value)
        nkw = len(spec.kwarg_names)
        if nkw:
            kwargs = dict(zip(spec.kwarg_names, args[-nkw:]))
            args = args[:-nkw]
        else:
            kwargs = {}
        return args, kwargs

    def prepare(self, spec, gpu_ids):
        self.core.set_task(TaskContext(spec.task_id, spec.name, spec.actor_id))
        # output prefix as in Ray: "(f pid=N)" for a task, "(Counter pid=N)" for an actor
        self.running_name.v = (spec.name.split(".")[0] if spec.kind != P.NORMAL_TASK
                               else spec.name.rsplit(".", 1)[-1])
        self.core.job_id = spec.job_id
        if spec.job_id not in self.jobs_seen:
            self.add_job_sys_path(spec.job_id)
        if gpu_ids or spec.resources.get("GPU"):
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
        self.gpu_ids = gpu_ids

    def add_job_sys_path(self, job_id):
        """Append the driver's sys.path entries (GCS job record, via the raylet) to ours, once per
        job: values and functions pickled by reference to the driver's own
        modules must import here too."""
        self.jobs_seen.add(job_id)
        try:   # through the raylet: workers do not load the redis client
            paths = json.loads(self.core.call("job_sys_path", job_id))
        except Exception:
            return
        for p in paths:
            if p == ray_alias.JOB_MARKER:    # a job of `beamlet run`: ray is beamlet
                ray_alias.install()
            elif isinstance(p, str) and p not in sys.path:
                sys.path.append(p)

    def target(self, spec):
        if spec.kind == P.NORMAL_TASK:
            return self.load(spec.function_key)
        if spec.kind == P.ACTOR_CREATION_TASK:
            cls = self.load(spec.function_key)
            self.actor_id = spec.actor_id
            self.actor_name = spec.name
            opts = spec.actor_options or {}

            def create(*a, **kw):
                self.actor = cls(*a, **kw)
                if opts.get("is_async"):
                    self.start_event_loop(int(opts.get("max_concurrency") or 1000))
                elif int(opts.get("max_concurrency") or 1) > 1:
                    self.pool = concurrent.futures.ThreadPoolExecutor(
                        int(opts["max_concurrency"]), thread_name_prefix="actor")
                return None
            return create
        if self.actor is None:
            raise exceptions.ActorDiedError("this worker hosts no actor")
        if spec.method == "__beamlet_terminate__":
            raise ActorExit()
        return getattr(self.actor, spec.method)

    def execute(self, spec, descs, gpu_ids):
        flag = None
        self.running_task = spec.task_id
        self.in_task = True
        try:
            self.prepare(spec, gpu_ids)
            if self.early_interrupt:   # a cancel() that came before the task
                self.early_interrupt = False
                self.check_cancelled()
            args, kwargs = self.resolve_args(spec, descs)
            fn = self.target(spec)
            result = fn(*args, **kwargs)
            del args, kwargs
            results = self.store_returns(spec, result)
        except ActorExit:
            self.finish(spec, [], "exit")
            self.exit(0)
        except _Cancelled:
            self.in_task = False
            results = self.error_returns(spec, exceptions.TaskCancelledError(spec.name))
        except BaseException as e:
            self.in_task = False
            results = self.error_returns(spec, self.task_error(spec, e))
            flag = "retry" if self.retryable(spec, e) else None
        self.in_task = False
        self.running_task = None
        self.finish(spec, results, flag)

    async def execute_async(self, spec, descs, gpu_ids):
        # the raylet sends calls ahead (a pipeline window): at most
        # max_concurrency of them run at once; the semaphore is FIFO, so they
        # start in arrival order
        async with self.asem:
            await self._execute_async(spec, descs, gpu_ids)

    async def _execute_async(self, spec, descs, gpu_ids):
        import asyncio  # (lazy, as above) used for ref arguments below
        self.prepare(spec, gpu_ids)
        flag = None
        try:
            args, kwargs = await asyncio.get_running_loop().run_in_executor(
                None, self.resolve_args, spec, descs) if descs else self.resolve_args(
                spec, descs)
            fn = self.target(spec)
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            results = self.store_returns(spec, result)
        except ActorExit:
            self.finish(spec, [], "exit")
            self.exit(0)
        except BaseException as e:
            results = self.error_returns(spec, self.task_error(spec, e))
        self.finish(spec, results, flag)

    def finish(self, spec, results, flag):
        self.core.conn.send([P.DONE, spec.task_id, results, flag])
        try:   # a last line without "\n" still gets this task's prefix
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        self.running_name.v = None

    def retryable(self, spec, e):
        r = spec.retry_exceptions
        if not r:
            return False
        if r is True:
            return isinstance(e, Exception)
        # names as the driver wrote them: "module.QualName" of each class listed
        return any(f"{k.__module__}.{k.__qualname__}" in r for k in type(e).__mro__)

    def task_error(self, spec, e):
        if isinstance(e, exceptions.TaskError):
            # a failed dependency or nested task: keep its original cause, so the
            # caller's `except ValueError` still works; the text keeps both
            # tracebacks (this task's, then the inner one in the message)
            cause = e.cause if e.cause is not None else e
            tb = traceback.format_exc()
        else:
            cause = e
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next
                                                    if e.__traceback__ else None))
        name = spec.name if spec.kind != P.ACTOR_CREATION_TASK else spec.name + ".__init__"
        return exceptions.TaskError(name, tb, cause, os.getpid(), self.ip)

    def error_returns(self, spec, err):
        try:
            data = serialization.serialize(err).to_bytes()
            serialization.deserialize(data)   # the driver must be able to load it
        except Exception:
            # the exception cannot be pickled or unpickled: keep its text, and its
            # class when a copy made from its args pickles
            if isinstance(err, exceptions.TaskError):
                err = exceptions.TaskError(err.function_name, err.traceback_str,
                                           _plain_copy(err.cause), err.pid, err.ip)
            else:
                err = exceptions.RaySystemError(repr(err))
            try:
                data = serialization.serialize(err).to_bytes()
            except Exception:
                err.cause = None
                data = serialization.serialize(err).to_bytes()
        return [[oid, [P.INLINE, data, True, []]] for oid in spec.return_ids()]

    def store_returns(self, spec, result):
        n = spec.num_returns
        if n == 1:
            values = (result,)
        elif n == 0:
            values = ()
        else:
            if not isinstance(result, (tuple, list)) or len(result) != n:
                raise ValueError(
                    f"{spec.name} is declared with num_returns={n} but returned "
                    f"{type(result).__name__}"
                    f"{' of length %d' % len(result) if hasattr(result, '__len__') else ''}"
                    f"; return a tuple of {n} values.")
            values = result
        out = []
        core = self.core
        for oid, v in zip(spec.return_ids(), values):
            s = serialization.serialize(v)
            if s.size < core.inline_threshold:
                out.append([oid, [P.INLINE, s.to_bytes(), False, s.contained]])
            else:
                off = core.create(oid, s.size)
                core.write_object(off, s)
                out.append([oid, [P.ARENA, off, s.size, False, s.contained]])
        return out

    def start_event_loop(self, max_concurrency):
        import asyncio  # imported lazily: only async actors use it
        ready = threading.Event()

        def run():
            self.aloop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.aloop)
            self.asem = asyncio.Semaphore(max_concurrency)
            ready.set()
            self.aloop.run_forever()
        threading.Thread(target=run, daemon=True, name="actor-loop").start()
        ready.wait()


def _plain_copy(exc):
    """A copy of an exception made from its class and args only (no attributes),
    or None when that cannot be made or does not survive pickling."""
    if exc is None:
        return None
    try:
        copy = type(exc)(*exc.args)
        serialization.deserialize(serialization.serialize(copy).to_bytes())
        return copy
    except Exception:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="beamlet-worker",
                                 description="beamlet worker process (started by a raylet)")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--worker-id", required=True)
    ap.add_argument("--session-dir", required=True)
    args = ap.parse_args(argv)
    process.set_pdeathsig(signal.SIGKILL)
    w = Worker(args)
    sys.stdout = PrefixedStream(1, w)
    sys.stderr = PrefixedStream(2, w)
    w.run()


if __name__ == "__main__":
    main()
