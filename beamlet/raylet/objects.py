"""The raylet's object store: this node's objects, their references and pins, the
shared-memory arena, spilling and restoring, and get/wait.

Owns: the object table (ObjectTable in object_store.py: the pure states, their
  transition table and the arena allocator), the arena itself (a memfd mapped
  here and by every local process), the spill thread and directory, the
  CREATEs and restores waiting for room, and the `watched` set: ids whose
  freeing another component must hear of (it registers them with `watch`).
Uses: GcsWriter.put (object locations); NodeTable (whether other nodes exist);
  ObjectManager (an id this node never knew may be on another node: locate /
  wanted / sealed_elsewhere, and freeing a watched id: pending_freed / freed);
  LocalScheduler (a worker waiting in get lends its CPU back: block_worker /
  unblock_worker); ClusterScheduler and Actors (the creation object of an
  actor was freed: creation_freed).
Messages: PUT, CREATE, SEAL, GET, WAIT, REF_ADD, REF_DEL, UNPIN, and for direct
  actor calls OWN, FULFIL, REGISTER (protocol.py).  Results of direct calls are
  counted for their caller (the owner, found by `client(worker_id)`) when they
  are created or registered here; the caller drops the refs it does not keep.

Records: an Obj (object_store.py) is handed to other components by `get`; they
  read its state and count the refs they take on it (refcount += 1), but only
  the store frees it (`decref`), so every free passes through `free` below.
"""
import collections
import concurrent.futures
import errno
import mmap
import os
import threading
import time


from .. import exceptions
from .._private import config, ids, pages
from .._private import protocol as P
from ..gcs import keys
from .common import error_bytes, log
from .object_store import ObjectTable, ObjState

# The components it uses (Actors, ClusterScheduler, GcsWriter, NodeTable,
# ObjectManager, LocalScheduler) are named in annotations only, as strings: the shell
# (raylet.py) wires them together, so their modules need not import each other (no
# import circle).

class Prefaulter:
    """Maps the arena's pages ahead of its allocation frontier, in a thread of its
    own, once large objects are created.

    A put into arena pages never used before takes a page fault per 4 KiB page
    (the kernel allocating and zeroing it) on the putter's critical path: ~0.2 of
    the speed of a copy.  Pages once used stay mapped (the arena is never given
    back), so only the range past the highest offset ever allocated (the
    frontier) is fresh.  After a CREATE of at least PREFAULT_MIN_BYTES, the
    thread maps [frontier, frontier + ahead), ahead = twice that object's size
    (at most PREFAULT_AHEAD_MAX), with MADV_POPULATE_WRITE where the kernel has
    it (Linux 5.14+: it changes no data; `pages.Mapping`, which releases the GIL
    meanwhile, so the loop runs on), else by reading each page.  The putter's
    own mapping then only maps pages that exist (`pages.Mapping` too, in a
    thread of the putter's).  posix_fallocate of the memfd instead (page cache
    only, 2.4x cheaper than creating and mapping) measured slower: 0.20 of a
    copy against 0.29-0.36 for back-to-back puts of fresh 200 MB arrays.
    Nothing happens before the first large CREATE and at most `ahead` bytes
    beyond what objects used are created, so an idle cluster's memory does not
    grow."""

    STEP = 16 * 1024 * 1024     # mapped per call: close() never waits long

    def __init__(self, arena: "pages.Mapping", capacity: int):
        self.arena = arena
        self.capacity = capacity
        self.cond = threading.Condition()
        self.frontier = 0       # the highest end of an allocation so far
        self.mapped = 0         # [0, mapped): used by objects or mapped by us
        self.target = 0         # where the thread maps up to
        self.closed = False
        self.thread = None

    def allocated(self, off: int, size: int) -> None:
        """Arena range [off, off + size) was handed out (loop thread)."""
        end = off + size
        large = size >= config.PREFAULT_MIN_BYTES > 0
        if end <= self.frontier and not large:
            return
        with self.cond:
            self.frontier = max(self.frontier, end)
            self.mapped = max(self.mapped, self.frontier)
            if not large:
                return
            ahead = min(2 * size, config.PREFAULT_AHEAD_MAX)
            target = min(self.capacity, self.frontier + ahead)
            if target <= self.target:
                return
            self.target = target
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="prefault")
                self.thread.start()
            self.cond.notify()

    def _run(self):
        while True:
            with self.cond:
                while not self.closed and self.mapped >= self.target:
                    self.cond.wait()
                if self.closed:
                    return
                start = self.mapped
                n = min(self.STEP, self.target - start)
                self.mapped = start + n
            self._map(start, n)

    def _map(self, start, n):
        if not self.arena.populate(start, n):
            # (older kernels) a read of each page: a shared memfd page is
            # allocated (zeroed) on a read fault too, and a read cannot undo what
            # a putter writes into that page meanwhile (a write back could)
            self.arena.touch(start, n)

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join()


