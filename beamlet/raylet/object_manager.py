"""Cross-node work of a raylet: forwarding tasks, pulling objects, remote refs.

None of this runs on the single-node fast path: it is entered only when a task
cannot run here (no local node resources for it; or a backlog while other nodes
idle) or when a task arrives from a peer.

    node A (submitter)                          node B (runs the task)
    make_ready: infeasible here ──FORWARD──────► on_forward: args present or pulled
      t: FORWARDED, args held                     (PULL from A, once per object),
                                                  on_submit as if from a client
    on_task_done ◄────────────TASK_DONE────────── the task ended: inline results
      pull REMOTE results from B ──PULL─────────►   travel in the message, arena
      seal them here, then RELEASE ─────────────►   ones stay held for A until
      complete_task(t): the submitter's refs         RELEASE (a "remote ref")
      see the values as if it ran here

Results always come back to the submitting node (eagerly), so that node keeps
every object its programs hold; the producing node keeps its copy while the
submitter holds a remote ref on it, which also makes it the preferred place for
later tasks using it (locality).  A peer is represented in the raylet's reference
counts by a PeerHolder (like a client connection): its refs are released when it
dies.  When a node dies, tasks forwarded to it are placed again (within
max_retries), and results not yet copied back are rebuilt by re-running their
task (its spec is kept until then: lineage).
"""
import asyncio
import collections
import sys
import time

from .. import exceptions
from .._private import protocol as P
from ..gcs import keys
from ..scheduler.placement import choose_node, fits, idle_cpus
from . import peers
from .object_store import ObjState
from .scheduler import TaskState as TS

CHUNK = 8 * 1024 * 1024


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


