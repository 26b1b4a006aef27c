"""The raylet's actors: one FIFO per actor, calls sent to its dedicated worker
in order, restarts, death and kill.

Owns: the actors of this node (Actor records by id, the dead ones among the
  last DEAD_ACTORS_KEPT included, so that later calls fail with the cause), and
  which creation object stands for which actor (freeing it ends the actor).
Uses: ObjectStore (refs on arguments and creation objects, argument
  descriptors, sealing a creation object that never came); LocalScheduler
  (tracking calls as tasks, queueing a restart, ending and failing tasks,
  resources of a creation task); WorkerPool (signals, removing a worker);
  ClusterScheduler (a call or kill for an actor on another node, a job's end);
  GcsWriter (the actor's record) and the GcsClient (its name).
Messages: DIRECT_ASK (a caller asks to call the actor's worker directly),
  DIRECT_READY and ACTOR_EXIT (from an actor's worker); the task scheduler
  hands it SUBMIT and RESUBMIT of actor calls and creations and DONE from an
  actor's worker; the calls "kill_actor" and "actor_state"; PEER_ACTOR_KILL
  (via cluster_scheduling.py).

Direct calls (worker/direct.py, docs/architecture.md): a caller on this node
  asks (DIRECT_ASK) and is answered with the worker's socket and a token once
  none of its calls is queued here any more and the actor is ALIVE; the worker
  gets the token first (GRANT), behind the calls sent to it.  The raylet never
  sees those calls; when the worker dies the callers RESUBMIT the unanswered
  ones with the incarnation they were sent to, and they are retried or failed
  as the calls it had in flight itself.
"""
import collections
import os
import signal
import time


from .. import exceptions
from .._private import config, ids, serialization
from .._private import protocol as P
from .._private.pending import Reason, reason
from ..gcs import keys
from .common import desc_is_error, error_bytes, node_gpu_ids
from .object_store import ObjState
from .scheduler import Task, TaskState
from .worker_pool import WState

# The components it uses (ClusterScheduler, GcsWriter, ObjectStore, LocalScheduler,
# WorkerPool) are named in annotations only, as strings: the shell (raylet.py) wires
# them together, so their modules need not import each other (no import circle).

TS = TaskState

class Actor:
    __slots__ = ("actor_id", "creation_spec", "creation_oid", "worker", "state",
                 "queue", "inflight", "max_concurrency", "restarts_left",
                 "max_task_retries", "name", "namespace", "detached", "death_cause",
                 "resources", "gpu_ids", "job_id", "class_name", "num_restarts",
                 "keepalive", "pool", "held", "creation_task", "owner", "last_done",
                 "direct_path", "asks", "orphans", "last_cause")

    def __init__(self, spec):
        opts = spec.actor_options or {}
        self.actor_id = spec.actor_id
        self.creation_spec = spec
        self.creation_oid = ids.return_id(spec.task_id, 1)
        self.worker = None
        self.state = "PENDING_CREATION"
        self.queue = collections.deque()     # actor tasks not yet sent
        self.inflight = {}                   # task_id -> Task sent to the worker
        self.max_concurrency = int(opts.get("max_concurrency") or 1)
        self.restarts_left = int(opts.get("max_restarts") or 0)
        self.max_task_retries = int(opts.get("max_task_retries") or 0)
        self.name = opts.get("name")
        self.namespace = opts.get("namespace")
        self.detached = opts.get("lifetime") == "detached"
        self.death_cause = None
        self.resources = opts.get("lifetime_resources") or {}
        self.gpu_ids = []
        self.job_id = spec.job_id
        self.class_name = spec.name
        self.num_restarts = 0
        self.keepalive = False
        self.pool = None          # ResourceSet its lifetime resources come from
        # the constructor's ref arguments, kept until the actor is dead so that a
        # restart can run the constructor again with them
        self.held = []
        self.creation_task = None            # the Task creating it now, if any
        # the worker process that created it (None: a driver, or detached): the
        # actor dies with it (fate sharing, as in Ray)
        self.owner = None
        self.last_done = 0.0      # wall time its last call ended (for call timings)
        # direct calls: where its worker listens (None: it does not), the
        # DIRECT_ASKs not answered yet [(conn, req)], calls RESUBMITted before
        # the death of their incarnation was seen here [(time, Task)], and why
        # it died last (for those that come after)
        self.direct_path = None
        self.asks = []
        self.orphans = []
        self.last_cause = ""


