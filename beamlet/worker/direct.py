"""Direct actor calls: a caller on the actor's node sends its calls straight to the
actor's worker over a unix socket of its own, and the results come straight back.
The raylet stays the authority for placement, restarts, death and reference
counting, but is off the per-call path.  docs/architecture.md ("Direct actor
calls") has the whole design; in short:

    caller process                              the actor's worker
    ┌────────────────────────────┐   D_CALL     ┌──────────────────────────────┐
    │ ActorChannel (per actor) ──┼─────────────▶│ DirectServer: listener, one  │
    │   RAYLET ──grant──▶ DIRECT │◀─────────────┼ InLink per caller; calls go  │
    │ DirectCalls: the results   │   D_DONE     │ to the worker's run queue in │
    │   owed, kept or OWNed      │              │ arrival order                │
    └─────────────┬──────────────┘              └──────────────┬───────────────┘
                  │ DIRECT_ASK, RESUBMIT, OWN, FULFIL           │ GRANT, DIRECT_READY,
                  ▼                                            ▼ REGISTER, ACTOR_EXIT
                                  the raylet (actors.py)

- Order.  A channel starts on the raylet path (SUBMIT).  It asks the raylet
  (DIRECT_ASK); the raylet answers once none of this caller's calls is still
  queued there for the actor and the actor is ALIVE, and right before answering
  it sends the worker a GRANT (caller id, token) on the worker's raylet socket,
  behind every call of this caller it sent there.  The worker admits a caller's
  link only once that GRANT has been read, so the direct calls join its run
  queue after the earlier ones.  A grant is only used if the caller sent nothing
  through the raylet since it asked (else it asks again).  A call that cannot go
  direct (a ref argument whose value is not here, refs inside an argument) is
  held until the direct calls before it have finished, then the channel goes
  back to the raylet path, which it leaves again with a new grant.
- Objects.  A direct call's result that is small and holds no refs is kept by the
  caller only (the raylet never hears of it) until its ref leaves the process
  (pickled into something, passed to a task): then the caller PUTs it (or OWNs
  it, if it has not arrived yet, and FULFILs it when it does).  A large result
  is written into the arena by the worker, counted for the caller at CREATE; one
  holding refs is REGISTERed by the worker before it answers; the caller then
  treats both as ordinary objects.  Every registration counts one ref for the
  caller, and the caller drops the extra ones (DirectCalls.settle), so the
  raylet counts exactly one ref of the caller while it holds the ref.
- Failures.  The link breaks when the worker dies (or exits): the calls sent on
  it and not answered are RESUBMITted through the raylet with the incarnation
  they were sent to, where they are retried or fail as the actor's in-flight
  calls do (max_task_retries); the channel asks for a grant again, which comes
  once the actor is back.  kill() and exit_actor() end the link the same way.
"""
import collections
import hmac
import os
import socket
import struct
import threading
import time

from .. import exceptions
from .._private import serialization
from .._private import protocol as P
from .hub import BufferedLink, Link

RAYLET, DIRECT = "raylet", "direct"
WRITE_BATCH = 64       # calls queued on a link before they are written at once
ASK_AGAIN_S = 0.2      # after a refusal that may change soon (no listener yet)
REMOTE_ASK_S = 2.0     # the actor is on another node (it may come back here)

# a pending result's raylet-side state (DirectCalls.pending)
NOT_SHARED, OWNED_HELD, OWNED_DROPPED = 0, 1, 2


