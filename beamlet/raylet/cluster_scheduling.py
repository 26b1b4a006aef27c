"""Cross-node scheduling decisions of a raylet: actors on other nodes, SPREAD and
node affinity, placement groups whose bundles live on several nodes.

The pure choices (which node) are in beamlet/scheduler/placement.py; this module
moves tasks and keeps the state.  It works on top of the object manager's links
and forwarding (object_manager.py): a task placed on another node travels as a
FORWARD and its results come back as a TASK_DONE, as any forwarded task.  On a
single node (no peers) none of this runs: every hook returns at once.

Actors on another node
    node A (owner: where the actor      node B (host)            node C (caller)
    was created, holds its handle)
    creation infeasible here ──ACTOR_CREATE──► runs the actor;
    (or strategy says B)                      keeps it while A holds
                                              its creation object
    calls: Route(actor) ──FORWARD, in order──► actor queue ◄──FORWARD── Route(actor)
                                                                (location from
                                                                 the GCS record)
  A caller's raylet keeps one `Route` per remote actor: its calls wait there, in
  submission order, until their arguments are local, then go to the host through
  the object manager's ordered outbox per node (so a caller's calls reach the
  actor in order).  The owner also decides what happens when the host node dies:
  restart the actor elsewhere (max_restarts) or declare it dead; callers then
  re-read its location.
  kill() and a job's end reach the host as ACTOR_KILL.

Placement groups across nodes
  The creating raylet (owner) places every bundle with place_bundles() over the
  node table (its own resources exactly, the others' as of their last heartbeat),
  reserves its own bundles and asks each other node to reserve its share
  (PG_RESERVE); when all say yes the group is CREATED, else every share is undone
  (PG_CANCEL) and it retries later.  A task in the group runs on its bundle's node
  (forwarded there if needed).  Removal (PG_REMOVE) reaches every node.

Owns: this node's view of actors on other nodes (RemoteActor: where each lives,
  the calls waiting to be sent there in order, and, for actors created here,
  what the owner needs to restart them), the turns of SPREAD and of
  placement-group bundles, and the placement groups being reserved on other
  nodes.
Uses: NodeTable (the other nodes); ObjectManager (links, forwarding tasks and
  their arguments, remote refs, running a peer's task); LocalScheduler
  (tracking, queueing and failing tasks, its demand); Actors (an actor moving
  to or from this node, calls for an actor that lives here now, kills);
  Constraints (a group's record, removal, constraint checks); ObjectStore
  (refs, a group's ready object); the node's ResourceSet and the
  PlacementGroups (pure, shared with the scheduler and the constraints);
  GcsWriter (actor records) and the GcsClient (actor and group records).
Messages: (raylet <-> raylet, protocol.py) PEER_ACTOR_CREATE, PEER_ACTOR_KILL,
  PEER_PG_RESERVE, PEER_PG_RESERVED, PEER_PG_CANCEL, PEER_PG_REMOVE (the
  object manager hands them over).
"""
import asyncio
import collections
import json
import sys
import time


from .. import exceptions
from .._private import ids, serialization
from .._private import protocol as P
from .._private.pending import Reason, reason
from ..gcs import keys
from ..scheduler.placement import choose_node, place_bundles, spread_node
from .actors import Actor
from .object_store import ObjState
from .placement_groups import PlacementGroup, PGState
from .scheduler import ResourceSet, Task, TaskState as TS

# The components it uses (Actors, Constraints, GcsWriter, NodeTable, ObjectManager,
# ObjectStore, PlacementGroups, LocalScheduler) are named in annotations only, as
# strings: the shell (raylet.py) wires them together, so their modules need not import
# each other (no import circle).

PG_RETRY_S = 0.5        # a group that could not be placed is tried again after this
NODE_WAIT_S = 1.0       # how long an affinity task waits for a node we do not know
RESOLVE_TIMEOUT_S = 60.0


def log(*a):
    print(time.strftime("%H:%M:%S"), "cluster_scheduling:", *a, file=sys.stderr, flush=True)



def take_retry(t) -> bool:
    """Spend one of an actor call's retries (-1: unlimited) and make it wait to be
    sent again; False if it has none left or was cancelled."""
    if t.retries_left == 0 or t.cancelled:
        return False
    if t.retries_left > 0:
        t.retries_left -= 1
    t.state = TS.WAITING_FOR_ARGS
    return True

