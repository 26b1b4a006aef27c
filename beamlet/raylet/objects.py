"""The raylet's object side: reference counts, pins, creating and sealing
objects, spilling and restoring, get and wait (see object_store.py for the pure
state)."""
import os
import time

from .. import exceptions
from .._private import config, ids, serialization
from .._private import protocol as P
from ..gcs import keys
from .object_store import ObjState
from .worker_pool import WState
from .common import log



class ObjectsMixin:
    """Part of Raylet (see raylet.py); methods use the Raylet's state."""

    # ------------------------------------------------------------------ refs
    def incref(self, oid):
        o = self.store.objects.get(oid)
        if o is not None:
            o.refcount += 1

    def decref(self, oid):
        o = self.store.objects.get(oid)
        if o is None:
            return
        o.refcount -= 1
        if o.refcount <= 0:
            self.free(o)

    def free(self, o):
        st = o.state
        if st is ObjState.PENDING or st is ObjState.CREATING:
            if self.om.proxies and o.oid in self.om.proxies and st is ObjState.PENDING:
                self.om.drop_proxy(o)   # a remote object nobody here needs now
            return  # freed when its value arrives (seal sees refcount 0)
        del self.store.objects[o.oid]
        if st is ObjState.SPILLED:
            self.store.spilled_bytes -= o.size
            if not o.restoring:   # else restore_done removes the file
                try:
                    os.unlink(o.spill_path)
                except OSError:
                    pass
        elif o.pins > 0:
            # still mapped somewhere: the range is released at the last UNPIN
            o.free_when_unpinned = True
            self.store.freed_pinned[o.oid] = o
        else:
            self.store.release_memory(o)
            self.memory_freed()
        o.state = ObjState.FREED
        if o.size >= config.INLINE_THRESHOLD:
            # this node no longer holds it (other nodes' copies stay listed)
            self.gcsw.put("hdel", keys.obj(o.oid), self.node_id.hex())
        if (self.om.watch and o.oid in self.om.watch) or (
                self.om.remote_refs and o.oid in self.om.remote_refs):
            self.om.freed(o)   # e.g. the copy we fetched is gone: unpin the origin's
        for c in o.contained:
            self.decref(c)
        if self.cs.owned_oids and o.oid in self.cs.owned_oids:
            self.cs.creation_freed(o.oid)   # an actor we own on another node
        a = self.creation_to_actor.get(o.oid)
        if a is not None:
            del self.creation_to_actor[o.oid]
            if a.state != "DEAD":
                self.kill_actor(a, "All handles to the actor went out of scope.",
                                no_restart=True, graceful=True)

    def on_ref_add(self, conn, msg):
        objects = self.store.objects
        refs = conn.refs
        for oid in msg[1]:
            o = objects.get(oid)
            if o is not None:
                o.refcount += 1
                refs[oid] += 1

    def on_ref_del(self, conn, msg):
        refs = conn.refs
        for oid in msg[1]:
            n = refs.get(oid, 0)
            if n <= 0:
                continue
            if n == 1:
                del refs[oid]
            else:
                refs[oid] = n - 1
            self.decref(oid)

    def on_unpin(self, conn, msg):
        for oid in msg[1]:
            n = conn.pins.get(oid, 0)
            if n <= 0:
                continue
            if n == 1:
                del conn.pins[oid]
            else:
                conn.pins[oid] = n - 1
            o = self.store.pinned(oid)
            if o is None:
                continue
            o.pins -= 1
            if o.pins <= 0:
                self.unpinned(o)

    def unpinned(self, o):
        o.pins = 0
        if o.free_when_unpinned:
            o.free_when_unpinned = False
            self.store.freed_pinned.pop(o.oid, None)
            self.store.release_memory(o)
            self.memory_freed()

    def pin_descriptor(self, conn, o):
        """Descriptor of a sealed object for `conn`, counting the pin if in the arena."""
        if o.state is ObjState.SPILLED:
            err = self.restore(o)
            if err:
                return [P.INLINE, self.error_bytes(err), True]
        o.last_access = time.monotonic()
        if o.data is None:
            o.pins += 1
            conn.pins[o.oid] += 1
        return o.descriptor()

    # ------------------------------------------------------------------ objects
    def seal_waiters(self, waiters):
        for w in waiters:
            w()

    def on_put(self, conn, msg):
        _, oid, data, contained = msg
        o = self.store.get_or_create(oid)
        o.refcount += 1
        conn.refs[oid] += 1
        self.seal_object_inline(o, data, False, contained)

    def seal_object_inline(self, o, data, is_error, contained):
        for c in contained or ():
            self.incref(c)
        waiters = self.store.seal_inline(o, data, is_error, contained)
        if o.refcount <= 0:
            self.free(o)
        self.seal_waiters(waiters)

    def on_create(self, conn, msg):
        _, req, oid, size = msg
        o = self.store.get_or_create(oid)
        if ids.is_put_object(oid) and o.state is ObjState.PENDING:
            o.refcount += 1
            conn.refs[oid] += 1
        self.try_create(conn, req, o, size, time.monotonic() + config.CREATE_WAIT_S)

    def try_create(self, conn, req, o, size, deadline):
        cap = self.store.allocator.capacity
        if size > cap:
            conn.send([P.REPLY, req, [None,
                f"An object of {size} bytes can never fit in this node's object store "
                f"of {cap} bytes. Start beamlet with a larger object_store_memory "
                f"(init(object_store_memory=...)) or split the object."]])
            return
        off = self.store.reserve(o, size)
        if off is None:
            # wait for space: spill least recently used objects (in the spill
            # thread) or wait for processes to release what they map
            self.pending_creates.append((deadline, conn, req, o, size))
            self.make_room()
            return
        self.gcsw.put("hset", keys.obj(o.oid), self.node_id.hex(), size)
        conn.send([P.REPLY, req, [off]])

    def memory_freed(self):
        if self.pending_restores:
            pend, self.pending_restores = self.pending_restores, {}
            for o, deadline in pend.items():
                if o.state is ObjState.SPILLED:
                    self.request_restore(o, deadline)
        if self.pending_creates:
            pend, self.pending_creates = self.pending_creates, []
            for deadline, conn, req, o, size in pend:
                if not conn.closed:
                    self.try_create(conn, req, o, size, deadline)

    # Spilling for creates runs in a thread, so that writing hundreds of MB to
    # disk never stalls the event loop (every client's messages).  An object
    # being spilled is pinned by the raylet itself: it stays readable, and
    # cannot be freed or moved until the write is done.
    def make_room(self):
        """Start spilling LRU objects until the bytes being spilled cover what
        the waiting creates need (fragmentation may call for another round)."""
        need = sum(p[4] for p in self.pending_creates if not p[1].closed)
        need += sum(o.size for o in self.pending_restores)   # (dict keys)
        need -= self.spilling_bytes + self.store.allocator.largest_hole()
        if need <= 0:
            return
        for v in self.store.spill_candidates():
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
        """(spill thread) Write one object's bytes to `path`."""
        try:
            with open(path, "wb") as f:
                f.write(self.arena_view[offset:offset + size])
        except OSError:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise

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
                msg = (f"The object store is full and spilling to {self.spill_dir} "
                       f"failed ({err}); free disk space there, or release references "
                       f"to large objects.")
                log("spill failed:", msg)
                for _, conn, req, _, size in self.pending_creates:
                    conn.send([P.REPLY, req, [None, f"An object of {size} bytes does "
                               f"not fit in the object store. {msg}"]])
                self.pending_creates = []
                return
        else:
            self.store.release_memory(o)
            o.move(ObjState.SPILLED)
            o.spill_path = path
            self.store.spilled_bytes += o.size
        self.memory_freed()

    def expire_creates(self):
        now = time.monotonic()
        keep = []
        for item in self.pending_creates:
            deadline, conn, req, o, size = item
            if now < deadline or self.spilling_bytes:   # spilling: progress is made
                keep.append(item)
                continue
            st = self.store.stats()
            conn.send([P.REPLY, req, [None,
                f"The object store is full: an object of {size} bytes does not fit "
                f"({st['arena_used']} of {st['arena_capacity']} bytes used, largest "
                f"free block {self.store.allocator.largest_hole()} bytes) and every "
                f"object in it is in use (mapped by a process), so none can be "
                f"spilled. Release references to large objects (del the arrays you "
                f"got) or give the store more memory (object_store_memory)."]])
        self.pending_creates = keep
        for o, deadline in list(self.pending_restores.items()):
            if now >= deadline and not self.spilling_bytes:
                # give up: the waiters take the synchronous path, which
                # reports the full store
                del self.pending_restores[o]
                w, o.waiters = o.waiters, []
                self.seal_waiters(w)

    def on_seal(self, conn, msg):
        _, oid, contained, is_error = msg
        o = self.store.objects.get(oid)
        if o is None:
            return
        for c in contained or ():
            self.incref(c)
        waiters = self.store.seal_arena(o, is_error, contained)
        if o.refcount <= 0:
            self.free(o)
        self.seal_waiters(waiters)

    def spill(self, o):
        """Move a sealed arena object to a file.  Returns an error message or None."""
        path = os.path.join(self.spill_dir, o.oid.hex())
        try:
            with open(path, "wb") as f:
                f.write(self.arena_view[o.offset:o.offset + o.size])
        except OSError as e:
            try:
                os.unlink(path)
            except OSError:
                pass
            return (f"The object store is full and spilling to {self.spill_dir} failed "
                    f"({e}); free disk space or release references to objects.")
        self.store.release_memory(o)
        o.move(ObjState.SPILLED)
        o.spill_path = path
        self.store.spilled_bytes += o.size
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
        off = self.store.allocator.alloc(o.size)
        if off is None and prefetch:
            return False
        if off is None:
            # wait for room, as a CREATE does (spilling others, or processes
            # releasing what they map); expire_creates ends the wait
            self.pending_restores[o] = deadline or (time.monotonic() +
                                                    config.CREATE_WAIT_S)
            self.make_room()
            return True
        o.restoring = True
        path = o.spill_path
        fut = self.spill_thread.submit(self.read_spill_file, path, off, o.size)
        fut.add_done_callback(lambda f: self.loop.call_soon_threadsafe(
            self.restore_done, o, path, off, f))
        return True

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
            self.store.allocator.free(off, o.size)
            if o.state is ObjState.FREED:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            elif o.state is ObjState.SPILLED:
                log("restore failed:", err)
            w, o.waiters = o.waiters, []
            self.seal_waiters(w)    # a getter then reports the error
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
        self.store.spilled_bytes -= o.size
        w, o.waiters = o.waiters, []
        self.seal_waiters(w)

    def restore(self, o):
        """Bring a spilled object back into the arena.  Returns an error or None."""
        size = o.size
        off = self.store.allocator.alloc(size)
        while off is None:
            victims = self.store.spill_candidates()
            if not victims:
                st = self.store.stats()
                return exceptions.ObjectStoreFullError(
                    f"Cannot restore spilled object {o.oid.hex()} ({size} bytes): the "
                    f"object store ({st['arena_used']} of {st['arena_capacity']} bytes "
                    f"used) is full of objects in use (mapped by processes, e.g. arrays "
                    f"got from it that are still alive), so none can be spilled. "
                    f"Release them (del the arrays) or give the store more memory "
                    f"(object_store_memory).")
            err = self.spill(victims[0])
            if err:
                return exceptions.ObjectStoreFullError(err)
            off = self.store.allocator.alloc(size)
        with open(o.spill_path, "rb") as f:
            f.readinto(self.arena_view[off:off + size])
        os.unlink(o.spill_path)
        o.spill_path = None
        o.offset = off
        o.move(ObjState.SEALED)
        self.store.spilled_bytes -= size
        return None

    def error_bytes(self, err) -> bytes:
        return serialization.serialize(err).to_bytes()

    def lost_descriptor(self, oid):
        err = exceptions.ObjectLostError(
            f"Object {oid.hex()} is lost: no node holds it and it cannot be rebuilt "
            f"(its references were all released, or it was never created here).")
        return [P.INLINE, self.error_bytes(err), True]

    # ------------------------------------------------------------------ get / wait
    class Getter:
        __slots__ = ("conn", "req", "oids", "missing", "timer", "done", "kind",
                     "num_returns", "worker", "fetch")

    def on_get(self, conn, msg):
        _, req, oids, timeout = msg
        self.start_getter(conn, req, oids, timeout, "get", len(oids))

    def on_wait(self, conn, msg):
        _, req, oids, num_returns, timeout = msg[:5]
        self.start_getter(conn, req, oids, timeout, "wait", num_returns,
                          len(msg) < 6 or msg[5])

    def start_getter(self, conn, req, oids, timeout, kind, num_returns, fetch=True):
        objects = self.store.objects
        g = self.Getter()
        g.conn, g.req, g.oids, g.kind, g.num_returns = conn, req, oids, kind, num_returns
        g.done = False
        g.timer = None
        g.worker = None
        g.fetch = fetch
        ready = 0
        om = self.om
        # a get of a spilled object waits for its restore (done off the loop);
        # for wait() a spilled object is ready
        restore = kind == "get" and timeout != 0
        for oid in oids:
            o = objects.get(oid)
            if o is None or o.state is ObjState.SEALED or (
                    o.state is ObjState.SPILLED and not restore):
                if o is None and om.multi and timeout != 0:
                    # an id this node never knew: another node may have it (the
                    # GCS says where); the client holds the ref: count it
                    om.locate(oid).refcount += 1
                    conn.refs[oid] += 1
                    continue
                ready += 1
            elif not fetch and oid in om.remote_ready:
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
                o.waiters.append(cb)
                if o.state is ObjState.SPILLED:
                    self.request_restore(o)
                elif om.multi and o.state is ObjState.PENDING:
                    om.wanted(o, fetch, cb)     # pull it if it is on another node
        if timeout is not None and timeout >= 0:
            g.timer = self.loop.call_later(timeout, self.finish_getter, g)
        w = conn.worker
        if w is not None and w.state is WState.BUSY and w.task is not None:
            # lend the CPU back while this worker waits, so nested tasks can run
            g.worker = w
            w.state = WState.BLOCKED
            if w.next is not None:
                self.revoke(w)   # others may run it (it may be what w waits for)
            t = w.task
            w.lent = {k: v for k, v in t.spec.resources.items() if k == "CPU"}
            if w.lent:
                self.resources.release(w.lent, [])
            self.request_schedule()

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
        if g.timer is not None:
            g.timer.cancel()
        conn = g.conn
        w = g.worker
        if w is not None and w.state is WState.BLOCKED:
            w.state = WState.BUSY
            if w.lent:
                # take the CPU back (may oversubscribe for a moment, as Ray does)
                for k, v in w.lent.items():
                    self.resources.available[k] = self.resources.available.get(k, 0) - v
                w.lent = None
        if conn.closed:
            return
        objects = self.store.objects
        if g.kind == "get":
            out = []
            for oid in g.oids:
                o = objects.get(oid)
                if o is None:
                    out.append(self.lost_descriptor(oid))
                elif o.state is ObjState.SEALED or o.state is ObjState.SPILLED:
                    out.append(self.pin_descriptor(conn, o))
                else:
                    out.append(None)
            conn.send([P.REPLY, g.req, out])
        else:
            # every ready index, not just num_returns: the client remembers them
            ready = []
            elsewhere = () if g.fetch else self.om.remote_ready
            for i, oid in enumerate(g.oids):
                o = objects.get(oid)
                if o is None or o.state is ObjState.SEALED or o.state is ObjState.SPILLED \
                        or oid in elsewhere:
                    ready.append(i)
            conn.send([P.REPLY, g.req, ready])