# ---------------------------------------------------------------- caller side
class OutLink(BufferedLink):
    """(caller side) The link to one actor's worker."""

    def __init__(self, hub, channel, path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        super().__init__(hub, sock)
        self.channel = channel

    def handle(self, msgs):
        for m in msgs:
            if m[0] == P.D_DONE:
                self.channel.on_done(self, m[1], m[2], m[3])

    def on_lost(self, err):
        super().on_lost(err)     # (the socket is closed)
        self.channel.link_lost(self)


class ActorChannel:
    """(caller side) This process's calls to one actor, in submission order:
    through the raylet, or on a link of their own once the raylet grants it."""

    def __init__(self, calls, actor_id, creation_oid):
        self.calls = calls
        self.core = calls.core
        self.actor_id = actor_id
        self.creation_oid = creation_oid   # held while calls are in flight
        self.lock = threading.RLock()
        self.state = RAYLET
        self.link = None
        self.incarnation = None
        self.raylet_calls = 0       # calls submitted through the raylet so far
        self.asking = False         # a DIRECT_ASK is unanswered
        self.asked_at = -1          # raylet_calls when it was sent
        self.ask_after = 0.0        # no new ask before this (time.monotonic())
        self.never = False          # the actor is dead, or this process hosts it
        self.inflight = {}          # task_id -> TaskSpec sent on the link, unanswered
        self.held = collections.deque()   # calls waiting for the direct ones to end

    # ---- submitting (any thread)
    def submit(self, spec):
        release = False
        with self.lock:
            if self.state is DIRECT:
                if not self.held:
                    wire = self.calls.direct_wire(spec)
                    if wire is not None:
                        release = self.send(spec, wire)
                    else:
                        self.hold(spec)
                else:
                    self.hold(spec)
            else:
                self.via_raylet(spec)
        if release:
            self.release_actor()

    def hold(self, spec):
        """Through the raylet, once the direct calls before it are done."""
        self.calls.expect(spec)
        self.held.append(spec)
        self.pump()

    def send(self, spec, wire) -> bool:
        """Queue it on the link (written with the next flush: before the process
        waits, when WRITE_BATCH wait, or by the flusher thread); True if the link
        turned out broken and no call is in flight any more (the caller then
        releases the actor: release_actor)."""
        if not self.inflight and self.creation_oid is not None:
            # the actor lives while calls to it run (as a queued call holds it)
            self.core.ref_inc(self.creation_oid)
        self.inflight[spec.task_id] = spec
        self.calls.expect(spec)
        n = self.link.queue([P.D_CALL, wire])
        if n == 1:
            self.calls.dirty(self)
        if n >= WRITE_BATCH:
            return self.flush_locked()
        return False

    def flush(self):
        """Write the queued calls (any thread)."""
        with self.lock:
            release = self.flush_locked()
        if release:
            self.release_actor()

    def flush_locked(self) -> bool:
        link = self.link
        if link is None or link.flush():
            return False
        # the worker is gone (its end was closed before these were written):
        # they never reached it, so they go through the raylet as new calls
        undelivered = {m[1][0] for m in link.queued}
        return self.broken(undelivered)

    def release_actor(self):
        if self.creation_oid is not None:
            self.core.ref_dec(self.creation_oid)

    def via_raylet(self, spec, was_held=False):
        self.core.submit(spec)
        if was_held:
            self.calls.submitted(spec)
        self.raylet_calls += 1
        self.maybe_ask()

    def pump(self):
        """Send held calls through the raylet once no direct call is in flight."""
        while self.held:
            if self.state is DIRECT:
                if self.inflight:
                    return
                self.leave()
            self.via_raylet(self.held.popleft(), was_held=True)

    def leave(self):
        link, self.link = self.link, None
        self.state = RAYLET
        if link is not None:
            link.close()

    def maybe_ask(self):
        if self.asking or self.never or time.monotonic() < self.ask_after:
            return
        self.asking = True
        self.asked_at = self.raylet_calls
        self.core.request_async(lambda req: [P.DIRECT_ASK, req, self.actor_id],
                                self.on_grant)

    # ---- events (the reading thread)
    def on_grant(self, reply):
        with self.lock:
            self.asking = False
            if not isinstance(reply, dict) or "refused" in reply:
                why = reply.get("refused") if isinstance(reply, dict) else None
                if why in ("dead", "self"):
                    self.never = True
                else:
                    self.ask_after = time.monotonic() + (
                        REMOTE_ASK_S if why == "remote" else ASK_AGAIN_S)
                return
            if self.state is DIRECT or self.core.closed:
                return
            if self.raylet_calls != self.asked_at:
                self.maybe_ask()    # calls went through the raylet since: ask again
                return
            try:
                link = OutLink(self.core.hub, self, reply["path"])
            except OSError:
                self.ask_after = time.monotonic() + ASK_AGAIN_S
                return
            link.send([P.D_HELLO, P.VERSION, self.core.worker_id, reply["token"]])
            self.core.hub.add(link)
            self.link, self.incarnation, self.state = link, reply["incarnation"], DIRECT

    def on_done(self, link, task_id, results, flag):
        with self.lock:
            if self.inflight.pop(task_id, None) is None:
                return
            self.calls.resolved(results)
            drained = not self.inflight
            if drained:
                self.pump()
        if drained:
            self.release_actor()

    def link_lost(self, link):
        with self.lock:
            if link is not self.link:
                return      # one this channel closed itself
            release = self.broken()
        if release:
            self.release_actor()
        self.core.flush_soon()

    def broken(self, undelivered=()) -> bool:
        """(holding the lock) The link broke: the calls sent on it that got no
        answer are RESUBMITted (they may have run), those never written to it
        (task ids in `undelivered`) go through the raylet as new calls, then the
        held ones; True if the actor's hold is to be released."""
        self.link, link = None, self.link
        self.state = RAYLET
        if link is not None:
            link.close()
        lost = list(self.inflight.values())
        self.inflight.clear()
        for spec in lost:
            if spec.task_id in undelivered:
                self.via_raylet(spec, was_held=True)
            else:
                self.calls.resubmit(spec, self.incarnation)
        self.ask_after = 0.0
        self.pump()
        self.maybe_ask()
        return bool(lost)

    # ---- cancel, close
    def cancel(self, task_id) -> bool:
        """cancel() of one of this channel's calls; False if it has none such."""
        with self.lock:
            for spec in self.held:
                if spec.task_id == task_id:
                    self.held.remove(spec)
                    self.calls.fail_locally(spec, exceptions.TaskCancelledError(
                        spec.name))
                    return True
            if task_id in self.inflight and self.link is not None:
                self.link.send([P.D_CANCEL, task_id])
                return True
        return False

    def busy(self) -> bool:
        link = self.link
        return bool(self.held) or (link is not None and (link.has_output() or
                                                         bool(link.queued)))

    def close(self):
        with self.lock:
            link, self.link = self.link, None
            if link is not None:
                link.close()


class DirectCalls:
    """(caller side) The process's channels, and the results of direct calls it is
    owed or keeps: the bookkeeping that keeps the raylet's count of this
    process's refs right (one while it holds a ref, none after).

    All under the core worker's count_lock (ObjectRef.__del__ reaches `dropped`
    holding it)."""

    def __init__(self, core):
        self.core = core
        self.lock = core.count_lock
        self.channels = {}      # actor_id -> ActorChannel
        self.pending = {}       # oid -> NOT_SHARED | OWNED_HELD | OWNED_DROPPED
        self.owned = set()      # oids whose value only this process has (core.cache)
        self.unflushed = set()  # channels with calls queued on their link

    def channel(self, actor_id, creation_oid) -> ActorChannel:
        ch = self.channels.get(actor_id)
        if ch is None:
            with self.lock:
                ch = self.channels.get(actor_id)
                if ch is None:
                    ch = self.channels[actor_id] = ActorChannel(self, actor_id,
                                                                creation_oid)
        return ch

    def dirty(self, channel):
        self.unflushed.add(channel)
        self.core.flush_soon()

    def flush(self):
        """Write every link's queued calls (before the process waits)."""
        while self.unflushed:
            try:
                ch = self.unflushed.pop()
            except KeyError:
                break
            ch.flush()

    def direct_wire(self, spec):
        """The wire form of `spec` for the direct link, with its ref arguments
        replaced by their values; None if it must go through the raylet (a ref
        whose value is not here, an error value, refs nested in an argument, a
        generator method, retry_exceptions)."""
        if spec.num_returns < 0 or spec.retry_exceptions:
            # generator methods (their items are the raylet's streams) and calls
            # retried on an exception (the raylet retries them) take its path
            return None
        core = self.core
        cache, plain = core.cache, core.plain
        args, out = spec.args, None
        for i, a in enumerate(args):
            if a[0] == P.ARG_REF:
                e = cache.get(a[1]) if a[1] in plain else None
                if e is None or e[1]:
                    return None
                if out is None:
                    out = list(args)
                out[i] = [P.ARG_VALUE, e[0], []]
            elif a[2]:
                return None
        if out is not None:
            spec.args = out     # (a by-value argument is the same to the callee)
        return spec.to_wire()

    def expect(self, spec):
        with self.lock:
            pending = self.pending
            for oid in spec.return_ids():
                pending[oid] = NOT_SHARED

    def owes(self, oid) -> bool:
        return oid in self.pending

    def holds(self, oid) -> bool:
        return oid in self.pending or oid in self.owned

    # ---- results
    def resolved(self, results):
        """A D_DONE's results: keep, FULFIL or settle each."""
        core = self.core
        with self.lock:
            counts, cache = core.counts, core.cache
            fulfil = False
            for oid, d in results:
                st = self.pending.pop(oid, None)
                if st is None:
                    continue
                held = oid in counts
                if d[0] == P.INLINE:
                    if st == NOT_SHARED:
                        if held:
                            cache[oid] = (d[1], d[2])
                            self.owned.add(oid)
                            core.plain.add(oid)
                    else:
                        core.conn.queue([P.FULFIL, oid, d[1], d[2]])
                        fulfil = True
                        if held:
                            cache[oid] = (d[1], d[2])
                else:   # REGISTERED: the raylet counted one ref of ours on it
                    self.settle(oid, 1 + (st == OWNED_HELD))
                    if held and d[1] is not None:
                        cache[oid] = (d[1], d[2])
        if fulfil:
            core.flush_soon()    # someone elsewhere may wait for it

    def settle(self, oid, counted):
        """The raylet counts `counted` refs of ours on `oid`: drop those beyond
        the one we keep while we hold the ref (the oid is an ordinary object from
        now on)."""
        extra = counted - (1 if oid in self.core.counts else 0)
        refops = self.core.refops
        for _ in range(max(0, extra)):
            refops.append(("d", oid))

    def resubmit(self, spec, incarnation):
        """A call whose link broke before its answer: through the raylet."""
        self.core.conn.queue([P.RESUBMIT, spec.to_wire(), incarnation])
        self.submitted(spec)

    def submitted(self, spec):
        """`spec`'s results are the raylet's now (its SUBMIT counted one ref each)."""
        with self.lock:
            for oid in spec.return_ids():
                st = self.pending.pop(oid, NOT_SHARED)
                self.settle(oid, 1 + (st == OWNED_HELD))

    def fail_locally(self, spec, err):
        """`spec` never ran anywhere: its results are `err` (kept here)."""
        data = serialization.serialize(err).to_bytes()
        self.resolved([[oid, [P.INLINE, data, True]] for oid in spec.return_ids()])

    # ---- refs leaving the process, refs dropped
    def escape(self, oid):
        """A ref to `oid` goes to another process: the raylet must know it."""
        core = self.core
        with self.lock:
            st = self.pending.get(oid)
            if st == NOT_SHARED:
                core.conn.queue([P.OWN, [oid]])
                self.pending[oid] = OWNED_HELD
            elif oid in self.owned:
                self.owned.discard(oid)
                data, is_error = core.cache[oid]
                core.conn.queue([P.PUT, oid, data, [], is_error])

    def dropped(self, oid) -> bool:
        """The process dropped its last ref to `oid`; True if that is all (no
        REF_DEL to send, or sent here)."""
        st = self.pending.get(oid)
        if st is not None:
            if st == OWNED_HELD:
                self.core.refops.append(("d", oid))
                self.pending[oid] = OWNED_DROPPED
            return True
        if oid in self.owned:
            self.owned.discard(oid)
            return True
        return False

    # ---- the process
    def cancel(self, task_id) -> bool:
        return any(ch.cancel(task_id) for ch in list(self.channels.values()))

    def background_work(self) -> bool:
        """Something needs the sockets read although nobody waits: a result
        OWNed by another process's wait, calls held, output not written."""
        return any(st != NOT_SHARED for st in self.pending.values()) or any(
            ch.busy() for ch in list(self.channels.values()))

    def close(self):
        for ch in list(self.channels.values()):
            ch.close()


# ---------------------------------------------------------------- actor side
def _same_user(sock) -> bool:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1] == os.getuid()