class ObjectManager:
    def __init__(self, raylet):
        self.r = raylet
        self.token = raylet.args.redis_password.encode()
        self.node_hex = raylet.node_id.hex()
        self.nodes = {}        # node hex -> GCS record of every other ALIVE node
        self.dead = set()      # node hexes known dead
        self.links = {}        # node hex -> StreamWriter (our control link to it)
        self.link_locks = collections.defaultdict(asyncio.Lock)
        self.holders = {}      # node hex -> PeerHolder
        self.from_peer = {}    # task id -> node hex: tasks we run for a peer
        self.forwarded = {}    # task id -> [Task, node hex]: our tasks run elsewhere
        self.pulls = {}        # oid -> asyncio.Task (one pull per object at a time)
        self.remote_refs = {}  # oid -> node hex that keeps the original for us
        self.unwarned = []     # infeasible tasks to warn about after a table refresh
        self.owned = set()     # background coroutines, cancelled on close
        self.server = None
        self.port = None
        self.refreshing = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self):
        port = getattr(self.r.args, "peer_port", 0) or 0
        self.server = await asyncio.start_server(self.serve, self.r.args.node_ip, port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.r.gcs.r.hset(keys.node(self.r.node_id), "peer_port", self.port)
        await self.refresh_nodes()

    def close(self):
        if self.server is not None:
            self.server.close()
        for t in list(self.owned):
            t.cancel()
        for w in self.links.values():
            w.close()

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

    # ------------------------------------------------------------------ node table
    async def refresh_nodes(self):
        """Re-read the node table (in a thread: the loop must not wait on Redis)."""
        if self.refreshing:
            return
        self.refreshing = True
        try:
            recs = await asyncio.get_running_loop().run_in_executor(
                None, self.r.gcs.nodes)
        except Exception:
            return
        finally:
            self.refreshing = False
        nodes = {}
        for n in recs:
            i = n["node_id"]
            if n.get("state") == "ALIVE" and i != self.node_hex and n.get("peer_port"):
                nodes[i] = n
            elif n.get("state") == "DEAD" and i not in self.dead and i != self.node_hex:
                self.dead.add(i)
                self.node_died(i)
        self.nodes = nodes

    async def tick(self):
        """Every heartbeat: node table, infeasible tasks, backlog spill-over."""
        if self.refreshing:
            return      # the previous tick is still reading the node table
        await self.refresh_nodes()
        r = self.r
        if self.unwarned:
            pending, self.unwarned = self.unwarned, []
            for t in pending:
                if t in r.infeasible and not self.forward(t):
                    t.warned_infeasible = False
                elif t in r.infeasible:
                    r.infeasible.remove(t)
            r.warn_infeasible()
        if not self.nodes:
            return
        for t in list(r.infeasible):
            if t.state is not TS.WAITING_FOR_RESOURCES or self.forward(t):
                r.infeasible.remove(t)
        self.spill_backlog()

    def spill_backlog(self):
        """Local CPUs all busy and tasks queued while other nodes idle: send some."""
        r = self.r
        if not r.ready.count or r.resources.available.get("CPU", 0.0) >= 1.0:
            return
        for node_hex, rec in list(self.nodes.items()):
            free = idle_cpus(rec)
            avail = dict(rec.get("resources_available", {}))
            for shape, q in r.ready.heads():
                while free > 0 and q:
                    t = q[-1]
                    spec = t.spec
                    if (spec.kind != P.NORMAL_TASK or spec.task_id in self.from_peer
                            or spec.scheduling or not fits(avail, spec.resources)):
                        break
                    q.pop()
                    r.ready.count -= 1
                    for k, v in spec.resources.items():
                        avail[k] = avail.get(k, 0.0) - v
                    free -= max(1, int(spec.resources.get("CPU", 1)))
                    self.send_task(t, node_hex)
            rec["resources_available"] = avail

    # ------------------------------------------------------------------ forwarding
    def forward(self, t) -> bool:
        """Place a task that cannot run here on another node; False if none can."""
        spec = t.spec
        if spec.kind != P.NORMAL_TASK or not self.nodes or spec.scheduling:
            return False
        target = choose_node(spec.resources, list(self.nodes.values()),
                             self.arg_bytes(spec))
        if target is None:
            return False
        self.send_task(t, target)
        return True

    def arg_bytes(self, spec) -> dict:
        """node hex -> bytes of the task's arena arguments held there (GCS)."""
        objects = self.r.store.objects
        big = [oid for oid in spec.ref_args()
               if (o := objects.get(oid)) is not None and o.data is None]
        if not big:
            return {}
        try:
            p = self.r.gcs.r.pipeline(transaction=False)
            for oid in big:
                p.hgetall(keys.obj(oid))
            out = collections.Counter()
            for h in p.execute():
                for node, size in h.items():
                    out[node.decode()] += int(size)
            return out
        except Exception:
            return {}

    def send_task(self, t, node_hex):
        """t (WAITING_FOR_RESOURCES, args sealed here) runs on node_hex."""
        t.move(TS.FORWARDED)
        spec = t.spec
        self.forwarded[spec.task_id] = [t, node_hex]
        objects = self.r.store.objects
        args = {}
        for oid in spec.ref_args():
            o = objects.get(oid)
            if o is not None and o.data is not None:
                args[oid] = [o.data, o.is_error, list(o.contained)]
            else:
                args[oid] = None
        if hasattr(self.r, "task_event"):
            self.r.task_event(t)
        self.spawn(self.send(node_hex, [P.PEER_FORWARD, spec.to_wire(), args]))

    async def send(self, node_hex, msg):
        try:
            w = await self.link(node_hex)
            w.write(P.frame(msg))
        except Exception as e:
            log(f"cannot reach node {node_hex[:12]}: {e!r}")
            # the monitor will declare it dead; node_died() re-places its tasks

    async def link(self, node_hex):
        w = self.links.get(node_hex)
        if w is not None and not w.is_closing():
            return w
        async with self.link_locks[node_hex]:
            w = self.links.get(node_hex)
            if w is not None and not w.is_closing():
                return w
            rec = self.nodes[node_hex]
            _, w = await peers.connect(rec["address"], int(rec["peer_port"]), self.token,
                                       self.node_hex)
            self.links[node_hex] = w
            return w

    def on_forward(self, peer, msg):
        """A peer sends us a task: make its arguments local, then run it."""
        _, wire, args = msg
        spec = P.TaskSpec.from_wire(wire)
        r = self.r
        objects = r.store.objects
        temp = []
        for oid, v in args.items():
            o = objects.get(oid)
            if o is not None and o.state is not ObjState.FREED:
                continue    # here already (sealed, or being pulled)
            o = r.store.get_or_create(oid)
            o.refcount += 1
            temp.append(oid)
            if v is not None:
                r.seal_object_inline(o, v[0], v[1], v[2])
            else:
                self.start_pull(oid, [peer])
        self.from_peer[spec.task_id] = peer
        r.on_submit(self.holder(peer), [P.SUBMIT, wire])
        for oid in temp:
            r.decref(oid)

    def task_ended(self, t):
        """Raylet hook: a task we ran for a peer ended; report its results."""
        peer = self.from_peer.pop(t.spec.task_id)
        h = self.holder(peer)
        objects = self.r.store.objects
        results, drop = [], []
        for oid in t.spec.return_ids():
            o = objects.get(oid)
            if o is None or o.state not in (ObjState.SEALED, ObjState.SPILLED):
                continue
            if o.data is not None:
                results.append([oid, [P.INLINE, o.data, o.is_error, list(o.contained)]])
                drop.append(oid)
            else:
                results.append([oid, [P.REMOTE, o.size, o.is_error, list(o.contained)]])
        if peer in self.dead:
            drop = [oid for oid, _ in results]
        else:
            self.spawn(self.send(peer, [P.PEER_TASK_DONE, t.spec.task_id, results]))
        if drop:
            self.r.on_ref_del(h, [P.REF_DEL, drop])

    def on_task_done(self, peer, msg):
        _, task_id, results = msg
        entry = self.forwarded.get(task_id)
        if entry is None or entry[1] != peer:
            # stale (re-placed after its node was thought dead): drop its refs
            remote = [oid for oid, d in results if d[0] == P.REMOTE]
            if remote:
                self.spawn(self.send(peer, [P.PEER_RELEASE, remote]))
            return
        inline = [[oid, d] for oid, d in results if d[0] == P.INLINE]
        remote = [oid for oid, d in results if d[0] == P.REMOTE]
        if not remote:
            del self.forwarded[task_id]
            self.r.complete_task(entry[0], inline)
            return
        self.spawn(self.collect(task_id, peer, inline, remote))

    async def collect(self, task_id, peer, inline, remote):
        """Copy a forwarded task's arena results here, then complete it."""
        entry = self.forwarded.get(task_id)
        ok = True
        for oid in remote:
            o = self.r.store.objects.get(oid)
            if o is None or o.state is not ObjState.PENDING:
                continue   # nobody here wants it (any more)
            ok = await self.pull(oid, [peer]) and ok
        # the producer keeps its copy while ours lives (a remote ref): it is where
        # later tasks using the object run best; release() drops it
        objects = self.r.store.objects
        done = [oid for oid in remote if (o := objects.get(oid)) is not None
                and o.state is not ObjState.PENDING and o.state is not ObjState.FREED]
        for oid in done:
            self.remote_refs[oid] = peer
        rest = [oid for oid in remote if oid not in self.remote_refs]
        if rest:
            self.spawn(self.send(peer, [P.PEER_RELEASE, rest]))
        if self.forwarded.get(task_id) is not entry:
            return
        if not ok:
            # the only copy went with its node: rebuild it by running the task again
            log(f"results of {entry[0].spec.name} lost with node {peer[:12]}; re-running")
            self.retry(entry[0], f"node {peer} died before its results were copied")
            return
        del self.forwarded[task_id]
        self.r.complete_task(entry[0], inline)

    def release(self, oid):
        """Raylet hook: our copy of `oid` was freed; the producer may free its own."""
        peer = self.remote_refs.pop(oid)
        if peer not in self.dead:
            self.spawn(self.send(peer, [P.PEER_RELEASE, [oid]]))

    def defer_infeasible_warning(self, t):
        """Warn only once a fresh node table confirms no node can run it."""
        t.warned_infeasible = True
        self.unwarned.append(t)

    def retry(self, t, why):
        self.forwarded.pop(t.spec.task_id, None)
        r = self.r
        if t.retries_left == 0:
            t.move(TS.FAILED)
            r.fail_task(t, exceptions.NodeDiedError(
                f"Task {t.spec.name} failed: {why}, and it has no retries left "
                f"(max_retries={t.spec.max_retries})."))
            return
        if t.retries_left > 0:
            t.retries_left -= 1
        t.move(TS.WAITING_FOR_RESOURCES)
        if r.resources.feasible(t.spec.resources):
            r.ready.push(t, front=True)
            r.request_schedule()
        elif not self.forward(t):
            r.infeasible.append(t)

    def node_died(self, node_hex):
        log(f"node {node_hex[:12]} died")
        w = self.links.pop(node_hex, None)
        if w is not None:
            w.close()
        for task_id, (t, where) in list(self.forwarded.items()):
            if where == node_hex:
                self.retry(t, f"its node {node_hex} died")
        h = self.holders.pop(node_hex, None)
        if h is not None:
            r = self.r
            for oid, n in list(h.pins.items()):
                o = r.store.objects.get(oid)
                if o is not None:
                    o.pins -= n
                    if o.pins <= 0:
                        r.unpinned(o)
            for oid, n in list(h.refs.items()):
                for _ in range(n):
                    r.decref(oid)

    # ------------------------------------------------------------------ pulls
    def start_pull(self, oid, sources):
        if oid not in self.pulls:
            self.spawn(self.pull(oid, sources))

    async def pull(self, oid, sources) -> bool:
        """Make `oid` (a PENDING entry here) local, from one of `sources`.  One
        pull per object: concurrent callers wait for the same one."""
        running = self.pulls.get(oid)
        if running is None:
            running = self.pulls[oid] = self.spawn(self._pull(oid, sources))
            running.add_done_callback(lambda _t: self.pulls.pop(oid, None))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            raise
        except Exception:
            return False

    async def _pull(self, oid, sources) -> bool:
        r = self.r
        o = r.store.objects.get(oid)
        if o is None or o.state is not ObjState.PENDING:
            return True
        o.refcount += 1     # held while the bytes travel
        try:
            for src in sources:
                rec = self.nodes.get(src)
                if rec is None:
                    continue
                try:
                    if await self._pull_from(o, rec):
                        return True
                except (OSError, ConnectionError, asyncio.TimeoutError,
                        asyncio.IncompleteReadError) as e:
                    log(f"pull of {oid.hex()} from {src[:12]} failed: {e!r}")
                if o.state is ObjState.CREATING:
                    # a half-written copy: give the space back, wait for another
                    r.store.allocator.free(o.offset, o.size)
                    o.offset = -1
                    o.state = ObjState.PENDING   # deliberate: undo the reservation
            return False
        finally:
            r.decref(oid)

    async def _pull_from(self, o, rec) -> bool:
        r = self.r
        loop = asyncio.get_running_loop()
        sock = await peers.sock_connect(loop, rec["address"], int(rec["peer_port"]),
                                        self.token, self.node_hex)
        try:
            await loop.sock_sendall(sock, P.frame([P.PEER_PULL, o.oid]))
            msg = await peers.sock_read_frame(loop, sock)
            if msg[0] != P.PEER_OBJECT:
                return False
            _, size, is_error, contained, data = msg
            if data is not None:
                r.seal_object_inline(o, data, is_error, contained)
                return True
            off = r.store.reserve(o, size)
            while off is None:
                victims = r.store.spill_candidates()
                if not victims or r.spill(victims[0]):
                    raise exceptions.ObjectStoreFullError(
                        f"no room for object {o.oid.hex()} ({size} bytes) pulled from "
                        f"node {rec['node_id']}")
                off = r.store.reserve(o, size)
            view = r.arena_view[off:off + size]
            await peers.sock_recv_exact_into(loop, sock, view)
            view.release()
            for c in contained or ():
                r.incref(c)
            r.wb.put("hset", keys.obj(o.oid), self.node_hex, size)
            waiters = r.store.seal_arena(o, is_error, contained)
            r.seal_waiters(waiters)
            return True
        finally:
            sock.close()

    # ------------------------------------------------------------------ serving
    async def serve(self, reader, writer):
        """A connection from a peer: authenticate, then handle its messages."""
        addr = writer.get_extra_info("peername")
        try:
            peer = await peers.accept_handshake(reader, writer, self.token)
        except Exception as e:
            log(f"refused a connection from {addr}: {e}")
            writer.close()
            return
        writer.transport.set_write_buffer_limits(high=4 * CHUNK)
        try:
            while True:
                msg = await peers.read_frame(reader)
                kind = msg[0]
                if kind == P.PEER_PULL:
                    await self.serve_pull(peer, writer, msg[1])
                elif kind == P.PEER_FORWARD:
                    self.on_forward(peer, msg)
                elif kind == P.PEER_TASK_DONE:
                    self.on_task_done(peer, msg)
                elif kind == P.PEER_RELEASE:
                    self.r.on_ref_del(self.holder(peer), [P.REF_DEL, msg[1]])
                else:
                    log(f"unknown message {kind} from {peer[:12]}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as e:
            log(f"error serving {peer[:12]}: {e!r}")
        finally:
            writer.close()

    async def serve_pull(self, peer, writer, oid):
        r = self.r
        o = r.store.objects.get(oid)
        if o is None or o.state not in (ObjState.SEALED, ObjState.SPILLED):
            writer.write(P.frame([P.PEER_MISSING, oid]))
            return
        h = self.holder(peer)
        desc = r.pin_descriptor(h, o)
        if desc[0] == P.INLINE:
            writer.write(P.frame([P.PEER_OBJECT, len(desc[1]), desc[2],
                                  list(o.contained), desc[1]]))
            return
        _, off, size, is_error = desc[:4]
        try:
            writer.write(P.frame([P.PEER_OBJECT, size, is_error, list(o.contained), None]))
            view = r.arena_view
            for start in range(off, off + size, CHUNK):
                writer.write(view[start:min(start + CHUNK, off + size)])
                await writer.drain()
            # the transport may still hold views of the arena: keep the pin until sent
            while writer.transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
        finally:
            r.on_unpin(h, [P.UNPIN, [oid]])