DEAD_ACTORS_KEPT = 10_000
# A RESUBMITted call whose incarnation is still ALIVE this long after (its link
# broke although the worker lives) is run again by this raylet.
ORPHAN_WAIT_S = 10.0


class Actors:
    INTERFACE = (
        "wire",     # (the shell, once)
        "submit_call", "created", "arg_ready", "bind_worker", "call_done",
        "creation_done", "creation_failed", "creation_freed", "worker_lost",
        "call_kill_actor", "call_actor_state", "job_finished", "cancel_call",
        "kill_in_placement_group", "hand_over", "adopt", "accept_calls", "is_local",
        "on_direct_ask", "on_direct_ready", "on_actor_exit", "resubmitted",
        "tick",
        # the state API and pending reasons (read only; introspection.py)
        "all_actors", "actor", "call_reason", "running_calls", "resource_holders",
        "owner_died",
    )

    def __init__(self, node_id: bytes):
        self.node_hex = node_id.hex()
        self.actors = {}         # actor_id -> Actor
        self.dead_actors = collections.deque()   # ids of DEAD actors, oldest first
        self.creation_to_actor = {}   # creation oid -> Actor
        self.owned = {}          # worker id -> ids of the actors it created

    def wire(self, store: "ObjectStore", sched: "LocalScheduler", pool: "WorkerPool",
             cs: "ClusterScheduler", gcs: "GcsWriter", gcs_client) -> None:
        self.store = store
        self.sched = sched
        self.pool = pool
        self.cs = cs
        self.put_gcs = gcs.put
        self.gcs = gcs_client
        # bound once: used per actor call
        self.track = sched.track
        self.failed_arg = store.failed_arg
        self.execute_msg = sched.execute_msg

    # ------------------------------------------------------------------ submission
    def submit_call(self, t):
        """An actor call was submitted here (its arguments are held)."""
        spec = t.spec
        a = self.actors.get(spec.actor_id)
        if a is None and self.cs.actor_call(t):
            return      # the actor lives on another node
        if a is None or a.state == "DEAD":
            cause = a.death_cause if a else "The actor does not exist on this node."
            t.move(TS.WAITING_FOR_RESOURCES)
            self.sched.fail_task(t, exceptions.ActorDiedError(
                f"Cannot call {spec.name}: the actor is dead. {cause}"))
            return
        self.store.incref(a.creation_oid)
        t.held.append(a.creation_oid)
        self.track(t)
        a.queue.append(t)
        self.pump_actor(a)

    def created(self, t, holder=None):
        """The creation task `t` of a new actor was submitted here by `holder`
        (a client connection)."""
        spec = t.spec
        a = Actor(spec)
        a.creation_task = t
        w = getattr(holder, "worker", None)
        if w is not None and not a.detached:
            # created by a worker process: it owns the actor, which dies with it
            a.owner = w
            self.owned.setdefault(w.worker_id, set()).add(a.actor_id)
            w.owned += 1
        incref = self.store.incref
        for oid in t.held:
            incref(oid)
            a.held.append(oid)
        self.register(a)
        if a.name or a.detached:
            a.keepalive = True
            o = self.store.get(a.creation_oid)
            o.refcount += 1
        self.record_actor(a)

    def register(self, a):
        self.actors[a.actor_id] = a
        self.creation_to_actor[a.creation_oid] = a
        self.store.watch(a.creation_oid)     # its freeing ends the actor

    def arg_ready(self, t):
        """The arguments of actor call `t` are all here now."""
        a = self.actors.get(t.spec.actor_id)
        if a is not None:
            self.pump_actor(a)
        else:
            self.cs.arg_ready(t)    # a call to an actor on another node

    def bind_worker(self, actor_id, w):
        """The creation task of `actor_id` was dispatched to `w`."""
        a = self.actors.get(actor_id)
        if a is not None:
            a.worker = w
            w.actor = a

    def is_local(self, actor_id) -> bool:
        return actor_id in self.actors

    # ------------------------------------------------------------------ results
    def call_done(self, a, task_id, results, flag) -> bool:
        """DONE from `a`'s worker; False if it is not one of `a`'s calls (its
        creation task)."""
        t = a.inflight.pop(task_id, None)
        if t is None:
            return False
        if flag == "exit":
            self.sched.fail_task(t, exceptions.ActorDiedError(
                f"The actor {a.class_name} exited: exit_actor() was called in "
                f"{t.spec.name}."))
            self.kill_actor(a, "The actor called exit_actor().", no_restart=True,
                            graceful=True)
            return True
        if flag == "retry" and t.retries_left != 0 and not t.cancelled:
            # retry_exceptions: the method raised a listed exception; it runs
            # again (max_task_retries), before the calls not sent yet
            if t.retries_left > 0:
                t.retries_left -= 1
            t.move(TS.WAITING_FOR_RESOURCES)
            a.queue.appendleft(t)
            self.pump_actor(a)
            return True
        # for the call's record: its worker, and when it really started (calls
        # are sent ahead of time; a sequential actor starts one at its
        # predecessor's end)
        t.worker = a.worker
        if a.max_concurrency == 1:
            started = next((ts for ts, s in t.history if s is TS.RUNNING), 0.0)
            t.run_start = max(started, a.last_done)
        self.sched.complete_task(t, results)
        a.last_done = t.history[-1][0]
        self.pump_actor(a)
        return True

    def cancel_call(self, t):
        """cancel() of actor call `t` (of an actor of this node): one not sent to
        the actor's worker yet fails now and never runs; one sent is cancelled by
        the worker (not started: never runs; running: flagged, or its coroutine
        cancelled), which answers with its DONE.  A sequential actor's calls run
        in order, so those behind the first one sent have not started: they fail
        now, and the worker drops them when it comes to them."""
        a = self.actors.get(t.spec.actor_id)
        if a is None:
            self.cs.cancel_queued(t)    # a call to an actor on another node
            return
        err = exceptions.TaskCancelledError(t.spec.name)
        if t in a.queue:
            a.queue.remove(t)
            t.move(TS.CANCELLED)
            self.sched.fail_task(t, err)
            return
        tid = t.spec.task_id
        if tid not in a.inflight or a.worker is None:
            return
        a.worker.conn.send([P.CANCEL, tid])
        sequential = a.max_concurrency == 1 and \
            not (a.creation_spec.actor_options or {}).get("is_async")
        if sequential and next(iter(a.inflight)) != tid:
            del a.inflight[tid]
            t.move(TS.CANCELLED)
            self.sched.fail_task(t, err)
            self.pump_actor(a)

    def creation_done(self, a, w, t, results):
        """`a`'s constructor ran on `w` (creation task `t`, taken off `w`)."""
        failed = any(desc_is_error(r[1]) for r in results)
        if not failed and a.resources:
            # explicit resources: the actor keeps what its creation took (same
            # GPU ids, same placement-group bundle) for its whole life
            a.pool, a.gpu_ids = t.pool, t.gpu_ids
            t.gpu_ids = []
        else:
            self.sched.release_task_resources(t, w)
        a.creation_task = None
        if failed:
            w.actor = None
            a.worker = None
            self.sched.complete_task(t, results)
            cause = "The actor's constructor raised an exception."
            try:
                err = serialization.deserialize(results[0][1][1])
                cause += "\n" + str(err)
            except Exception:
                pass
            self.actor_died(a, cause, restart=False)
            # the worker holds a half-built instance: do not reuse it
            w.conn.send([P.EXIT, "actor constructor failed"])
            self.pool.remove(w)
        else:
            w.state = WState.ACTOR
            a.state = "ALIVE"
            self.sched.complete_task(t, results)
            self.record_actor(a)
            self.pump_actor(a)

    def creation_failed(self, t, data):
        """Creation task `t` ended with the error `data` (serialized)."""
        a = self.actors.get(t.spec.actor_id)
        if a is not None and a.state != "DEAD" and a.creation_task is t:
            a.creation_task = None
            cause = "The actor's creation failed."
            try:
                cause += " " + str(serialization.deserialize(data))
            except Exception:
                pass
            self.actor_died(a, cause, restart=False)

    def creation_freed(self, o):
        """ObjectStore hook: every handle of the actor of creation object `o` is gone."""
        a = self.creation_to_actor.get(o.oid)
        if a is not None:
            del self.creation_to_actor[o.oid]
            if a.state != "DEAD":
                self.kill_actor(a, "All handles to the actor went out of scope.",
                                no_restart=True, graceful=True)

    def worker_lost(self, a, w, how):
        """`a`'s worker `w` exited or crashed (`how`)."""
        self.drop_creation(a, w)   # it died inside the constructor
        self.actor_died(a, f"The actor's worker process (pid={w.pid}) {how}.",
                        restart=True)

    # ------------------------------------------------------------------ actors
    def drop_creation(self, a, w):
        """`w` is going away while it runs `a`'s constructor: give back the
        creation task's resources and end that task (a restart makes a new one)."""
        t = w.task if w is not None else None
        if t is None or t.spec.kind != P.ACTOR_CREATION_TASK:
            return
        w.task = None
        a.creation_task = None
        self.sched.release_task_resources(t, w)
        if t.state not in (TS.FAILED, TS.CANCELLED, TS.FINISHED):
            t.move(TS.FAILED)
        self.sched.task_ended(t)

    def pump_actor(self, a):
        """Send queued calls to the actor's worker, in order, while deps are ready."""
        if a.state != "ALIVE" or a.worker is None:
            return
        conn = a.worker.conn
        # A sequential or threaded actor's worker runs calls in arrival order,
        # max_concurrency at a time, so sending a window of calls ahead is safe and
        # saves a round trip per call (calls already sent can no longer be
        # cancelled, as in Ray).  An async actor's worker starts every call it
        # gets at once: there the raylet's count is the concurrency limit.
        window = a.max_concurrency
        if not (a.creation_spec.actor_options or {}).get("is_async"):
            window = max(window, config.ACTOR_PIPELINE_DEPTH)
        while a.queue and len(a.inflight) < window:
            t = a.queue[0]
            if t.missing:
                t.state = TS.WAITING_FOR_ARGS
                # re-pump when its args arrive
                break
            a.queue.popleft()
            if t.cancelled:
                t.move(TS.CANCELLED) if t.state is TS.WAITING_FOR_ARGS else None
                self.sched.finish_with_error(t, error_bytes(
                    exceptions.TaskCancelledError(t.spec.name)))
                continue
            if t.state is TS.WAITING_FOR_ARGS:
                t.move(TS.WAITING_FOR_RESOURCES)
            err = self.failed_arg(t.spec)
            if err is not None:
                self.sched.finish_with_error(t, err)
                continue
            t.move(TS.RUNNING)
            a.inflight[t.spec.task_id] = t
            conn.send(self.execute_msg(t.spec, conn, node_gpu_ids(a.pool, a.gpu_ids)))
        if a.asks:
            self.answer_asks(a)

    # ------------------------------------------------------------------ direct calls
    def on_direct_ask(self, conn, msg):
        """DIRECT_ASK: answered at once if never possible, else once the actor
        is ALIVE and none of this caller's calls waits in its queue here."""
        _, req, actor_id = msg
        a = self.actors.get(actor_id)
        if a is None:
            why = "remote"      # (or unknown here: its calls fail through the raylet)
        elif a.state == "DEAD":
            why = "dead"
        elif conn.worker is not None and conn.worker.actor is a:
            why = "self"        # a call to itself would wait for itself
        else:
            a.asks.append((conn, req))
            self.answer_asks(a)
            return
        conn.send([P.REPLY, req, {"refused": why}])

    def answer_asks(self, a):
        if a.state == "DEAD":
            for conn, req in a.asks:
                conn.send([P.REPLY, req, {"refused": "dead"}])
            a.asks.clear()
            return
        w = a.worker
        if a.state != "ALIVE" or w is None:
            return      # answered once it is (back)
        if a.direct_path is None:
            for conn, req in a.asks:
                conn.send([P.REPLY, req, {"refused": "none"}])
            a.asks.clear()
            return
        waiting = {t.spec.caller for t in a.queue}
        keep = []
        for conn, req in a.asks:
            if conn.closed:
                continue
            if conn.client_id in waiting:
                keep.append((conn, req))    # its calls queued here go first
                continue
            token = os.urandom(16)
            # the worker reads the grant behind every call sent to it before
            w.conn.send([P.GRANT, conn.client_id, token])
            conn.send([P.REPLY, req, {"path": a.direct_path, "token": token,
                                      "incarnation": a.num_restarts}])
        a.asks = keep

    def on_direct_ready(self, conn, msg):
        """DIRECT_READY from an actor's worker (in its constructor's task)."""
        w = conn.worker
        a = w.actor if w is not None else None
        if a is not None:
            a.direct_path = msg[1]

    def on_actor_exit(self, conn, msg):
        """ACTOR_EXIT: exit_actor() in a direct call (the caller has its answer)."""
        w = conn.worker
        a = w.actor if w is not None else None
        if a is not None and a.state != "DEAD":
            self.kill_actor(a, f"The actor called exit_actor() in {msg[1]}.",
                            no_restart=True, graceful=True)

    def resubmitted(self, t, incarnation):
        """A direct call sent to incarnation `incarnation` of its actor got no
        answer before the link broke: retried or failed as the actor's own
        in-flight calls are when a worker dies (max_task_retries)."""
        spec = t.spec
        a = self.actors.get(spec.actor_id)
        if a is None or a.state == "DEAD":
            t.move(TS.WAITING_FOR_RESOURCES)
            cause = a.death_cause if a is not None else "The actor is not on this node."
            self.sched.fail_task(t, exceptions.ActorDiedError(
                f"The actor {a.class_name if a else spec.actor_id.hex()} is dead: "
                f"{cause}"))
            return
        self.store.incref(a.creation_oid)
        t.held.append(a.creation_oid)
        self.track(t)
        for oid in spec.return_ids():
            o = self.store.get(oid)
            if o is not None and o.state is ObjState.CREATING:
                self.store.abort_create(o)    # written in part by the dead worker
        if all(self.store.get(oid) is not None and
               self.store.get(oid).state is ObjState.SEALED for oid in spec.return_ids()):
            # it ran and stored its results before the link broke: done
            t.move(TS.WAITING_FOR_RESOURCES)
            t.move(TS.RUNNING)
            self.sched.complete_task(t, [])
            return
        if a.num_restarts == incarnation and a.state == "ALIVE":
            a.orphans.append((time.monotonic(), t))   # its death is not seen yet
            return
        self.retry_or_fail(a, t, a.last_cause)
        self.pump_actor(a)

    def retry_or_fail(self, a, t, cause):
        """Call `t` was running when `a`'s worker died: queued again if it has
        retries left (max_task_retries), else it fails."""
        if t.retries_left != 0 and not t.cancelled:
            if t.retries_left > 0:
                t.retries_left -= 1
            t.move(TS.WAITING_FOR_RESOURCES) if t.state is TS.WAITING_FOR_ARGS else None
            a.queue.append(t)
            return
        if t.state is TS.WAITING_FOR_ARGS:
            t.move(TS.WAITING_FOR_RESOURCES)
        self.sched.fail_task(t, exceptions.ActorDiedError(
            f"The actor {a.class_name} died while running {t.spec.name}: "
            f"{cause} It is restarting; the call was not retried "
            f"(max_task_retries={t.spec.max_retries})."))

    def tick(self):
        """(each heartbeat) Orphans whose incarnation lives on run again here."""
        now = time.monotonic()
        for a in self.actors.values():
            if a.orphans and a.state == "ALIVE":
                old = [x for x in a.orphans if now - x[0] > ORPHAN_WAIT_S]
                if old:
                    a.orphans = [x for x in a.orphans if x not in old]
                    for _, t in old:
                        a.queue.append(t)
                    self.pump_actor(a)

    def record_actor(self, a):
        w = a.worker
        self.put_gcs("hset", keys.actor(a.actor_id), mapping={
            "class": a.class_name, "name": a.name or "", "namespace": a.namespace or "",
            "state": a.state, "node": self.node_hex,
            "pid": w.pid if w else 0, "detached": int(a.detached),
            "restarts": a.num_restarts, "death_cause": a.death_cause or "",
            "job": a.job_id.hex(), "worker_id": w.worker_id.hex() if w else ""})

    def actor_died(self, a, cause, restart=True):
        w = a.worker
        a.worker = None
        a.direct_path = None
        a.last_cause = cause
        if w is not None:
            w.actor = None
        # direct calls whose link broke with this worker come after its own
        inflight = list(a.inflight.values()) + [t for _, t in a.orphans]
        a.inflight.clear()
        a.orphans.clear()
        if a.resources and a.state == "ALIVE" and a.pool is not None:
            a.pool.release(a.resources, a.gpu_ids)
            a.pool = None
            a.gpu_ids = []
            self.sched.request_schedule()     # queued work may fit now
        if restart and a.restarts_left != 0 and a.state != "DEAD":
            a.restarts_left -= 1
            a.num_restarts += 1
            a.state = "RESTARTING"
            retry = []
            for t in inflight:
                # a call's retries_left starts at the handle's max_task_retries
                if t.retries_left != 0 and not t.cancelled:
                    if t.retries_left > 0:
                        t.retries_left -= 1
                    retry.append(t)
                else:
                    self.sched.fail_task(t, exceptions.ActorDiedError(
                        f"The actor {a.class_name} died while running {t.spec.name}: "
                        f"{cause} It is restarting; the call was not retried "
                        f"(max_task_retries={t.spec.max_retries})."))
            for t in reversed(retry):
                # resent first, in their original order, once the actor is back
                t.move(TS.WAITING_FOR_RESOURCES)
                a.queue.appendleft(t)
            spec = a.creation_spec
            nt = Task(spec)      # holds nothing: the actor keeps the args (a.held)
            nt.state = TS.WAITING_FOR_RESOURCES
            a.creation_task = nt
            self.track(nt)
            self.record_actor(a)
            self.sched.push_ready(nt, front=True)
            return
        a.state = "DEAD"
        self.forget_dead_actor_later(a)
        a.death_cause = cause
        if a.owner is not None:
            self.disown(a)
        self.record_actor(a)
        err = exceptions.ActorDiedError(f"The actor {a.class_name} is dead: {cause}")
        for t in inflight + list(a.queue):
            self.sched.fail_task(t, err)
        a.queue.clear()
        self.answer_asks(a)     # (refused: it is dead)
        o = self.store.get(a.creation_oid)
        if o is not None and o.state is ObjState.PENDING:
            # never created: the creation object will not come from a constructor
            self.store.seal_inline(o, error_bytes(err), True, ())
        held, a.held = a.held, []
        for oid in held:
            self.store.decref(oid)
        if a.name:
            try:
                k = keys.actor_names(a.namespace or "")
                if self.gcs.r.hget(k, a.name) == a.actor_id.hex().encode():
                    self.gcs.r.hdel(k, a.name)
            except Exception:
                pass
        if a.keepalive:
            a.keepalive = False
            self.store.decref(a.creation_oid)

    def forget_dead_actor_later(self, a):
        """Dead actors are remembered (later calls raise with the cause), but only
        the last DEAD_ACTORS_KEPT of them: the table must not grow forever."""
        dead = self.dead_actors
        dead.append(a.actor_id)
        while len(dead) > DEAD_ACTORS_KEPT:
            old = self.actors.get(dead.popleft())
            if old is not None and old.state == "DEAD":
                del self.actors[old.actor_id]
                self.creation_to_actor.pop(old.creation_oid, None)

    def kill_actor(self, a, cause, no_restart=True, graceful=False):
        w = a.worker
        if no_restart:
            a.restarts_left = 0
        if w is None:
            if a.state != "DEAD":
                # not created yet (or restarting): drop its creation task
                t, a.creation_task = a.creation_task, None
                if t is not None:
                    t.cancelled = True   # if its args arrive later, it ends there
                    queued = self.sched.dequeue(t)
                    if queued or t.state is TS.WAITING_FOR_ARGS:
                        self.sched.fail_task(t, exceptions.ActorDiedError(cause))
                self.actor_died(a, cause, restart=not no_restart)
            return
        constructing = w.task is not None
        self.drop_creation(a, w)
        if graceful and not constructing and not a.inflight and not a.queue:
            w.conn.send([P.EXIT, "actor out of scope"])
        else:
            self.pool.signal(w, signal.SIGKILL)
        # the connection loss finishes the job (worker_lost -> actor_died)
        a.death_cause = cause
        if no_restart:
            self.actor_died(a, cause, restart=False)
            self.pool.remove(w)
            if not (graceful and not constructing):
                # killed: what it owned is lost now, not when its socket closes
                # (a get right after kill() raises OwnerDiedError)
                self.store.owner_died(w, "it was killed")
                self.owner_died(w)

    # ------------------------------------------------------------------ state API
    def all_actors(self) -> list:
        """Every actor of this node (the dead among the last DEAD_ACTORS_KEPT too)."""
        return list(self.actors.values())

    def actor(self, actor_id):
        return self.actors.get(actor_id)

    def running_calls(self, a) -> list:
        """The calls of `a` its worker runs now (sent calls beyond max_concurrency
        wait in the worker, behind these)."""
        return list(a.inflight.values())[:a.max_concurrency]

    def call_reason(self, t):
        """Why actor call `t` is not running (pending.py's vocabulary), or None."""
        a = self.actors.get(t.spec.actor_id)
        if a is None:
            return self.cs.call_reason(t)       # an actor on another node
        what = {"actor_id": a.actor_id.hex(), "class_name": a.class_name}
        if a.state == "PENDING_CREATION":
            return reason(Reason.WAITING_FOR_ACTOR_CREATION, **what)
        if a.state == "RESTARTING":
            return reason(Reason.WAITING_FOR_ACTOR_RESTART,
                          num_restarts=a.num_restarts, **what)
        if t.state is TS.WAITING_FOR_ARGS and t.missing:
            oid = self.store.pending_arg(t.spec)
            if oid is not None and (not a.queue or a.queue[0] is t):
                return reason(Reason.WAITING_FOR_ARGS, object_id=oid.hex())
        running = self.running_calls(a)
        if t.spec.task_id in a.inflight:
            pos = list(a.inflight).index(t.spec.task_id)
            if pos < a.max_concurrency:
                return None     # it runs
            ahead = pos
        elif t in a.queue:
            ahead = len(a.inflight) + a.queue.index(t)
        else:
            return None
        return reason(Reason.QUEUED_BEHIND_ACTOR_CALLS, ahead=ahead,
                      running=[c.spec.name for c in running],
                      max_concurrency=a.max_concurrency, **what)

    def resource_holders(self) -> list:
        """(the ResourceSet they came from, holder) of every live actor here that
        keeps resources for its lifetime."""
        out = []
        for a in self.actors.values():
            if a.state != "ALIVE" or not a.resources or a.pool is None:
                continue
            res = {k: v for k, v in a.resources.items() if v}
            if res:
                out.append((a.pool, {
                    "kind": "actor", "name": a.name or a.class_name,
                    "id": a.actor_id.hex(), "pid": a.worker.pid if a.worker else None,
                    "resources": res,
                    "call_site": (a.creation_spec.actor_options or {}).get("call_site")}))
        return out

    def call_actor_state(self, conn, actor_id):
        a = self.actors.get(actor_id)
        if a is None:
            return None
        return {"state": a.state, "death_cause": a.death_cause,
                "pid": a.worker.pid if a.worker else None,
                "num_restarts": a.num_restarts}

    def call_kill_actor(self, conn, actor_id, no_restart):
        """The "kill_actor" call (also PEER_ACTOR_KILL, with conn None)."""
        a = self.actors.get(actor_id)
        if a is None:
            return self.cs.kill_remote(actor_id, no_restart)   # on another node
        if a.state == "DEAD":
            return False
        if no_restart:
            self.kill_actor(a, "The actor was killed by beamlet.kill().", no_restart=True)
        else:
            self.pool.signal(a.worker, signal.SIGKILL) if a.worker else None
        return True

    def disown(self, a):
        w, a.owner = a.owner, None
        mine = self.owned.get(w.worker_id)
        if mine is not None and a.actor_id in mine:
            mine.discard(a.actor_id)
            w.owned -= 1

    def owner_died(self, w) -> None:
        """Worker process `w` is gone: the actors it created die with it (fate
        sharing, as in Ray), wherever they live, unless they are detached."""
        cause = (f"The actor's owner, the worker process pid={w.pid} that created "
                 f"it, died.")
        for aid in self.owned.pop(w.worker_id, ()):
            a = self.actors.get(aid)
            if a is None:
                self.cs.kill_remote(aid, True)      # created on another node
            elif a.state != "DEAD":
                a.owner = None
                self.kill_actor(a, cause, no_restart=True)

    def job_finished(self, job_id):
        """The job's driver left: its non-detached actors here die with it."""
        for a in list(self.actors.values()):
            if a.job_id == job_id and not a.detached and a.state != "DEAD":
                self.kill_actor(a, "The actor's job (driver) exited.", no_restart=True)

    def kill_in_placement_group(self, pg_id, why):
        """Group `pg_id` is removed: the actors created in it die."""
        for a in list(self.actors.values()):
            sched = a.creation_spec.scheduling
            if sched and sched[0] == "PG" and sched[1] == pg_id and a.state != "DEAD":
                self.kill_actor(a, f"The actor was killed because {why}.", no_restart=True)

    # ------------------------------------------------------------------ moving between nodes
    def hand_over(self, actor_id):
        """Cluster placement creates `actor_id` on another node: it leaves this
        node's tables; returns its record (None if it was not registered here)."""
        a = self.actors.pop(actor_id, None)
        if a is not None:
            self.creation_to_actor.pop(a.creation_oid, None)
        return a

    def adopt(self, a):
        """An actor owned here comes back to this node (restarted here)."""
        self.register(a)
        self.record_actor(a)

    def accept_calls(self, actor_id, calls) -> bool:
        """Calls waiting for `actor_id`, which lives here now, join its queue
        (retried ones from the start); False if it is not here."""
        a = self.actors.get(actor_id)
        if a is None:
            return False
        while calls:
            t = calls.popleft()
            self.track(t)
            self.store.incref(a.creation_oid)
            t.held.append(a.creation_oid)
            if t.state is not TS.WAITING_FOR_ARGS:
                t.state = TS.WAITING_FOR_ARGS   # (retried: back to the start)
            a.queue.append(t)
        self.pump_actor(a)
        return True
