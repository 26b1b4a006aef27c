"""The core worker: what a driver or a worker process uses to talk to its raylet.

One instance per process (`global_worker`).  It owns:

- the connection to the raylet (one unix socket, hub.py's RayletLink; every
  message of the process to its raylet goes through it, so the raylet sees a
  process's messages in the order it made them — reference counting relies on
  that), and the Hub that reads it and the process's other sockets;
- the process's reference counts: ObjectRef.__init__/__del__ only touch a dict and
  append to a deque; the deque becomes REF_ADD/REF_DEL messages on the next send;
- a cache of the small objects this process holds refs to (a `get` of one is
  answered locally, with no round trip), and which of them hold no refs
  (`plain`: such a value may travel inline in a direct actor call);
- direct actor calls (direct.py): the channels to the actors it calls, and the
  results they owe it or it keeps without the raylet knowing (until a ref to
  one leaves the process: `escape`);
- the mappings of the shared-memory arena: one read-write mapping for writing new
  objects, and one read-only mapping per object being read, whose lifetime is the
  lifetime of the values built on it; when it is collected the raylet is told
  (UNPIN), so an object is never freed or moved while a view of it exists.

Threads: any thread may send; replies are demultiplexed by request number.  The
thread that waits for a reply reads the sockets itself while no other thread is
reading (leader/followers, hub.py), so a single-threaded driver pays no thread hop.
"""
import collections
import contextvars
import itertools
import mmap
import os
import queue
import threading
import time
import weakref

from .. import exceptions
from .._private import config, ids, pages, serialization
from .._private import protocol as P
from .._private.stuck import StuckWatch
from .direct import DirectCalls
from .hub import ConnectionLost, Hub, RayletLink  # noqa: F401 (ConnectionLost: API)


# the arena mapping's pages are mapped (pages.Mapping) in chunks of this size
_CHUNK = 2 * 1024 * 1024


# a get of at least this many values builds them with the cyclic GC paused
PAUSE_GC_VALUES = 16


# A GetTimeoutError of a get that waited at least this long says what the get
# waited for (one more round trip to the raylet; polls with shorter timeouts
# do not pay it).
EXPLAIN_TIMEOUT_MIN_S = 0.1


class TaskContext:
    """What the process is running now (for put ids, nested tasks, runtime context).

    `scheduling` is the task's placement constraint in wire form (an actor's call
    carries its actor's): children inherit a placement group from it when it was
    made with placement_group_capture_child_tasks.  `resources` is what the task
    (or the actor, for its lifetime) holds; `actor` describes the actor this
    process hosts (None in a driver or a normal task)."""
    __slots__ = ("task_id", "put_counter", "name", "actor_id", "scheduling",
                 "resources", "gpu_ids", "actor", "cancelled", "aio_task")

    def __init__(self, task_id, name="", actor_id=None, scheduling=None,
                 resources=None, gpu_ids=(), actor=None):
        self.task_id = task_id
        self.put_counter = itertools.count(1).__next__
        self.name = name
        self.actor_id = actor_id
        self.scheduling = scheduling
        self.resources = resources or {}
        self.gpu_ids = list(gpu_ids)
        self.actor = actor
        self.cancelled = False      # cancel() interrupted it (it may go on)
        self.aio_task = None        # an async actor's direct call: its asyncio task


class HostedActor:
    """The actor a worker process hosts, as its tasks' contexts see it."""
    __slots__ = ("actor_id", "class_name", "cls", "name", "max_task_retries",
                 "scheduling", "resources", "is_async")

    def __init__(self, actor_id, class_name, cls, name, max_task_retries, scheduling,
                 resources, is_async=False):
        self.actor_id = actor_id
        self.class_name = class_name
        self.cls = cls
        self.name = name
        self.max_task_retries = max_task_retries
        self.scheduling = scheduling
        self.resources = resources
        self.is_async = is_async