class RemoteActor:
    """This node's view of an actor that lives on another node."""

    def __init__(self, actor_id):
        self.actor_id = actor_id
        self.node = None            # host node (hex) once known
        self.queue = collections.deque()   # calls not yet sent, in order
        self.dead = None            # death cause once known dead
        self.resolving = False
        self.pending_kill = None    # a kill(no_restart) to send once located
        # owner side only (this node created it):
        self.spec = None            # its creation TaskSpec
        self.held = []              # constructor ref args, kept for restarts
        self.keepalive = False      # named/detached: this node keeps a ref
        self.restarts_left = 0
        self.creation_task = None   # the creation Task while it is forwarded


class ClusterScheduler:
    INTERFACE = (
        "wire",     # (the shell, once)
        "on_peer", "tick",
        # the local scheduler's and the actors' hooks
        "route", "actor_call", "arg_ready", "cluster_total", "cancel_queued",
        # the object manager's hooks
        "retry", "node_died",
        # the constraints' hooks
        "pg_forward", "reserve_pending", "pg_feasible", "pg_removed",
        "pg_remove_unknown",
        # the object store's and the actors' hooks
        "creation_freed", "kill_remote", "job_finished",
        # the state API and pending reasons (read only; introspection.py)
        "waiting_calls", "call_reason", "remote_actor_node",
    )

    def __init__(self, node_id: bytes):
        self.me = node_id.hex()
        self.remote_actors = {}     # actor id -> RemoteActor
        self.owned_oids = {}        # creation oid -> RemoteActor we own
        self.spread_turn = 0
        self.pg_turn = 0
        self.pg_inflight = {}       # pg id -> {node hex: None | bool}
        self.pg_parked = collections.defaultdict(list)   # pg id -> [Task]
        self.pg_resolving = set()
        self.removing_from_peer = False
        self.node_wait = set()      # tasks whose affinity node we are looking up

    def wire(self, node_table: "NodeTable", om: "ObjectManager", sched: "LocalScheduler",
             actors: "Actors", constraints: "Constraints", store: "ObjectStore",
             resources: "ResourceSet", pgs: "PlacementGroups", gcs: "GcsWriter",
             gcs_client) -> None:
        self.node_table = node_table
        self.alive = node_table.alive
        self.om = om
        self.sched = sched
        self.actors = actors
        self.constraints = constraints
        self.store = store
        self.resources = resources
        self.pgs = pgs
        self.put_gcs = gcs.put
        self.gcs = gcs_client

    def on_peer(self, peer, msg):
        """A message of ours on a peer link (see protocol.py)."""
        kind = msg[0]
        if kind == P.PEER_ACTOR_CREATE:
            self.on_actor_create(peer, msg)
        elif kind == P.PEER_ACTOR_KILL:
            self.actors.call_kill_actor(None, msg[1], msg[2])
        elif kind == P.PEER_PG_RESERVE:
            self.on_pg_reserve(peer, msg)
        elif kind == P.PEER_PG_RESERVED:
            self.on_pg_reserved(peer, msg[1], msg[2])
        elif kind == P.PEER_PG_CANCEL:
            self.on_pg_cancel(msg[1])
        elif kind == P.PEER_PG_REMOVE:
            self.removing_from_peer = True
            try:
                self.constraints.call_pg_remove(None, msg[1])
            finally:
                self.removing_from_peer = False
        elif kind == P.PEER_JOB_FINISHED:
            # the job's driver died on another node: its work here stops too
            self.sched.job_finished(msg[1])
            self.actors.job_finished(msg[1])
            self.job_finished(msg[1], tell_peers=False)
        else:
            log(f"unknown message {kind} from {peer[:12]}")

    # ------------------------------------------------------------------ views
    def local_record(self):
        return {"node_id": self.me, "state": "ALIVE",
                "resources_total": self.resources.total,
                "resources_available": self.resources.snapshot(),
                "demand": self.sched.demand()}

    def cluster_total(self) -> dict:
        """Total resources of every alive node (for messages)."""
        total = dict(self.resources.total)
        for rec in self.node_table.nodes.values():
            for k, v in rec.get("resources_total", {}).items():
                total[k] = total.get(k, 0.0) + v
        return total

    def from_peer(self, t):
        return self.om.ran_for_peer(t.spec.task_id)

    # ------------------------------------------------------------------ routing
    def route(self, t) -> bool:
        """LocalScheduler.make_ready hook: send `t` to another node if its strategy (or, for an
        actor, its resources) says so.  True if it was taken care of."""
        spec = t.spec
        sched = spec.scheduling
        if sched is None and spec.kind != P.ACTOR_CREATION_TASK:
            return False
        if self.from_peer(t):
            return False        # placed by the sender already: never bounce
        target = None
        if sched is None:
            if self.resources.feasible(spec.resources):
                return False
            target = choose_node(spec.resources, list(self.node_table.nodes.values()))
        elif sched[0] == "NODE":
            node = sched[1].hex()
            if node != self.me and self.alive(node):
                target = node
            elif node != self.me and not sched[2] and node not in self.node_table.dead and \
                    t not in self.node_wait:
                # maybe a node that joined since our last look at the node table
                self.node_wait.add(t)
                self.om.spawn(self._wait_for_node(t, node))
                return True
            elif node != self.me and sched[2] and \
                    not self.resources.feasible(spec.resources):
                # soft affinity to a node that is gone: anywhere that can
                target = choose_node(spec.resources, list(self.node_table.nodes.values()))
        elif sched[0] == "SPREAD":
            nodes = [(self.me, self.resources.total)] + sorted(
                (n, rec.get("resources_total", {}))
                for n, rec in self.node_table.nodes.items())
            self.spread_turn += 1
            target = spread_node(spec.resources, nodes, self.spread_turn)
        elif sched[0] == "PG":
            pg = self.pgs.get(sched[1])
            if pg is None:
                self.park_for_pg(t)
                return True
            if pg.state is PGState.CREATED and pg.nodes is not None:
                target = self.pg_target(t, pg)
        if target is None or target == self.me:
            return False
        self.send_to(t, target)
        return True

    async def _wait_for_node(self, t, node):
        """Give a node we do not know a moment to appear (its join may be a
        publish away) before deciding on `t`'s node."""
        try:
            await self.node_table.wait_for(node, NODE_WAIT_S)
        except BaseException:
            self.node_wait.discard(t)
            raise
        # (still in node_wait while requeued: route() does not wait a second time)
        try:
            if t.cancelled:
                t.move(TS.CANCELLED)
                self.sched.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
            elif t.state is TS.WAITING_FOR_RESOURCES:
                self.requeue(t)
        finally:
            self.node_wait.discard(t)

    def send_to(self, t, target):
        if t.spec.kind == P.ACTOR_CREATION_TASK:
            self.place_actor(t, target)
        else:
            self.om.send_task(t, target)

    # ------------------------------------------------------------------ actors: owner
    def place_actor(self, t, target):
        """Create the actor of creation task `t` (WAITING_FOR_RESOURCES) on `target`."""
        spec = t.spec
        aid = spec.actor_id
        ra = self.remote_actors.get(aid) or RemoteActor(aid)
        self.remote_actors[aid] = ra
        a = self.actors.hand_over(aid)
        if a is not None:
            # it was registered here at submission: its state moves to the owner
            # record, and calls queued meanwhile go first, in order
            ra.held, ra.keepalive, ra.restarts_left = a.held, a.keepalive, a.restarts_left
            a.held = []
            ra.queue.extendleft(reversed(a.queue))
            a.queue.clear()
        ra.spec = spec
        ra.node = target
        ra.dead = None
        ra.creation_task = t
        creation_oid = ids.return_id(spec.task_id, 1)
        self.owned_oids[creation_oid] = ra
        self.store.watch(creation_oid)      # -> creation_freed
        # our copy of the creation object stands for the host's: when it is freed
        # (every handle gone) the host's is released, and the actor exits there
        self.om.hold_remote(creation_oid, target)
        self.put_gcs("hset", keys.actor(aid), mapping={"node": target})
        self.om.send_task(t, target, P.PEER_ACTOR_CREATE)
        self.pump(ra)

    def creation_freed(self, oid):
        """ObjectStore hook: every handle of an actor we own on another node is gone
        (the object manager releases the host's copy, which ends the actor)."""
        ra = self.owned_oids.pop(oid, None)
        if ra is None:
            return
        self.drop_held(ra)

    def drop_held(self, ra):
        held, ra.held = ra.held, []
        for oid in held:
            self.store.decref(oid)

    def job_finished(self, job_id, tell_peers=True):
        """A driver of this node left: its non-detached actors elsewhere die,
        and every other node hears that the job is over (JOB_FINISHED)."""
        if tell_peers:
            for node_hex in list(self.node_table.nodes):
                self.om.post(node_hex, [P.PEER_JOB_FINISHED, job_id])
        for ra in list(self.remote_actors.values()):
            spec = ra.spec
            if spec is None or spec.job_id != job_id or ra.dead:
                continue
            if (spec.actor_options or {}).get("lifetime") == "detached":
                continue
            ra.restarts_left = 0
            if ra.node and self.alive(ra.node):
                self.om.post(ra.node, [P.PEER_ACTOR_KILL, ra.actor_id, True])

    def kill_remote(self, actor_id, no_restart) -> bool:
        """Actors.call_kill_actor hook for an actor not on this node."""
        if not self.node_table.nodes:
            return False
        ra = self.remote_actors.get(actor_id)
        if ra is None:
            ra = self.remote_actors[actor_id] = RemoteActor(actor_id)
        if ra.dead:
            return False
        if no_restart and ra.spec is not None:
            ra.restarts_left = 0
        if ra.node is not None:
            self.om.post(ra.node, [P.PEER_ACTOR_KILL, actor_id, bool(no_restart)])
        else:
            ra.pending_kill = bool(no_restart)
            self.resolve(ra)
        return True

    # ------------------------------------------------------------------ actors: host
    def on_actor_create(self, peer, msg):
        """Host an actor for its owner `peer`."""
        wire, args = msg[1], msg[2]
        exported = msg[3] if len(msg) > 3 else []
        self.om.on_forward(peer, [P.PEER_FORWARD, wire, args, exported])
        spec = P.TaskSpec.from_wire(wire)
        # the owner's ref: the actor lives while the owner holds a handle
        # (released by its PEER_RELEASE, or when the owner's node dies)
        self.om.keep_for(peer, ids.return_id(spec.task_id, 1))

    # ------------------------------------------------------------------ actors: callers
    def actor_call(self, t) -> bool:
        """Actors.submit_call hook: a call to an actor that is not on this node.  True if it
        is routed to another node (False: the caller reports it as unknown)."""
        if not self.node_table.nodes and t.spec.actor_id not in self.remote_actors:
            return False
        if self.from_peer(t):
            return False   # sent here for an actor we do not hold: fail it
        aid = t.spec.actor_id
        ra = self.remote_actors.get(aid)
        if ra is None:
            ra = self.remote_actors[aid] = RemoteActor(aid)
        self.sched.track(t)     # a task of this node until it ends (cancel finds it)
        ra.queue.append(t)
        if ra.node is None and ra.dead is None:
            self.resolve(ra)
        else:
            self.pump(ra)
        return True

    def cancel_queued(self, t):
        """Actors.cancel_call hook: cancel() of a call to an actor on another node
        that is not sent yet: it fails now (one sent is cancelled there)."""
        ra = self.remote_actors.get(t.spec.actor_id)
        if ra is not None and t in ra.queue:
            ra.queue.remove(t)
            t.move(TS.CANCELLED)
            self.sched.fail_task(t, exceptions.TaskCancelledError(t.spec.name))

    def arg_ready(self, t):
        """Actors.arg_ready hook for a call to a remote actor."""
        ra = self.remote_actors.get(t.spec.actor_id)
        if ra is not None:
            self.pump(ra)

    def pump(self, ra):
        """Send the calls whose arguments are here, in order, to the host."""
        if ra.dead is not None:
            self.fail_calls(ra, ra.dead)
            return
        node = ra.node
        if node is None:
            return
        if node == self.me:
            # the actor lives here now (restarted here): hand the calls over
            self.actors.accept_calls(ra.actor_id, ra.queue)
            return
        while ra.queue and ra.queue[0].missing == 0:
            t = ra.queue.popleft()
            if t.cancelled:
                t.move(TS.CANCELLED)
                self.sched.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
                continue
            self.om.send_task(t, node)

    def fail_calls(self, ra, cause):
        while ra.queue:
            t = ra.queue.popleft()
            self.sched.fail_task(t, exceptions.ActorDiedError(
                f"Cannot run {t.spec.name}: the actor is dead. {cause}"))

    def resolve(self, ra):
        """Find where the actor lives (its GCS record), then send what waits."""
        if not ra.resolving:
            ra.resolving = True
            self.om.spawn(self._resolve(ra))

    async def _resolve(self, ra):
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + RESOLVE_TIMEOUT_S
        try:
            while ra.node is None and ra.dead is None:
                if self.actors.is_local(ra.actor_id):
                    ra.node = self.me
                    break
                try:
                    info = await loop.run_in_executor(
                        None, self.gcs.actor_info, ra.actor_id)
                except Exception:
                    info = {}
                node = info.get("node")
                if info.get("state") == "DEAD":
                    ra.dead = info.get("death_cause") or "The actor died."
                elif node and node != self.me and self.alive(node) and \
                        info.get("state") != "RESTARTING":
                    ra.node = node
                elif time.monotonic() > deadline:
                    ra.dead = (f"Its location could not be found within "
                               f"{RESOLVE_TIMEOUT_S:.0f} s (no alive node hosts it).")
                else:
                    await asyncio.sleep(0.05)
        finally:
            ra.resolving = False
        if ra.pending_kill is not None and ra.node not in (None, self.me):
            self.om.post(ra.node, [P.PEER_ACTOR_KILL, ra.actor_id, ra.pending_kill])
        elif ra.pending_kill is not None and ra.node == self.me:
            self.actors.call_kill_actor(None, ra.actor_id, ra.pending_kill)
        ra.pending_kill = None
        self.pump(ra)

    # ------------------------------------------------------------------ state API
    def waiting_calls(self) -> list:
        """Calls to actors on other nodes that wait here to be sent, and actor
        creations and tasks parked until their placement group's node is known."""
        out = [t for ra in self.remote_actors.values() for t in ra.queue]
        for parked in self.pg_parked.values():
            out.extend(parked)
        return out

    def remote_actor_node(self, actor_id):
        """The node hex an actor of another node lives on, if known."""
        ra = self.remote_actors.get(actor_id)
        return ra.node if ra is not None else None

    def call_reason(self, t):
        """Why call `t` to an actor on another node waits here (or None)."""
        ra = self.remote_actors.get(t.spec.actor_id)
        if ra is None:
            return None
        if t not in ra.queue:
            node = self.om.forwarded_to(t.spec.task_id)
            return reason(Reason.FORWARDED, node_id=node) if node else None
        if t.missing:
            oid = self.store.pending_arg(t.spec)
            if oid is not None:
                return reason(Reason.WAITING_FOR_ARGS, object_id=oid.hex())
        return reason(Reason.WAITING_FOR_REMOTE_ACTOR, actor_id=ra.actor_id.hex(),
                      node_id=ra.node, class_name=t.spec.name.split(".")[0])

    # ------------------------------------------------------------------ node death
    def retry(self, t, why):
        """ObjectManager.retry hook for a forwarded actor call or creation."""
        self.om.unforward(t.spec.task_id)
        ra = self.remote_actors.get(t.spec.actor_id)
        if t.spec.kind == P.ACTOR_CREATION_TASK:
            if ra is not None and ra.creation_task is t:
                return      # node_died() restarts the actor (or declares it dead)
            self.sched.fail_task(t, exceptions.ActorDiedError(
                f"The actor {t.spec.name} could not be created: {why}."))
            return
        if ra is not None and take_retry(t):
            ra.queue.appendleft(t)          # (args are here: sent again as is)
            return
        self.sched.fail_task(t, exceptions.ActorDiedError(
            f"The actor of {t.spec.name} died while running it: {why} (the call is "
            f"not retried: max_task_retries={t.spec.max_retries})."))

    def node_died(self, node_hex, lost):
        """ObjectManager.node_died hook (before it re-places its own tasks):
        `lost` are the (task id, Task) of actor calls and creations that were
        forwarded to the dead node (no longer forwarded)."""
        why = f"its node {node_hex} died"
        # calls in flight there: retried (in order) or failed
        retried = collections.defaultdict(list)
        for tid, t in lost:
            ra = self.remote_actors.get(t.spec.actor_id)
            if t.spec.kind == P.ACTOR_CREATION_TASK:
                if ra is None or ra.creation_task is not t:
                    self.sched.fail_task(t, exceptions.ActorDiedError(
                        f"The actor {t.spec.name} could not be created: {why}."))
                continue
            if ra is not None and take_retry(t):
                retried[t.spec.actor_id].append(t)
            else:
                self.sched.fail_task(t, exceptions.ActorDiedError(
                    f"The actor of {t.spec.name} died while running it: {why} (the "
                    f"call is not retried: max_task_retries={t.spec.max_retries})."))
        for aid, ts in retried.items():
            self.remote_actors[aid].queue.extendleft(reversed(ts))
        for ra in list(self.remote_actors.values()):
            if ra.node != node_hex or ra.dead is not None:
                continue
            ra.node = None
            if ra.spec is not None:
                self.om.spawn(self.restart(ra, f"The actor's node {node_hex} died."))
            else:
                self.resolve(ra)    # the owner decides; find out where it went
        # placement groups being reserved there fail (and are tried again)
        for pg_id, replies in list(self.pg_inflight.items()):
            if node_hex in replies:
                self.on_pg_reserved(node_hex, pg_id, False)

    async def restart(self, ra, cause):
        """Owner: the host of `ra` died.  Restart it elsewhere or declare it dead."""
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(None, self.gcs.actor_info, ra.actor_id)
        except Exception:
            info = {}
        if info.get("state") == "DEAD":    # killed (or ended) before its node died
            self.actor_dead(ra, info.get("death_cause") or cause, record=False)
            return
        spec = ra.spec
        target = None
        sched = spec.scheduling
        # a placement-group bundle or hard node affinity cannot move elsewhere
        movable = sched is None or sched[0] == "SPREAD" or \
            (sched[0] == "NODE" and sched[2])
        if ra.restarts_left != 0 and movable:
            nodes = [self.local_record()] + list(self.node_table.nodes.values())
            target = choose_node(spec.resources, nodes, exclude=self.node_table.dead)
        if target is None:
            why = cause if ra.restarts_left == 0 else \
                cause + " No other node can host it."
            self.actor_dead(ra, why)
            return
        if ra.restarts_left > 0:
            ra.restarts_left -= 1
        restarts = int(info.get("restarts") or 0) + 1
        log(f"restarting actor {spec.name} {ra.actor_id.hex()[:12]} on node "
            f"{target[:12]} ({cause})")
        self.put_gcs("hset", keys.actor(ra.actor_id), mapping={
            "state": "RESTARTING", "node": target, "restarts": restarts})
        t = ra.creation_task
        if t is None or t.state is not TS.FORWARDED:
            t = Task(spec)          # holds nothing: the owner keeps the args
            t.state = TS.WAITING_FOR_RESOURCES
            self.sched.track(t)
        else:
            t.move(TS.WAITING_FOR_RESOURCES)
        creation_oid = ids.return_id(spec.task_id, 1)
        if target == self.me:
            self.restart_here(ra, t, creation_oid, restarts)
            return
        ra.node = target
        ra.creation_task = t
        self.om.hold_remote(creation_oid, target)
        self.om.send_task(t, target, P.PEER_ACTOR_CREATE)
        self.pump(ra)

    def restart_here(self, ra, t, creation_oid, restarts):
        """Owner: the actor comes back on this node, as a local actor."""
        a = Actor(ra.spec)
        a.held, ra.held = ra.held, []
        a.keepalive = ra.keepalive
        a.restarts_left = ra.restarts_left
        a.num_restarts = restarts
        a.creation_task = t
        self.om.forget_remote(creation_oid)
        self.owned_oids.pop(creation_oid, None)
        ra.spec = None
        ra.node = self.me
        self.actors.adopt(a)
        self.sched.push_ready(t, front=True)
        self.pump(ra)       # waiting calls go to the local actor's queue

    def actor_dead(self, ra, cause, record=True):
        ra.dead = cause
        if record:
            self.put_gcs("hset", keys.actor(ra.actor_id), mapping={
                "state": "DEAD", "death_cause": cause})
        t, ra.creation_task = ra.creation_task, None
        if t is not None and t.state not in (TS.FINISHED, TS.FAILED, TS.CANCELLED):
            if t.state is TS.FORWARDED:
                t.move(TS.WAITING_FOR_RESOURCES)
            self.sched.fail_task(t, exceptions.ActorDiedError(
                f"The actor {ra.spec.name} is dead: {cause}"))
        self.fail_calls(ra, cause)
        if ra.spec is not None:
            creation_oid = ids.return_id(ra.spec.task_id, 1)
            self.om.forget_remote(creation_oid)
            self.owned_oids.pop(creation_oid, None)
            self.drop_held(ra)
            if ra.keepalive:
                ra.keepalive = False
                self.store.decref(creation_oid)

    # ------------------------------------------------------------------ periodic
    def tick(self):
        """Every heartbeat: pending placement groups, actors waiting for a node."""
        if not self.node_table.nodes:
            return
        if self.pgs.all():
            self.reserve_pending(force=True)
        self.sched.place_infeasible(self.place_infeasible_actor)

    def place_infeasible_actor(self, t) -> bool:
        """An actor that no node could host when it was created: one can now?"""
        if t.spec.kind == P.ACTOR_CREATION_TASK and t.state is TS.WAITING_FOR_RESOURCES:
            target = choose_node(t.spec.resources, list(self.node_table.nodes.values()))
            if target is not None:
                self.place_actor(t, target)
                return True
        return False

    # ------------------------------------------------------------------ placement groups
    def pg_node_views(self, totals=False):
        mine = self.resources.total if totals else self.resources.available
        views = [(self.me, dict(mine))]
        nodes = self.node_table.nodes
        for n in sorted(nodes):
            rec = nodes[n]
            views.append((n, dict(rec.get("resources_total" if totals else
                                          "resources_available", {}))))
        return views

    def pg_feasible(self, pg) -> bool:
        return place_bundles([b.request for b in pg.bundles], pg.strategy,
                             self.pg_node_views(totals=True)) is not None

    def reserve_pending(self, force=False):
        """Constraints.reserve_pending hook (peers exist): place pending groups."""
        now = time.monotonic()
        views = None
        for pg in self.pgs.pending():
            if pg.pg_id in self.pg_inflight or (pg.retry_at > now and not force):
                continue
            if views is None:
                views = self.pg_node_views()
            plan = place_bundles([b.request for b in pg.bundles], pg.strategy, views)
            if plan is None:
                pg.retry_at = now + PG_RETRY_S
                continue
            for nid, a in views:     # what this pass placed is taken
                for i, n in enumerate(plan):
                    if n == nid:
                        for k, v in pg.bundles[i].request.items():
                            a[k] = a.get(k, 0.0) - v
            mine = [i for i, n in enumerate(plan) if n == self.me]
            if len(mine) == len(plan):
                # all here: the single-node path
                if self.pgs.try_reserve(pg):
                    self.pg_created(pg)
                continue
            if not self.reserve_local(pg, mine):
                pg.retry_at = now + PG_RETRY_S
                continue
            pg.nodes = plan
            others = sorted(set(plan) - {self.me})
            self.pg_inflight[pg.pg_id] = {n: None for n in others}
            for n in others:
                self.om.post(n, [P.PEER_PG_RESERVE, pg.pg_id, pg.name, pg.strategy,
                                      [b.request for b in pg.bundles], plan, pg.job_id,
                                      pg.detached])

    def reserve_local(self, pg, idxs) -> bool:
        """Reserve bundles `idxs` of `pg` on this node, all or none."""
        node = self.resources
        need = {}
        for i in idxs:
            for k, v in pg.bundles[i].request.items():
                need[k] = need.get(k, 0.0) + v
        if not node.fits(need):
            return False
        for i in idxs:
            b = pg.bundles[i]
            b.gpu_map = node.acquire(b.request)
            b.resources = ResourceSet(b.request)
            b.resources.gpu_map = b.gpu_map
        return True

    def release_local(self, pg):
        node = self.resources
        for b in pg.bundles:
            if b.resources is not None:
                node.release(b.request, b.gpu_map)
                b.resources = None
                b.gpu_map = []
        self.sched.request_schedule()

    def pg_created(self, pg):
        pg.state = PGState.CREATED
        for b in pg.bundles:
            if b.resources is not None:
                b.resources.gpu_map = b.gpu_map
        o = self.store.get(pg.ready_oid)
        if o is not None and o.state is ObjState.PENDING:
            self.store.seal_inline(o, serialization.serialize(True).to_bytes(), False, ())
        self.constraints.record(pg)
        self.sched.request_schedule()

    def on_pg_reserve(self, peer, msg):
        _, pg_id, name, strategy, bundles, nodes, job_id, detached = msg
        old = self.pgs.get(pg_id)
        ok = False
        if old is None:
            pg = PlacementGroup(pg_id, bundles, strategy, name,
                                ids.return_id(pg_id, 1), job_id, detached)
            mine = [i for i, n in enumerate(nodes) if n == self.me]
            if self.reserve_local(pg, mine):
                pg.nodes = nodes
                pg.state = PGState.CREATED
                self.pgs.add(pg)
                ok = True
        self.om.post(peer, [P.PEER_PG_RESERVED, pg_id, ok])

    def on_pg_reserved(self, peer, pg_id, ok):
        replies = self.pg_inflight.get(pg_id)
        if replies is None or peer not in replies:
            return
        replies[peer] = bool(ok)
        pg = self.pgs.get(pg_id)
        if pg is None:
            return
        if pg.state is PGState.REMOVED:
            if ok:
                self.om.post(peer, [P.PEER_PG_CANCEL, pg_id])
            if all(v is not None for v in replies.values()):
                del self.pg_inflight[pg_id]
            return
        if not ok:
            # all or nothing: undo every share, try again later
            del self.pg_inflight[pg_id]
            for n, v in replies.items():
                if n != peer and v is not False and self.alive(n):
                    self.om.post(n, [P.PEER_PG_CANCEL, pg_id])
            self.release_local(pg)
            pg.nodes = None
            pg.retry_at = time.monotonic() + PG_RETRY_S
            return
        if all(replies.values()):
            del self.pg_inflight[pg_id]
            self.pg_created(pg)

    def on_pg_cancel(self, pg_id):
        pg = self.pgs.discard(pg_id)
        if pg is not None:
            self.release_local(pg)

    def pg_removed(self, pg):
        """Constraints.call_pg_remove hook: the group is removed here; tell its other nodes."""
        if pg.pg_id in self.pg_inflight:
            self.release_local(pg)      # our share of a group still being reserved
        if self.removing_from_peer or pg.nodes is None:
            return
        replies = self.pg_inflight.get(pg.pg_id)
        for n in sorted(set(pg.nodes) - {self.me}):
            if self.alive(n) and (replies is None or replies.get(n) is not False):
                self.om.post(n, [P.PEER_PG_REMOVE, pg.pg_id])

    def pg_remove_unknown(self, pg_id) -> bool:
        """Constraints.call_pg_remove hook for a group this node does not know: every node that
        might hold part of it removes it."""
        if not self.node_table.nodes or self.removing_from_peer:
            return False
        for n in self.node_table.nodes:
            self.om.post(n, [P.PEER_PG_REMOVE, pg_id])
        return True

    def pg_target(self, t, pg):
        """The node a task of group `pg` runs on; None for this node."""
        sched = t.spec.scheduling
        idx = sched[2]
        if idx is not None and idx >= 0:
            n = pg.nodes[idx]
            return None if n == self.me else n
        req = t.spec.resources
        if any(b.resources is not None and b.resources.fits(req) for b in pg.bundles):
            return None     # a bundle here has room now
        fit = lambda b: all(v <= b.request.get(k, 0.0) + 1e-9 for k, v in req.items())
        remote = sorted({pg.nodes[b.index] for b in pg.bundles
                         if pg.nodes[b.index] != self.me and fit(b)
                         and self.alive(pg.nodes[b.index])})
        if not remote:
            return None
        self.pg_turn += 1
        return remote[self.pg_turn % len(remote)]

    def pg_forward(self, t) -> bool:
        """Constraints.pool_for hook: a queued task of a created group whose bundle is
        on another node goes there (removed from the ready queue).  True if so."""
        sched = t.spec.scheduling
        pg = self.pgs.get(sched[1])
        if pg is None or pg.nodes is None or pg.state is not PGState.CREATED or \
                self.from_peer(t):
            return False
        target = self.pg_target(t, pg)
        if target is None:
            return False
        self.sched.dequeue(t)
        if not self.alive(target):
            self.sched.fail_task(t, exceptions.TaskUnschedulableError(
                f"{t.spec.name} cannot run: the node {target} of its placement group "
                f"bundle died."))
        else:
            self.send_to(t, target)
        self.sched.request_schedule()
        return True

    def park_for_pg(self, t):
        """A task of a group this node does not know: find it in the GCS."""
        pg_id = t.spec.scheduling[1]
        self.pg_parked[pg_id].append(t)
        if pg_id not in self.pg_resolving:
            self.pg_resolving.add(pg_id)
            self.om.spawn(self._resolve_pg(pg_id))

    def requeue(self, t):
        """The end of LocalScheduler.make_ready for a PG task whose group became known."""
        if self.route(t):
            return
        err = self.constraints.check(t)
        if err is not None:
            self.sched.fail_task(t, err)
        else:
            if not t.spec.scheduling or t.spec.scheduling[0] not in ("PG", "NODE"):
                if not self.resources.feasible(t.spec.resources):
                    self.sched.add_infeasible(t)
                    return
            self.sched.push_ready(t)

    async def _resolve_pg(self, pg_id):
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        nodes, error = None, None
        try:
            while True:
                if self.pgs.get(pg_id) is not None:
                    break       # it reached us meanwhile (a bundle is here now)
                try:
                    rec = await loop.run_in_executor(
                        None, self.gcs.r.hgetall, keys.placement_group(pg_id))
                    rec = {k.decode(): v.decode() for k, v in rec.items()}
                except Exception:
                    rec = {}
                state = rec.get("state")
                if state == "REMOVED":
                    error = "its placement group was removed"
                    break
                if state == "CREATED" and rec.get("bundle_nodes"):
                    nodes = json.loads(rec["bundle_nodes"])
                    break
                if not rec and time.monotonic() - start > 10:
                    error = "its placement group does not exist"
                    break
                await asyncio.sleep(0.1)
        finally:
            self.pg_resolving.discard(pg_id)
        parked = self.pg_parked.pop(pg_id, [])
        for t in parked:
            if error is not None:
                self.sched.fail_task(t, exceptions.TaskUnschedulableError(
                    f"{t.spec.name} cannot run: {error}."))
                continue
            if nodes is None:       # known here now: the local path
                self.requeue(t)
                continue
            idx = t.spec.scheduling[2]
            if idx is not None and idx >= 0:
                target = nodes[idx] if idx < len(nodes) else None
            else:
                cands = sorted({n for n in nodes if self.alive(n)})
                self.pg_turn += 1
                target = cands[self.pg_turn % len(cands)] if cands else None
            if target is None or not self.alive(target) or target == self.me:
                self.sched.fail_task(t, exceptions.TaskUnschedulableError(
                    f"{t.spec.name} cannot run: no alive node holds the placement "
                    f"group bundle it asks for."))
            else:
                self.send_to(t, target)
