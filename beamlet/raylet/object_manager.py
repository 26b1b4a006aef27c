"""Cross-node work of a raylet: forwarding tasks, pulling objects, remote refs.

None of this runs on the single-node fast path: it is entered only when a task
cannot run here (no local node resources for it; or a backlog while other nodes
idle), when a task arrives from a peer, or when an object is not local.

    node A (submitter)                          node B (runs the task)
    make_ready: infeasible here ──FORWARD──────► on_forward: args present or pulled
      t: FORWARDED, args held                     (PULL from A, once per object),
                                                  on_submit as if from a client
    on_task_done ◄────────────TASK_DONE────────── the task ended: inline results
      inline results sealed here; REMOTE          travel in the message, arena
      ones become proxies (see below), pulled     ones stay held for A until
      only when a get/wait/argument here needs    RELEASE (a "remote ref")
      them: PULL ──────────────────────────────►

Remote refs and proxies.  Whenever a message to a peer carries object ids (a
task's results, the refs nested inside a value or a by-value argument), the
sender takes a ref on each on the receiver's behalf (PeerHolder) and lists them
(`exported`).  The receiver makes a *proxy* for each id it did not know: a
PENDING entry in its store with `remote_refs[oid] = sender` and
`proxies[oid] = [sender]`, released (RELEASE) when the entry is freed there.
Nothing is copied until something on the receiver needs the value: then it is
pulled from the sender, who answers once the object exists there (it may still
be being made), or redirects to the node that has it (its own proxy or the
node it forwarded the task to).  So the node that holds a ref keeps, by this
chain of remote refs, every copy the ref may need alive.  After a pull the
origin keeps its copy while ours lives (locality: later tasks using it run best
there).

An id a node never heard of (passed by some way that no message above carried)
is looked up in the GCS (`beamlet:obj:<oid>`: arena objects are listed from
their creation, small ones once their id was sent to another node) and polled
with backoff until it appears, while something here still wants it.

Node death: tasks forwarded to a dead node are placed again (within
max_retries); results a node received as REMOTE and has not copied yet are
rebuilt by re-running their task (its spec and arguments are kept for that:
lineage); a proxy whose only source died and that cannot be rebuilt (a put
object, or one whose owner died) is sealed with an ObjectLostError naming it.

Owns: the peer links (one control connection per node, the TCP server that
  peers connect to, and the connections to it not yet authenticated: at most
  MAX_PENDING_PEER_HANDSHAKES, each for PEER_HANDSHAKE_TIMEOUT_S), the ordered
  outbox per peer (post(): every message to a node goes through it, in order;
  a link that cannot be opened is tried again, with backoff, until the node is
  declared dead), the peers as holders of refs here (PeerHolder), the tasks
  forwarded to other nodes and those run here for a peer, proxies, remote refs
  and remote-ready ids, pulls in flight, lineage of forwarded tasks, the ids
  looked up in the GCS, and its background coroutines.
Uses: NodeTable (the other nodes, current from the membership deltas; node
  deaths);
  ObjectStore (entries, refs and pins, sealing, the arena for the bytes of
  pulls); LocalScheduler (running a peer's task as if submitted here, results
  of a forwarded task, re-queueing or failing tasks, the ready queue's back
  for spilling a backlog); ClusterScheduler (its peer messages, the forwarded
  actor work of a dead node); GcsWriter (object locations, task events) and
  the GcsClient (locations of unknown ids, argument bytes per node).
Messages: (raylet <-> raylet, protocol.py) PEER_PULL, PEER_FORWARD,
  PEER_TASK_DONE, PEER_RELEASE, PEER_CANCEL; the rest (PEER_ACTOR_CREATE and
  after) go to cluster_scheduling.py.
"""
import asyncio
import collections
import random
import socket
import sys
import time


from .. import exceptions
from .._private import config, ids
from .._private import protocol as P
from .._private.pending import Reason, reason
from ..gcs import keys
from .common import error_bytes
from ..scheduler.placement import choose_node, fits, idle_cpus
from . import peers
from .object_store import ObjState
from .scheduler import TaskState as TS

# The components it uses (ClusterScheduler, GcsWriter, NodeTable, ObjectStore,
# ResourceSet, Streams, LocalScheduler) are named in annotations only, as strings: the
# shell (raylet.py) wires them together, so their modules need not import each other
# (no import circle).

CHUNK = 8 * 1024 * 1024
BODY_TIMEOUT_S = 60.0     # no byte of an object's body for this long: give up
STRIPES = 4               # connections a large object is pulled over at once
STRIPE_MIN = 32 * 1024 * 1024
MAX_REDIRECTS = 4
BACKOFF_MAX_S = 1.0
PULL_ERRORS = (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError,
               peers.PeerAuthError)


def log(*a):
    print(time.strftime("%H:%M:%S"), "object_manager:", *a, file=sys.stderr, flush=True)


class PeerHolder:
    """A peer node, as a holder of refs and pins in this raylet's counts."""

    def __init__(self, node_hex):
        self.node_hex = node_hex
        self.refs = collections.Counter()
        self.pins = collections.Counter()
        self.role = "peer"
        self.pid = node_hex[:12]
        self.worker = None
        self.closed = False
        self.job_id = b""


class Lineage:
    """A forwarded task whose results are still only on the node that ran it: what
    is needed to run it again if that node dies."""
    __slots__ = ("spec", "held", "node", "remote")

    def __init__(self, spec, held, node, remote):
        self.spec = spec
        self.held = held        # its ref arguments, kept alive for a re-run
        self.node = node        # the node holding the results for us
        self.remote = remote    # set of result oids not copied here yet


class NoFetch:
    """A wait(fetch_local=False) getter's callback: it fires once, when the object
    is sealed here or known sealed on another node (whichever comes first)."""
    __slots__ = ("fn", "fired")

    def __init__(self, fn):
        self.fn = fn
        self.fired = False

    def __call__(self):
        if not self.fired:
            self.fired = True
            self.fn()