class Listener(Link):
    """(actor side) The listening socket of the actor's worker."""

    def __init__(self, hub, server, path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.exists(path):
                os.unlink(path)
            sock.bind(path)
            os.chmod(path, 0o600)     # (the sockets dir is 0700 as well)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        super().__init__(hub, sock)
        self.server = server
        self.path = path

    def on_readable(self):
        try:
            sock, _ = self.sock.accept()
        except OSError:
            return
        try:
            ok = _same_user(sock)
        except OSError:
            ok = False
        if not ok:
            sock.close()
            return
        self.server.accepted(sock)


class InLink(BufferedLink):
    """(actor side) One caller's link: its hello, then its calls once admitted."""

    def __init__(self, hub, sock, server):
        super().__init__(hub, sock)
        self.server = server
        self.caller = None      # the caller's worker id, once admitted
        self.want = None        # (caller id, token) of its hello
        self.parked = []        # what came before the raylet's GRANT

    def handle(self, msgs):
        server = self.server
        for m in msgs:
            if self.caller is not None:
                server.on_message(self, m)
            elif self.want is None:
                server.hello(self, m)
                if self.closed:
                    return
            else:
                self.parked.append(m)

    def on_readable(self):
        super().on_readable()
        if self.want is None and not self.closed and \
                self.reader.buffered() > P.D_HANDSHAKE_MAX:
            self.close()    # no hello in the first bytes: not a caller of ours

    def on_lost(self, err):
        super().on_lost(err)     # (the socket is closed)
        self.server.lost(self)


class DirectServer:
    """(actor side) The actor's worker listens for the callers the raylet grants.

    `deliver(link, spec_wire)` queues a call for the worker to run and
    `cancel(link, task_id)` handles a D_CANCEL; both run in the reading thread."""

    def __init__(self, core, path, deliver, cancel):
        self.hub = core.hub
        self.grants = {}        # caller id -> token (GRANT from the raylet)
        self.waiting = []       # links whose hello came before their GRANT
        self.links = set()
        self.deliver = deliver
        self.cancel = cancel
        self.listener = Listener(self.hub, self, path)
        self.path = path
        self.hub.add(self.listener)
        core.conn.on_message[P.GRANT] = self.on_grant

    def accepted(self, sock):
        link = InLink(self.hub, sock, self)
        self.links.add(link)
        self.hub.add(link)

    def hello(self, link, m):
        if type(m) is not list or len(m) != 4 or m[0] != P.D_HELLO or \
                m[1] != P.VERSION or type(m[2]) is not bytes or type(m[3]) is not bytes:
            link.close()
            return
        link.want = (m[2], m[3])
        if self._granted(m[2], m[3]):
            self.admit(link)
        else:
            self.waiting.append(link)

    def _granted(self, caller, token) -> bool:
        t = self.grants.get(caller)
        return t is not None and hmac.compare_digest(t, token)

    def on_grant(self, msg):
        """GRANT from the raylet: every call it sent for this caller before is in
        the run queue already (same socket, read in order)."""
        _, caller, token = msg
        self.grants[caller] = token
        for link in list(self.waiting):
            if link.want[0] == caller and self._granted(*link.want):
                self.waiting.remove(link)
                self.admit(link)

    def admit(self, link):
        caller = link.want[0]
        self.grants.pop(caller, None)    # a token admits one link
        link.caller = caller
        parked, link.parked = link.parked, []
        for m in parked:
            self.on_message(link, m)

    def on_message(self, link, m):
        kind = m[0]
        if kind == P.D_CALL:
            self.deliver(link, m[1])
        elif kind == P.D_CANCEL:
            self.cancel(link, m[1])

    def lost(self, link):
        self.links.discard(link)
        if link in self.waiting:
            self.waiting.remove(link)

    def drain(self, timeout):
        """Write what waits for the callers, for up to `timeout` s (exiting)."""
        deadline = time.monotonic() + timeout
        for link in list(self.links):
            link.flush()
            while link.has_output() and not link.closed and time.monotonic() < deadline:
                link.on_writable()
                if link.has_output():
                    time.sleep(0.001)

    def close(self):
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def listen_path(session_dir) -> str:
    """Where an actor's worker listens: the session's sockets dir (0700)."""
    return os.path.join(session_dir, "sockets", f"a{os.getpid()}")

