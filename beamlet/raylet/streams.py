"""The raylet's generator streams: the values a generator task yields, stored as
it yields them and handed to its consumer one by one (Ray's ObjectRefGenerator).

    worker ──ITEM k──▶ Streams: seals item k, ──GEN_NEXT reply──▶ consumer (the
       ▲                holds an entry for k+1    (the stream's ref     submitter)
       │                (wait() waits on it)       becomes the consumer's)
       └────GEN_ACK (consumed: backpressure; stop: dropped or cancelled)────┘

Item k of task T is the object `item_id(T, k)` (index k + 2, derived from the
task id).  The stream holds one ref on each item entry from the moment it exists
(made PENDING when the item before it came, so that wait() on a generator waits
on it) until the consumer takes it (GEN_NEXT: the ref becomes the consumer's) or
drops the generator (GEN_DROP, or the consumer disconnects: freed).  When the
task ends, the entry after its last item is sealed with the end marker (an
ObjectRefStreamEndOfStreamError no consumer is ever handed): wait() then sees
the generator ready, and GEN_NEXT answers "end".  The task's error (raised
mid-stream, a crash without retries left, cancel) is its stream's last item, as
in Ray.  A retried task resumes its stream: its worker skips the values stored
already (EXECUTE's skip, `resume_index`).

Across nodes: a stream lives on the raylet its task was submitted to (the
consumer's).  When the task runs on another node, that node keeps a stream of
its own whose consumer is the submitter's node (a PeerHolder): it relays each
item as it is sealed (PEER_GEN_ITEM: an inline one in the message, an arena one
held for the consumer's node as a remote ref and pulled on demand) and the end
(PEER_GEN_END with the count), in order, through the ordered outbox; the
consumer's node sends back PEER_GEN_ACK.  An item lost with its node is not
rebuilt: it becomes an ObjectLostError naming it (object_manager.lost).

Owns: the streams of generator tasks submitted here or run here for a peer
  (Stream records by task id): which items exist, which the consumer took, the
  consumer's pending GEN_NEXT, the worker running the task, the end.
Uses: ObjectStore (item entries: refs, sealing, undoing a create a crashed worker
  left); LocalScheduler (a worker waiting in GEN_NEXT lends its CPU back);
  ObjectManager (relaying to and from peers: remote refs, PEER_GEN_* messages).
Messages: ITEM, GEN_NEXT, GEN_DROP (protocol.py); PEER_GEN_ITEM, PEER_GEN_END,
  PEER_GEN_ACK (the object manager hands them over); the task scheduler tells
  it when a generator task is submitted, dispatched and ends.
"""

from .. import exceptions
from .._private import ids
from .._private import protocol as P
from .common import desc_is_error, error_bytes, log
from .object_store import ObjState

# The components it uses (ObjectManager, ObjectStore, LocalScheduler) are named in
# annotations only, as strings: the shell (raylet.py) wires them together, so their
# modules need not import each other (no import circle).


class Stream:
    __slots__ = ("task_id", "name", "consumer", "known", "taken", "ended", "dropped",
                 "waiters", "worker", "backpressure", "source", "expected", "stop")

    def __init__(self, task_id, name, consumer, backpressure):
        self.task_id = task_id
        self.name = name
        self.consumer = consumer     # Conn (a local submitter) | PeerHolder (a node)
        self.known = 0               # items stored (or relayed to us) so far
        self.taken = 0               # items handed to the consumer
        self.ended = False           # the count is final, the end marker sealed
        self.dropped = False         # the consumer let go of it
        self.waiters = []            # pending GEN_NEXTs (Waiter)
        self.worker = None           # Conn of the worker running it here
        self.backpressure = backpressure
        self.source = None           # node hex relaying its items to us
        self.expected = None         # the count PEER_GEN_END announced
        self.stop = False            # tell its worker to stop at its next yield


class Waiter:
    __slots__ = ("conn", "req", "index", "most", "timer", "worker")