class ObjectManager:
    INTERFACE = (
        "wire",     # (the shell, once)
        # life (the shell), and the node table's callback
        "start", "close", "tick", "spawn", "node_died",
        # the object store's hooks
        "locate", "wanted", "nofetch_callback", "sealed_elsewhere", "pending_freed",
        "freed",
        # the task scheduler's hooks
        "want", "forward", "defer_infeasible_warning", "task_ended", "cancel",
        # for cluster placement
        "link", "post", "send_task", "unforward",
        "ran_for_peer", "hold_remote", "forget_remote", "keep_for", "on_forward",
        # generator streams across nodes (streams.py)
        "relay_item", "relay_end", "send_gen_ack", "take_peer_result",
        "has_live_source",
        # the state API and pending reasons (read only; introspection.py), and
        # the peer query that reaches other nodes' raylets for them
        "arg_reason", "forwarded_to", "unreachable_for", "forwarded_tasks", "source_of",
        "query",
    )

    def __init__(self, node_id: bytes, token: bytes, node_ip: str, peer_port: int):
        self.node_id = node_id
        self.token = token
        self.node_hex = node_id.hex()
        self.node_ip = node_ip
        self.peer_port = peer_port
        self.links = {}        # node hex -> StreamWriter (our control link to it)
        self.handshaking = {}  # StreamWriter of each connection not yet authenticated
        self.link_locks = collections.defaultdict(asyncio.Lock)
        self.outbox = {}       # node hex -> [msg] posted, not yet written (post())
        self.unreachable = {}  # node hex -> monotonic time its link began failing
        self.holders = {}      # node hex -> PeerHolder
        self.from_peer = {}    # task id -> node hex: tasks we run for a peer
        self.forwarded = {}    # task id -> [Task, node hex]: our tasks run elsewhere
        self.pulls = {}        # oid -> asyncio.Task (one pull per object at a time)
        self.remote_refs = {}  # oid -> node hex that keeps the original for us
        self.proxies = {}      # oid -> [node hex, ...]: PENDING here, fetch from there
        self.remote_ready = {} # oid -> node hex where it is sealed (no copy here)
        self.lineage = {}      # task id -> Lineage
        self.in_gcs = set()    # small objects whose location we published
        self.locating = set()  # oids looked up in the GCS (ids we were never sent)
        self.unwarned = []     # infeasible tasks to warn about at the next tick
        self.owned = set()     # background coroutines, cancelled on close
        self.server = None
        self.port = None
        self.arena_file = None   # the arena, opened for sendfile (serving pulls)

    def wire(self, node_table: "NodeTable", store: "ObjectStore",
             sched: "LocalScheduler", cs: "ClusterScheduler", resources: "ResourceSet",
             gcs: "GcsWriter", gcs_client, streams: "Streams", on_state=None) -> None:
        self.node_table = node_table
        # answers a peer's PEER_STATE query (introspection.py)
        self.on_state = on_state
        self.store = store
        self.sched = sched
        self.cs = cs
        self.streams = streams
        self.resources = resources
        self.put_gcs = gcs.put
        self.gcs = gcs_client

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        """Listen for peers; returns the port (it goes in the node's record)."""
        self.server = await asyncio.start_server(self.serve, self.node_ip,
                                                 self.peer_port or 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def close(self):
        if self.server is not None:
            self.server.close()
        for t in list(self.owned):
            t.cancel()
        for w in self.links.values():
            w.close()
        if self.arena_file is not None:
            self.arena_file.close()

    def spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self.owned.add(t)
        t.add_done_callback(self._done)
        return t

    def _done(self, t):
        self.owned.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log("background task failed:", repr(t.exception()))

    def holder(self, node_hex):
        h = self.holders.get(node_hex)
        if h is None:
            h = self.holders[node_hex] = PeerHolder(node_hex)
        return h

    # ------------------------------------------------------------------ periodic
    def tick(self):
        """Every heartbeat: infeasible tasks, backlog spill-over (the node table
        is current: it follows the membership deltas)."""
        nt = self.node_table
        sched = self.sched
        if self.unwarned:
            pending, self.unwarned = self.unwarned, []
            for t in pending:
                if sched.is_infeasible(t):
                    if self.forward(t):
                        sched.drop_infeasible(t)
                    else:
                        t.warned_infeasible = False
            sched.warn_infeasible()
        if not nt.nodes:
            return
        sched.place_infeasible(
            lambda t: t.state is not TS.WAITING_FOR_RESOURCES or self.forward(t))
        self.spill_backlog()

    def spill_backlog(self):
        """Local CPUs all busy and tasks queued while other nodes idle: send some."""
        if not self.sched.backlog() or self.resources.available.get("CPU", 0.0) >= 1.0:
            return
        for node_hex, rec in list(self.node_table.nodes.items()):
            free = idle_cpus(rec)
            avail = dict(rec.get("resources_available", {}))

            def take(t):
                nonlocal free
                spec = t.spec
                if (free <= 0 or spec.kind != P.NORMAL_TASK
                        or spec.task_id in self.from_peer or spec.scheduling
                        or not fits(avail, spec.resources)):
                    return False
                for k, v in spec.resources.items():
                    avail[k] = avail.get(k, 0.0) - v
                free -= max(1, int(spec.resources.get("CPU", 1)))
                self.send_task(t, node_hex)
                return True
            self.sched.offload(take)
            self.node_table.note_available(node_hex, avail)

    # ------------------------------------------------------------------ refs across nodes
    def export_refs(self, peer, oids) -> list:
        """Take a ref on each of `oids` known here on behalf of `peer`, which is
        about to receive these ids; returns those taken (the message's `exported`).
        Small objects also get a GCS location, so that a node that gets the id
        by some other way can find them."""
        if not oids:
            return []
        get = self.store.get
        h = self.holder(peer)
        out = []
        for oid in oids:
            o = get(oid)
            if o is None or o.state is ObjState.FREED:
                continue
            o.refcount += 1
            h.refs[oid] += 1
            out.append(oid)
            if o.data is not None and oid not in self.in_gcs:
                self.in_gcs.add(oid)
                self.store.watch(oid)
                self.put_gcs("hset", keys.obj(oid), self.node_hex, o.size)
        return out

    def import_refs(self, peer, oids) -> list:
        """`peer` holds refs on `oids` for us: make proxies of the ids we did not
        know, RELEASE the others.  Returns the oids given a temporary ref each,
        which the caller drops (decref) once it counted its own."""
        if not oids:
            return []
        store = self.store
        temp, release = [], []
        for oid in oids:
            o = store.get(oid)
            if o is None:
                o = store.get_or_create(oid)
                self.proxies[oid] = [peer]
                self.hold_remote(oid, peer)
            elif (o.state is ObjState.PENDING and oid in self.locating
                  and oid not in self.remote_refs):
                # an id we were looking up: now we know where it is, and hold it
                self.proxies.setdefault(oid, []).insert(0, peer)
                self.hold_remote(oid, peer)
            else:
                release.append(oid)
                continue
            o.refcount += 1
            temp.append(oid)
        if release:
            self.post(peer, [P.PEER_RELEASE, release])
        return temp

    def hold_remote(self, oid, peer):
        """`peer` keeps the original of `oid` for us until our entry is freed."""
        self.remote_refs[oid] = peer
        self.store.watch(oid)

    def forget_remote(self, oid):
        """No remote ref for `oid` any more, and no RELEASE to send for it."""
        self.remote_refs.pop(oid, None)

    def keep_for(self, peer, oid):
        """Take a ref on local `oid` on behalf of `peer` (released by its
        PEER_RELEASE, or when its node dies)."""
        o = self.store.get(oid)
        if o is not None:
            o.refcount += 1
            self.holder(peer).refs[oid] += 1

    def drop_temp(self, temp):
        decref = self.store.decref
        for oid in temp:
            decref(oid)

    def freed(self, o):
        """ObjectStore hook: a watched object was freed here."""
        oid = o.oid
        self.locating.discard(oid)
        self.proxies.pop(oid, None)
        self.remote_ready.pop(oid, None)
        if oid in self.in_gcs:
            self.in_gcs.discard(oid)
            self.put_gcs("hdel", keys.obj(oid), self.node_hex)
        peer = self.remote_refs.pop(oid, None)
        if peer is not None and peer not in self.node_table.dead:
            # our copy (or proxy) is gone: the origin may free its own
            self.post(peer, [P.PEER_RELEASE, [oid]])
        self.lineage_done(oid)

    def pending_freed(self, o):
        """ObjectStore hook: the last ref on watched PENDING `o` is gone."""
        if o.oid in self.proxies:
            self.drop_proxy(o)     # a remote object nobody here needs now

    def drop_proxy(self, o):
        """Nobody here holds a proxy any more."""
        if o.oid in self.pulls:
            return      # the pull holds a ref; impossible, but never free under it
        self.store.forget(o)
        w, o.waiters = o.waiters, []
        self.store.run_waiters(w)      # pulls served from here see it gone
        self.freed(o)

    def lineage_done(self, oid):
        """`oid` is copied here or freed: its task no longer needs a re-run for it."""
        if not self.lineage:
            return
        tid = ids.task_of(oid)
        L = self.lineage.get(tid)
        if L is None or oid not in L.remote:
            return
        L.remote.discard(oid)
        if not L.remote:
            del self.lineage[tid]
            for a in L.held:
                self.store.decref(a)

    def reexecute(self, L, why):
        """Run a task again whose results were lost with the node holding them."""
        tid = L.spec.task_id
        if self.lineage.get(tid) is not L:
            return
        del self.lineage[tid]
        for oid in L.remote:
            self.proxies.pop(oid, None)
            self.remote_ready.pop(oid, None)
            peer = self.remote_refs.pop(oid, None)
            if peer is not None and peer not in self.node_table.dead:
                self.post(peer, [P.PEER_RELEASE, [oid]])
        log(f"results of {L.spec.name} lost ({why}); re-running it (lineage)")
        # submitted as if by a client; its returns keep their waiters (getters,
        # dependent tasks, pulls served from here)
        h = self.holder("lineage")
        self.sched.on_submit(h, [P.SUBMIT, L.spec.to_wire()])
        self.store.drop_refs(h, L.spec.return_ids())
        for a in L.held:
            self.store.decref(a)

    def lost(self, o, why):
        """No node holds `o` any more: rebuild it, or seal it with the error."""
        oid = o.oid
        tid = ids.task_of(oid)
        L = self.lineage.get(tid)
        if L is not None and oid in L.remote:
            self.reexecute(L, why)
            return
        item = self.streams.is_item(oid)
        if (self.sched.has_task(tid) or tid in self.forwarded) and not item:
            return      # being made (again) here
        if o.state is not ObjState.PENDING:
            return
        self.proxies.pop(oid, None)
        self.remote_ready.pop(oid, None)
        self.remote_refs.pop(oid, None)
        what = ("it was made by put(), so it cannot be rebuilt" if ids.is_put_object(oid)
                else "it is a value a generator task yielded, which is not rebuilt"
                if item else "the node that owns its task is gone, so it cannot be rebuilt")
        err = exceptions.ObjectLostError(
            f"Object {oid.hex()} is lost: {why}, and {what}. Keep a reference to the "
            f"data on a live node, or recompute it.")
        log(f"object {oid.hex()} lost: {why}")
        self.store.seal_inline(o, error_bytes(err), True, ())

    # ------------------------------------------------------------------ wanting objects
    def want(self, oid):
        """A get / wait / task argument here needs `oid`: pull it if it is a proxy."""
        if oid not in self.pulls and oid in self.proxies:
            self.spawn(self.pull(oid))

    def wanted(self, o, fetch, cb):
        """ObjectStore hook (a getter, multi-node): a getter waits for PENDING `o`."""
        oid = o.oid
        if fetch:
            if oid in self.proxies:
                self.want(oid)
            return
        # wait(fetch_local=False): ready once sealed anywhere; a probe asks where
        if oid in self.proxies and oid not in self.pulls:
            self.spawn(self.pull(oid, want_data=False))

    def nofetch_callback(self, fn):
        return NoFetch(fn)

    def sealed_elsewhere(self, oid) -> bool:
        """`oid` (not copied here) is known sealed on another node."""
        return oid in self.remote_ready

    def ready_elsewhere(self, o, node_hex):
        """`o` (PENDING here) is sealed on `node_hex`: wake wait(fetch_local=False)
        getters; pull it if a get, a fetching wait or a task here waits for it."""
        self.remote_ready[o.oid] = node_hex
        if not o.waiters:
            return
        nofetch = [w for w in o.waiters if type(w) is NoFetch]
        if nofetch:
            o.waiters = [w for w in o.waiters if type(w) is not NoFetch]
            for w in nofetch:
                w()
        if o.waiters:
            self.want(o.oid)

    def locate(self, oid):
        """An id this node never knew (multi-node): a PENDING entry whose sources
        are found in the GCS.  The caller counts its ref on it."""
        o = self.store.get_or_create(oid)
        self.proxies[oid] = []
        self.locating.add(oid)
        self.store.watch(oid)
        return o

    async def gcs_locations(self, oid) -> list:
        try:
            h = await asyncio.get_running_loop().run_in_executor(
                None, self.gcs.r.hgetall, keys.obj(oid))
        except Exception:
            return []
        return [n.decode() for n in h if n.decode() != self.node_hex]

    # ------------------------------------------------------------------ forwarding
    def forward(self, t) -> bool:
        """Place a task that cannot run here on another node; False if none can."""
        spec = t.spec
        nodes = self.node_table.nodes
        if spec.kind != P.NORMAL_TASK or not nodes or spec.scheduling:
            return False
        target = choose_node(spec.resources, list(nodes.values()),
                             self.arg_bytes(spec))
        if target is None:
            return False
        self.send_task(t, target)
        return True

    def arg_bytes(self, spec) -> dict:
        """node hex -> bytes of the task's arena arguments held there (GCS)."""
        get = self.store.get
        big = [oid for oid in spec.ref_args()
               if (o := get(oid)) is not None and o.data is None]
        if not big:
            return {}
        try:
            # on the loop, so one attempt: locality is worth no wait on the GCS
            return self.gcs.bytes_by_node(big)
        except Exception:
            return {}

    def forward_args(self, spec, target) -> tuple:
        """(ref arguments to send along with a task, the ids exported to `target`):
        inline arguments travel in the message, arena ones are pulled by the
        receiver; refs nested in by-value or inline arguments are kept alive here
        for the receiver (remote refs)."""
        get = self.store.get
        args = {}
        nested = []
        for a in spec.args:
            if a[0] == P.ARG_VALUE:
                nested.extend(a[2] or ())
        for oid in spec.ref_args():
            o = get(oid)
            if o is not None and o.data is not None:
                args[oid] = [o.data, o.is_error, list(o.contained)]
                nested.extend(o.contained)
            else:
                args[oid] = None
        return args, self.export_refs(target, nested)

    def send_task(self, t, node_hex, kind=P.PEER_FORWARD):
        """t (args sealed here) runs on node_hex: sent as a PEER_FORWARD (or, for
        an actor's creation, PEER_ACTOR_CREATE), after everything sent there
        before.  Its results come back as a TASK_DONE; re-placed if that node
        dies."""
        if t.state is TS.WAITING_FOR_ARGS:
            t.move(TS.WAITING_FOR_RESOURCES)
        t.move(TS.FORWARDED)
        spec = t.spec
        self.forwarded[spec.task_id] = [t, node_hex]
        args, exported = self.forward_args(spec, node_hex)
        self.post(node_hex, [kind, spec.to_wire(), args, exported])

    def unforward(self, task_id):
        self.forwarded.pop(task_id, None)

    def ran_for_peer(self, task_id) -> bool:
        """`task_id` is a task a peer sent us (never sent on again)."""
        return bool(self.from_peer) and task_id in self.from_peer

    def post(self, node_hex, msg):
        """Send `msg` to a peer after everything posted to it earlier.  A link
        that cannot be opened (the peer busy, its pending handshakes full, a
        connection reset) is tried again with backoff: nothing posted is lost
        while the node lives; once it is declared dead, node_died() handles
        what was sent there and the rest is dropped."""
        q = self.outbox.get(node_hex)
        if q is None:
            self.outbox[node_hex] = [msg]
            self.spawn(self._drain(node_hex))
        else:
            q.append(msg)

    async def _drain(self, node_hex):
        delay = config.PEER_RETRY_FIRST_S
        try:
            while self.outbox.get(node_hex):
                if node_hex in self.node_table.dead:
                    return
                try:
                    w = await self.link(node_hex)
                except Exception as e:
                    now = time.monotonic()
                    since = self.unreachable.setdefault(node_hex, now)
                    if since == now:
                        log(f"cannot reach node {node_hex[:12]} ({e!r}); trying again")
                    elif now - since > config.PEER_RETRY_GIVE_UP_S:
                        log(f"gave up on node {node_hex[:12]} after {now - since:.0f} s "
                            f"({e!r}): {len(self.outbox[node_hex])} messages dropped")
                        return
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                since = self.unreachable.pop(node_hex, None)
                if since is not None:
                    log(f"reached node {node_hex[:12]} after "
                        f"{time.monotonic() - since:.1f} s")
                    delay = config.PEER_RETRY_FIRST_S
                msgs, self.outbox[node_hex] = self.outbox[node_hex], []
                w.write(P.frames(msgs))
        finally:
            self.outbox.pop(node_hex, None)
            self.unreachable.pop(node_hex, None)

    def unreachable_for(self, node_hex):
        """Seconds the link to `node_hex` has failed to open while messages
        wait for it (post()), or None if nothing waits on it."""
        since = self.unreachable.get(node_hex)
        return None if since is None else time.monotonic() - since

    async def link(self, node_hex):
        w = self.links.get(node_hex)
        if w is not None and not w.is_closing():
            return w
        async with self.link_locks[node_hex]:
            w = self.links.get(node_hex)
            if w is not None and not w.is_closing():
                return w
            rec = await self.node_table.record(node_hex)
            _, w = await peers.connect(rec["address"], int(rec["peer_port"]), self.token,
                                       self.node_hex, config.PEER_HANDSHAKE_TIMEOUT_S)
            self.links[node_hex] = w
            return w

    def on_forward(self, peer, msg):
        """A peer sends us a task: make its arguments local, then run it."""
        wire, args = msg[1], msg[2]
        exported = msg[3] if len(msg) > 3 else ()
        spec = P.TaskSpec.from_wire(wire)
        store = self.store
        temp = self.import_refs(peer, exported)
        for oid, v in args.items():
            o = store.get(oid)
            if o is not None and o.state is not ObjState.FREED:
                continue    # here already (sealed, being pulled, or a proxy)
            o = store.get_or_create(oid)
            o.refcount += 1
            temp.append(oid)
            if v is not None:
                store.seal_inline(o, v[0], v[1], v[2])
            else:
                # the submitter holds it until TASK_DONE; on_submit wants it now
                self.proxies[oid] = [peer]
                store.watch(oid)
        self.from_peer[spec.task_id] = peer
        self.sched.notify_end(spec.task_id)     # -> task_ended
        self.sched.on_submit(self.holder(peer), [P.SUBMIT, wire])
        self.drop_temp(temp)

    def task_ended(self, t):
        """LocalScheduler hook: a task we ran for a peer ended; report its results."""
        peer = self.from_peer.pop(t.spec.task_id)
        h = self.holder(peer)
        get = self.store.get
        results, drop, nested = [], [], []
        for oid in t.spec.return_ids():
            o = get(oid)
            if o is None:
                continue
            if o.state is ObjState.SEALED or o.state is ObjState.SPILLED:
                if o.data is not None:
                    results.append([oid, [P.INLINE, o.data, o.is_error,
                                          list(o.contained)]])
                    nested.extend(o.contained)
                    drop.append(oid)
                else:
                    results.append([oid, [P.REMOTE, o.size, o.is_error,
                                          list(o.contained)]])
            elif o.state is ObjState.PENDING and oid in self.proxies:
                # we forwarded it on ourselves: the peer pulls it via us
                results.append([oid, [P.REMOTE, 0, False, []]])
        if peer in self.node_table.dead:
            drop = [oid for oid, _ in results]
        else:
            exported = self.export_refs(peer, nested)
            self.post(peer, [P.PEER_TASK_DONE, t.spec.task_id, results, exported])
        if drop:
            self.store.drop_refs(h, drop)

    def on_task_done(self, peer, msg):
        task_id, results = msg[1], msg[2]
        exported = msg[3] if len(msg) > 3 else []
        remote = [oid for oid, d in results if d[0] == P.REMOTE]
        entry = self.forwarded.get(task_id)
        if entry is None or entry[1] != peer:
            # stale (re-placed after its node was thought dead): drop its refs
            if remote or exported:
                self.post(peer, [P.PEER_RELEASE, remote + list(exported)])
            return
        del self.forwarded[task_id]
        t = entry[0]
        store = self.store
        temp = self.import_refs(peer, exported)
        inline = [[oid, d] for oid, d in results if d[0] == P.INLINE]
        keep, release = [], []
        for oid in remote:
            o = store.get(oid)
            if o is None or o.state is not ObjState.PENDING or o.refcount <= 0:
                release.append(oid)     # nobody here wants it (any more)
                if o is not None and o.state is ObjState.PENDING:
                    store.forget(o)
            else:
                keep.append(oid)
        if release:
            self.post(peer, [P.PEER_RELEASE, release])
        if keep and t.spec.kind == P.NORMAL_TASK:
            # fetched on demand; until copied, the task's spec and arguments are
            # kept so that it can run again if `peer` dies (lineage)
            held, t.held = t.held, []
            self.lineage[task_id] = Lineage(t.spec, held, peer, set(keep))
        if keep:
            for oid in keep:
                self.proxies[oid] = [peer]
                self.hold_remote(oid, peer)
        self.sched.complete_task(t, inline)
        for oid in keep:
            o = store.get(oid)
            if o is not None and o.state is ObjState.PENDING:
                self.ready_elsewhere(o, peer)
        self.drop_temp(temp)

    def cancel(self, t, force, recursive=True):
        """LocalScheduler hook (cancel()): pass it on to the node running our task."""
        entry = self.forwarded.get(t.spec.task_id)
        if entry is None:
            return
        msg = [P.PEER_CANCEL, t.spec.task_id, bool(force), bool(recursive)]
        # after the call itself (post() keeps a peer's messages in order)
        self.post(entry[1], msg)

    def on_cancel(self, peer, msg):
        task_id, force = msg[1], msg[2]
        recursive = msg[3] if len(msg) > 3 else True
        if self.from_peer.get(task_id) == peer:
            self.sched.call_cancel(None, ids.return_id(task_id, 1), force, recursive)

    # ------------------------------------------------------------------ generator streams
    def relay_item(self, peer, task_id, index, o):
        """Streams hook: item `index` of a generator task we run for `peer` is
        sealed here: send it (an arena one stays here, held for `peer` until its
        RELEASE), in order with the stream's end."""
        if o.data is not None:
            result = [P.INLINE, o.data, o.is_error, list(o.contained)]
            exported = self.export_refs(peer, list(o.contained))
        else:
            self.keep_for(peer, o.oid)
            result = [P.REMOTE, o.size, o.is_error, list(o.contained)]
            exported = []
        self.post(peer, [P.PEER_GEN_ITEM, task_id, index, result, exported])

    def relay_end(self, peer, task_id, count):
        """Streams hook: that task's stream ended with `count` items."""
        self.post(peer, [P.PEER_GEN_END, task_id, count])

    def send_gen_ack(self, task_id, consumed, stop):
        """Streams hook: our generator task runs on another node: tell it how far
        its consumer here is (or to stop)."""
        entry = self.forwarded.get(task_id)
        if entry is not None:
            self.post(entry[1], [P.PEER_GEN_ACK, task_id, consumed,
                                            bool(stop)])

    def take_peer_result(self, peer, oid, result, exported, wanted):
        """One result a peer sent (as in TASK_DONE) for PENDING entry `oid`: seal
        it (inline) or make it a proxy of the peer's copy (REMOTE, held for us);
        not `wanted`: release what the peer holds for us."""
        temp = self.import_refs(peer, exported)
        o = self.store.get(oid)
        if wanted and o is not None and o.state is ObjState.PENDING:
            if result[0] == P.INLINE:
                self.store.seal_inline(o, result[1], result[2], result[3])
            else:
                self.proxies[oid] = [peer]
                self.hold_remote(oid, peer)
                self.ready_elsewhere(o, peer)
        elif result[0] == P.REMOTE:
            self.post(peer, [P.PEER_RELEASE, [oid]])
        self.drop_temp(temp)

    def has_live_source(self, oid) -> bool:
        """A node that is alive holds (or makes) `oid` for us."""
        nt = self.node_table
        return any(n in nt.nodes and n not in nt.dead for n in self.proxies.get(oid, ()))

    def defer_infeasible_warning(self, t):
        """Warn at the next tick if no node can run it then either (a node that
        is joining may be a publish away)."""
        t.warned_infeasible = True
        self.unwarned.append(t)

    def retry(self, t, why):
        self.forwarded.pop(t.spec.task_id, None)
        if t.spec.kind != P.NORMAL_TASK:
            return self.cs.retry(t, why)    # actors: cluster_scheduling.py
        sched = self.sched
        if t.cancelled:
            t.move(TS.CANCELLED)
            sched.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
            return
        if t.retries_left == 0:
            t.move(TS.FAILED)
            sched.fail_task(t, exceptions.NodeDiedError(
                f"Task {t.spec.name} failed: {why}, and it has no retries left "
                f"(max_retries={t.spec.max_retries})."))
            return
        if t.retries_left > 0:
            t.retries_left -= 1
        t.move(TS.WAITING_FOR_RESOURCES)
        if self.resources.feasible(t.spec.resources):
            sched.push_ready(t, front=True)
        elif not self.forward(t):
            sched.add_infeasible(t)

    def node_died(self, node_hex):
        """NodeTable callback: `node_hex` was declared dead."""
        log(f"node {node_hex[:12]} died")
        w = self.links.pop(node_hex, None)
        if w is not None:
            w.close()
        # actor calls and creations in flight there, and its actors and
        # placement groups: cluster placement's (before our tasks are re-placed)
        lost = [(tid, t) for tid, (t, where) in self.forwarded.items()
                if where == node_hex and t.spec.kind != P.NORMAL_TASK]
        for tid, _ in lost:
            del self.forwarded[tid]
        self.cs.node_died(node_hex, lost)
        for task_id, (t, where) in list(self.forwarded.items()):
            if where == node_hex:
                self.retry(t, f"its node {node_hex} died")
        for L in [L for L in self.lineage.values() if L.node == node_hex]:
            self.reexecute(L, f"node {node_hex} died")
        for oid in [oid for oid, n in self.remote_ready.items() if n == node_hex]:
            del self.remote_ready[oid]
        h = self.holders.pop(node_hex, None)
        if h is not None:
            self.store.release_holder(h)
            self.streams.holder_lost(h)     # streams it consumed (tasks run for it)
        self.streams.node_died(node_hex)
        # proxies whose only source it was fail (or are rebuilt) when next wanted;
        # those wanted now are being pulled, and their pull notices

    # ------------------------------------------------------------------ state API
    def arg_reason(self, oid):
        """FETCHING_ARGS if `oid` is sealed on another node and not copied here
        yet; None otherwise (the caller says what makes it)."""
        node = self.remote_ready.get(oid)
        if node is None:
            return None
        return reason(Reason.FETCHING_ARGS, object_id=oid.hex(), from_node=node)

    def forwarded_to(self, task_id):
        """The node a task of ours was sent to, or None."""
        entry = self.forwarded.get(task_id)
        return entry[1] if entry is not None else None

    def forwarded_tasks(self) -> list:
        """(Task, node hex) of every task of ours running on another node."""
        return [(t, n) for t, n in self.forwarded.values()]

    def source_of(self, oid):
        """A node that has or will have `oid`, which is not here: where it is
        sealed, where its task was sent, or where its proxy points."""
        return self.where_else(oid, None)

    async def query(self, node_hex, payload, timeout=10.0):
        """Ask the raylet of `node_hex` (PEER_STATE on a connection of its own) and
        return its answer; raises on a node that does not answer in `timeout`."""
        rec = await self.node_table.record(node_hex, wait_s=min(timeout, 2.0))
        loop = asyncio.get_running_loop()
        sock = await peers.sock_connect(loop, rec["address"], int(rec["peer_port"]),
                                        self.token, self.node_hex, timeout)
        try:
            await loop.sock_sendall(sock, P.frame([P.PEER_STATE, payload]))
            msg = await asyncio.wait_for(peers.sock_read_frame(loop, sock), timeout)
        finally:
            sock.close()
        if msg[0] != P.PEER_STATE_REPLY:
            raise ConnectionError(f"node {node_hex[:12]} answered {msg[0]}")
        return msg[1]

    # ------------------------------------------------------------------ pulls
    def start_pull(self, oid, sources=None):
        if oid not in self.pulls:
            self.spawn(self.pull(oid, sources))

    async def pull(self, oid, sources=None, want_data=True) -> bool:
        """Make `oid` (a PENDING entry here) local, from `sources` (default: its
        proxy's).  One pull per object: concurrent callers wait for the same one.
        want_data=False: only learn that it exists somewhere (wait(fetch_local=
        False)); small objects come anyway."""
        running = self.pulls.get(oid)
        if running is None:
            running = self.pulls[oid] = self.spawn(self._pull(oid, sources, want_data))
            running.add_done_callback(lambda _t: self.pulls.pop(oid, None))
        elif want_data and not getattr(running, "want_data", True):
            # a probe is running: fetch once it answered
            try:
                await asyncio.shield(running)
            except Exception:
                pass
            return await self.pull(oid, sources, want_data)
        running.want_data = getattr(running, "want_data", want_data)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log(f"pull of {oid.hex()} failed: {e!r}")
            return False

    def _sources(self, oid, sources):
        return list(sources) if sources is not None else list(self.proxies.get(oid, ()))

    async def _pull(self, oid, sources, want_data) -> bool:
        o = self.store.get(oid)
        nt = self.node_table
        if o is None or o.state is not ObjState.PENDING:
            return True
        asyncio.current_task().want_data = want_data
        o.refcount += 1     # held while the bytes travel
        try:
            delay = 0.05
            attempt = 0
            started = time.monotonic()
            while True:
                srcs = self._sources(oid, sources)
                had_source = bool(srcs)
                if not any(s in nt.nodes for s in srcs):
                    srcs += [n for n in await self.gcs_locations(oid) if n not in srcs]
                for src in srcs:
                    if await self.pull_via(o, src, want_data, quiet=attempt > 0):
                        return True
                    if o.state is not ObjState.PENDING:
                        return True
                if o.state is not ObjState.PENDING:
                    return True
                if o.refcount <= 1 and not o.waiters:
                    return False        # nobody here wants it any more
                if not any(s in nt.nodes for s in srcs):
                    if had_source or (srcs and all(s in nt.dead for s in srcs)):
                        gone = [s[:12] for s in srcs] or ["?"]
                        self.lost(o, f"its copies were on node(s) {', '.join(gone)}, "
                                     f"which died")
                        return o.state is not ObjState.PENDING
                    # an id we were never sent: not in the GCS (yet); wait for it,
                    # but not forever: an id no node ever lists is lost, not late
                    if not srcs and time.monotonic() - started > config.UNKNOWN_OBJECT_WAIT_S:
                        self.lost(o, f"no node of the cluster has listed it in the GCS "
                                     f"for {config.UNKNOWN_OBJECT_WAIT_S:.0f} s (it was "
                                     f"never created, or it was freed)")
                        return o.state is not ObjState.PENDING
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                attempt += 1
        finally:
            if self.pulls.get(oid) is asyncio.current_task():
                del self.pulls[oid]     # before the decref: it may drop the proxy
            self.store.decref(oid)

    async def pull_via(self, o, src, want_data, quiet=False) -> bool:
        """Pull `o` from `src`, following redirects; True once sealed here (or,
        without want_data, known sealed somewhere)."""
        for _ in range(MAX_REDIRECTS):
            rec = self.node_table.nodes.get(src)
            if rec is None:
                return False
            try:
                res = await self._pull_from(o, rec, want_data)
            except PULL_ERRORS as e:
                if not quiet:
                    log(f"pull of {o.oid.hex()} from {src[:12]} failed: {e!r}")
                res = False
            if o.state is ObjState.CREATING:
                # a half-written copy: give the space back, wait for another
                self.store.abort_create(o)
            if not isinstance(res, str):
                return res
            src = res
            if src == self.node_hex:
                return False
        return False

    async def _read_reply(self, loop, sock, src):
        """The server answers once the object exists: wait, but give up if its
        node is declared dead meanwhile (a vanished host sends no reset)."""
        reading = asyncio.ensure_future(peers.sock_read_frame(loop, sock))
        try:
            while True:
                done, _ = await asyncio.wait([reading], timeout=1.0)
                if done:
                    return reading.result()
                if src in self.node_table.dead:
                    raise ConnectionError(f"node {src[:12]} died")
        finally:
            if not reading.done():
                reading.cancel()

    async def _pull_from(self, o, rec, want_data):
        """One attempt: True (done), False (it is not there) or a node hex
        (redirected there)."""
        store = self.store
        src = rec["node_id"]
        loop = asyncio.get_running_loop()
        sock = await peers.sock_connect(loop, rec["address"], int(rec["peer_port"]),
                                        self.token, self.node_hex)
        try:
            hold = o.oid in self.locating and o.oid not in self.remote_refs
            await loop.sock_sendall(sock, P.frame([P.PEER_PULL, o.oid, want_data, hold]))
            msg = await self._read_reply(loop, sock, src)
            kind = msg[0]
            if kind == P.PEER_REDIRECT:
                return str(msg[2])
            if kind == P.PEER_READY:
                self.ready_elsewhere(o, src)
                return True
            if kind != P.PEER_OBJECT:
                return False
            size, is_error, contained, data = msg[1:5]
            exported = msg[5] if len(msg) > 5 else ()
            if o.state is not ObjState.PENDING:
                return True     # sealed meanwhile by another way
            temp = self.import_refs(src, exported)
            try:
                if data is not None:
                    store.seal_inline(o, data, is_error, contained)
                else:
                    off = store.reserve_now(o, size)
                    if off is None:
                        raise exceptions.ObjectStoreFullError(
                            f"no room for object {o.oid.hex()} ({size} bytes) "
                            f"pulled from node {src}")
                    # the bytes go straight into the arena, in threads: one
                    # blocking recv per 64 MiB instead of a loop turn per 64 KiB,
                    # and a large object over several connections at once
                    await self.recv_striped(loop, sock, rec, o.oid, off, size,
                                            msg[6] if len(msg) > 6 else size)
                    self.put_gcs("hset", keys.obj(o.oid), self.node_hex, size)
                    store.seal_arena(o, is_error, contained)
            finally:
                self.drop_temp(temp)
            self.proxies.pop(o.oid, None)
            self.remote_ready.pop(o.oid, None)
            self.locating.discard(o.oid)
            self.lineage_done(o.oid)
            return True
        finally:
            sock.close()

    async def recv_striped(self, loop, sock, rec, oid, off, size, first):
        """Receive an object's body: [0, first) on `sock` (which sent the header),
        the rest in stripes over more connections, all at once."""
        jobs = [loop.run_in_executor(None, self.recv_body, sock, off, first)]
        socks = []
        try:
            rest = size - first
            n = max(1, min(STRIPES - 1, rest // STRIPE_MIN)) if rest else 0
            for i in range(n):
                s, e = first + rest * i // n, first + rest * (i + 1) // n
                ps = await peers.sock_connect(loop, rec["address"], int(rec["peer_port"]),
                                              self.token, self.node_hex)
                socks.append(ps)
                await loop.sock_sendall(ps, P.frame([P.PEER_PULL, oid, True, False,
                                                     [s, e]]))
                jobs.append(loop.run_in_executor(None, self.recv_body, ps, off + s, e - s))
            results = await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            for ps in socks:
                ps.close()
        for res in results:
            if isinstance(res, BaseException):
                raise res

    def recv_body(self, sock, off, size):
        """(thread) Receive `size` bytes of an object into the arena at `off`."""
        self.store.prefault(off, size)
        sock.setblocking(True)
        sock.settimeout(BODY_TIMEOUT_S)
        view = self.store.arena_slice(off, size)
        try:
            while len(view):
                n = sock.recv_into(view, min(len(view), 64 << 20), socket.MSG_WAITALL)
                if n == 0:
                    raise ConnectionError("the peer closed the connection mid-object")
                view = view[n:]
        finally:
            view.release()

    # ------------------------------------------------------------------ serving
    async def serve(self, reader, writer):
        """A connection from a peer: authenticate, then handle its messages.
        At most MAX_PENDING_PEER_HANDSHAKES connections may be unauthenticated
        at once: past that the oldest is dropped (hundreds of idle connections
        cost a few, and never lock real peers out)."""
        addr = writer.get_extra_info("peername")
        pending = self.handshaking
        pending[writer] = None
        while len(pending) > max(1, config.MAX_PENDING_PEER_HANDSHAKES):
            oldest = next(iter(pending))
            del pending[oldest]
            oldest.close()
        try:
            peer = await peers.accept_handshake(reader, writer, self.token,
                                                config.PEER_HANDSHAKE_TIMEOUT_S)
        except Exception as e:
            log(f"refused a connection from {addr}: {e!r}")
            writer.close()
            return
        finally:
            pending.pop(writer, None)
        dead = self.node_table.dead
        if peer in dead:
            # a node the cluster declared dead (stalled, cut off) is fenced: its
            # work was placed again elsewhere, so nothing it says counts any more
            log(f"refused a connection from node {peer[:12]}: it was declared dead")
            writer.close()
            return
        writer.transport.set_write_buffer_limits(high=4 * CHUNK)
        try:
            while True:
                msg = await peers.read_frame(reader)
                if peer in dead:
                    log(f"closed the connection of node {peer[:12]}: it was "
                        f"declared dead")
                    break
                kind = msg[0]
                if kind == P.PEER_PULL:
                    await self.serve_pull(peer, reader, writer, msg)
                elif kind == P.PEER_FORWARD:
                    self.on_forward(peer, msg)
                elif kind == P.PEER_TASK_DONE:
                    self.on_task_done(peer, msg)
                elif kind == P.PEER_RELEASE:
                    self.store.drop_refs(self.holder(peer), msg[1])
                elif kind == P.PEER_CANCEL:
                    self.on_cancel(peer, msg)
                elif kind == P.PEER_GEN_ITEM:
                    self.streams.on_peer_item(peer, msg)
                elif kind == P.PEER_GEN_END:
                    self.streams.on_peer_end(peer, msg)
                elif kind == P.PEER_GEN_ACK:
                    self.streams.on_peer_ack(peer, msg)
                elif kind == P.PEER_STATE:
                    result = self.on_state(msg[1])
                    if asyncio.iscoroutine(result):
                        result = await result
                    writer.write(P.frame([P.PEER_STATE_REPLY, result]))
                elif kind >= P.PEER_ACTOR_CREATE:
                    self.cs.on_peer(peer, msg)   # cluster_scheduling.py
                else:
                    log(f"unknown message {kind} from {peer[:12]}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as e:
            log(f"error serving {peer[:12]}: {e!r}")
        finally:
            writer.close()

    def where_else(self, oid, peer):
        """A node other than us and `peer` that has or will have PENDING `oid`."""
        n = self.remote_ready.get(oid)
        if n is None:
            entry = self.forwarded.get(ids.task_of(oid))
            n = entry[1] if entry is not None else None
        nt = self.node_table
        if n is None:
            for s in self.proxies.get(oid, ()):
                if s in nt.nodes:
                    n = s
                    break
        return n if n is not None and n != peer and n not in nt.dead else None

    async def serve_pull(self, peer, reader, writer, msg):
        oid = msg[1]
        want_data = msg[2] if len(msg) > 2 else True
        hold = msg[3] if len(msg) > 3 else False
        get = self.store.get
        o = get(oid)
        while o is not None and (o.state is ObjState.PENDING or
                                 o.state is ObjState.CREATING):
            # not made yet (or not here): wait for it, or send the peer on
            where = self.where_else(oid, peer) if o.state is ObjState.PENDING else None
            if where is not None:
                writer.write(P.frame([P.PEER_REDIRECT, oid, where]))
                return
            if oid in self.proxies:
                self.want(oid)      # its sources are in the GCS only: fetch it here
            fut = asyncio.get_running_loop().create_future()
            o.waiters.append(lambda: fut.done() or fut.set_result(None))
            await fut
            o = get(oid)
        if o is None or o.state not in (ObjState.SEALED, ObjState.SPILLED):
            writer.write(P.frame([P.PEER_MISSING, oid]))
            return
        if not want_data and o.data is None:
            writer.write(P.frame([P.PEER_READY, oid, o.size]))
            return
        part = msg[4] if len(msg) > 4 else None
        if part is not None:
            if o.data is None and 0 <= part[0] <= part[1] <= o.size:
                await self.send_body(peer, reader, writer, o, part[0], part[1])
            return
        h = self.holder(peer)
        exported = self.export_refs(peer, list(o.contained) + ([oid] if hold else []))
        desc = self.store.pin_descriptor(h, o)
        if desc[0] == P.INLINE:
            writer.write(P.frame([P.PEER_OBJECT, len(desc[1]), desc[2],
                                  list(o.contained), desc[1], exported]))
            return
        _, off, size, is_error = desc[:4]
        # a large object: this connection sends the first stripe, the puller
        # asks for the others on more connections
        first = size if size < 2 * STRIPE_MIN else size // STRIPES
        writer.write(P.frame([P.PEER_OBJECT, size, is_error, list(o.contained), None,
                              exported, first]))
        await self.send_body(peer, reader, writer, o, 0, first, pinned=True)

    async def send_body(self, peer, reader, writer, o, start, end, pinned=False):
        """Send bytes [start, end) of arena object `o` (pinned for the puller)."""
        store = self.store
        h = self.holder(peer)
        oid = o.oid
        if not pinned:
            desc = store.pin_descriptor(h, o)
            if desc[0] == P.INLINE:      # it could not be restored: give up
                store.unpin(h, [oid])
                return
        off = o.offset + start
        size = end - start
        try:
            if self.arena_file is None:
                self.arena_file = open(store.arena_path, "rb")
            # sendfile: the kernel sends the arena's pages without a copy here
            await asyncio.get_running_loop().sendfile(writer.transport, self.arena_file,
                                                      off, size)
            # ... and may still reference them in unread socket buffers: keep the
            # pin until the puller closed the connection (it read everything)
            await asyncio.wait_for(reader.read(1), BODY_TIMEOUT_S)
        finally:
            store.unpin(h, [oid])
