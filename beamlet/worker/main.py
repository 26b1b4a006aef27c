"""A worker process: runs the tasks its raylet sends, one at a time, or hosts an actor.

    raylet ──EXECUTE──▶ main loop ──▶ run task ──DONE──▶ raylet
    caller ──D_CALL───▶     │      (an actor's direct calls) ──D_DONE──▶ caller
                            │             └─ a generator: ITEM per value (streaming.py)
                            └─ threaded actor (max_concurrency > 1 or concurrency
                               groups): one thread pool per group, sized by its
                               limit; async actor: one asyncio loop in a thread,
                               one semaphore per group
    raylet ──CANCEL──▶ (the reading thread) an actor call not started yet never
                       runs (its DONE says cancelled); a running one is flagged
                       (is_canceled()), an async one gets CancelledError

The run queue (the hub's `pushes`) holds the raylet's messages and the direct
calls of admitted callers (direct.py) in the order they arrived; an actor's
worker listens for its callers once its constructor has run.

Output written to stdout/stderr is prefixed per line with "(task_name pid=N)" and
reaches the driver through the raylet.
"""
import argparse
import collections
import concurrent.futures
import inspect
import json
import os
import signal
import sys
import threading
import time
import traceback

import cloudpickle

from .. import exceptions
from .._private import config, process, ray_alias, serialization
from .._private import protocol as P
from ..generator import DynamicObjectRefGenerator
from ..object_ref import ObjectRef
from ..runtime_env import setup as runtime_env_setup
from . import core_worker, streaming
from .core_worker import CoreWorker, HostedActor, TaskContext
from .direct import DirectServer, listen_path

# Raised by exit_actor() (defined in beamlet.exceptions, not here: this module runs
# as __main__ in a worker, so a class defined here would not be the one raised).
ActorExit = exceptions.ActorExit
_ACTOR_EXITS = (exceptions.ActorExit, exceptions.AsyncioActorExit)
READY, TERMINATE = "__ray_ready__", "__ray_terminate__"
REPLY_BATCH = 16    # answers of queued direct calls written at once (at most;
# the flusher thread writes them ~1 ms after the first, the main loop when idle)


class Call:
    """An actor call this worker was sent and has not answered yet: what cancel()
    needs to find it (its thread-pool future, its asyncio task, its context)."""
    __slots__ = ("spec", "descs", "future", "task", "ctx", "cancelled", "link")

    def __init__(self, spec, descs, link=None):
        self.spec = spec
        self.descs = descs
        self.link = link        # a direct call's link (its answer goes there)
        self.future = None      # threaded actors: the pool's future
        self.task = None        # async actors: the asyncio task running it
        self.ctx = None         # its TaskContext, once it started
        self.cancelled = False


# ids of calls whose CANCEL came before the worker registered them (bounded)
_EARLY_CANCELS_KEPT = 1000


class _Cancelled(KeyboardInterrupt):
    """cancel() of the running task (SIGINT from the raylet).  A KeyboardInterrupt,
    as in Ray, so `finally` blocks run and user code may catch it."""


