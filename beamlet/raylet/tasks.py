"""The raylet's task side: submission, dependencies, scheduling onto workers,
sending short tasks ahead, completion and failure (see scheduler.py for the pure
state and its transition table)."""
import time

from .. import exceptions
from .._private import config, serialization
from .._private import protocol as P
from ..gcs import keys
from .object_store import ObjState
from .scheduler import Task, TaskState
from .worker_pool import WState

from .actors import Actor
from .common import desc_is_error, log, node_gpu_ids

TS = TaskState


class TasksMixin:
    """Part of Raylet (see raylet.py); methods use the Raylet's state."""

    # ------------------------------------------------------------------ tasks
    def on_submit(self, conn, msg):
        wire = msg[1]
        spec = P.TaskSpec.from_wire(wire)
        t = Task(spec)
        objects = self.store.objects
        for oid in spec.return_ids():
            o = self.store.get_or_create(oid, t)
            o.refcount += 1
            conn.refs[oid] += 1
        for a in spec.args:
            if a[0] == P.ARG_VALUE:
                for oid in a[2]:   # refs nested in a by-value argument
                    o = objects.get(oid)
                    if o is not None:
                        o.refcount += 1
                        t.held.append(oid)
                continue
            oid = a[1]
            o = objects.get(oid)
            if o is None:
                if not self.om.multi:
                    continue
                o = self.om.locate(oid)   # another node may have it (GCS)
            if True:
                o.refcount += 1
                t.held.append(oid)
                if o.state is ObjState.PENDING or o.state is ObjState.CREATING:
                    t.missing += 1
                    o.waiters.append(lambda t=t: self.arg_ready(t))
                    if self.om.proxies and oid in self.om.proxies:
                        self.om.want(oid)     # on another node: pull it
                elif o.state is ObjState.SPILLED and self.request_restore(o, prefetch=True):
                    # being restored off the loop (there was free room); without
                    # room it is restored when the task is dispatched
                    t.missing += 1
                    o.waiters.append(lambda t=t: self.arg_ready(t))
        if spec.kind == P.ACTOR_TASK:
            a = self.actors.get(spec.actor_id)
            if a is None and self.cs.actor_call(t):
                return      # the actor lives on another node
            if a is None or a.state == "DEAD":
                cause = a.death_cause if a else "The actor does not exist on this node."
                t.move(TS.WAITING_FOR_RESOURCES)
                self.fail_task(t, exceptions.ActorDiedError(
                    f"Cannot call {spec.name}: the actor is dead. {cause}"))
                return
            self.incref(a.creation_oid)
            t.held.append(a.creation_oid)
            self.tasks[spec.task_id] = t
            a.queue.append(t)
            self.pump_actor(a)
            return
        self.tasks[spec.task_id] = t
        if spec.kind == P.ACTOR_CREATION_TASK:
            a = Actor(spec)
            a.creation_task = t
            for oid in t.held:
                self.incref(oid)
                a.held.append(oid)
            self.actors[spec.actor_id] = a
            self.creation_to_actor[a.creation_oid] = a
            if a.name or a.detached:
                a.keepalive = True
                o = objects.get(a.creation_oid)
                o.refcount += 1
            self.record_actor(a)
        self.gcsw.task_event(t)
        if t.missing == 0:
            self.make_ready(t)

    def arg_ready(self, t):
        t.missing -= 1
        if t.missing == 0 and t.state is TS.WAITING_FOR_ARGS:
            if t.spec.kind == P.ACTOR_TASK:
                # actor calls wait in their actor's queue, in order, not here
                a = self.actors.get(t.spec.actor_id)
                if a is not None:
                    self.pump_actor(a)
                else:
                    self.cs.arg_ready(t)    # a call to an actor on another node
                return
            self.make_ready(t)

    def failed_arg(self, t):
        """The serialized error of the first argument that is an error, if any."""
        objects = self.store.objects
        for a in t.spec.args:
            if a[0] == P.ARG_REF:
                o = objects.get(a[1])
                if o is None:
                    return self.lost_descriptor(a[1])[1]
                if o.is_error and o.data is not None:
                    return o.data
        return None

    def make_ready(self, t):
        if t.cancelled:
            t.move(TS.CANCELLED)
            self.finish_with_error(t, self.error_bytes(
                exceptions.TaskCancelledError(t.spec.name)))
            return
        t.move(TS.WAITING_FOR_RESOURCES)
        err = self.failed_arg(t)
        if err is not None:
            self.finish_with_error(t, err)
            return
        sched = t.spec.scheduling
        if (sched or t.spec.kind == P.ACTOR_CREATION_TASK) and \
                (self.om.nodes or sched and sched[0] == "NODE") and self.cs.route(t):
            return   # runs on another node (strategy, or resources only it has)
        if sched and sched[0] in ("PG", "NODE"):
            err = self.check_constraint(t)
            if err is not None:
                self.fail_task(t, err)
                return
            if sched[0] == "PG":
                self.ready.push(t)
                self.request_schedule()
                return
        if not self.resources.feasible(t.spec.resources):
            if self.om.forward(t):
                return   # another node has what it needs
            self.om.defer_infeasible_warning(t)
            self.infeasible.append(t)
            self.warn_infeasible()
            return
        self.ready.push(t)
        self.request_schedule()

    def warn_infeasible(self):
        for t in self.infeasible:
            if t.warned_infeasible:
                continue
            t.warned_infeasible = True
            msg = (f"Task {t.spec.name} (id {t.spec.task_id.hex()}) cannot be scheduled: "
                   f"it requires {t.spec.resources} but the cluster has "
                   f"{self.cs.cluster_total()} in total. It stays pending until a node "
                   f"with these resources joins the cluster.")
            self.gcsw.put("publish", keys.errors_channel(t.spec.job_id), msg)
            log("infeasible:", msg)

    def request_schedule(self):
        if not self.schedule_pending:
            self.schedule_pending = True
            self.loop.call_soon(self.schedule)

    def schedule(self):
        self.schedule_pending = False
        res = self.resources
        want = 0
        if self.pgs.waiting:
            self.reserve_placement_groups()
        for shape, q in self.ready.heads():
            while q:
                t = q[0]
                req = t.spec.resources
                if shape[1] is None:
                    pool = res if res.fits(req) else None
                else:
                    pool = self.constrained_pool(t)
                if pool is None:
                    break
                w = self.pool.pop_idle()
                if w is None:
                    # start workers for what could run now: as many as the free
                    # resources allow for this shape (all of them if it needs no CPU)
                    cpu = req.get("CPU", 0)
                    fit = int(pool.available.get("CPU", 0) / cpu + 1e-9) if cpu else len(q)
                    want += max(1, min(len(q), fit))
                    break
                q.popleft()
                self.ready.count -= 1
                self.dispatch(t, w, pool)
            if q and shape[1] is None:
                self.send_ahead(q)
        if want:
            self.pool.start_workers(want)

    def arg_descriptors(self, conn, spec):
        objects = self.store.objects
        out = []
        for a in spec.args:
            if a[0] == P.ARG_REF:
                o = objects.get(a[1])
                out.append(self.pin_descriptor(conn, o) if o is not None
                           else self.lost_descriptor(a[1]))
        return out

    def dispatch(self, t, w, pool):
        spec = t.spec
        t.pool = pool
        t.gpu_ids = pool.acquire(spec.resources)
        t.move(TS.RUNNING)
        t.started = time.monotonic()
        t.worker = w
        w.state = WState.BUSY
        w.task = t
        w.job_id = spec.job_id
        if spec.kind == P.ACTOR_CREATION_TASK:
            a = self.actors.get(spec.actor_id)
            if a is not None:
                a.worker = w
                w.actor = a
        w.conn.send([P.EXECUTE, spec.to_wire(), self.arg_descriptors(w.conn, spec),
                     node_gpu_ids(pool, t.gpu_ids)])

    def release_task_resources(self, t, w):
        if w is not None and w.state is WState.BLOCKED and w.lent:
            # the CPU was lent back already
            req = {k: v for k, v in t.spec.resources.items() if k not in w.lent}
            w.lent = None
        else:
            req = t.spec.resources
        (t.pool or self.resources).release(req, t.gpu_ids)
        t.gpu_ids = []

    def on_done(self, conn, msg):
        _, task_id, results, flag = msg
        w = conn.worker
        if w is None:
            return
        a = w.actor
        if a is not None and task_id in a.inflight:
            t = a.inflight.pop(task_id)
            if flag == "exit":
                self.fail_task(t, exceptions.ActorDiedError(
                    f"The actor {a.class_name} exited: exit_actor() was called in "
                    f"{t.spec.name}."))
                self.kill_actor(a, "The actor called exit_actor().", no_restart=True,
                                graceful=True)
                return
            self.complete_task(t, results)
            self.pump_actor(a)
            return
        t = w.task
        if t is None or t.spec.task_id != task_id:
            return
        w.task = None
        creation = t.spec.kind == P.ACTOR_CREATION_TASK and a is not None
        failed = any(desc_is_error(r[1]) for r in results)
        if creation and not failed and a.resources:
            # explicit resources: the actor keeps what its creation took (same
            # GPU ids, same placement-group bundle) for its whole life
            a.pool, a.gpu_ids = t.pool, t.gpu_ids
            t.gpu_ids = []
        else:
            self.release_task_resources(t, w)
        if creation:
            a.creation_task = None
            if failed:
                w.actor = None
                a.worker = None
                self.complete_task(t, results)
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
                self.complete_task(t, results)
                self.record_actor(a)
                self.pump_actor(a)
            self.request_schedule()
            return
        if t.spec.kind == P.NORMAL_TASK:
            self.fn_time[t.spec.function_key] = time.monotonic() - t.started
        if flag == "retry" and t.retries_left != 0 and not t.cancelled:
            t.retries_left -= 1
            t.move(TS.WAITING_FOR_RESOURCES)
            self.start_next(w)
            self.ready.push(t, front=True)
            self.request_schedule()
            return
        self.start_next(w)
        self.complete_task(t, results)
        self.request_schedule()

    # Pipelining of normal tasks.  A worker runs one task at a time; waiting for
    # its DONE before sending the next costs each worker a raylet round trip per
    # task.  So a busy worker whose running function is short (PIPELINE_TASK_S)
    # is sent its next task of the same resource shape ahead (w.next).  That task
    # holds no resources until the worker starts it, which the raylet knows from
    # the DONE before it (start_next).  It is asked back (REVOKE; the worker
    # answers RETURNED, returned or already started) when the worker blocks in
    # get/wait (others may run it: it may be what the worker waits for) and when
    # it is cancelled; a crash puts it back in the queue without using a retry.
    def send_ahead(self, q):
        """Give busy workers the next tasks of ready queue `q` (whose head could
        not be dispatched now)."""
        t = q[0]
        req = t.spec.resources
        if t.spec.kind != P.NORMAL_TASK or "GPU" in req:
            return   # GPU ids are handed out per task: only when it starts
        limit = config.PIPELINE_TASK_S
        fn_time = self.fn_time
        for w in self.pool.workers.values():
            cur = w.task
            if (w.next is None and w.state is WState.BUSY and w.revoking is None
                    and cur is not None and cur.spec.kind == P.NORMAL_TASK
                    and cur.spec.resources == req
                    and fn_time.get(cur.spec.function_key, limit) < limit):
                q.popleft()
                self.ready.count -= 1
                w.next = t
                t.worker = w      # state stays WAITING_FOR_RESOURCES until it starts
                self.sent_ahead += 1
                w.conn.send([P.EXECUTE, t.spec.to_wire(),
                             self.arg_descriptors(w.conn, t.spec), []])
                if not q:
                    return
                t = q[0]
                if t.spec.kind != P.NORMAL_TASK:
                    return

    def start_next(self, w):
        """`w` finished its task: it is running the task sent ahead to it now, if
        any (which takes its resources now), or else it is idle."""
        t = w.next
        if t is None:
            self.pool.make_idle(w)
            return
        w.next = None
        w.task = t
        w.job_id = t.spec.job_id
        t.pool = self.resources
        # the finished task's resources were just released, so these fit, unless
        # a blocked worker took its CPU back meanwhile: then the node is
        # oversubscribed for a moment, as in finish_getter
        t.gpu_ids = self.resources.acquire(t.spec.resources)
        t.move(TS.RUNNING)
        t.started = time.monotonic()

    def revoke(self, w):
        """Ask `w` to give back the task sent ahead to it (answer: on_returned)."""
        if w.next is not None and w.revoking is None:
            w.revoking = w.next
            w.conn.send([P.REVOKE, w.next.spec.task_id])

    def on_returned(self, conn, msg):
        _, task_id, returned = msg
        w = conn.worker
        t = w.revoking if w is not None else None
        if t is None or t.spec.task_id != task_id:
            return
        w.revoking = None
        if not returned:
            # it had started: it runs to its DONE, as any running task
            if t.cancelled and w.task is t and t.state is TS.RUNNING:
                self.interrupt(t, t.force_cancel)
            return
        # it will never run there: the arena arguments sent with it are not
        # mapped by the worker, so unpin them as its UNPIN would have
        objects = self.store.objects
        self.on_unpin(conn, [P.UNPIN, [
            a[1] for a in t.spec.args if a[0] == P.ARG_REF
            and objects.get(a[1]) is not None and objects[a[1]].data is None]])
        if w.next is t:
            w.next = None
        elif w.task is t:
            # the DONE before it came first and made it the running task
            self.release_task_resources(t, w)
            t.move(TS.WAITING_FOR_RESOURCES)
            self.pool.make_idle(w)
        else:
            return
        self.give_back(t)
        self.request_schedule()

    def give_back(self, t):
        """A task sent ahead that did not start goes back to the front of its
        queue (or ends, if it was cancelled)."""
        t.worker = None
        if t.cancelled:
            t.move(TS.CANCELLED)
            self.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
        else:
            self.ready.push(t, front=True)

    def complete_task(self, t, results):
        t.move(TS.FAILED if any(desc_is_error(r[1]) for r in results) else TS.FINISHED)
        objects = self.store.objects
        for oid, desc in results:
            o = objects.get(oid)
            if o is None:
                if desc[0] == P.ARENA:
                    # nobody wants it any more: give the space back
                    self.store.allocator.free(desc[1], desc[2])
                continue
            if desc[0] == P.INLINE:
                if o.state is ObjState.PENDING:
                    self.seal_object_inline(o, desc[1], desc[2], desc[3] if len(desc) > 3 else ())
            else:
                if o.state is ObjState.CREATING:
                    contained = desc[4] if len(desc) > 4 else ()
                    for c in contained:
                        self.incref(c)
                    waiters = self.store.seal_arena(o, desc[3], contained)
                    if o.refcount <= 0:
                        self.free(o)
                    self.seal_waiters(waiters)
        self.task_ended(t)

    def task_ended(self, t):
        self.tasks.pop(t.spec.task_id, None)
        self.gcsw.task_event(t)
        held, t.held = t.held, []
        for oid in held:
            self.decref(oid)
        if self.om.from_peer and t.spec.task_id in self.om.from_peer:
            self.om.task_ended(t)   # a peer's task: send it the results

    def fail_task(self, t, err):
        self.finish_with_error(t, self.error_bytes(err))

    def finish_with_error(self, t, data):
        if t.state not in (TS.FAILED, TS.CANCELLED):
            t.move(TS.FAILED)
        objects = self.store.objects
        for oid in t.spec.return_ids():
            o = objects.get(oid)
            if o is not None and o.state is ObjState.PENDING:
                self.seal_object_inline(o, data, True, ())
        self.task_ended(t)
        if t.spec.kind == P.ACTOR_CREATION_TASK:
            a = self.actors.get(t.spec.actor_id)
            if a is not None and a.state != "DEAD" and a.creation_task is t:
                a.creation_task = None
                cause = "The actor's creation failed."
                try:
                    cause += " " + str(serialization.deserialize(data))
                except Exception:
                    pass
                self.actor_died(a, cause, restart=False)

    def fail_queued(self, err):
        for shape, q in self.ready.heads():
            while q:
                t = q.popleft()
                self.ready.count -= 1
                self.fail_task(t, err)
