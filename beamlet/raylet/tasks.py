"""The raylet's local task scheduler: submission, dependencies, the ready queue,
dispatch onto workers, sending short tasks ahead, completion, failure, cancel.

Owns: the tasks of this node not yet finished (task id -> Task), the ready queue
  (ReadyQueue: one FIFO per resource shape) and the infeasible list, the
  function run times that decide sending ahead, and a Worker's task fields
  (task / ahead / revoking / lent: what a worker runs, see worker_pool.py).
  Task states and their transition table are the pure scheduler.py; so are
  the node's resources (ResourceSet), which this scheduler hands out and which
  placement constraints and cluster placement reserve bundles from.
Uses: ObjectStore (refs, waiting for arguments, argument descriptors, sealing
  results); WorkerPool (idle workers, starting more, signals); Actors (calls
  and creation of actors: submit_call / created / bind_worker / call_done /
  creation_done / creation_failed / worker_lost); Constraints (placement
  groups and node affinity here: check / pool_for / reserve_pending);
  ObjectManager (forward a task no resource here fits, want an argument held
  on another node, a peer's task ended, cancel a forwarded task);
  ClusterScheduler (route: a strategy or an actor's resources point elsewhere;
  the cluster's total for the infeasible warning); NodeTable (whether other
  nodes exist); GcsWriter (task events, warnings); Streams (a generator task's
  stream: opened at submission, told of dispatches and ends).
Messages: SUBMIT, DONE, RETURNED, RESUBMIT (a direct actor call whose link broke:
  handed to the actors), BLOCK / UNBLOCK (a worker waits for a direct call's
  result); the "cancel" call (recursive: the tasks each cancelled task
  submitted, by TaskSpec.parent).
"""
import collections
import signal
import time


from .. import exceptions
from .._private import config, ids, process
from .._private import protocol as P
from .._private.pending import Reason, reason
from .._private.state_rows import error_type
from ..gcs import keys
from .common import desc_is_error, error_bytes, log, node_gpu_ids, scheduled_resources
from .object_store import ObjState
from .scheduler import ReadyQueue, Task, TaskState
from .worker_pool import WState

# The components it uses (Actors, ClusterScheduler, Constraints, GcsWriter, NodeTable,
# ObjectManager, ObjectStore, PlacementGroups, ResourceSet, Streams, WorkerPool) are
# named in annotations only, as strings: the shell (raylet.py) wires them together, so
# their modules need not import each other (no import circle).

TS = TaskState