def _exit_code(e: SystemExit) -> int:
    """The process exit status sys.exit(arg) asks for (as the interpreter maps it)."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


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
                prefix = self.prefix()
                data = "".join(prefix + line + "\n" for line in lines)
                os.write(self.fd, data.encode("utf-8", "replace"))
        return len(s)

    def prefix(self):
        """"(name pid=N) ", after the id of the task this thread runs between
        \x1e and \x1f (the raylet keeps it in the log file only: `beamlet logs
        --task-id`)."""
        who = f"({self.worker.current_name()} pid={os.getpid()}) "
        task = self.worker.core.current.get()    # (None: no task runs here)
        return who if task is None else f"\x1e{task.task_id.hex()}\x1f{who}"

    def flush(self):
        with self.lock:
            if self.partial:
                os.write(self.fd, (self.prefix() + self.partial + "\n").encode(
                    "utf-8", "replace"))
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
        self.hosted = None           # HostedActor: what its tasks' contexts see
        self.pools = None            # group -> thread pool (threaded actors)
        self.aloop = None            # event loop (async actors)
        self.asems = None            # group -> asyncio.Semaphore (async actors)
        self.running_name = threading.local()
        self.last_name = ""          # the prefix of the last task started
        self.ip = self.core.node_info.get("node_ip", "127.0.0.1")
        self.in_task = False
        self.running_task = None     # id of the task the main thread runs
        self.early_interrupt = False  # SIGINT came while no task was running
        self.cancel_path = process.cancel_file(args.session_dir, args.worker_id)
        self.jobs_seen = set()       # jobs whose driver's sys.path we added
        self.session_dir = args.session_dir
        self.server = None           # DirectServer, once this worker hosts an actor
        self.actor_gpu_ids = []      # the actor's GPU ids (its direct calls run with them)
        self.unsent = set()          # links with answers queued (sequential actor)
        self.unsent_lock = threading.Lock()
        self.core.background_flush = self.flush_replies   # (the flusher, ~1 ms)
        # while the main thread runs a direct call for more than a moment, the
        # flusher thread reads the sockets (a D_CANCEL must not wait for its end)
        self.direct_since = 0.0
        self.core.background_reads = self.running_long
        # actor calls not answered yet, through the raylet or direct: task id ->
        # Call (what cancel() needs to find them)
        self.calls = {}
        self.early_cancels = collections.OrderedDict()
        self.core.conn.on_cancel = self.on_cancel
        # a worker started for a runtime environment sets it up before its first
        # task; if that failed, every task it is given fails with why
        self.env_error = runtime_env_setup.setup_worker(
            self.core, args.runtime_env, args.session_dir) if args.runtime_env else None
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
            self.core.task.cancelled = True    # (runtime_context.is_canceled())
            raise _Cancelled()

    def current_name(self):
        # a thread that runs no task (the stuck-get watchdog) writes as the task
        # the worker runs (or ran last)
        return getattr(self.running_name, "v", None) or self.actor_name or \
            self.last_name or "worker"

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
        hub = self.core.hub
        while True:
            if hub.pushes:
                hub.poll()      # a cancel of a queued call is read before it starts
            if not hub.pushes and self.unsent:
                self.flush_replies()    # nothing more to run now: answer
            msg = hub.next_push()
            if type(msg) is tuple:      # a direct call: (link, spec wire)
                link, wire = msg
                spec = P.TaskSpec.from_wire(wire)
                if self.pools or self.aloop:
                    self.dispatch(spec, [], self.actor_gpu_ids, link=link)
                else:
                    self.execute(spec, [], self.actor_gpu_ids, link=link)
                continue
            kind = msg[0]
            if kind == P.EXECUTE:
                spec = P.TaskSpec.from_wire(msg[1])
                skip = msg[4] if len(msg) > 4 else 0
                if spec.kind == P.ACTOR_TASK and (self.pools or self.aloop):
                    self.dispatch(spec, msg[2], msg[3], skip)
                else:
                    self.execute(spec, msg[2], msg[3], skip)
            elif kind == P.EXIT:
                self.exit(0)

    def dispatch(self, spec, descs, gpu_ids, skip=0, link=None):
        """An actor call of a threaded or async actor: to its concurrency group."""
        group = (spec.actor_options or {}).get("concurrency_group")
        groups = self.pools if self.pools is not None else self.asems
        if group not in groups:
            known = sorted(g for g in groups if g is not None)
            err = ValueError(f"{spec.name}: the actor has no concurrency group "
                             f"{group!r}; its groups are {known}.")
            self.finish(spec, self.error_returns(spec, self.task_error(spec, err)), None,
                        link)
            return
        call = self.register(spec, descs, link)
        if call is None:
            return      # cancelled before it came: answered
        if self.pools is not None:
            call.future = self.pools[group].submit(self.execute, spec, descs, gpu_ids,
                                                   skip, link)
        else:
            import asyncio  # imported lazily: only async actors use it
            asyncio.run_coroutine_threadsafe(
                self.execute_async(call, gpu_ids, self.asems[group], skip), self.aloop)

    # ------------------------------------------------------------------ direct calls
    def start_direct(self):
        """The actor exists: listen for its callers (the raylet hands them the
        path and a token each, see direct.py).  Without it (too long a path, a
        socket error) every call keeps coming through the raylet."""
        if not config.DIRECT_CALLS:
            return
        path = listen_path(self.session_dir)
        if len(path.encode()) > 107:
            return
        try:
            self.server = DirectServer(self.core, path, self.deliver, self.cancel_direct)
        except OSError:
            return
        self.core.conn.queue([P.DIRECT_READY, path])   # ahead of the creation's DONE

    def deliver(self, link, wire):
        """(the reading thread) A direct call: into the run queue, in order."""
        self.core.hub.pushes.append((link, wire))

    def cancel_direct(self, link, task_id):
        """(the reading thread) cancel() of a direct call, as of one through the
        raylet (on_cancel): not started yet, it never runs (TaskCancelledError);
        running, it is flagged (is_canceled()), or in an async actor its asyncio
        task is cancelled.  The answer goes back on the link."""
        pushes = self.core.hub.pushes
        for item in pushes:
            if type(item) is tuple and item[0] is link and item[1][0] == task_id:
                pushes.remove(item)
                self.never_ran(P.TaskSpec.from_wire(item[1]), [], link)
                return
        for m in self.on_cancel(task_id, None):
            self.core.conn.queue(m)
        self.core.flush_soon()

    # ------------------------------------------------------------------ cancel
    def register(self, spec, descs, link=None):
        """Note actor call `spec` as received; None if its CANCEL came first (it is
        answered as cancelled, without running).  `link`: a direct call's."""
        tid = spec.task_id
        if self.early_cancels.pop(tid, None) is not None:
            self.answer_never_ran(spec, descs, link)
            return None
        call = self.calls[tid] = Call(spec, descs, link)
        return call

    def on_cancel(self, task_id, execute):
        """Connection hook (the thread reading the socket): cancel() of an actor
        call.  Returns the messages to send."""
        if execute is not None:          # still queued here: it never runs
            return self.never_ran(P.TaskSpec.from_wire(execute[1]), execute[2])
        call = self.calls.get(task_id)
        if call is None:
            # not seen yet (being handed to its thread), or answered already
            self.early_cancels[task_id] = True
            while len(self.early_cancels) > _EARLY_CANCELS_KEPT:
                self.early_cancels.popitem(last=False)
            return []
        call.cancelled = True
        if call.ctx is not None:
            call.ctx.cancelled = True      # is_canceled(); its result: cancelled
        if call.future is not None and call.future.cancel():
            self.calls.pop(task_id, None)  # (a pool thread had not started it)
            return self.never_ran(call.spec, call.descs, call.link)
        if self.aloop is not None:
            self.aloop.call_soon_threadsafe(self.cancel_async, call)
        return []

    def cancel_async(self, call):
        """(the actor's event loop) Cancel the coroutine of `call`, as Ray does;
        one that has not started sees `call.cancelled` when it starts."""
        if call.task is not None and not call.task.done():
            call.task.cancel()

    def never_ran(self, spec, descs, link=None):
        """The messages answering a call that is cancelled before it started: its
        arena arguments unpinned (they were never mapped), its DONE cancelled.
        A direct call's answer goes on its link at once (no message is left)."""
        self.calls.pop(spec.task_id, None)
        results = self.error_returns(spec, exceptions.TaskCancelledError(spec.name))
        if link is not None:
            link.send([P.D_DONE, spec.task_id, results, None])
            return []
        arena = [oid for oid, d in zip(spec.ref_args(), descs) if d[0] == P.ARENA]
        out = [[P.UNPIN, arena]] if arena else []
        out.append([P.DONE, spec.task_id, results, None])
        return out

    def answer_never_ran(self, spec, descs, link=None):
        msgs = self.never_ran(spec, descs, link)
        if msgs:
            for m in msgs:
                self.core.conn.queue(m)
            self.core.conn.flush()

    def cancelled_call(self, spec) -> bool:
        call = self.calls.get(spec.task_id)
        return call is not None and call.cancelled

    def was_cancelled(self, spec, e) -> bool:
        """`e` ended the task because cancel() was called on it (not, say, a
        TaskCancelledError of a child task it got)."""
        return self.cancelled_call(spec) or (
            isinstance(e, exceptions.TaskCancelledError) and self.core.task.cancelled
            and self.core.task.task_id == spec.task_id)

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
        if self.server is not None:
            self.server.drain(1.0)    # the last answers reach their callers
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
        hosted = self.hosted
        if spec.kind == P.NORMAL_TASK:
            sched, res = spec.scheduling, spec.resources
        elif spec.kind == P.ACTOR_CREATION_TASK:
            sched = spec.scheduling
            res = (spec.actor_options or {}).get("lifetime_resources") or {}
        else:
            sched = hosted.scheduling if hosted else None
            res = hosted.resources if hosted else {}
        ctx = TaskContext(spec.task_id, spec.name, spec.actor_id, sched, res, gpu_ids,
                          hosted)
        call = self.calls.get(spec.task_id)
        if call is not None:
            call.ctx = ctx
            ctx.cancelled = call.cancelled
        self.core.set_task(ctx)
        # output prefix as in Ray: "(f pid=N)" for a task, "(Counter pid=N)" for an actor
        self.running_name.v = self.last_name = (
            spec.name.split(".")[0] if spec.kind != P.NORMAL_TASK
            else spec.name.rsplit(".", 1)[-1])
        self.core.job_id = spec.job_id
        if spec.job_id not in self.jobs_seen:
            self.add_job_sys_path(spec.job_id)
        # as in Ray: a task or actor that asked for no GPU sees none
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
        if self.env_error is not None:
            raise self.env_error
        if spec.kind == P.NORMAL_TASK:
            return self.load(spec.function_key)
        if spec.kind == P.ACTOR_CREATION_TASK:
            cls = self.load(spec.function_key)
            self.actor_id = spec.actor_id
            self.actor_name = spec.name
            opts = spec.actor_options or {}
            self.hosted = HostedActor(
                spec.actor_id, spec.name, cls, opts.get("name") or "",
                int(opts.get("max_task_retries") or 0), spec.scheduling,
                opts.get("lifetime_resources") or {}, bool(opts.get("is_async")))
            self.core.task.actor = self.hosted   # the constructor sees it too

            def create(*a, **kw):
                self.actor = cls(*a, **kw)
                self.start_groups(opts)
                self.start_direct()
                return None
            return create
        if self.actor is None:
            raise exceptions.ActorDiedError("this worker hosts no actor")
        if spec.method in ("__beamlet_terminate__", TERMINATE):
            raise ActorExit()
        if spec.method == READY:
            return _ready
        return getattr(self.actor, spec.method)

    def start_groups(self, opts):
        """The actor's concurrency groups: the default one (max_concurrency) and
        those of @remote(concurrency_groups=...), each bounded by its own limit."""
        groups = dict(opts.get("concurrency_groups") or {})
        default = int(opts.get("default_concurrency") or opts.get("max_concurrency")
                      or (1000 if opts.get("is_async") else 1))
        limits = {None: default, **groups}
        if opts.get("is_async"):
            self.start_event_loop(limits)
        elif default > 1 or groups:
            self.pools = {
                g: concurrent.futures.ThreadPoolExecutor(
                    n, thread_name_prefix=f"actor-{g or 'default'}")
                for g, n in limits.items()}

    def execute(self, spec, descs, gpu_ids, skip=0, link=None):
        """Run one task; `link`: the direct link of the caller of a direct call
        (which gets the answer), else the raylet sent it."""
        flag = None
        if spec.kind == P.ACTOR_TASK and spec.task_id not in self.calls and \
                self.register(spec, descs, link) is None:
            return      # (a sequential actor's call) cancelled before it came
        self.running_task = spec.task_id
        self.in_task = True
        owner = None
        try:
            self.prepare(spec, gpu_ids)
            if link is not None:
                owner = link.caller
                self.note_running(spec)
            elif spec.kind == P.ACTOR_CREATION_TASK:
                self.actor_gpu_ids = gpu_ids   # the actor's for its whole life
            if self.early_interrupt:   # a cancel() that came before the task
                self.early_interrupt = False
                self.check_cancelled()
            args, kwargs = self.resolve_args(spec, descs)
            fn = self.target(spec)
            result = fn(*args, **kwargs)
            del args, kwargs
            if spec.num_returns == P.STREAMING:
                result = streaming.run_stream(self.core, spec, result, skip,
                                              self.core.task)
            elif spec.num_returns == P.DYNAMIC:
                result = self.dynamic(spec, result)
            if self.cancelled_call(spec):
                raise exceptions.TaskCancelledError(spec.name)
            results = self.store_returns(spec, result, owner)
        except _ACTOR_EXITS:
            self.actor_exit(spec, link)
        except _Cancelled:
            self.in_task = False
            results = self.error_returns(spec, exceptions.TaskCancelledError(spec.name))
        except SystemExit as e:
            self.system_exit(spec, e, link)
        except BaseException as e:
            self.in_task = False
            results, flag = self.failed(spec, e)
        self.in_task = False
        self.running_task = None
        self.finish(spec, results, flag, link)

    def note_running(self, spec):
        if threading.current_thread() is threading.main_thread():
            self.direct_since = time.monotonic()

    def running_long(self) -> bool:
        since = self.direct_since
        return bool(since) and time.monotonic() - since > 0.005

    def dynamic(self, spec, gen):
        """num_returns="dynamic": every value `gen` yields is stored as an object;
        the one return value holds their refs."""
        return DynamicObjectRefGenerator(streaming.store_dynamic(
            self.core, spec, gen, lambda oid, counted: ObjectRef(oid, _registered=counted)))

    def actor_exit(self, spec, link=None):
        """exit_actor() (or sys.exit() with status 0 in an actor method): the
        raylet ends the actor after this call, without restarting it."""
        if spec.kind == P.ACTOR_CREATION_TASK or self.actor is None:
            self.exit(0)         # during the constructor: the actor never lived
        if link is None:
            self.finish(spec, [], "exit")
        else:
            # the caller gets the raylet path's error; the raylet ends the actor
            self.core.conn.queue([P.ACTOR_EXIT, spec.name])
            self.finish(spec, self.error_returns(spec, exceptions.ActorDiedError(
                f"The actor {self.actor_name} exited: exit_actor() was called in "
                f"{spec.name}.")), "exit", link)
        self.exit(0)

    def system_exit(self, spec, e, link=None):
        """sys.exit() in a task or actor ends the worker process, as in Ray: a
        normal task's worker dies (the task is retried per max_retries, then
        fails with WorkerCrashedError); an actor ends (status 0: as exit_actor(),
        no restart; another status: as a crash, restarted per max_restarts)."""
        code = _exit_code(e)
        if code == 0 and spec.kind == P.ACTOR_TASK:
            self.actor_exit(spec, link)
        self.exit(code)

    async def execute_async(self, call, gpu_ids, sem, skip=0):
        import asyncio  # (lazy, as above)
        call.task = asyncio.current_task()
        spec = call.spec
        # calls come ahead of their turn (the raylet's window, or a caller's
        # direct calls): at most the group's limit of them run at once; the
        # semaphore is FIFO, so they start in arrival order
        try:
            if call.cancelled:
                raise asyncio.CancelledError()
            async with sem:
                await self._execute_async(spec, call.descs, gpu_ids, skip, call.link)
        except asyncio.CancelledError:
            # cancelled while it waited for its turn: it never ran
            self.answer_never_ran(spec, call.descs, call.link)

    async def _execute_async(self, spec, descs, gpu_ids, skip, link=None):
        import asyncio  # (lazy, as above) used for ref arguments below
        # each call runs in an asyncio task of its own, whose context holds the
        # call's TaskContext (task id, put ids): concurrent calls never share it
        self.prepare(spec, gpu_ids)
        flag = None
        owner = None
        if link is not None:
            owner = link.caller
            self.note_running(spec)
        try:
            args, kwargs = await asyncio.get_running_loop().run_in_executor(
                None, self.resolve_args, spec, descs) if descs else self.resolve_args(
                spec, descs)
            fn = self.target(spec)
            result = fn(*args, **kwargs)
            if spec.num_returns == P.STREAMING:
                result = await streaming.run_stream_async(self.core, spec, result, skip,
                                                          self.core.task)
            elif inspect.isasyncgen(result):
                values = [v async for v in result]
                result = self.dynamic(spec, iter(values)) \
                    if spec.num_returns == P.DYNAMIC else iter(values)
            elif inspect.isawaitable(result):
                result = await result
            if spec.num_returns == P.DYNAMIC and inspect.isgenerator(result):
                result = self.dynamic(spec, result)
            if self.cancelled_call(spec):
                raise exceptions.TaskCancelledError(spec.name)
            results = self.store_returns(spec, result, owner)
        except _ACTOR_EXITS:
            self.actor_exit(spec, link)
        except SystemExit as e:
            self.system_exit(spec, e, link)
        except asyncio.CancelledError:
            # cancel() of a running call: asyncio's cancellation, as in Ray
            results = self.error_returns(spec, exceptions.TaskCancelledError(spec.name))
        except BaseException as e:
            results, flag = self.failed(spec, e)
        self.finish(spec, results, flag, link)

    def failed(self, spec, e):
        """(results, retry flag) of a call that raised `e` (sync or async)."""
        if self.was_cancelled(spec, e):
            return self.error_returns(spec, exceptions.TaskCancelledError(spec.name)), None
        return (self.error_returns(spec, self.task_error(spec, e)),
                "retry" if self.retryable(spec, e) else None)

    def finish(self, spec, results, flag, link=None):
        # output first: a last line without "\n" gets this task's prefix, and it
        # is in the raylet's pipe before the caller can see the result
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        self.calls.pop(spec.task_id, None)
        if link is None:
            self.core.conn.send([P.DONE, spec.task_id, results, flag])
        else:
            self.direct_since = 0.0
            conn = self.core.conn
            if conn.out:
                conn.flush()    # what the raylet must have first (SEAL, ACTOR_EXIT)
            msg = [P.D_DONE, spec.task_id, results, flag]
            if self.pools or self.aloop or flag == "exit":
                link.send(msg)
            else:
                # a sequential actor answers in batches while more calls wait to
                # run (one write, one wake-up of the caller), at once otherwise
                if link.queue(msg) >= REPLY_BATCH:
                    link.flush()
                else:
                    with self.unsent_lock:
                        self.unsent.add(link)
                    self.core.flush_soon()  # at the latest when the flusher wakes
        self.running_name.v = None

    def flush_replies(self):
        with self.unsent_lock:
            links, self.unsent = self.unsent, set()
        for link in links:
            link.flush()

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
            tb = "".join(traceback.format_exception(type(e), e, _user_frames(
                e.__traceback__)))
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

    def store_returns(self, spec, result, owner=None):
        """The results' descriptors for DONE (or, for a direct call, D_DONE:
        `owner` is the caller's worker id, see direct.py)."""
        n = spec.num_returns
        if inspect.isgenerator(result) and n >= 0:
            # a generator function called with num_returns=n: its n values
            result = tuple(result)
            if len(result) != n:
                raise ValueError(
                    f"{spec.name} is declared with num_returns={n} but its generator "
                    f"yielded {len(result)} values.")
            if n == 1:
                result = result[0]
        if n == 1 or n < 0:
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
                data = s.to_bytes()
                if owner is None:
                    out.append([oid, [P.INLINE, data, False, s.contained]])
                elif not s.contained:
                    out.append([oid, [P.INLINE, data, False]])   # the caller keeps it
                else:
                    core.register(oid, data, False, s.contained, owner)
                    out.append([oid, [P.REGISTERED, data, False]])
            else:
                off = core.create(oid, s.size, owner)
                core.write_object(off, s)
                if owner is None:
                    out.append([oid, [P.ARENA, off, s.size, False, s.contained]])
                else:
                    core.conn.queue([P.SEAL, oid, s.contained, False])
                    out.append([oid, [P.REGISTERED, None, False]])
        return out

    def start_event_loop(self, limits):
        import asyncio  # imported lazily: only async actors use it
        ready = threading.Event()

        def run():
            self.aloop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.aloop)
            self.asems = {g: asyncio.Semaphore(n) for g, n in limits.items()}
            ready.set()
            self.aloop.run_forever()
        threading.Thread(target=run, daemon=True, name="actor-loop").start()
        ready.wait()


