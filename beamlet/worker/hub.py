"""The sockets of a driver or worker process, and the reading of all of them by
one thread at a time.

A process has one link to its raylet (RayletLink) and, with direct actor calls
(direct.py), a link to each local actor it calls and, in a worker hosting an
actor, a listening socket and one link per caller.  Every thread that waits for
something (a reply of the raylet, the result of a direct call, the next task)
waits in `Hub.wait(ready)`; the first of them to find nobody reading becomes the
reader (leader/followers): it polls *every* socket of the process, hands what
arrives to the link it came on, and wakes the others when something changed.
So a single-threaded driver pays no thread hop, and whichever thread waits also
answers what other links need (a raylet REVOKE, a direct caller's cancel).

    user threads ──wait(ready)──▶ Hub ── the reader polls ──┬─ RayletLink (blocking
                                   │   selector + wake pipe  │   sends, one socket)
                                   │                         ├─ direct links (non-
                                   └── cond: followers wait  │   blocking, buffered)
                                                             └─ a listener (actors)

Only the reading thread touches the selector; others post their changes (a new
link, a link with output waiting) and wake it through a pipe.  A link's handler
runs in the reading thread holding no hub lock, so it may send (the raylet link
blocks until written; direct links never block: output the peer has no room for
waits in the link and is written when the socket is writable), but it must never
wait itself.  When no thread waits, nothing is read: the core worker's flusher
thread reads while something needs it (`CoreWorker.background_work`).
"""
import collections
import itertools
import os
import selectors
import socket
import threading
import time

from .. import exceptions
from .._private import protocol as P

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
RECV_BYTES = 1 << 20


class ConnectionLost(exceptions.RaySystemError):
    pass


class Link:
    """A socket the hub reads: subclasses say what arriving messages mean."""

    def __init__(self, hub, sock):
        self.hub = hub
        self.sock = sock
        # the selector knows links by their fd number: unregistering must work
        # after the socket is closed (a link posts its removal before closing)
        self.fd = sock.fileno()
        self.reader = P.FrameReader()
        self.closed = False

    def on_readable(self):
        """(the reading thread) Read what arrived and handle it."""
        try:
            data = self.sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.hub.remove(self)
            self.on_lost(e)
            return
        if not data:
            self.hub.remove(self)
            self.on_lost("connection closed")
            return
        msgs = self.reader.feed(data)
        if msgs:
            self.handle(msgs)
        if self.reader.error is not None and not self.closed:
            # a frame over the cap, or not a message: nothing more is read
            self.hub.remove(self)
            self.on_lost(self.reader.error)

    def on_writable(self):
        pass

    def handle(self, msgs):
        raise NotImplementedError

    def on_lost(self, err):
        self.closed = True

    def close(self):
        self.closed = True
        self.hub.remove(self)
        try:
            self.sock.close()
        except OSError:
            pass


class BufferedLink(Link):
    """A non-blocking socket whose sends never block: what the peer has no room
    for now waits here and is written by the reading thread once the socket is
    writable (two processes that both send more than the other reads can never
    block each other)."""

    def __init__(self, hub, sock):
        super().__init__(hub, sock)
        sock.setblocking(False)
        self.send_lock = threading.Lock()
        self.out = bytearray()
        self.queued = []            # messages not written yet (see queue)

    def send_bytes(self, data) -> bool:
        """Write `data` for the peer (what it has no room for waits in `out`);
        False if the link is closed or broken."""
        with self.send_lock:
            return self._write(data)

    def _write(self, data) -> bool:
        if self.closed:
            return False
        if self.out:             # earlier bytes still wait: keep the order
            self.out += data
            return True
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            return False         # the reader sees the loss and reports it
        if n < len(data):
            self.out += memoryview(data)[n:]
            self.hub.want_write(self)
        return True

    def send(self, msg) -> bool:
        with self.send_lock:
            if self.queued:
                self.queued.append(msg)
                return self._flush()
            return self._write(P.frame(msg))

    def queue(self, msg) -> int:
        """Keep `msg` to be written with the next flush (many in one write);
        returns how many wait."""
        with self.send_lock:
            self.queued.append(msg)
            return len(self.queued)

    def flush(self) -> bool:
        """Write the queued messages; False if the link is closed or broken (then
        they were not written, and stay in `queued`)."""
        with self.send_lock:
            return self._flush()

    def _flush(self) -> bool:
        if not self.queued:
            return not self.closed
        if not self._write(P.frames(self.queued)):
            return False
        self.queued = []
        return True

    def on_lost(self, err):
        super().on_lost(err)
        try:
            self.sock.close()
        except OSError:
            pass

    def on_writable(self):
        with self.send_lock:
            if self.out and not self.closed:
                try:
                    n = self.sock.send(self.out)
                    del self.out[:n]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self.out.clear()
            if not self.out:
                self.hub.done_write(self)

    def has_output(self) -> bool:
        return bool(self.out)