class Getter:
    """One GET or WAIT waiting for objects."""
    __slots__ = ("conn", "req", "oids", "missing", "timer", "done", "kind",
                 "num_returns", "worker", "fetch")


class ObjectStore:
    INTERFACE = (
        "wire",     # (the shell, once)
        # messages (the shell's handler table)
        "on_put", "on_create", "on_seal", "on_get", "on_wait", "on_ref_add",
        "on_ref_del", "on_unpin", "on_own", "on_fulfil", "on_register",
        # life
        "start", "close", "arena_path", "arena_size", "expire_creates", "stats",
        "used", "memory_report",
        # objects and references
        "get", "get_or_create", "incref", "decref", "watch", "forget",
        "forget_unwanted", "owner_died",
        "drop_refs", "unpin", "release_holder",
        # values
        "seal_inline", "seal_arena", "seal_results", "run_waiters",
        "pin_descriptor", "lost_descriptor", "arg_descriptors", "failed_arg",
        "request_restore",
        # the arena, for pulls from other nodes
        "reserve_now", "abort_create", "arena_slice", "prefault",
        # the state API and pending reasons (read only; introspection.py)
        "pending_arg", "waiting_on", "all_objects",
    )

    def __init__(self, node_id: bytes, session_dir: str, arena_size: int, spill_dir=""):
        self.node_hex = node_id.hex()
        self.arena_size = arena_size
        self.table = ObjectTable(arena_size)
        self.objects = self.table.objects
        # get(oid) -> Obj or None: the table's own lookup, bound once (hot path)
        self.get = self.objects.get
        self.get_or_create = self.table.get_or_create
        # where the user asked (object_spilling_directory), else the session's spill/
        self.spill_dir = spill_dir or os.path.join(session_dir, "spill")
        self.spill_thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="spill")
        self.spilling_bytes = 0      # bytes of objects being written out now
        self.pending_creates = []    # (deadline, conn, req, Obj, size)
        self.pending_restores = {}   # spilled Obj waiting for arena space -> deadline
        self.watched = set()         # ids whose freeing others must hear of
        self.create_owners = {}      # oid -> worker id of the caller a CREATE is for
        self.owned = {}              # worker id -> ids of the live objects it put
        self.waiting = set()         # the Getters that wait (what is blocked on what)
        self.arena_fd = self.arena = self.arena_view = self.arena_path = None
        self.arena_pages = self.prefaulter = None
        self.loop = None

    def wire(self, gcs: "GcsWriter", node_table: "NodeTable", om: "ObjectManager",
             sched: "LocalScheduler", actors: "Actors", cs: "ClusterScheduler",
             client=None) -> None:
        self.put_gcs = gcs.put
        # worker id -> the client connection of that process, or None (the shell's)
        self.client = client or (lambda worker_id: None)
        self.node_table = node_table
        self.om = om
        self.block_worker = sched.block_worker
        self.unblock_worker = sched.unblock_worker
        self.om_pending_freed = om.pending_freed
        self.om_freed = om.freed
        self.cs_creation_freed = cs.creation_freed
        self.actor_creation_freed = actors.creation_freed

    # ------------------------------------------------------------------ life
    def start(self, loop) -> None:
        """Create the arena (before any client connects) and the spill directory."""
        self.loop = loop
        self.arena_fd = os.memfd_create("beamlet-object-store", os.MFD_CLOEXEC)
        os.ftruncate(self.arena_fd, self.arena_size)
        self.arena = mmap.mmap(self.arena_fd, self.arena_size)
        self.arena_view = memoryview(self.arena)
        self.arena_path = f"/proc/{os.getpid()}/fd/{self.arena_fd}"
        self.arena_pages = pages.Mapping(self.arena)
        self.prefaulter = Prefaulter(self.arena_pages, self.table.allocator.capacity)
        os.makedirs(self.spill_dir, exist_ok=True)

    def close(self) -> None:
        self.spill_thread.shutdown(wait=True, cancel_futures=True)
        if self.prefaulter is not None:
            self.prefaulter.close()
        try:
            import shutil
            shutil.rmtree(self.spill_dir, ignore_errors=True)
        except Exception:
            pass

    def stats(self) -> dict:
        st = self.table.stats()
        # CREATEs and restores waiting for arena room (spills, or unpins)
        st["waiting_for_room"] = len(self.pending_creates) + len(self.pending_restores)
        return st

    def used(self) -> int:
        """Arena bytes in use."""
        return self.table.allocator.used

    # ------------------------------------------------------------------ refs
    def incref(self, oid):
        o = self.objects.get(oid)
        if o is not None:
            o.refcount += 1

    def decref(self, oid):
        o = self.objects.get(oid)
        if o is None:
            return
        o.refcount -= 1
        if o.refcount <= 0:
            self.free(o)

    def watch(self, oid) -> None:
        """Tell the freeing of `oid` to the object manager, the cluster scheduler
        and the actors (each looks whether it holds something for it)."""
        self.watched.add(oid)

    def free(self, o):
        st = o.state
        watched = self.watched
        if st is ObjState.PENDING or st is ObjState.CREATING:
            if st is ObjState.PENDING and watched and o.oid in watched:
                self.om_pending_freed(o)   # a remote object nobody here needs now
            return  # freed when its value arrives (seal sees refcount 0)
        del self.objects[o.oid]
        if o.owner is not None:
            self.disown(o)
        if st is ObjState.SPILLED:
            self.table.spilled_bytes -= o.size
            if not o.restoring:   # else restore_done removes the file
                try:
                    os.unlink(o.spill_path)
                except OSError:
                    pass
        elif o.pins > 0:
            # still mapped somewhere: the range is released at the last UNPIN
            o.free_when_unpinned = True
            self.table.freed_pinned[o.oid] = o
        else:
            self.table.release_memory(o)
            self.memory_freed()
        o.state = ObjState.FREED
        if o.size >= config.INLINE_THRESHOLD:
            # this node no longer holds it (other nodes' copies stay listed)
            self.put_gcs("hdel", keys.obj(o.oid), self.node_hex)
        heard = bool(watched) and o.oid in watched
        if heard:
            watched.discard(o.oid)
            self.om_freed(o)   # e.g. the copy we fetched is gone: unpin the origin's
        for c in o.contained:
            self.decref(c)
        if heard:
            self.cs_creation_freed(o.oid)      # an actor we own on another node
            self.actor_creation_freed(o)       # an actor of this node

    def forget(self, o) -> None:
        """Drop a PENDING entry whose value will never come here."""
        del self.objects[o.oid]
        o.move(ObjState.FREED)

    # ------------------------------------------------------------------ ownership
    # As in Ray, the process that put an object owns it: when that worker process
    # dies (an actor killed or crashed, a task's worker that crashed), the objects
    # it put and that are still referenced are lost -- their get raises
    # OwnerDiedError.  A worker owning live objects is not ended as idle
    # (Worker.owned, which the pool reads), as Ray keeps such workers.
    def own(self, w, o):
        if o.owner is None:
            o.owner = w
            self.owned.setdefault(w.worker_id, set()).add(o.oid)
            w.owned += 1

    def disown(self, o):
        w, o.owner = o.owner, None
        mine = self.owned.get(w.worker_id)
        if mine is not None and o.oid in mine:
            mine.discard(o.oid)
            w.owned -= 1

    def owner_died(self, w, how) -> None:
        """Worker `w` is gone (`how`: its exit): the objects it owns are lost."""
        what = f"the worker process pid={w.pid}"
        for oid in self.owned.pop(w.worker_id, ()):
            o = self.objects.get(oid)
            if o is None or o.owner is not w or o.restoring or \
                    o.state not in (ObjState.SEALED, ObjState.SPILLED):
                continue
            o.owner = None
            w.owned -= 1
            err = error_bytes(exceptions.OwnerDiedError(
                f"Object {oid.hex()} is lost: its owner, {what} that put() it, died "
                f"({how or 'it ended'}). As in Ray, an object lives only as long as "
                f"the process that created it; return the value itself from the "
                f"task or actor method instead of a ref made by put()."))
            if o.state is ObjState.SPILLED:
                self.table.spilled_bytes -= o.size
                try:
                    os.unlink(o.spill_path)
                except OSError:
                    pass
                o.spill_path = None
                o.move(ObjState.SEALED)
            if o.size >= config.INLINE_THRESHOLD:
                self.put_gcs("hdel", keys.obj(oid), self.node_hex)
            self.table.replace_with_error(o, err)

    def forget_unwanted(self, oid) -> None:
        """Drop PENDING entry `oid` if nothing wants it any more (no ref, no
        waiter, no component watching it): its value will never be needed."""
        o = self.objects.get(oid)
        if o is not None and o.state is ObjState.PENDING and o.refcount <= 0 and \
                not o.waiters and oid not in self.watched:
            self.forget(o)

    def on_ref_add(self, conn, msg):
        objects = self.objects
        refs = conn.refs
        get = refs.get      # (a Counter: get and pop, not its Python-level
        for oid in msg[1]:  # __missing__ and __delitem__, ~15% of this loop)
            o = objects.get(oid)
            if o is not None:
                o.refcount += 1
                refs[oid] = get(oid, 0) + 1

    def on_ref_del(self, conn, msg):
        self.drop_refs(conn, msg[1])

    def drop_refs(self, holder, oids):
        """`holder` (a client connection, or a peer node's PeerHolder) drops a
        ref on each of `oids`."""
        refs = holder.refs
        get = refs.get
        decref = self.decref
        for oid in oids:
            n = get(oid, 0)
            if n <= 0:
                continue
            if n == 1:
                refs.pop(oid)
            else:
                refs[oid] = n - 1
            decref(oid)

    def on_unpin(self, conn, msg):
        self.unpin(conn, msg[1])

    def unpin(self, holder, oids):
        """`holder` no longer maps each of `oids` (once per pin it took)."""
        pins = holder.pins
        for oid in oids:
            n = pins.get(oid, 0)
            if n <= 0:
                continue
            if n == 1:
                del pins[oid]
            else:
                pins[oid] = n - 1
            o = self.table.pinned(oid)
            if o is None:
                continue
            o.pins -= 1
            if o.pins <= 0:
                self.unpinned(o)

    def release_holder(self, holder):
        """A client disconnected (or a peer node died): its pins and refs go."""
        for oid, n in list(holder.pins.items()):
            o = self.table.pinned(oid)
            if o is not None:
                o.pins -= n
                if o.pins <= 0:
                    self.unpinned(o)
        holder.pins.clear()
        for oid, n in list(holder.refs.items()):
            for _ in range(n):
                self.decref(oid)
        holder.refs.clear()

    def unpinned(self, o):
        o.pins = 0
        if o.free_when_unpinned:
            o.free_when_unpinned = False
            self.table.freed_pinned.pop(o.oid, None)
            self.table.release_memory(o)
            self.memory_freed()
        elif (self.pending_creates or self.pending_restores) and \
                o.state is ObjState.SEALED and o.in_arena:
            # it can be spilled now: the CREATEs and restores waiting for room
            # must not wait for their deadline (CREATE_WAIT_S) to find that out
            self.make_room()

    def pin_descriptor(self, conn, o, file_ok=False):
        """Descriptor of a sealed object for `conn`, counting the pin if in the
        arena.  A spilled object is restored; if no room can be made for it
        (everything mapped, or the disk too full to spill others), a local
        process (`file_ok`) reads it from its spill file instead (a FILE
        descriptor, no pin: the file's bytes never change, and a process that
        maps it keeps them even once the file is removed)."""
        if o.state is ObjState.SPILLED:
            err = self.restore(o)
            if err:
                if file_ok:
                    o.last_access = time.monotonic()
                    return [P.FILE, o.spill_path, o.size, o.is_error]
                return [P.INLINE, error_bytes(err), True]
        o.last_access = time.monotonic()
        if o.data is None:
            o.pins += 1
            conn.pins[o.oid] += 1
        return o.descriptor()

    def arg_descriptors(self, conn, spec):
        """The descriptors of a task's ref arguments, pinned for `conn` (the worker)."""
        objects = self.objects
        out = []
        for a in spec.args:
            if a[0] == P.ARG_REF:
                o = objects.get(a[1])
                out.append(self.pin_descriptor(conn, o, True) if o is not None
                           else self.lost_descriptor(a[1]))
        return out

    def failed_arg(self, spec):
        """The serialized error of a task's first argument that is an error, if any."""
        objects = self.objects
        for a in spec.args:
            if a[0] == P.ARG_REF:
                o = objects.get(a[1])
                if o is None:
                    return self.lost_descriptor(a[1])[1]
                if o.is_error and o.data is not None:
                    return o.data
        return None

    def lost_descriptor(self, oid):
        err = exceptions.ObjectLostError(
            f"Object {oid.hex()} is lost: no node holds it and it cannot be rebuilt "
            f"(its references were all released, or it was never created here).")
        return [P.INLINE, error_bytes(err), True]

    # ------------------------------------------------------------------ objects
    def run_waiters(self, waiters):
        for w in waiters:
            w()

    def on_put(self, conn, msg):
        oid, data, contained = msg[1], msg[2], msg[3]
        o = self.table.get_or_create(oid)
        o.refcount += 1
        conn.refs[oid] += 1
        if conn.worker is not None and ids.is_put_object(oid):
            self.own(conn.worker, o)
        if o.state is ObjState.PENDING:   # (a direct call's result may be sealed)
            self.seal_inline(o, data, len(msg) > 4 and msg[4], contained)

    # ---- results of direct actor calls (worker/direct.py)
    def count_for(self, holder, o):
        """One more ref on `o`, held by `holder` (a client connection)."""
        o.refcount += 1
        holder.refs[o.oid] += 1

    def on_own(self, conn, msg):
        """Results of `conn`'s direct calls, still to come, whose refs it shares."""
        get_or_create = self.table.get_or_create
        for oid in msg[1]:
            self.count_for(conn, get_or_create(oid))

    def on_fulfil(self, conn, msg):
        _, oid, data, is_error = msg
        o = self.objects.get(oid)
        if o is not None and o.state is ObjState.PENDING:
            self.seal_inline(o, data, is_error, ())

    def on_register(self, conn, msg):
        """A direct call's small result holding refs, from the actor's worker:
        stored, and counted for its owner (the caller) if that is still here."""
        _, req, oid, data, is_error, contained, owner = msg
        o = self.table.get_or_create(oid)
        holder = self.client(owner)
        if holder is not None:
            self.count_for(holder, o)
        if o.state is ObjState.PENDING:   # (else: sealed by an earlier try)
            self.seal_inline(o, data, is_error, contained)
        conn.send([P.REPLY, req, True])

    def seal_inline(self, o, data, is_error, contained):
        for c in contained or ():
            self.incref(c)
        waiters = self.table.seal_inline(o, data, is_error, contained)
        if o.refcount <= 0:
            self.free(o)
        self.run_waiters(waiters)

    def seal_arena(self, o, is_error, contained):
        """The bytes of CREATING `o` are written (by its creator, or a pull)."""
        for c in contained or ():
            self.incref(c)
        waiters = self.table.seal_arena(o, is_error, contained)
        if o.refcount <= 0:
            self.free(o)
        self.run_waiters(waiters)

    def seal_results(self, results):
        """A task's results ([oid, descriptor] from its DONE or TASK_DONE): seal
        each object still wanted here; give back the space of those that are not."""
        objects = self.objects
        for oid, desc in results:
            o = objects.get(oid)
            if o is None:
                if desc[0] == P.ARENA:
                    # nobody wants it any more: give the space back
                    self.table.allocator.free(desc[1], desc[2])
                continue
            if desc[0] == P.INLINE:
                if o.state is ObjState.PENDING:
                    self.seal_inline(o, desc[1], desc[2], desc[3] if len(desc) > 3 else ())
            elif o.state is ObjState.CREATING:
                self.seal_arena(o, desc[3], desc[4] if len(desc) > 4 else ())

    def on_create(self, conn, msg):
        req, oid, size = msg[1], msg[2], msg[3]
        o = self.table.get_or_create(oid)
        if len(msg) > 4:   # a direct call's result: counted for its caller once reserved
            self.create_owners[oid] = msg[4]
        if ids.is_put_object(oid) and o.state is ObjState.PENDING:
            o.refcount += 1
            conn.refs[oid] += 1
            if conn.worker is not None:
                self.own(conn.worker, o)
        self.try_create(conn, req, o, size, time.monotonic() + config.CREATE_WAIT_S)

    def try_create(self, conn, req, o, size, deadline):
        cap = self.table.allocator.capacity
        if size > cap:
            self.create_owners.pop(o.oid, None)
            conn.send([P.REPLY, req, [None,
                f"An object of {size} bytes can never fit in this node's object store "
                f"of {cap} bytes. Start beamlet with a larger object_store_memory "
                f"(init(object_store_memory=...)) or split the object."]])
            return
        off = self.table.reserve(o, size)
        if off is None:
            # wait for space: spill least recently used objects (in the spill
            # thread) or wait for processes to release what they map
            self.pending_creates.append((deadline, conn, req, o, size))
            self.make_room()
            return
        self.prefaulter.allocated(off, size)
        self.put_gcs("hset", keys.obj(o.oid), self.node_hex, size)
        if self.create_owners:
            owner = self.create_owners.pop(o.oid, None)
            holder = self.client(owner) if owner is not None else None
            if holder is not None:
                self.count_for(holder, o)
        conn.send([P.REPLY, req, [off]])

    def memory_freed(self):
        if self.pending_restores:
            pend, self.pending_restores = self.pending_restores, {}
            for o, deadline in pend.items():
                if o.state is ObjState.SPILLED and not self.request_restore(o, deadline):
                    self.restore_impossible(o)
        if self.pending_creates:
            pend, self.pending_creates = self.pending_creates, []
            for deadline, conn, req, o, size in pend:
                if not conn.closed:
                    self.try_create(conn, req, o, size, deadline)

    def on_seal(self, conn, msg):
        _, oid, contained, is_error = msg
        o = self.objects.get(oid)
        if o is None:
            return
        self.seal_arena(o, is_error, contained)

    # ------------------------------------------------------------------ arena (pulls)
    def reserve_now(self, o, size):
        """Arena space for PENDING `o` now, spilling synchronously if needed (a
        pull from another node); the offset, or None if nothing can make room."""
        off = self.table.reserve(o, size)
        while off is None:
            victims = self.table.spill_candidates()
            if not victims or self.spill(victims[0]) is not None:
                return None
            off = self.table.reserve(o, size)
        self.prefaulter.allocated(off, size)
        return off

    def abort_create(self, o):
        """A half-written copy (a pull that failed): give the space back."""
        self.table.allocator.free(o.offset, o.size)
        o.offset = -1
        o.state = ObjState.PENDING   # deliberate: undo the reservation

    def arena_slice(self, off, size):
        """A writable view of arena bytes [off, off + size) (callable from threads)."""
        return self.arena_view[off:off + size]

    def prefault(self, off, size):
        """Map a range's pages in one call, not one fault per page (from a
        thread: the GIL is released meanwhile)."""
        self.arena_pages.populate(off, size)

    # ------------------------------------------------------------------ spilling
    # Spilling for creates runs in a thread, so that writing hundreds of MB to
    # disk never stalls the event loop (every client's messages).  An object
    # being spilled is pinned by the raylet itself: it stays readable, and
    # cannot be freed or moved until the write is done.
    def make_room(self):
        """Start spilling LRU objects until the bytes being spilled cover what
        the waiting creates need (fragmentation may call for another round)."""
        need = sum(p[4] for p in self.pending_creates if not p[1].closed)
        need += sum(o.size for o in self.pending_restores)   # (dict keys)
        need -= self.spilling_bytes + self.table.allocator.largest_hole()
        if need <= 0:
            return
        for v in self.table.spill_candidates():
            if need <= 0:
                break
            self.start_spill(v)
            need -= v.size

    def start_spill(self, o):
        o.pins += 1
        self.spilling_bytes += o.size
        path = os.path.join(self.spill_dir, o.oid.hex())
        fut = self.spill_thread.submit(self.write_spill_file, path, o.offset, o.size)
        fut.add_done_callback(lambda f: self.loop.call_soon_threadsafe(
            self.spill_done, o, path, f))

    def write_spill_file(self, path, offset, size):
        """Write one object's bytes to `path` (in the spill thread, or on the
        loop for a synchronous spill).  A disk without room for them fails
        before anything is written; a failed write leaves no file behind."""
        free = self.disk_free()
        if free is not None and free < size:
            raise OSError(errno.ENOSPC, f"No space left on device for {size} bytes",
                          path)
        try:
            with open(path, "wb") as f:
                f.write(self.arena_view[offset:offset + size])
        except OSError:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise

    def disk_free(self):
        """Bytes an unprivileged writer may still use in the spill directory."""
        try:
            st = os.statvfs(self.spill_dir)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def spill_error(self, size, err, what="An object of {size} bytes does not fit"):
        """(error class name, message) for a store that is full while spilling
        to make room failed with OSError `err`: OutOfDiskError when the disk is
        full, with the sizes and the directory."""
        st = self.table.stats()
        free = self.disk_free()
        disk = errno.ENOSPC, errno.EDQUOT
        text = (f"{what.format(size=size)}: the object store is full "
                f"({st['arena_used']} of {st['arena_capacity']} bytes used) and "
                f"spilling objects to {self.spill_dir} failed ({err.strerror or err}"
                f"{'' if free is None else f'; {free} bytes free there'}). "
                + ("Free disk space there, spill elsewhere (object_spilling_directory), "
                   if err.errno in disk else "Make that directory writable, ")
                + "or release references to large objects. The objects already "
                  "stored are kept.")
        return ("OutOfDiskError" if err.errno in disk else "ObjectStoreFullError"), text

    def spill_done(self, o, path, fut):
        self.spilling_bytes -= o.size
        o.pins -= 1
        err = fut.exception()
        if o.state is ObjState.FREED or o.pins > 0 or err is not None:
            # freed meanwhile, got by a process meanwhile (it stays in memory),
            # or the write failed: the file is not needed
            try:
                os.unlink(path)
            except OSError:
                pass
            if o.pins <= 0:
                self.unpinned(o)   # releases the range if it was freed
            if err is not None:
                # the object stays in memory; what waited for its room fails
                # (a CREATE) or is read from its spill file (a get's restore)
                log("spill failed:", self.spill_error(o.size, err)[1])
                for _, conn, req, po, size in self.pending_creates:
                    self.create_owners.pop(po.oid, None)
                    kind, text = self.spill_error(size, err)
                    conn.send([P.REPLY, req, [None, text, kind]])
                self.pending_creates = []
                pend, self.pending_restores = self.pending_restores, {}
                for r in pend:
                    self.restore_impossible(r)
                return
        else:
            self.table.release_memory(o)
            o.move(ObjState.SPILLED)
            o.spill_path = path
            self.table.spilled_bytes += o.size
        self.memory_freed()

    def expire_creates(self):
        """Every heartbeat: CREATEs and restores that waited too long for room fail."""
        now = time.monotonic()
        keep = []
        for item in self.pending_creates:
            deadline, conn, req, o, size = item
            if now < deadline or self.spilling_bytes:   # spilling: progress is made
                keep.append(item)
                continue
            st = self.table.stats()
            self.create_owners.pop(o.oid, None)
            conn.send([P.REPLY, req, [None,
                f"The object store is full: an object of {size} bytes does not fit "
                f"({st['arena_used']} of {st['arena_capacity']} bytes used, largest "
                f"free block {self.table.allocator.largest_hole()} bytes) and every "
                f"object in it is in use (mapped by a process), so none can be "
                f"spilled. Release references to large objects (del the arrays you "
                f"got) or give the store more memory (object_store_memory)."]])
        self.pending_creates = keep
        for o, deadline in list(self.pending_restores.items()):
            if now >= deadline and not self.spilling_bytes:
                # give up: the waiters take the synchronous path (which
                # reads it from its file if there is still no room)
                del self.pending_restores[o]
                self.restore_impossible(o)

    def spill(self, o):
        """Move a sealed arena object to a file (synchronously).  Returns the
        OSError if it could not be written (the object stays in memory)."""
        path = os.path.join(self.spill_dir, o.oid.hex())
        try:
            self.write_spill_file(path, o.offset, o.size)
        except OSError as e:
            return e
        self.table.release_memory(o)
        o.move(ObjState.SPILLED)
        o.spill_path = path
        self.table.spilled_bytes += o.size
        return None

    def request_restore(self, o, deadline=None, prefetch=False):
        """Read a spilled object back into the arena in the spill thread; its
        waiters run once it is SEALED again.  (A descriptor needed at once
        still restores synchronously: see restore().)  `prefetch`: only if
        there is free room now (task arguments: restoring those of a long queue
        eagerly would spill each other out).  Returns whether it is restoring
        or waiting to."""
        if o.restoring or o in self.pending_restores:
            return True
        off = self.table.allocator.alloc(o.size)
        if off is None and prefetch:
            return False
        if off is None:
            # wait for room, as a CREATE does (spilling others); expire_creates
            # ends the wait.  If nothing can be spilled now (everything is
            # mapped), the object is read from its file instead of waiting.
            self.pending_restores[o] = deadline or (time.monotonic() +
                                                    config.CREATE_WAIT_S)
            self.make_room()
            if not self.spilling_bytes:
                del self.pending_restores[o]
                return False
            return True
        o.restoring = True
        path = o.spill_path
        fut = self.spill_thread.submit(self.read_spill_file, path, off, o.size)
        fut.add_done_callback(lambda f: self.loop.call_soon_threadsafe(
            self.restore_done, o, path, off, f))
        return True

    def restore_impossible(self, o):
        """No room can be made for spilled `o` now: the gets waiting for its
        restore are answered (from its spill file, see pin_descriptor)."""
        w, o.waiters = o.waiters, []
        self.run_waiters(w)

    def read_spill_file(self, path, off, size):
        """(spill thread) Read a spilled object's bytes into the arena."""
        with open(path, "rb") as f:
            view = self.arena_view[off:off + size]
            got = f.readinto(view)
            view.release()
        if got != size:
            raise OSError(f"spill file {path} is truncated ({got} of {size} bytes)")

    def restore_done(self, o, path, off, fut):
        o.restoring = False
        err = fut.exception()
        if o.state is not ObjState.SPILLED or err is not None:
            # freed meanwhile (or the read failed): give the range back
            self.table.allocator.free(off, o.size)
            if o.state is ObjState.FREED:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            elif o.state is ObjState.SPILLED:
                log("restore failed:", err)
            w, o.waiters = o.waiters, []
            self.run_waiters(w)    # a getter then reports the error
            self.memory_freed()
            return
        try:
            os.unlink(path)
        except OSError:
            pass
        o.spill_path = None
        o.offset = off
        o.move(ObjState.SEALED)
        o.last_access = time.monotonic()
        self.table.spilled_bytes -= o.size
        w, o.waiters = o.waiters, []
        self.run_waiters(w)

    def restore(self, o):
        """Bring a spilled object back into the arena.  Returns an error or None."""
        size = o.size
        off = self.table.allocator.alloc(size)
        while off is None:
            victims = self.table.spill_candidates()
            if not victims:
                st = self.table.stats()
                return exceptions.ObjectStoreFullError(
                    f"Cannot restore spilled object {o.oid.hex()} ({size} bytes): the "
                    f"object store ({st['arena_used']} of {st['arena_capacity']} bytes "
                    f"used) is full of objects in use (mapped by processes, e.g. arrays "
                    f"got from it that are still alive), so none can be spilled. "
                    f"Release them (del the arrays) or give the store more memory "
                    f"(object_store_memory).")
            err = self.spill(victims[0])
            if err:
                kind, text = self.spill_error(size, err, what=f"Cannot restore spilled "
                                              f"object {o.oid.hex()} ({{size}} bytes)")
                return getattr(exceptions, kind)(text)
            off = self.table.allocator.alloc(size)
        with open(o.spill_path, "rb") as f:
            f.readinto(self.arena_view[off:off + size])
        os.unlink(o.spill_path)
        o.spill_path = None
        o.offset = off
        o.move(ObjState.SEALED)
        self.table.spilled_bytes -= size
        return None

    # ------------------------------------------------------------------ get / wait
    def on_get(self, conn, msg):
        _, req, oids, timeout = msg
        self.start_getter(conn, req, oids, timeout, "get", len(oids))

    def on_wait(self, conn, msg):
        _, req, oids, num_returns, timeout = msg[:5]
        self.start_getter(conn, req, oids, timeout, "wait", num_returns,
                          len(msg) < 6 or msg[5])

    def start_getter(self, conn, req, oids, timeout, kind, num_returns, fetch=True):
        objects = self.objects
        g = Getter()
        g.conn, g.req, g.oids, g.kind, g.num_returns = conn, req, oids, kind, num_returns
        g.done = False
        g.timer = None
        g.worker = None
        g.fetch = fetch
        ready = 0
        om = self.om
        multi = self.node_table.multi
        # a get of a spilled object waits for its restore (done off the loop);
        # for wait() a spilled object is ready
        restore = kind == "get" and timeout != 0
        for oid in oids:
            o = objects.get(oid)
            if o is None or o.state is ObjState.SEALED or (
                    o.state is ObjState.SPILLED and not restore):
                if o is None and multi and timeout != 0:
                    # an id this node never knew: another node may have it (the
                    # GCS says where); the client holds the ref: count it
                    om.locate(oid).refcount += 1
                    conn.refs[oid] += 1
                    continue
                ready += 1
            elif o.state is ObjState.SPILLED and not self.request_restore(o):
                ready += 1      # no room can be made now: read from its file
            elif not fetch and om.sealed_elsewhere(oid):
                ready += 1      # wait(fetch_local=False): sealed on another node
        if ready >= num_returns or timeout == 0:
            self.finish_getter(g)
            return
        # not ready: wait for the objects
        g.missing = num_returns - ready
        seen = set()
        for oid in oids:
            o = objects.get(oid)
            if o is not None and (o.state is ObjState.PENDING or
                                  o.state is ObjState.CREATING or
                                  o.state is ObjState.SPILLED) and oid not in seen:
                seen.add(oid)
                cb = lambda g=g: self.getter_progress(g)
                if not fetch:
                    cb = om.nofetch_callback(cb)
                if o.state is ObjState.SPILLED and not (restore and (
                        o.restoring or o in self.pending_restores)):
                    continue    # counted ready above (a wait, or read from its file)
                o.waiters.append(cb)
                if multi and o.state is ObjState.PENDING:
                    om.wanted(o, fetch, cb)     # pull it if it is on another node
        if timeout is not None and timeout >= 0:
            g.timer = self.loop.call_later(timeout, self.finish_getter, g)
        self.waiting.add(g)
        w = conn.worker
        if w is not None and self.block_worker(w, oids):
            g.worker = w    # its CPU is lent back while it waits

    def getter_progress(self, g):
        if g.done:
            return
        g.missing -= 1
        if g.missing <= 0:
            self.finish_getter(g)

    def finish_getter(self, g):
        if g.done:
            return
        g.done = True
        self.waiting.discard(g)
        if g.timer is not None:
            g.timer.cancel()
        conn = g.conn
        if g.worker is not None:
            self.unblock_worker(g.worker)
        if conn.closed:
            return
        objects = self.objects
        if g.kind == "get":
            out = []
            for oid in g.oids:
                o = objects.get(oid)
                if o is None:
                    out.append(self.lost_descriptor(oid))
                elif o.state is ObjState.SEALED or o.state is ObjState.SPILLED:
                    out.append(self.pin_descriptor(conn, o, True))
                else:
                    out.append(None)
            conn.send([P.REPLY, g.req, out])
        else:
            # every ready index, not just num_returns: the client remembers them
            ready = []
            elsewhere = None if g.fetch else self.om.sealed_elsewhere
            for i, oid in enumerate(g.oids):
                o = objects.get(oid)
                if o is None or o.state is ObjState.SEALED or o.state is ObjState.SPILLED \
                        or (elsewhere is not None and elsewhere(oid)):
                    ready.append(i)
            conn.send([P.REPLY, g.req, ready])

    # ------------------------------------------------------------------ introspection
    def pending_arg(self, spec):
        """The first ref argument of a task that is not here yet, or None."""
        objects = self.objects
        for a in spec.args:
            if a[0] == P.ARG_REF:
                o = objects.get(a[1])
                if o is not None and (o.state is ObjState.PENDING or
                                      o.state is ObjState.CREATING):
                    return a[1]
        return None

    def all_objects(self) -> list:
        """Every object entry of this node (records: read them, do not change them)."""
        return list(self.objects.values())

    def waiting_on(self, conn) -> list:
        """[(kind "get" | "wait", oids not ready)] of the gets and waits `conn` is
        blocked in."""
        out = []
        objects = self.objects
        for g in list(self.waiting):
            if g.conn is conn and not g.done:
                missing = [oid for oid in g.oids if (o := objects.get(oid)) is not None
                           and o.state in (ObjState.PENDING, ObjState.CREATING)]
                if missing:
                    out.append((g.kind, missing))
        return out

    def memory_report(self, holders, pinners) -> dict:
        """Every object of this node with where it is and who keeps it alive
        (what `beamlet memory` prints).  `holders`: oid -> [who holds a ref]
        (clients, tasks), `pinners`: oid -> [pid mapping it]."""
        holders = collections.defaultdict(list, holders)
        for o in self.objects.values():
            for c in o.contained:
                holders[c].append(f"inside object {o.oid.hex()}")
        out = []
        objs = list(self.objects.values()) + list(self.table.freed_pinned.values())
        for o in objs:
            out.append({
                "object_id": o.oid.hex(), "size": o.size, "state": o.state.value,
                "where": ("inline" if o.data is not None else
                          "spilled" if o.state is ObjState.SPILLED else
                          "arena" if o.in_arena else "-"),
                "refcount": o.refcount, "pins": o.pins,
                "pinned_by": pinners.get(o.oid, []),
                "holders": holders.get(o.oid, []),
                "spill_path": o.spill_path})
        return {"objects": out, "stats": self.table.stats(), "node_id": self.node_hex}
