"""The raylet's actors: one FIFO per actor, calls sent to its dedicated worker
in order, restarts, death and kill."""
import collections
import signal

from .. import exceptions
from .._private import config, ids
from .._private import protocol as P
from ..gcs import keys
from .object_store import ObjState
from .scheduler import Task, TaskState
from .common import node_gpu_ids

TS = TaskState

class Actor:
    __slots__ = ("actor_id", "creation_spec", "creation_oid", "worker", "state",
                 "queue", "inflight", "max_concurrency", "restarts_left",
                 "max_task_retries", "name", "namespace", "detached", "death_cause",
                 "resources", "gpu_ids", "job_id", "class_name", "num_restarts",
                 "keepalive", "pool", "held", "creation_task")

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


DEAD_ACTORS_KEPT = 10_000


class ActorsMixin:
    """Part of Raylet (see raylet.py); methods use the Raylet's state."""

    # ------------------------------------------------------------------ actors
    def drop_creation(self, a, w):
        """`w` is going away while it runs `a`'s constructor: give back the
        creation task's resources and end that task (a restart makes a new one)."""
        t = w.task if w is not None else None
        if t is None or t.spec.kind != P.ACTOR_CREATION_TASK:
            return
        w.task = None
        a.creation_task = None
        self.release_task_resources(t, w)
        if t.state not in (TS.FAILED, TS.CANCELLED, TS.FINISHED):
            t.move(TS.FAILED)
        self.task_ended(t)

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
                self.finish_with_error(t, self.error_bytes(
                    exceptions.TaskCancelledError(t.spec.name)))
                continue
            if t.state is TS.WAITING_FOR_ARGS:
                t.move(TS.WAITING_FOR_RESOURCES)
            err = self.failed_arg(t)
            if err is not None:
                self.finish_with_error(t, err)
                continue
            t.move(TS.RUNNING)
            a.inflight[t.spec.task_id] = t
            conn.send([P.EXECUTE, t.spec.to_wire(), self.arg_descriptors(conn, t.spec),
                       node_gpu_ids(a.pool, a.gpu_ids)])

    def record_actor(self, a):
        w = a.worker
        self.gcsw.put("hset", keys.actor(a.actor_id), mapping={
            "class": a.class_name, "name": a.name or "", "namespace": a.namespace or "",
            "state": a.state, "node": self.node_id.hex(),
            "pid": w.pid if w else 0, "detached": int(a.detached),
            "restarts": a.num_restarts, "death_cause": a.death_cause or "",
            "job": a.job_id.hex()})

    def actor_died(self, a, cause, restart=True):
        w = a.worker
        a.worker = None
        if w is not None:
            w.actor = None
        inflight = list(a.inflight.values())
        a.inflight.clear()
        if a.resources and a.state == "ALIVE" and a.pool is not None:
            a.pool.release(a.resources, a.gpu_ids)
            a.pool = None
            a.gpu_ids = []
            self.request_schedule()     # queued work may fit now
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
                    self.fail_task(t, exceptions.ActorDiedError(
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
            self.tasks[spec.task_id] = nt
            self.record_actor(a)
            self.ready.push(nt, front=True)
            self.request_schedule()
            return
        a.state = "DEAD"
        self.forget_dead_actor_later(a)
        a.death_cause = cause
        self.record_actor(a)
        err = exceptions.ActorDiedError(f"The actor {a.class_name} is dead: {cause}")
        for t in inflight + list(a.queue):
            self.fail_task(t, err)
        a.queue.clear()
        o = self.store.objects.get(a.creation_oid)
        if o is not None and o.state is ObjState.PENDING:
            # never created: the creation object will not come from a constructor
            self.seal_object_inline(o, self.error_bytes(err), True, ())
        held, a.held = a.held, []
        for oid in held:
            self.decref(oid)
        if a.name:
            try:
                k = keys.actor_names(a.namespace or "")
                if self.gcs.r.hget(k, a.name) == a.actor_id.hex().encode():
                    self.gcs.r.hdel(k, a.name)
            except Exception:
                pass
        if a.keepalive:
            a.keepalive = False
            self.decref(a.creation_oid)

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
                    queued = self.ready.remove(t)
                    if t in self.infeasible:
                        self.infeasible.remove(t)
                        queued = True
                    if queued or t.state is TS.WAITING_FOR_ARGS:
                        self.fail_task(t, exceptions.ActorDiedError(cause))
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

    def call_actor_state(self, conn, actor_id):
        a = self.actors.get(actor_id)
        if a is None:
            return None
        return {"state": a.state, "death_cause": a.death_cause,
                "pid": a.worker.pid if a.worker else None,
                "num_restarts": a.num_restarts}

    def call_kill_actor(self, conn, actor_id, no_restart):
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