class CoreWorker:
    def __init__(self, socket_path: str, role: str, job_id: bytes = b"",
                 worker_id: bytes = None):
        self.role = role
        self.worker_id = worker_id or ids.random_id(16)
        self.job_id = job_id
        self.hub = Hub()
        self.conn = RayletLink(self.hub, socket_path)
        self.refops = collections.deque()   # ("a"|"d"|"u", oid), from any thread
        self.conn.before_send = self._drain_refops
        self.counts = {}
        self.count_lock = threading.RLock()
        self.cache = {}          # oid -> (data, is_error) for small objects we hold
        self.plain = set()       # oids in the cache whose value holds no refs
        self.known_ready = set() # oids we hold that a WAIT reply said were ready
        self.maps = {}           # oid -> weakref to a read-only mmap of the object
        self.exported = set()
        # the running task's context: a context variable, so that each thread --
        # and each asyncio task (concurrent calls of an async actor) -- has its own
        self.current = contextvars.ContextVar("beamlet_task", default=None)
        self.closed = False
        self.direct = DirectCalls(self)
        self.background_flush = None    # hook the flusher calls (a worker's answers)
        # hook: True while the sockets must be read although no thread waits (an
        # actor's worker running a direct call: a cancel or a grant may come)
        self.background_reads = None
        # HELLO is answered with request number 0
        self.conn.send([P.HELLO, P.VERSION, role, self.worker_id, os.getpid(), job_id])
        info = self.conn.wait_reply(0)
        if "error" in info:
            raise exceptions.RaySystemError(info["error"])
        self.node_info = info
        self.node_id = info["node_id"]
        self.inline_threshold = info["inline_threshold"]
        self.arena_size = info["arena_size"]
        self.arena_fd = os.open(info["arena_path"], os.O_RDWR)
        self._rw = None
        self._map_ahead = queue.SimpleQueue()    # (first, last) chunks to map
        self._map_ahead_thread = None
        self.driver_task = TaskContext(ids.new_task_id())
        self._flusher_wake = threading.Event()
        # the last arena mapping made, kept alive (with its pin) for a moment so
        # that a loop of get() on one large object reuses it instead of asking
        # the raylet each time; the flusher thread lets it go after RECENT_MAP_S
        self._recent_map = None
        self._recent_at = 0.0
        # gets and waits blocked in the raylet, watched for being stuck
        self.stuck = StuckWatch(self)
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                         name="beamlet-flush")
        self._flusher.start()

    # ------------------------------------------------------------ context
    @property
    def task(self) -> TaskContext:
        return self.current.get() or self.driver_task

    def set_task(self, ctx):
        self.current.set(ctx)

    # ------------------------------------------------------------ ref counting
    def ref_inc(self, oid, registered=False):
        with self.count_lock:
            n = self.counts.get(oid, 0)
            self.counts[oid] = n + 1
            if n == 0 and not registered:
                self.refops.append(("a", oid))

    def ref_inc_many(self, oids):
        """ref_inc of each of `oids` (the refs of one unpickled value): where none
        is counted yet and none repeats (the usual case), C-level updates."""
        with self.count_lock:
            counts = self.counts
            fresh = set(oids)
            if len(fresh) == len(oids) and counts.keys().isdisjoint(fresh):
                counts.update(dict.fromkeys(oids, 1))
                self.refops.extend(zip(itertools.repeat("a"), oids))
                return
            for oid in oids:
                self.ref_inc(oid)

    def ref_dec(self, oid):
        with self.count_lock:
            n = self.counts.get(oid, 0) - 1
            if n > 0:
                self.counts[oid] = n
                return
            self.counts.pop(oid, None)
            if n == 0:
                if not self.direct.dropped(oid):
                    self.refops.append(("d", oid))
                self.cache.pop(oid, None)
                self.plain.discard(oid)
                self.known_ready.discard(oid)

    def escape(self, oid):
        """A ref to `oid` is about to reach another process (pickled, or a task's
        argument): if only this process knows the object (a direct call's
        result), the raylet is told first, on the same socket as what follows."""
        direct = self.direct
        if direct.pending or direct.owned:
            if direct.holds(oid):
                direct.escape(oid)

    def _drain_refops(self, out):
        ops = self.refops
        if not ops:
            return
        kind, batch = None, None
        while True:
            try:
                op, oid = ops.popleft()
            except IndexError:
                break
            if op != kind:
                kind = op
                batch = []
                out.append([P.REF_ADD if op == "a" else P.REF_DEL if op == "d"
                            else P.UNPIN, batch])
            batch.append(oid)

    def _flush_loop(self):
        """Backstop: send what fire-and-forget calls and __del__ queued; read the
        sockets while something needs that and no other thread waits (a direct
        call's result another process waits for, calls held, output unsent)."""
        while not self.closed:
            busy = self.direct.background_work() or (
                self.background_reads is not None and self.background_reads())
            woke = self._flusher_wake.wait(0.002 if busy else 0.05)
            if woke:
                self._flusher_wake.clear()
                time.sleep(0.001)
            if self._recent_map is not None and \
                    time.monotonic() - self._recent_at > config.RECENT_MAP_S:
                self._recent_map = None   # may unpin (finalizer queues UNPIN)
            try:
                if self.direct.unflushed:
                    self.direct.flush()
                if self.background_flush is not None:
                    self.background_flush()
                if self.refops or self.conn.out:
                    self.conn.flush()
                if busy and not self.closed:
                    self.hub.flush_writers()
                    self.hub.poll()
                    if self.conn.out:
                        self.conn.flush()
            except Exception:
                return

    def queue(self, msg):
        self.conn.queue(msg)
        if len(self.conn.out) >= 256:
            self.conn.flush()
        else:
            self._flusher_wake.set()

    def flush_soon(self):
        """Have the flusher send what is queued (from a thread that must not block)."""
        self._flusher_wake.set()

    def request_async(self, build, callback):
        """A request whose reply the reading thread hands to `callback`."""
        self.conn.request_async(build, callback)
        self._flusher_wake.set()

    # ------------------------------------------------------------ arena
    @property
    def rw(self):
        if self._rw is None:
            self._rw_map = mmap.mmap(self.arena_fd, self.arena_size)
            self._rw = memoryview(self._rw_map)
            self._rw_pages = pages.Mapping(self._rw_map)   # (lives as long)
            # which 2 MiB chunks of this mapping have their pages mapped already
            self._faulted = bytearray(self.arena_size // _CHUNK + 1)
        return self._rw

    def write_object(self, off, s):
        """Lay serialized object `s` out at arena offset `off`.

        The first write to a range of the mapping would take one page fault per
        4 KiB page; asking the kernel to map the whole range at once
        (MADV_POPULATE_WRITE) is much cheaper.  A range stays mapped for the life
        of the process, so this happens at most once per chunk.  After a large
        put a thread maps the range after it (where the next one most likely
        goes), with the GIL released, while this thread goes on."""
        rw = self.rw
        end = off + s.size
        self._populate(off // _CHUNK, (end - 1) // _CHUNK)
        s.write_to(rw[off:end])
        if s.size >= config.PREFAULT_MIN_BYTES > 0:
            # the next large put most likely lands right after this one (the
            # arena's frontier, whose pages the raylet is creating now): map
            # them here meanwhile, in the background (at most twice this size)
            ahead = min(2 * s.size, config.PREFAULT_AHEAD_MAX)
            self._map_ahead.put((end // _CHUNK, (end + ahead) // _CHUNK))
            if self._map_ahead_thread is None:
                self._map_ahead_thread = threading.Thread(
                    target=self._map_ahead_loop, daemon=True, name="beamlet-map-ahead")
                self._map_ahead_thread.start()

    def _populate(self, first, last):
        """Map chunks [first, last] of the arena mapping (whole chunks: it
        changes no data, so the neighbours' bytes are safe), from the first one
        not mapped yet to the last (the map-ahead thread maps from the front)."""
        faulted = self._faulted
        last = min(last, len(faulted) - 1)
        if first > last:
            return
        first = faulted.find(0, first, last + 1)
        if first < 0:
            return
        last = faulted.rfind(0, first, last + 1)
        start = first * _CHUNK
        # (where the kernel cannot, the pages fault in one by one on first touch)
        self._rw_pages.populate(start, min(self.arena_size, (last + 1) * _CHUNK) - start)
        faulted[first:last + 1] = b"\x01" * (last + 1 - first)

    def _map_ahead_loop(self):
        while not self.closed:
            first, last = self._map_ahead.get()
            for c in range(first, last + 1):    # chunk by chunk: a put may need
                if self.closed:                 # the range meanwhile
                    return
                self._populate(c, c)

    def _unpin(self, oid, ref):
        # only forget the entry if it is still this (dead) mapping's: another
        # thread may have mapped the object anew meanwhile
        if self.maps.get(oid) is ref:
            del self.maps[oid]
        if not self.closed:
            self.refops.append(("u", oid))

    def _map(self, oid, offset, size, is_error=False):
        """A read-only view of an arena object; the raylet has pinned it for us."""
        ref = self.maps.get(oid)
        m = ref() if ref is not None else None
        if m is not None:
            self.refops.append(("u", oid))   # we pinned it already
            return memoryview(m)
        m = mmap.mmap(self.arena_fd, size, offset=offset, prot=mmap.PROT_READ)
        ref = weakref.ref(m)
        if not is_error:   # get() reuses a live mapping without asking the raylet
            self.maps[oid] = ref
            self._recent_map, self._recent_at = m, time.monotonic()
        weakref.finalize(m, self._unpin, oid, ref)
        return memoryview(m)

    @staticmethod
    def _map_file(path, size):
        """A read-only view of a spilled object's file (a FILE descriptor), or
        None if the file is gone (the object was restored meanwhile)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ))
        finally:
            os.close(fd)

    def _mapped(self, oid):
        """A live mapping of `oid` in this process, or None.  While it lives the
        object is pinned for us (it cannot be freed, spilled or moved) and it is
        immutable, so reading it again needs no round trip to the raylet."""
        ref = self.maps.get(oid)
        m = ref() if ref is not None else None
        if m is None:
            return None
        if m is self._recent_map:
            self._recent_at = time.monotonic()
        return memoryview(m)

    # ------------------------------------------------------------ put
    def put(self, value):
        """Store a value; returns its id.  The caller must wrap it at once in
        ObjectRef(oid, _registered=True): the raylet counts this process's ref."""
        oid = self.new_put_id()
        self.put_serialized(oid, serialization.serialize(value))
        return oid

    def put_serialized(self, oid, s):
        if s.size < self.inline_threshold:
            data = s.to_bytes()
            self.cache[oid] = (data, False)
            if not s.contained:
                self.plain.add(oid)
            self.queue([P.PUT, oid, data, s.contained])
        else:
            off = self.create(oid, s.size)
            self.write_object(off, s)
            self.queue([P.SEAL, oid, s.contained, False])

    def create(self, oid, size, owner=None):
        """Arena space for a large object; `owner`: the caller of a direct call
        whose result it is (the raylet counts its ref from now on)."""
        if owner is None:
            msg = lambda req: [P.CREATE, req, oid, size]  # noqa: E731
        else:
            msg = lambda req: [P.CREATE, req, oid, size, owner]  # noqa: E731
        off, *err = self.conn.request(msg)
        if off is None:
            cls = getattr(exceptions, err[1], None) if len(err) > 1 else None
            if not (isinstance(cls, type) and
                    issubclass(cls, exceptions.ObjectStoreFullError)):
                cls = exceptions.ObjectStoreFullError
            raise cls(err[0])
        return off

    def register(self, oid, data, is_error, contained, owner):
        """A direct call's small result holding refs: stored in the raylet and
        counted for `owner` before the caller hears of it."""
        self.conn.request(lambda req: [P.REGISTER, req, oid, data, is_error,
                                       list(contained), owner])

    # ------------------------------------------------------------ get / wait
    def get_values(self, oids, timeout=None):
        """Values of `oids` (raising the first error in list order)."""
        if self.direct.unflushed:
            self.direct.flush()     # calls queued on direct links go out first
        if self.direct.pending:
            deadline = None if timeout is None else time.monotonic() + timeout
            if not self.wait_direct(oids, len(oids), timeout):
                owed = [o for o in oids if self.direct.owes(o)]
                raise exceptions.GetTimeoutError(
                    f"Get timed out after {timeout} s: {len(owed)} of {len(oids)} "
                    f"objects were not ready (first: {owed[0].hex()}).")
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
        cache = self.cache
        missing = [o for o in dict.fromkeys(oids) if o not in cache]
        fetched = {}
        if missing and self.maps:
            still = []
            for oid in missing:
                mv = self._mapped(oid)
                if mv is None:
                    still.append(oid)
                else:
                    fetched[oid] = (mv, False)
            missing = still
        tries = 0
        while missing:
            # the mapping kept for repeated gets pins its object: let it go
            # with this GET (its UNPIN goes first), so the raylet may spill
            # that object to make room for these (a restore from disk)
            self._recent_map = None
            watch = self.stuck.begin(missing, "get", timeout)
            try:
                descs = self.conn.request(lambda req: [P.GET, req, missing, timeout])
            finally:
                self.stuck.end(watch)
            timed_out, moved = [], []
            for oid, d in zip(missing, descs):
                if d is None:
                    timed_out.append(oid)
                elif d[0] == P.INLINE:
                    # errors are not cached: some are transient (a full store)
                    if oid in self.counts and not d[2]:
                        cache[oid] = (d[1], d[2])
                    fetched[oid] = (d[1], d[2])
                elif d[0] == P.FILE:
                    mv = self._map_file(d[1], d[2])
                    if mv is None:
                        moved.append(oid)    # restored meanwhile: ask again
                    else:
                        fetched[oid] = (mv, d[3])
                else:
                    fetched[oid] = (self._map(oid, d[1], d[2], d[3]), d[3])
            if timed_out:
                why = ""
                if timeout >= EXPLAIN_TIMEOUT_MIN_S:
                    ans = self.stuck.explain(timed_out, timeout=5.0)
                    if ans is not None:
                        why = f" What it waits for: {ans['text']}."
                raise exceptions.GetTimeoutError(
                    f"Get timed out after {timeout} s: {len(timed_out)} of "
                    f"{len(missing)} objects were not ready (first: "
                    f"{timed_out[0].hex()}).{why}")
            missing = moved
            tries += 1
            if missing and tries >= 10:
                raise exceptions.ObjectLostError(
                    f"Object {missing[0].hex()} kept moving between its spill file "
                    f"and the object store while it was read ({tries} tries).")
        out = []
        # many values for one get: no cyclic GC until all are built (see
        # serialization.pause_gc)
        paused = len(oids) >= PAUSE_GC_VALUES and serialization.pause_gc()
        try:
            for oid in oids:
                data, is_error = cache.get(oid) or fetched[oid]
                value = serialization.deserialize(data)
                if is_error:
                    if isinstance(value, exceptions.TaskError):
                        raise value.as_instanceof_cause()
                    raise value
                out.append(value)
        finally:
            serialization.resume_gc(paused)
        return out

    def cache_inline(self, oid, data) -> None:
        """Keep the bytes of small object `oid` (which this process is about to
        hold a ref to): its get needs no round trip."""
        self.cache[oid] = (data, False)

    def gen_next(self, task_id, index, timeout=None, most=64):
        """Items `index`... of generator task `task_id` (see protocol.GEN_NEXT):
        the raylet's reply, or None if none was there within `timeout`."""
        return self.conn.request(
            lambda req: [P.GEN_NEXT, req, task_id, index, timeout, most])

    def descriptor_value(self, desc, oid):
        """Deserialize an object from a descriptor the raylet sent (task args)."""
        if desc[0] == P.INLINE:
            return serialization.deserialize(desc[1]), desc[2]
        if desc[0] == P.FILE:
            mv = self._map_file(desc[1], desc[2])
            if mv is None:   # restored since the raylet sent it: get it anew
                return self.get_values([oid])[0], False
            return serialization.deserialize(mv), desc[3]
        return serialization.deserialize(self._map(oid, desc[1], desc[2], desc[3])), desc[3]

    def wait_direct(self, oids, num_returns, timeout) -> bool:
        """Wait until at most len(oids) - num_returns of `oids` are results still
        owed by direct calls (False: timed out).  A worker running a normal task
        lends its CPU back meanwhile, as the raylet does while it waits in GET."""
        owes = self.direct.owes
        most = len(oids) - num_returns

        def enough():
            return sum(1 for o in oids if owes(o)) <= most
        if enough():
            return True
        lend = self.role == "worker" and self.task.actor is None
        if lend:
            self.conn.send([P.BLOCK])
        try:
            return self.hub.wait(enough, timeout)
        finally:
            if lend:
                self.queue([P.UNBLOCK])

    def wait(self, oids, num_returns, timeout, fetch_local=True):
        direct = self.direct
        if direct.unflushed:
            direct.flush()
        if direct.pending and any(direct.owes(o) for o in oids):
            if all(direct.owes(o) or o in self.cache or o in self.known_ready
                   for o in oids):
                # only direct results and objects known ready: no raylet needed
                self.wait_direct(oids, num_returns, timeout)
                return [i for i, o in enumerate(oids) if not direct.owes(o) and (
                    o in self.cache or o in self.known_ready)][:num_returns]
            for o in oids:      # the raylet waits for them too: it must know them
                if direct.owes(o):
                    direct.escape(o)
        cache, known = self.cache, self.known_ready
        # objects in the cache, or that an earlier WAIT reported ready, are ready
        # without asking (a ready object stays ready while we hold its ref): a
        # loop of wait(num_returns=1) costs one request per batch, not per ref
        if cache or known:
            ready_local = []
            for i, o in enumerate(oids):    # stops at the num_returns-th ready ref
                if o in cache or o in known:
                    ready_local.append(i)
                    if len(ready_local) >= num_returns:
                        return ready_local
        watch = self.stuck.begin(oids, "wait", timeout)
        try:
            if not fetch_local:
                # ready may mean "sealed on another node": not remembered as local
                idx = self.conn.request(
                    lambda req: [P.WAIT, req, oids, num_returns, timeout, False])
                return idx[:num_returns]
            idx = self.conn.request(lambda req: [P.WAIT, req, oids, num_returns,
                                                 timeout])
        finally:
            self.stuck.end(watch)
        counts = self.counts
        for i in idx:
            if oids[i] in counts:
                known.add(oids[i])
        return idx[:num_returns]

    # ------------------------------------------------------------ tasks
    def export(self, gcs, key, blob):
        if key not in self.exported:
            gcs.export_function(key, blob)
            self.exported.add(key)

    def new_put_id(self) -> bytes:
        """A fresh object id for a value this process stores (put or a large
        argument)."""
        return ids.put_id(self.task.task_id, self.task.put_counter())

    def release(self, oids) -> None:
        """Drop refs taken with ref_inc (e.g. on arguments put for a task, once
        the task that uses them is queued: the raylet counts them for it)."""
        for oid in oids:
            self.ref_dec(oid)

    def submit(self, spec):
        """Queue a task; the raylet counts the returned refs as ours (the caller
        makes them with ObjectRef(..., _registered=True))."""
        if self.direct.pending or self.direct.owned:
            for a in spec.args:
                if a[0] == P.ARG_REF:
                    self.escape(a[1])
        self.queue([P.SUBMIT, spec.to_wire()])

    def submit_actor_call(self, spec, creation_oid):
        """Queue an actor call: straight to the actor's worker when it is local
        and the raylet granted it (direct.py), else as submit()."""
        if not config.DIRECT_CALLS:
            return self.submit(spec)
        self.direct.channel(spec.actor_id, creation_oid).submit(spec)

    def cancel(self, oid, force, recursive):
        """cancel() of the task making `oid`: on its direct link, else the raylet
        (which answers False if it does not know the task, a string if it refuses).
        A direct call's own children are not cancelled (the raylet never saw the
        call, so it cannot find them by their parent)."""
        direct = self.direct
        if direct.pending:
            if force and direct.owes(oid):
                return ("force=True is not supported for actor tasks: use "
                        "kill(actor) to end the actor.")
            if direct.cancel(ids.task_of(oid)):
                return True
        return self.call("cancel", oid, bool(force), bool(recursive))

    def call(self, method, *args, timeout=None):
        r = self.conn.request(lambda req: [P.CALL, req, method, list(args)], timeout)
        if isinstance(r, dict) and "error" in r and len(r) == 1:
            raise exceptions.RaySystemError(f"raylet call {method} failed: {r['error']}")
        return r

    def close(self):
        if self.closed:
            return
        try:
            self.conn.flush()
        except Exception:
            pass
        self.closed = True
        self._flusher_wake.set()
        self._map_ahead.put((1, 0))     # (wakes the thread, to end)
        self.direct.close()
        self.conn.close()
        hub = self.hub
        if hub.lost is None:    # threads still waiting end with this error
            hub.lost = ConnectionLost("This process disconnected from its beamlet "
                                      "cluster (shutdown() ran).")
        hub.wake()
        hub.close()
        try:
            os.close(self.arena_fd)
        except OSError:
            pass


global_worker = None