class Hub:
    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self.reading = False        # a thread is the reader now
        self.sel = selectors.DefaultSelector()
        self.changes = []           # (op, link) for the reader to apply
        self.writers = set()        # links with output waiting for room
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.sel.register(self.wake_r, _READ, None)
        self.pushes = collections.deque()   # what the process must run, in order
        self.lost = None            # the raylet link's loss: every waiter raises it
        self.closed = False

    # ---- the links (any thread)
    def add(self, link):
        self._change("add", link)

    def remove(self, link):
        self._change("remove", link)

    def want_write(self, link):
        self._change("write", link)

    def done_write(self, link):
        self._change("read", link)

    def _change(self, op, link):
        with self.cond:
            self.changes.append((op, link))
            if self.reading:
                self._wake()

    def _wake(self):
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def wake(self):
        """Make the reading thread look at the state again (a local change)."""
        with self.cond:
            if self.reading:
                self._wake()
            self.cond.notify_all()

    def _apply(self, changes):
        sel = self.sel
        for op, link in changes:
            try:
                if op == "add":
                    if not link.closed:
                        sel.register(link.fd, _READ, link)
                elif op == "remove":
                    self.writers.discard(link)
                    if sel.get_map().get(link.fd) is not None and \
                            sel.get_key(link.fd).data is link:
                        sel.unregister(link.fd)
                elif op == "write":
                    if link not in self.writers and not link.closed:
                        self.writers.add(link)
                        sel.modify(link.fd, _READ | _WRITE, link)
                elif op == "read":
                    if link in self.writers:
                        self.writers.discard(link)
                        sel.modify(link.fd, _READ, link)
            except (KeyError, ValueError, OSError):
                pass    # closed meanwhile

    # ---- waiting (any thread)
    def wait(self, ready, timeout=None) -> bool:
        """Until `ready()` is true (True) or `timeout` seconds passed (False);
        raises ConnectionLost once the raylet link is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self.cond
        with cond:
            while True:
                if ready():
                    return True
                if self.lost is not None:
                    raise self.lost
                if not self.reading:
                    self.reading = True
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                cond.wait(left)
        try:
            while True:
                with cond:
                    changes, self.changes = self.changes, []
                if changes:
                    self._apply(changes)
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                for key, mask in self.sel.select(left):
                    link = key.data
                    if link is None:
                        try:
                            os.read(self.wake_r, 4096)
                        except OSError:
                            pass
                        continue
                    if mask & _WRITE:
                        link.on_writable()
                    if mask & _READ and not link.closed:
                        link.on_readable()
                with cond:
                    cond.notify_all()
                    if ready():
                        return True
                    if self.lost is not None:
                        raise self.lost
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        finally:
            with cond:
                self.reading = False
                cond.notify_all()

    def poll(self):
        """Read what has arrived, if no other thread is reading (never blocks)."""
        with self.cond:
            if self.reading:
                return
        self.wait(_never, 0)

    def next_push(self, timeout=None):
        """The next message the process must act on (a task, an exit), in order."""
        pushes = self.pushes
        if self.wait(lambda: bool(pushes), timeout):
            return pushes.popleft()
        return None

    def flush_writers(self):
        """Write waiting output now (the flusher thread, when nobody reads)."""
        for link in list(self.writers):
            link.on_writable()

    def close(self):
        self.closed = True
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _never():
    return False


class RayletLink(Link):
    """The process's link to its raylet: a blocking socket (the raylet always
    reads, so a send only waits for the kernel), every message of the process in
    the order it made them (reference counting relies on that).

    Fire-and-forget messages are queued and written with the next request, when
    256 wait, or by the flusher thread; `before_send` lets the core worker add
    its ref messages first.  Requests are answered by number: `request` waits for
    the reply, `request_async` has the reading thread call a function with it."""

    def __init__(self, hub, path: str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        super().__init__(hub, sock)
        # replies come from our own raylet, which may send a large one (a get of
        # many inline objects): no cap on what it sends beyond the prefix's 4 GiB
        self.reader = P.FrameReader(max_frame=None)
        self.path = path
        self.closing = None         # why the raylet closed the connection (CLOSING)
        # hook (a worker's): cancel(task_id, its EXECUTE if not taken yet) ->
        # messages to send; called by the reading thread as CANCEL arrives
        self.on_cancel = None
        self.gen_acks = {}          # task id -> (consumed, stop): GEN_ACKs
        # queue_lock guards `out`; send_lock the socket's writes, taken before
        # queue_lock is let go, so batches go out in the order they were taken
        # while a thread that only queues never waits for the socket
        self.queue_lock = threading.RLock()
        self.send_lock = threading.Lock()
        self.out = []
        self.replies = {}
        self.callbacks = {}         # req -> fn(payload), run by the reading thread
        self.next_req = itertools.count(1).__next__
        self.before_send = None     # hook: lets the core worker add ref messages
        self.on_message = {}        # message type -> fn(msg), run by the reader
        hub.add(self)

    @property
    def lost(self):
        return self.hub.lost

    # ---- sending
    def queue(self, msg) -> None:
        with self.queue_lock:
            if self.before_send:
                self.before_send(self.out)
            self.out.append(msg)

    def flush(self) -> None:
        with self.queue_lock:
            if self.before_send:
                self.before_send(self.out)
            if not self.out:
                return
            msgs, self.out = self.out, []
            self.send_lock.acquire()
        err = None
        try:
            self.sock.sendall(P.frames(msgs))
        except OSError as e:
            err = e
        finally:
            self.send_lock.release()
        if err is not None:
            self._lost(err)

    def send(self, msg) -> None:
        self.queue(msg)
        self.flush()

    def _lost(self, e):
        hub = self.hub
        if hub.lost is None and self.closing is None:
            # a send that failed (the raylet closed first): its CLOSING may wait
            # unread in the socket; look without taking it from a reader
            try:
                data = self.sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:
                data = b""
            for m in self.reader.peek(data):
                if m[0] == P.CLOSING:
                    self.closing = m[1]
        if hub.lost is None and self.closing is not None:
            hub.lost = ConnectionLost(
                f"The raylet ({self.path}) closed the connection of this process: "
                f"{self.closing}.")
        elif hub.lost is None:
            hub.lost = ConnectionLost(
                f"Lost the connection to the raylet ({self.path}): {e}. The local "
                f"beamlet cluster has stopped (its raylet died or shutdown() ran).")
        hub.wake()
        raise hub.lost

    def on_lost(self, err):
        self.closed = True
        try:
            self._lost(err)
        except ConnectionLost:
            pass

    # ---- requests
    def request(self, build, timeout=None):
        """Send the message `build(req)` and wait for its reply (None: timed out)."""
        req = self.next_req()
        self.send(build(req))
        return self.wait_reply(req, timeout)

    def request_async(self, build, callback):
        """Send `build(req)`; the reading thread calls `callback(reply)` later.
        The callback must not wait (it runs inside someone else's wait)."""
        req = self.next_req()
        self.callbacks[req] = callback
        self.queue(build(req))
        return req

    def wait_reply(self, req, timeout=None):
        replies = self.replies
        if self.hub.wait(lambda: req in replies, timeout):
            return replies.pop(req)
        return None

    def next_push(self, timeout=None):
        return self.hub.next_push(timeout)

    def poll(self) -> None:
        """Take in what has arrived without blocking (a thread running user code
        between two yields, or asking is_canceled()), unless a thread reads."""
        self.hub.poll()

    def wait_for(self, ready, timeout=None) -> bool:
        """Wait (reading the sockets if no other thread does) until `ready()`."""
        return self.hub.wait(ready, timeout)

    # ---- receiving (the reading thread)
    def handle(self, msgs):
        """(the reading thread) Replies and pushes for the threads that wait for
        them; REVOKE, CANCEL and GEN_ACK are handled at once, whatever the other
        threads do."""
        answers = None
        for m in msgs:
            kind = m[0]
            if kind == P.REPLY:
                cb = self.callbacks.pop(m[1], None)
                if cb is None:
                    self.replies[m[1]] = m[2]
                else:
                    cb(m[2])
            elif kind == P.GEN_ACK:
                self.gen_acks[m[1]] = (m[2], m[3])
            elif kind == P.REVOKE:
                answers = answers or []
                answers.append(self._revoke(m[1]))
            elif kind == P.CANCEL:
                execute = self._take_execute(m[1])
                if self.on_cancel is not None:
                    answers = (answers or []) + self.on_cancel(m[1], execute)
            elif kind == P.CLOSING:
                self.closing = m[1]
            else:
                fn = self.on_message.get(kind)
                if fn is None:
                    self.hub.pushes.append(m)
                else:
                    fn(m)
        if answers:
            for a in answers:
                self.queue(a)
            self.flush()

    def _revoke(self, task_id):
        """The raylet takes back a task it sent ahead: drop its EXECUTE if no
        thread has taken it yet.  Done by the reading thread as the message
        arrives, so a worker blocked in get() gives back the task queued behind
        the one waiting (which may be what it waits for)."""
        return [P.RETURNED, task_id, self._take_execute(task_id) is not None]

    def _take_execute(self, task_id):
        """Remove and return the EXECUTE of `task_id` that no thread has taken
        yet, or None."""
        pushes = self.hub.pushes
        for m in pushes:
            if type(m) is list and m[0] == P.EXECUTE and m[1][0] == task_id:
                pushes.remove(m)
                return m
        return None

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