class LocalScheduler:
    INTERFACE = (
        "wire",     # (the shell, once)
        # messages and calls
        "on_submit", "on_resubmit", "on_done", "on_returned", "call_cancel",
        "on_block", "on_unblock",
        "start",
        # scheduling
        "request_schedule", "track", "has_task", "push_ready", "dequeue",
        "execute_msg",
        "add_infeasible", "is_infeasible", "drop_infeasible", "place_infeasible",
        "warn_infeasible", "offload", "backlog",
        # ends of tasks
        "complete_task", "fail_task", "finish_with_error", "task_ended",
        "release_task_resources", "fail_queued", "fail_placement_group_tasks",
        "notify_end",
        # workers
        "worker_lost", "workers_fail_to_start", "block_worker", "unblock_worker",
        "job_finished",
        # reports
        "demand", "heartbeat_demand", "infeasible_report", "sent_ahead_count",
        "held_refs",
        # the state API and pending reasons (read only; introspection.py)
        "all_tasks", "task", "pending_reason", "resource_holders", "queue_heads",
    )

    def __init__(self, resources: "ResourceSet", session_dir: str):
        self.resources = resources
        self.session_dir = session_dir
        self.ready = ReadyQueue()
        self.infeasible = []
        self.tasks = {}          # task_id -> Task (not yet finished)
        self.fn_time = {}        # fn key -> how long its last task ran (send_ahead)
        self.blocking_fns = set()   # fn keys whose tasks blocked in get/wait
        self.sent_ahead = 0      # tasks sent ahead so far (reported by "status")
        self.end_watch = set()   # ids of tasks whose end the object manager hears of
        self.schedule_pending = False
        self.loop = None

    def wire(self, store: "ObjectStore", pool: "WorkerPool", actors: "Actors",
             constraints: "Constraints", om: "ObjectManager", cs: "ClusterScheduler",
             node_table: "NodeTable", gcs: "GcsWriter", pgs: "PlacementGroups",
             streams: "Streams") -> None:
        self.store = store
        self.streams = streams
        self.pool = pool
        self.actors = actors
        self.constraints = constraints
        self.om = om
        self.cs = cs
        self.node_table = node_table
        self.pgs = pgs
        self.put_gcs = gcs.put
        self.task_event = gcs.task_event
        # bound once: called per task or per argument
        self.obj_get = store.get
        self.obj_get_or_create = store.get_or_create
        self.om_want = om.want

    def start(self, loop) -> None:
        self.loop = loop

    # ------------------------------------------------------------------ tasks
    def on_submit(self, conn, msg):
        t = self.new_task(conn, P.TaskSpec.from_wire(msg[1]))
        spec = t.spec
        if spec.kind == P.ACTOR_TASK:
            self.actors.submit_call(t)
            return
        self.tasks[spec.task_id] = t
        if spec.kind == P.ACTOR_CREATION_TASK:
            self.actors.created(t, conn)
        if t.missing == 0:
            self.make_ready(t)

    def on_resubmit(self, conn, msg):
        """A direct actor call that got no answer before its link broke (its
        worker died): the actors decide, as for their in-flight calls."""
        t = self.new_task(conn, P.TaskSpec.from_wire(msg[1]))
        self.actors.resubmitted(t, msg[2])

    def new_task(self, conn, spec):
        """A Task for `spec` from `conn`: its results counted as the submitter's
        refs, its ref arguments held, and waited for if they are not here yet."""
        t = Task(spec)
        get = self.obj_get
        get_or_create = self.obj_get_or_create
        for oid in spec.return_ids():
            o = get_or_create(oid, t)
            o.refcount += 1
            conn.refs[oid] += 1
        if spec.num_returns == P.STREAMING:
            self.streams.open(conn, t)
        for a in spec.args:
            if a[0] == P.ARG_VALUE:
                for oid in a[2]:   # refs nested in a by-value argument
                    o = get(oid)
                    if o is not None:
                        o.refcount += 1
                        t.held.append(oid)
                continue
            oid = a[1]
            o = get(oid)
            if o is None:
                if not self.node_table.multi:
                    continue
                o = self.om.locate(oid)   # another node may have it (GCS)
            o.refcount += 1
            t.held.append(oid)
            if o.state is ObjState.PENDING or o.state is ObjState.CREATING:
                t.missing += 1
                o.waiters.append(lambda t=t: self.arg_ready(t))
                self.om_want(oid)     # a proxy of an object on another node: pull it
            elif o.state is ObjState.SPILLED and \
                    self.store.request_restore(o, prefetch=True):
                # being restored off the loop (there was free room); without
                # room it is restored when the task is dispatched
                t.missing += 1
                o.waiters.append(lambda t=t: self.arg_ready(t))
        return t

    def on_block(self, conn, msg):
        """A worker waits for a direct call's result (as in a GET: lend its CPU)."""
        if conn.worker is not None:
            self.block_worker(conn.worker)

    def on_unblock(self, conn, msg):
        if conn.worker is not None:
            self.unblock_worker(conn.worker)

    def track(self, t) -> None:
        """`t` (an actor call or creation made elsewhere) is a task of this node now."""
        self.tasks[t.spec.task_id] = t

    def has_task(self, task_id) -> bool:
        return task_id in self.tasks

    def held_refs(self):
        """(oid, who) for each ref a pending task holds (`beamlet memory`)."""
        return [(oid, f"task {t.spec.name} ({t.state.value})")
                for t in self.tasks.values() for oid in t.held]

    def notify_end(self, task_id) -> None:
        """Tell the object manager when task `task_id` ends (a peer's task)."""
        self.end_watch.add(task_id)

    def arg_ready(self, t):
        t.missing -= 1
        if t.missing == 0 and t.state is TS.WAITING_FOR_ARGS:
            if t.spec.kind == P.ACTOR_TASK:
                # actor calls wait in their actor's queue, in order, not here
                self.actors.arg_ready(t)
                return
            self.make_ready(t)

    def make_ready(self, t):
        if t.cancelled:
            t.move(TS.CANCELLED)
            self.finish_with_error(t, error_bytes(
                exceptions.TaskCancelledError(t.spec.name)))
            return
        t.move(TS.WAITING_FOR_RESOURCES)
        err = self.store.failed_arg(t.spec)
        if err is not None:
            self.finish_with_error(t, err)
            return
        sched = t.spec.scheduling
        if (sched or t.spec.kind == P.ACTOR_CREATION_TASK) and \
                (self.node_table.nodes or sched and sched[0] == "NODE") and \
                self.cs.route(t):
            return   # runs on another node (strategy, or resources only it has)
        if sched and sched[0] in ("PG", "NODE"):
            err = self.constraints.check(t)
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
        self.ready.push(t, front=t.urgent)
        self.request_schedule()

    def push_ready(self, t, front=False) -> None:
        """`t` (WAITING_FOR_RESOURCES) waits for resources here."""
        self.ready.push(t, front=front)
        self.request_schedule()

    def dequeue(self, t) -> bool:
        """Take `t` out of the ready queue or the infeasible list; whether it was there."""
        queued = self.ready.remove(t)
        if t in self.infeasible:
            self.infeasible.remove(t)
            queued = True
        return queued

    # ------------------------------------------------------------------ infeasible
    def add_infeasible(self, t) -> None:
        self.infeasible.append(t)

    def is_infeasible(self, t) -> bool:
        return t in self.infeasible

    def drop_infeasible(self, t) -> None:
        self.infeasible.remove(t)

    def place_infeasible(self, place) -> None:
        """Offer each infeasible task to `place(t)`; those it placed leave the list."""
        for t in list(self.infeasible):
            if place(t):
                self.infeasible.remove(t)

    def warn_infeasible(self):
        for t in self.infeasible:
            if t.warned_infeasible:
                continue
            t.warned_infeasible = True
            msg = (f"Task {t.spec.name} (id {t.spec.task_id.hex()}) cannot be scheduled: "
                   f"it requires {t.spec.resources} but the cluster has "
                   f"{self.cs.cluster_total()} in total. It stays pending until a node "
                   f"with these resources joins the cluster.")
            self.put_gcs("publish", keys.errors_channel(t.spec.job_id), msg)
            log("infeasible:", msg)

    # ------------------------------------------------------------------ backlog
    def backlog(self) -> int:
        """Tasks waiting for resources here."""
        return self.ready.count

    def offload(self, take) -> None:
        """Offer the tasks at the back of each ready FIFO, newest first, to
        `take(t)` (which sends them to another node); each FIFO until it declines."""
        for shape, q in self.ready.heads():
            while q:
                if not take(q[-1]):
                    break
                q.pop()
                self.ready.count -= 1

    def demand(self) -> list:
        return self.ready.demand()

    def heartbeat_demand(self) -> list:
        return self.ready.demand() + [
            {"resources": t.spec.resources, "count": 1, "infeasible": True}
            for t in self.infeasible]

    def infeasible_report(self) -> list:
        return [{"task": t.spec.name, "resources": t.spec.resources}
                for t in self.infeasible]

    def sent_ahead_count(self) -> int:
        return self.sent_ahead

    # ------------------------------------------------------------------ state API
    # Read only, computed when asked (a `beamlet list`, a stuck get's diagnosis),
    # never on the paths every task takes.
    def all_tasks(self) -> list:
        """Every task of this node not yet ended (normal tasks, actor creations,
        calls of the actors here)."""
        return list(self.tasks.values())

    def task(self, task_id):
        return self.tasks.get(task_id)

    def queue_heads(self) -> list:
        """The first task of each ready FIFO (a resource shape) and of each shape
        of the infeasible list."""
        out = [q[0] for _shape, q in self.ready.heads()]
        seen = set()
        for t in self.infeasible:
            key = tuple(sorted(t.spec.resources.items()))
            if key not in seen:
                seen.add(key)
                out.append(t)
        return out

    def pending_reason(self, t):
        """Why `t` (a normal task or an actor creation of this node) is not
        running, as this scheduler sees it (pending.py's vocabulary); None if it
        runs or ended."""
        st, spec = t.state, t.spec
        req = spec.resources
        if st is TS.WAITING_FOR_ARGS:
            oid = self.store.pending_arg(spec)
            if oid is not None:
                return self.om.arg_reason(oid) or reason(
                    Reason.WAITING_FOR_ARGS, object_id=oid.hex())
            return None
        if st is TS.FORWARDED:
            return reason(Reason.FORWARDED, node_id=self.om.forwarded_to(spec.task_id))
        if st is not TS.WAITING_FOR_RESOURCES:
            return None
        w = t.worker
        if w is not None:
            cur = w.task
            return reason(Reason.QUEUED_ON_WORKER, worker_pid=w.pid,
                          behind=cur.spec.name if cur is not None else "?")
        if t in self.infeasible:
            return reason(Reason.INFEASIBLE, required=dict(req),
                          cluster_total=scheduled_resources(self.cs.cluster_total()))
        sched = spec.scheduling
        if sched and sched[0] == "PG":
            return self.constraints.pg_reason(t)
        node = self.pool.node_id.hex()
        if self.resources.fits(req):
            return reason(Reason.WAITING_FOR_WORKER, node_id=node,
                          starting=self.pool.starting_count())
        return reason(Reason.WAITING_FOR_RESOURCES, required=dict(req), node_id=node,
                      available=scheduled_resources(self.resources.snapshot()),
                      total=scheduled_resources(self.resources.total))

    def resource_holders(self) -> list:
        """(the ResourceSet it took them from, holder) for each running task of
        this node that holds resources (a worker blocked in get holds no CPU)."""
        out = []
        for w in self.pool.all():
            t = w.task
            if t is None or t.state is not TS.RUNNING or t.pool is None:
                continue
            res = dict(t.spec.resources)
            if w.lent:
                for k in w.lent:
                    res.pop(k, None)
            res = {k: v for k, v in res.items() if v}
            if not res:
                continue
            creation = t.spec.kind == P.ACTOR_CREATION_TASK
            out.append((t.pool, {
                "kind": "actor" if creation else "task",
                "name": t.spec.name, "pid": w.pid, "resources": res,
                "id": (t.spec.actor_id if creation else t.spec.task_id).hex(),
                "creating": creation,
                "call_site": (t.spec.actor_options or {}).get("call_site")
                if creation else None}))
        return out

    # ------------------------------------------------------------------ scheduling
    def request_schedule(self):
        if not self.schedule_pending:
            self.schedule_pending = True
            self.loop.call_soon(self.schedule)

    def schedule(self):
        self.schedule_pending = False
        res = self.resources
        want = {}    # runtime env key -> workers that could start work now
        want_job = b""
        if self.pgs.waiting:
            self.constraints.reserve_pending()
        for shape, q in self.ready.heads():
            while q:
                t = q[0]
                req = t.spec.resources
                if shape[1] is None:
                    pool = res if res.fits(req) else None
                else:
                    pool = self.constraints.pool_for(t)
                if pool is None:
                    break
                env = shape[2]      # workers are pooled by runtime environment
                w = self.pool.pop_idle(env)
                if w is None:
                    # start workers for what could run now: as many as the free
                    # resources allow for this shape (all of them if it needs no CPU)
                    cpu = req.get("CPU", 0)
                    fit = int(pool.available.get("CPU", 0) / cpu + 1e-9) if cpu else len(q)
                    want[env] = want.get(env, 0) + max(1, min(len(q), fit))
                    want_job = t.spec.job_id
                    break
                q.popleft()
                self.ready.count -= 1
                self.dispatch(t, w, pool)
            if q and shape[1] is None:
                self.send_ahead(q)
        for env, n in want.items():
            self.pool.start_workers(n, want_job, env)

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
            self.actors.bind_worker(spec.actor_id, w)
        w.conn.send(self.execute_msg(spec, w.conn, node_gpu_ids(pool, t.gpu_ids)))

    def execute_msg(self, spec, conn, gpu_ids) -> list:
        """The EXECUTE of `spec` for the worker on `conn` (its arena arguments
        pinned for it; a generator task's: how many values to skip, stored by an
        attempt it retries)."""
        msg = [P.EXECUTE, spec.to_wire(), self.store.arg_descriptors(conn, spec),
               gpu_ids]
        if spec.num_returns == P.STREAMING:
            skip = self.streams.dispatched(spec.task_id, conn)
            if skip:
                msg.append(skip)
        return msg

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
        if a is not None and self.actors.call_done(a, task_id, results, flag):
            return
        t = w.task
        if t is None or t.spec.task_id != task_id:
            return
        w.task = None
        if t.spec.kind == P.ACTOR_CREATION_TASK and a is not None:
            self.actors.creation_done(a, w, t, results)
            self.request_schedule()
            return
        self.release_task_resources(t, w)
        if t.spec.kind == P.NORMAL_TASK:
            key = t.spec.function_key
            if key not in self.blocking_fns:
                self.fn_time[key] = time.monotonic() - t.started
        if flag == "retry" and t.retries_left != 0 and not t.cancelled:
            t.retries_left -= 1
            t.move(TS.WAITING_FOR_RESOURCES)
            self.start_next(w)
            self.ready.push(t, front=True)
            self.request_schedule()
            return
        # ended before the task sent ahead starts (in that order on the clock:
        # the timeline's spans of one worker never overlap)
        self.complete_task(t, results)
        self.start_next(w)
        self.request_schedule()

    # Pipelining of normal tasks.  A worker runs one task at a time; waiting for
    # its DONE before sending the next costs each worker a raylet round trip per
    # task.  So a busy worker whose running function is short (PIPELINE_TASK_S)
    # is sent its next tasks of the same resource shape ahead (w.ahead, at most
    # PIPELINE_DEPTH, in order).  Those hold no resources until the worker starts
    # them, which the raylet knows from the DONE before each (start_next).  They
    # are asked back (REVOKE; the worker answers RETURNED, returned or already
    # started) when the worker blocks in get/wait (others may run them: one may
    # be what the worker waits for) and when one is cancelled; a crash puts them
    # back in the queue without using a retry.
    def send_ahead(self, q):
        """Give busy workers the next tasks of ready queue `q` (whose head could
        not be dispatched now)."""
        t = q[0]
        req = t.spec.resources
        if t.spec.kind != P.NORMAL_TASK or "GPU" in req:
            return   # GPU ids are handed out per task: only when it starts
        limit, depth = config.PIPELINE_TASK_S, config.PIPELINE_DEPTH
        fn_time = self.fn_time
        for w in self.pool.all():
            cur = w.task
            if not (len(w.ahead) < depth and w.state is WState.BUSY
                    and not w.revoking and cur is not None
                    and cur.spec.kind == P.NORMAL_TASK
                    and cur.spec.resources == req and w.env == t.spec.runtime_env
                    and fn_time.get(cur.spec.function_key, limit) < limit):
                continue
            # only tasks of functions known to be short go ahead (so the ones
            # behind each are short too): one that blocks in get, as a parent
            # of nested tasks, would make the worker give back those behind it
            while len(w.ahead) < depth and \
                    fn_time.get(t.spec.function_key, limit) < limit:
                q.popleft()
                self.ready.count -= 1
                w.ahead.append(t)
                t.worker = w      # state stays WAITING_FOR_RESOURCES until it starts
                self.sent_ahead += 1
                w.conn.send(self.execute_msg(t.spec, w.conn, []))
                if not q:
                    return
                t = q[0]
                if t.spec.kind != P.NORMAL_TASK:
                    return

    def start_next(self, w):
        """`w` finished its task: it is running the task sent ahead to it now, if
        any (which takes its resources now), or else it is idle."""
        if not w.ahead:
            self.pool.make_idle(w)
            return
        t = w.ahead.popleft()
        w.task = t
        w.job_id = t.spec.job_id
        t.pool = self.resources
        # the finished task's resources were just released, so these fit, unless
        # a blocked worker took its CPU back meanwhile: then the node is
        # oversubscribed for a moment, as in unblock_worker
        t.gpu_ids = self.resources.acquire(t.spec.resources)
        t.move(TS.RUNNING)
        t.started = time.monotonic()

    def revoke(self, w, only=None):
        """Ask `w` to give back the tasks sent ahead to it, or only task `only`
        (answers: on_returned)."""
        for t in list(w.ahead) if only is None else [only]:
            if t not in w.revoking:
                w.revoking.append(t)
                w.conn.send([P.REVOKE, t.spec.task_id])

    def on_returned(self, conn, msg):
        _, task_id, returned = msg
        w = conn.worker
        t = next((r for r in w.revoking if r.spec.task_id == task_id), None) \
            if w is not None else None
        if t is None:
            return
        w.revoking.remove(t)
        if not returned:
            # it had started: it runs to its DONE, as any running task
            if t.cancelled and w.task is t and t.state is TS.RUNNING:
                self.interrupt(t, t.force_cancel)
            return
        # it will never run there: the arena arguments sent with it are not
        # mapped by the worker, so unpin them as its UNPIN would have
        get = self.obj_get
        self.store.unpin(conn, [
            a[1] for a in t.spec.args if a[0] == P.ARG_REF
            and get(a[1]) is not None and get(a[1]).data is None])
        if t in w.ahead:
            w.ahead.remove(t)
        elif w.task is t:
            # the DONE before it came first and made it the running task: the
            # worker runs the next one sent ahead, if any (it did not return
            # that one: the worker takes them in order), or is idle
            w.task = None
            self.release_task_resources(t, w)
            t.move(TS.WAITING_FOR_RESOURCES)
            self.start_next(w)
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

    # ------------------------------------------------------------------ blocked workers
    def block_worker(self, w, waiting_for=()) -> bool:
        """ObjectStore hook: `w` waits in get/wait for `waiting_for`.  If it runs
        a task, its CPU is lent back meanwhile, so that nested tasks can run;
        True if so.  The tasks making what it waits for go first in the queue:
        the lent CPU runs what unblocks it, not the next task of the queue
        (which could block too: a worker each, issue 16)."""
        if w.state is not WState.BUSY or w.task is None:
            return False
        self.prefer_producers(waiting_for)
        # a function whose tasks wait for others is never sent ahead, nor are
        # tasks sent ahead behind it (short as it may be once they are done)
        key = w.task.spec.function_key
        self.blocking_fns.add(key)
        self.fn_time.pop(key, None)
        w.state = WState.BLOCKED
        if w.ahead:
            self.revoke(w)   # others may run them (one may be what w waits for)
        t = w.task
        w.lent = {k: v for k, v in t.spec.resources.items() if k == "CPU"}
        if w.lent:
            self.resources.release(w.lent, [])
        self.request_schedule()
        return True

    def prefer_producers(self, oids) -> None:
        """The queued tasks of this node that make `oids` move to the front of
        their queue (in the order of `oids`); those still waiting for their
        own arguments will be queued at the front."""
        get = self.obj_get
        for oid in reversed(oids):
            o = get(oid)
            t = o.owner_task if o is not None and o.state is ObjState.PENDING else None
            if t is None or t.spec.kind != P.NORMAL_TASK:
                continue
            if t.state is TS.WAITING_FOR_RESOURCES and t.worker is None:
                self.ready.to_front(t)
            elif t.state is TS.WAITING_FOR_RESOURCES and t in t.worker.ahead:
                # sent ahead behind other tasks: asked back, to run on the CPU
                # being lent now (unless that worker starts it first)
                self.revoke(t.worker, t)
            elif t.state is TS.WAITING_FOR_ARGS:
                t.urgent = True

    def unblock_worker(self, w) -> None:
        """ObjectStore hook: the wait of blocked `w` ended."""
        if w.state is WState.BLOCKED:
            w.state = WState.BUSY
            if w.lent:
                # take the CPU back (may oversubscribe for a moment, as Ray does)
                self.resources.acquire(w.lent)
                w.lent = None

    # ------------------------------------------------------------------ ends
    def complete_task(self, t, results):
        ran_here = t.state is not TS.FORWARDED
        t.move(TS.FAILED if any(desc_is_error(r[1]) for r in results) else TS.FINISHED)
        self.store.seal_results(results)
        if ran_here and t.spec.num_returns == P.STREAMING:
            # (one run elsewhere: that node relays its stream's end)
            self.streams.task_done(t, results)
        self.task_ended(t)

    def task_ended(self, t):
        tid = t.spec.task_id
        self.tasks.pop(tid, None)
        self.task_event(t)
        held, t.held = t.held, []
        decref = self.store.decref
        for oid in held:
            decref(oid)
        if self.end_watch and tid in self.end_watch:
            self.end_watch.discard(tid)
            self.om.task_ended(t)   # a peer's task: send it the results

    def fail_task(self, t, err):
        t.error_type = error_type(type(err).__name__)   # (for the state API)
        self.finish_with_error(t, error_bytes(err))

    def finish_with_error(self, t, data):
        if t.state not in (TS.FAILED, TS.CANCELLED):
            t.move(TS.FAILED)
        get = self.obj_get
        for oid in t.spec.return_ids():
            o = get(oid)
            if o is not None and o.state is ObjState.PENDING:
                self.store.seal_inline(o, data, True, ())
        if t.spec.num_returns == P.STREAMING:
            self.streams.task_failed(t, data)     # its error: the stream's last item
        self.task_ended(t)
        if t.spec.kind == P.ACTOR_CREATION_TASK:
            self.actors.creation_failed(t, data)

    def fail_queued(self, err):
        for shape, q in self.ready.heads():
            while q:
                t = q.popleft()
                self.ready.count -= 1
                self.fail_task(t, err)

    def fail_placement_group_tasks(self, pg_id, why):
        """Group `pg_id` is removed: its queued tasks fail, its running ones are
        killed (and not retried)."""
        for shape, q in self.ready.heads():
            if shape[1] is not None and shape[1][0] == "PG" and shape[1][1] == pg_id:
                while q:
                    t = q.popleft()
                    self.ready.count -= 1
                    self.fail_task(t, exceptions.TaskUnschedulableError(
                        f"{t.spec.name} cannot run: {why}."))
        for w in list(self.pool.all()):
            t = w.task
            if t is not None and w.actor is None and t.spec.scheduling and \
                    t.spec.scheduling[0] == "PG" and t.spec.scheduling[1] == pg_id:
                t.retries_left = 0
                t.cancelled = True
                self.pool.signal(w, signal.SIGKILL)

    # ------------------------------------------------------------------ workers
    def workers_fail_to_start(self, err):
        """WorkerPool callback: a worker died before connecting; `err` once they
        keep failing (then the queued tasks fail with it)."""
        if err is not None:
            self.fail_queued(err)
        else:
            self.request_schedule()

    def worker_lost(self, w, how):
        """`w` exited or crashed (`how`): its task is retried or fails; an actor's
        worker: the actor restarts or dies."""
        ahead, w.ahead, w.revoking = w.ahead, collections.deque(), []
        if w.oom is not None:
            how = f"was killed by the memory monitor: {w.oom.rstrip('.')}"
        for t in reversed(ahead):
            # sent ahead, never started (the DONE before each would have come
            # first): back to the queue in order without using a retry, behind
            # the crashed task (pushed to the front below)
            self.give_back(t)
        if w.actor is not None:
            self.actors.worker_lost(w.actor, w, how)
        elif w.task is not None:
            t = w.task
            w.task = None
            self.release_task_resources(t, w)
            if t.cancelled:
                self.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
            elif t.retries_left != 0:
                t.retries_left -= 1
                t.move(TS.WAITING_FOR_RESOURCES)
                self.ready.push(t, front=True)
            elif w.oom is not None:
                self.fail_task(t, exceptions.OutOfMemoryError(
                    f"{w.oom} It has no retries left "
                    f"(max_retries={t.spec.max_retries})."))
            else:
                self.fail_task(t, exceptions.WorkerCrashedError(
                    f"The worker running {t.spec.name} (pid={w.pid}) {how} while "
                    f"running it, and the task has no retries left "
                    f"(max_retries={t.spec.max_retries})."))
        self.request_schedule()

    # ------------------------------------------------------------------ cancel
    def call_cancel(self, conn, oid, force, recursive):
        """cancel() of the task that makes `oid` (a normal task or an actor call)
        and, `recursive`, of the tasks it submitted, theirs, ... (as in Ray: force
        is not passed on to actor calls).  Returns whether the task was found; a
        string when it is refused (force=True on an actor call, as Ray does)."""
        t = self.tasks.get(ids.task_of(oid))
        if t is None:
            return False
        if force and t.spec.kind == P.ACTOR_TASK:
            return (f"force=True is not supported for actor tasks (cancel() of "
                    f"{t.spec.name}): use kill(actor) to end the actor.")
        todo = [t]
        seen = set()
        while todo:
            t = todo.pop()
            tid = t.spec.task_id
            if tid in seen:
                continue
            seen.add(tid)
            self.cancel_task(t, force and t.spec.kind == P.NORMAL_TASK, recursive)
            if recursive:
                todo.extend(c for c in self.tasks.values() if c.spec.parent == tid)
        return True

    def cancel_task(self, t, force, recursive):
        if t.state in (TS.FINISHED, TS.FAILED, TS.CANCELLED):
            return
        t.cancelled = True
        err = exceptions.TaskCancelledError(t.spec.name)
        w = t.worker
        if t.state is TS.FORWARDED:
            self.om.cancel(t, force, recursive)   # it runs on another node: there
        elif t.spec.kind == P.ACTOR_TASK:
            self.actors.cancel_call(t)
        elif t.state is TS.WAITING_FOR_RESOURCES and w is not None and t in w.ahead:
            # sent ahead to a busy worker: ask it back (on_returned ends it, or
            # interrupts it if it had started meanwhile)
            t.force_cancel = force
            self.revoke(w, t)
        elif t.state is TS.WAITING_FOR_RESOURCES and self.dequeue(t):
            # (queued or infeasible: both lists)
            t.move(TS.CANCELLED)
            self.fail_task(t, err)
        elif t.state is TS.WAITING_FOR_ARGS:
            t.move(TS.CANCELLED)
            self.fail_task(t, err)
        elif t.state is TS.RUNNING and t.worker is not None:
            self.interrupt(t, force)

    def job_finished(self, job_id) -> None:
        """The job's driver is gone: the job's normal tasks submitted on this
        node stop, queued or running (their workers are killed), and are not
        retried, as Ray does.  Spared: those a detached actor submitted (it
        outlives the job), and tasks a peer sent (their sender cancels them)."""
        ran_for_peer = self.om.ran_for_peer
        worker = self.pool.get
        for t in list(self.tasks.values()):
            spec = t.spec
            if spec.job_id != job_id or spec.kind != P.NORMAL_TASK or \
                    ran_for_peer(spec.task_id):
                continue
            caller = worker(spec.caller)
            if caller is not None and caller.actor is not None and caller.actor.detached:
                continue
            t.retries_left = 0
            if t in self.infeasible:
                self.infeasible.remove(t)
                t.cancelled = True
                t.move(TS.CANCELLED)
                self.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
            else:
                self.call_cancel(None, ids.return_id(spec.task_id, 1), True, False)

    def interrupt(self, t, force):
        """cancel() of a running normal task: SIGINT (or SIGKILL) its worker."""
        if force:
            self.pool.signal(t.worker, signal.SIGKILL)
        else:
            # name the task first: the signal may reach the worker before it
            # starts the task, or after it finished it (see worker/main.py)
            path = process.cancel_file(self.session_dir, t.worker.worker_id.hex())
            with open(path, "w") as f:
                f.write(t.spec.task_id.hex())
            self.pool.signal(t.worker, signal.SIGINT)