class Streams:
    INTERFACE = (
        "wire", "start",
        # messages (the shell's handler table)
        "on_item", "on_gen_next", "on_gen_drop",
        # the task scheduler's hooks
        "open", "dispatched", "task_done", "task_failed",
        # the shell's and the object manager's hooks
        "holder_lost", "on_peer_item", "on_peer_end", "on_peer_ack", "node_died",
        "is_item",
    )

    def __init__(self):
        self.streams = {}       # task id -> Stream
        self.loop = None
        self.end_marker = error_bytes(exceptions.ObjectRefStreamEndOfStreamError(
            "the generator has no more items"))

    def wire(self, store: "ObjectStore", sched: "LocalScheduler",
             om: "ObjectManager") -> None:
        self.store = store
        self.sched = sched
        self.om = om

    def start(self, loop) -> None:
        self.loop = loop

    # ------------------------------------------------------------------ entries
    def hold_entry(self, s, index):
        o = self.store.get_or_create(P.item_id(s.task_id, index))
        o.refcount += 1

    def release_entry(self, oid):
        """Drop the stream's ref on entry `oid`; an entry nobody will fill now
        leaves the table."""
        o = self.store.get(oid)
        if o is None:
            return
        if o.state is ObjState.CREATING:
            return self.store.decref(oid)   # freed when its ITEM seals it
        self.store.decref(oid)
        self.store.forget_unwanted(oid)

    def release_held(self, s):
        for k in range(s.taken, s.known + 1):
            self.release_entry(P.item_id(s.task_id, k))
        s.taken = s.known + 1

    # ------------------------------------------------------------------ submission
    def open(self, holder, t) -> None:
        """Generator task `t` was submitted here by `holder` (a client, or the
        peer node it runs for)."""
        tid = t.spec.task_id
        if tid in self.streams:
            return
        s = self.streams[tid] = Stream(tid, t.spec.name, holder, t.spec.backpressure)
        self.hold_entry(s, 0)

    def dispatched(self, task_id, conn) -> int:
        """`task_id` is sent to the worker on `conn` (again, if it is retried):
        how many of its values are stored already (the worker skips those).  A
        create the last attempt left half done is undone (that worker is gone),
        and the new worker learns how far the consumer is, or that it must stop."""
        s = self.streams.get(task_id)
        if s is None:
            return 0
        o = self.store.get(P.item_id(task_id, s.known))
        if o is not None and o.state is ObjState.CREATING:
            self.store.abort_create(o)
        s.worker = conn
        if s.stop or (s.backpressure and s.taken):
            conn.send([P.GEN_ACK, task_id, s.taken, s.stop])
        return s.known

    def is_item(self, oid) -> bool:
        """`oid` is an item of a stream whose task has not ended here."""
        return ids.task_of(oid) in self.streams and \
            int.from_bytes(oid[ids.TASK_ID_SIZE:], "big") >= 2

    # ------------------------------------------------------------------ items
    def on_item(self, conn, msg):
        _, tid, index, desc = msg
        oid = P.item_id(tid, index)
        s = self.streams.get(tid)
        if s is None or s.dropped or s.ended or index != s.known:
            # nobody wants it (a stopped stream), or a retry's duplicate: seal
            # what has no ref (freed at once: an arena range is given back)
            o = self.store.get(oid)
            if o is None or o.state is not ObjState.SEALED:
                self.store.seal_results([[oid, desc]])
            if s is not None and index > s.known:
                log(f"stream {s.name}: item {index} came before {s.known}")
            if s is not None and s.stop:
                conn.send([P.GEN_ACK, tid, s.taken, True])
            return
        s.worker = conn
        self.store.seal_results([[oid, desc]])
        self.stored(s)
        if s.stop:
            conn.send([P.GEN_ACK, tid, s.taken, True])

    def stored(self, s):
        """Item `s.known` is sealed here (or known on the node relaying it)."""
        index = s.known
        s.known += 1
        self.hold_entry(s, s.known)
        if s.consumer.role == "peer":
            self.relay(s, index)
        self.wake(s)

    def relay(self, s, index):
        """We run `s`'s task for a peer node: send it the item (the stream's ref
        on it becomes the peer's, or it is dropped when the bytes travel)."""
        oid = P.item_id(s.task_id, index)
        o = self.store.get(oid)
        if o is not None:
            self.om.relay_item(s.consumer.node_hex, s.task_id, index, o)
        s.taken = index + 1
        self.store.decref(oid)

    # ------------------------------------------------------------------ consumers
    def on_gen_next(self, conn, msg):
        _, req, tid, index, timeout, most = msg
        s = self.streams.get(tid)
        if s is None or s.consumer is not conn:
            conn.send([P.REPLY, req, [[], True]])   # dropped or unknown: nothing more
            return
        if index < s.known or s.ended:
            self.answer(s, conn, req, index, most)
            return
        if timeout == 0:
            conn.send([P.REPLY, req, None])
            return
        w = Waiter()
        w.conn, w.req, w.index, w.most, w.timer, w.worker = \
            conn, req, index, most, None, None
        if timeout is not None:
            w.timer = self.loop.call_later(timeout, self.time_out, s, w)
        s.waiters.append(w)
        if conn.worker is not None and self.sched.block_worker(conn.worker):
            w.worker = conn.worker      # its CPU is lent back while it waits

    def answer(self, s, conn, req, index, most):
        """Hand items index, index+1, ... (those stored, at most `most`; one
        with backpressure, which counts what the consumer took) to the consumer:
        the stream's ref on each becomes the consumer's."""
        if s.backpressure:
            most = 1
        get = self.store.get
        items = []
        end = min(s.known, index + max(1, most))
        while index < end:
            oid = P.item_id(s.task_id, index)
            o = get(oid)
            if index == s.taken:
                conn.refs[oid] += 1
                s.taken = index + 1
            if o is not None and o.data is not None and o.state is ObjState.SEALED:
                items.append([o.data, o.is_error])   # its bytes: get is local
            else:
                items.append([])
            index += 1
        if items and s.backpressure:
            self.ack(s, False)
        conn.send([P.REPLY, req, [items, s.ended and index >= s.known]])

    def wake(self, s):
        if not s.waiters:
            return
        keep = []
        for w in s.waiters:
            if w.index < s.known or s.ended:
                self.finish_waiter(w)
                if not w.conn.closed:
                    self.answer(s, w.conn, w.req, w.index, w.most)
            else:
                keep.append(w)
        s.waiters = keep

    def finish_waiter(self, w):
        if w.timer is not None:
            w.timer.cancel()
        if w.worker is not None:
            self.sched.unblock_worker(w.worker)

    def time_out(self, s, w):
        if w in s.waiters:
            s.waiters.remove(w)
            self.finish_waiter(w)
            w.conn.send([P.REPLY, w.req, None])

    def ack(self, s, stop):
        """Tell whoever runs `s`'s task how far the consumer is (or to stop)."""
        if stop:
            s.stop = True
        if s.worker is not None and not s.worker.closed:
            s.worker.send([P.GEN_ACK, s.task_id, s.taken, stop])
        elif s.consumer.role != "peer":
            self.om.send_gen_ack(s.task_id, s.taken, stop)   # it runs on a peer

    def on_gen_drop(self, conn, msg):
        s = self.streams.get(msg[1])
        if s is not None and s.consumer is conn:
            self.drop(s)

    def drop(self, s):
        """Nobody consumes `s` any more: its items not taken are freed, and its
        task stops at its next yield."""
        if s.dropped:
            return
        s.dropped = True
        for w in s.waiters:
            self.finish_waiter(w)
        s.waiters = []
        self.release_held(s)
        if s.ended:
            del self.streams[s.task_id]
        else:
            self.ack(s, True)

    def holder_lost(self, holder) -> None:
        """A client disconnected, or a peer node died: the streams it consumed go."""
        for s in [s for s in self.streams.values() if s.consumer is holder]:
            self.drop(s)

    # ------------------------------------------------------------------ ends
    def task_done(self, t, results) -> None:
        """Generator task `t` ran here and its DONE came (results: its completion
        object; an error there is the stream's last item)."""
        s = self.streams.get(t.spec.task_id)
        if s is None:
            return
        err = None
        for _, desc in results:
            if desc[0] == P.INLINE and desc_is_error(desc):
                err = desc[1]
        self.end(s, err)

    def task_failed(self, t, data) -> None:
        """Generator task `t` failed without running to its end (`data`: the error)."""
        s = self.streams.get(t.spec.task_id)
        if s is not None:
            self.end(s, data)

    def end(self, s, err):
        if s.ended:
            return
        get = self.store.get
        if err is not None and not s.dropped:
            o = get(P.item_id(s.task_id, s.known))
            if o is not None and o.state is ObjState.CREATING:
                self.store.abort_create(o)     # its crashed worker left it half done
            if o is not None and o.state is ObjState.PENDING:
                self.store.seal_inline(o, err, True, ())
                self.stored(s)
        self.finish(s)

    def finish(self, s):
        """The count of `s` is final: seal the end marker (wait() sees the
        generator ready, next() its end) and tell a peer consumer."""
        s.ended = True
        s.worker = None
        tid = s.task_id
        if s.dropped:
            del self.streams[tid]
            return
        o = self.store.get(P.item_id(tid, s.known))
        if o is not None and o.state is ObjState.CREATING:
            self.store.abort_create(o)
        if s.consumer.role == "peer":
            self.om.relay_end(s.consumer.node_hex, tid, s.known)
            self.release_held(s)
            del self.streams[tid]
            return
        if o is not None and o.state is ObjState.PENDING:
            self.store.seal_inline(o, self.end_marker, True, ())
        self.wake(s)

    # ------------------------------------------------------------------ across nodes
    def on_peer_item(self, peer, msg) -> None:
        """PEER_GEN_ITEM: the node running our generator task relays an item."""
        _, tid, index, result = msg[:4]
        exported = msg[4] if len(msg) > 4 else []
        s = self.streams.get(tid)
        oid = P.item_id(tid, index)
        wanted = s is not None and not s.dropped and not s.ended and index == s.known
        if s is not None and not wanted and index < s.known:
            # a re-run's copy of an item we know: take it only if ours is lost
            o = self.store.get(oid)
            wanted = o is not None and o.state is ObjState.PENDING and \
                not self.om.has_live_source(oid)
        self.om.take_peer_result(peer, oid, result, exported, wanted)
        if s is None or not wanted or index != s.known:
            return
        s.source = peer
        self.stored(s)
        if s.expected is not None and s.known >= s.expected:
            self.finish(s)

    def on_peer_end(self, peer, msg) -> None:
        """PEER_GEN_END: our task ended there with `count` items."""
        s = self.streams.get(msg[1])
        if s is None or s.ended:
            return
        s.expected = msg[2]
        s.source = peer
        if s.known >= s.expected or s.dropped:
            self.finish(s)      # (dropped: the items still coming are released)

    def on_peer_ack(self, peer, msg) -> None:
        """PEER_GEN_ACK: the consumer's node on how far it is, or to stop."""
        _, tid, consumed, stop = msg
        s = self.streams.get(tid)
        if s is None or s.consumer.role != "peer" or s.consumer.node_hex != peer:
            return
        if stop:
            s.stop = True
        if s.worker is not None and not s.worker.closed:
            s.worker.send([P.GEN_ACK, tid, consumed, stop])

    def node_died(self, node_hex) -> None:
        """Streams fed by a node that died: one whose task has ended (so nothing
        re-runs it) but whose end never came ends with an error item."""
        for s in list(self.streams.values()):
            if s.source == node_hex and not s.ended and \
                    not self.sched.has_task(s.task_id):
                self.end(s, error_bytes(exceptions.NodeDiedError(
                    f"The node {node_hex} running generator task {s.name} died "
                    f"before its stream ended.")))