def _ready():
    """actor.__ray_ready__.remote(): answered once the actor exists."""
    return True


_WORKER_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frames(tb):
    """The traceback from the first frame outside this package's worker code
    (execute, the generator loops of streaming.py): what the user wrote."""
    while tb is not None and os.path.dirname(
            os.path.abspath(tb.tb_frame.f_code.co_filename)) == _WORKER_DIR:
        tb = tb.tb_next
    return tb


def _plain_copy(exc):
    """A copy of an exception with its class, args and those of its attributes
    that pickle; None when no such copy survives pickling."""
    if exc is None:
        return None
    state = {}
    for k, v in list(getattr(exc, "__dict__", {}).items()):
        try:
            serialization.deserialize(serialization.serialize(v).to_bytes())
            state[k] = v
        except Exception:
            pass
    try:
        copy = exceptions.rebuild_exception(type(exc), exc.args, state)
        # as it will travel: the cause of a TaskError
        serialization.deserialize(serialization.serialize(
            exceptions.TaskError("", "", copy)).to_bytes())
        return copy
    except Exception:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="beamlet-worker",
                                 description="beamlet worker process (started by a raylet)")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--worker-id", required=True)
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--runtime-env", default="",
                    help="key of the runtime environment this worker runs in")
    args = ap.parse_args(argv)
    process.set_pdeathsig(signal.SIGKILL)
    w = Worker(args)
    sys.stdout = PrefixedStream(1, w)
    sys.stderr = PrefixedStream(2, w)
    w.run()


if __name__ == "__main__":
    main()
