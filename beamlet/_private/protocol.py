"""The wire protocol between drivers/workers and their raylet (and between raylets).

Framing: every message is a frame = 4-byte little-endian length + a msgpack array
whose first element is the message type below.  Writers coalesce the frames queued
during one turn of their loop into a single write, so a backlog costs one syscall,
not one per message.  Nothing on this channel is ever unpickled by the raylet:
values travel as opaque `bytes` produced by `serialization.py`.  Whoever serves a
connection caps the frames it reads (FrameReader's `max_frame`, by default
config.MAX_FRAME_BYTES): a larger length prefix, or a frame that is not a
msgpack array, ends the connection (the raylet first sends CLOSING with the
reason) before anything is buffered for it.

Messages (c = client: driver or worker, r = raylet).  `req` is a request number
chosen by the client; the raylet answers with REPLY carrying the same number.

  HELLO    c→r  [HELLO, version, role, worker_id, pid, job_id]       → REPLY(req=0)
                role: "driver" | "worker"; the reply is a dict describing the node.
  SUBMIT   c→r  [SUBMIT, spec]            one-way; spec: see TaskSpec below
  PUT      c→r  [PUT, oid, data, contained(, is_error)]   an inline (small) object,
                one-way; this process holds a ref on it (is_error: the value of
                a direct call that failed, see OWN)
  CREATE   c→r  [CREATE, req, oid, size(, owner)]  → REPLY [offset] | [None, error
                message (, error class name)]: reserves `size` bytes of the arena
                for a large object; the class (default ObjectStoreFullError) is
                the exceptions.py name to raise, e.g. OutOfDiskError.  owner (a
                direct call's result): the worker id of the caller, who is
                counted as holding a ref on it from now on
  SEAL     c→r  [SEAL, oid, contained, is_error]  the large object is written, immutable
  GET      c→r  [GET, req, oids, timeout_s]  → REPLY [descriptor | None per oid]
                None: not ready when the timeout passed; blocks a worker's CPU lease
  WAIT     c→r  [WAIT, req, oids, num_returns, timeout_s(, fetch_local)]
                → REPLY [ready indexes]: every index ready at reply time, even
                beyond num_returns (the client remembers them: a later wait on
                them needs no request).  fetch_local=False (sent only then): an
                object sealed on another node counts as ready without a copy here
  REF_ADD  c→r  [REF_ADD, oids]           this process now holds these refs
  REF_DEL  c→r  [REF_DEL, oids]           ... and no longer holds these
  UNPIN    c→r  [UNPIN, oids]             arena views of these were all released
  DONE     c→r  [DONE, task_id, results, flag]  a worker finished a task;
                results: [[oid, descriptor + [contained oids]], ...];
                flag: "retry" (the exception is retryable), "exit" (exit_actor
                was called) or None
  CALL     c→r  [CALL, req, method, args] → REPLY; rare control operations
                (cluster resources, actors, cancel, ...), see raylet.CALLS; the
                observability calls (raylet/introspection.py) are:
                "state" [kind, filters, limit, detail] → {"rows", "total",
                  "errors"}: the live rows of kind "tasks" | "actors" | "objects"
                  | "workers" | "placement_groups" of every node (this raylet asks
                  the others with PEER_STATE), filtered (state_rows.matches), the
                  newest `limit`; errors: nodes that did not answer
                "explain" [oids] → {"stuck", "text", "steps"}: what a get/wait on
                  `oids` waits for, as a chain ending in its root cause
                  (beamlet/_private/pending.py), followed across nodes
                "logs" [] → {node hex: [{"name", "size", "mtime", "pid",
                  "worker_id"}, ...]}: the log files of every node
                "log_read" [node hex, name, offset, max_bytes] → {"data",
                  "size"} | {"error"}: bytes of one log file of a node
  EXECUTE  r→c  [EXECUTE, spec, arg_descriptors, gpu_ids(, skip)]  run this task
                (workers only); skip (generator tasks, only when > 0): how many
                values an attempt it retries stored already (not stored again)
  REPLY    r→c  [REPLY, req, payload]
  EXIT     r→c  [EXIT, reason]            the worker must exit (pool shrink, kill)
  REVOKE   r→c  [REVOKE, task_id]         give back a task sent ahead (pipelined
                behind the running one) if it has not started; handled by whichever
                thread reads the socket, at once (the worker may be blocked in get)
  RETURNED c→r  [RETURNED, task_id, returned]  the answer: returned is False when
                the task had started already (its DONE comes as usual)
  CANCEL   r→c  [CANCEL, task_id]          cancel() of an actor call sent to this
                worker: one not started yet never runs (the worker answers with
                its DONE, a TaskCancelledError); a running one is flagged
                (is_canceled()), an async actor's coroutine gets CancelledError.
                Handled, like REVOKE, by whichever thread reads the socket
  CLOSING  r→c  [CLOSING, reason]        the raylet closes this connection (a frame
                over the size cap, or not a message): the client's error says why

Generator tasks (num_returns STREAMING): the task's one return id (index 1) is
its completion object; the value yielded k-th (k = 0, 1, ...) is the object
`item_id(task_id, k)` (index k + 2), stored as the task yields it.
  ITEM     c→r  [ITEM, task_id, index, descriptor + [contained oids]]  a worker's
                generator yielded its index-th value (an arena one was CREATEd
                first, as a return value is); in order, before the task's DONE.
                The task's DONE carries the completion object only: its error
                (raised mid-stream, or cancel) becomes the stream's last item
  GEN_NEXT c→r  [GEN_NEXT, req, task_id, index, timeout_s, most]  the consumer
                (the submitter) wants item `index` and, if stored already, those
                after it (at most `most` in all; one when the task has
                backpressure) → REPLY [items, ended]: per item from `index` on,
                [data, is_error] (an inline one: its bytes) or [] (each one's ref
                is now counted as the consumer's); ended: no item comes after
                these.  Sent once item `index` exists or the stream ended; None
                when it did not within the timeout
  GEN_DROP c→r  [GEN_DROP, task_id]        the consumer dropped its generator: the
                items it did not take are freed and the task stops
  GEN_ACK  r→c  [GEN_ACK, task_id, consumed, stop]  to the worker running a
                generator: the consumer took `consumed` items (backpressure:
                TaskSpec.backpressure), or `stop`: nobody consumes any more
                (dropped or cancelled) — the generator is closed at its next yield

Metrics (beamlet/util/metrics.py → raylet/metrics.py), numbered apart from the
messages above so that adding one there never renumbers it:
  METRICS  c→r  [METRICS, batch]  one-way; what changed in this process's metrics
                since its last batch (sent at most every METRICS_REPORT_S, never
                per record call): [[name, kind, description, tag_keys,
                boundaries, series], ...]; kind "counter" | "gauge" |
                "histogram"; series [[tag values (in tag_keys order), value],
                ...] with the process's cumulative value: a counter's total, a
                gauge's [time set, value], a histogram's [bucket counts (one
                per boundary, then +Inf), sum, count] (_private/prometheus.py)

Direct actor calls (beamlet/worker/direct.py; docs/architecture.md has the design):
  DIRECT_ASK   c→r [DIRECT_ASK, req, actor_id] → REPLY {"path", "token",
               "incarnation"} | {"refused": "dead" | "remote" | "self" | "none"}:
               may this caller send its calls to the actor's worker itself?  The
               reply waits until none of this caller's calls is still queued in
               the raylet for the actor (they are all sent to its worker, or
               failed), and the actor is ALIVE.
  GRANT        r→c [GRANT, caller_id, token]  (to the actor's worker, right before
               that reply) the caller may connect with this token; every call it
               sent through the raylet is ahead of this message on this socket
  DIRECT_READY c→r [DIRECT_READY, path]  (the actor's worker, after its
               constructor, before that DONE) where it listens for callers
  RESUBMIT     c→r [RESUBMIT, spec, incarnation]  as SUBMIT, for a call sent to the
               actor's worker directly that got no answer before the link broke
               (its worker died, as incarnation `incarnation`): retried or failed
               as the actor's in-flight calls are (max_task_retries)
  OWN          c→r [OWN, oids]  results of this process's direct calls still to
               come, whose refs now go to other processes: PENDING entries, one ref
               of this process counted on each; the values follow as FULFIL
  FULFIL       c→r [FULFIL, oid, data, is_error]  the value of an OWNed id
  REGISTER     c→r [REGISTER, req, oid, data, is_error, contained, owner] → REPLY
               True; (the actor's worker) a direct call's small result that holds
               refs: stored here, counted for the owner (the caller's worker id),
               before the caller hears of it
  ACTOR_EXIT   c→r [ACTOR_EXIT, task_name]  (the actor's worker) exit_actor() ran
               in a direct call: the actor ends without restarting
  BLOCK / UNBLOCK c→r [BLOCK] / [UNBLOCK]  a worker running a normal task waits for
               the result of a direct call (its CPU is lent back meanwhile, as for
               a GET)

On a direct link (caller ↔ the actor's worker, a unix socket of the session;
the caller speaks first, and nothing else is read from it until the raylet's
GRANT with the same caller id and token has arrived on the worker's raylet
socket):
  D_HELLO   c→a [D_HELLO, version, caller_id, token]
  D_CALL    c→a [D_CALL, spec]   run this call (its ref arguments are inlined:
            the caller sends calls with other refs through the raylet)
  D_CANCEL  c→a [D_CANCEL, task_id]  cancel(): drop it if not started yet (its
            result is TaskCancelledError), else flag it (is_canceled()) or, in an
            async actor, cancel its asyncio task
  D_DONE    a→c [D_DONE, task_id, results, flag]  results: [[oid, descriptor]]
            with descriptor [INLINE, data, is_error] (the raylet does not know the
            object: the caller keeps it, and OWNs/PUTs it when its ref leaves the
            process) or [REGISTERED, data | None, is_error] (the raylet has it,
            counted for the caller: a large result in the arena, or one holding
            refs); flag "exit": exit_actor() ended the actor

An object descriptor says where an object's serialized bytes are:
  [INLINE, data, is_error]           the bytes themselves (small objects, errors)
  [ARENA, offset, size, is_error]    a slice of the node's shared-memory arena;
                                     the receiving process is counted as pinning it
                                     until it sends UNPIN
  [FILE, path, size, is_error]       a spilled object that could not be restored
                                     (no room could be made): the local process
                                     maps its spill file read-only.  No pin (the
                                     bytes never change, and a mapping outlives
                                     the file's removal), no UNPIN; a file gone
                                     before it was opened means the object was
                                     restored meanwhile: GET it again
"""
import operator
import struct

import msgpack

from . import config

# 2: generator messages (ITEM ... GEN_ACK), CANCEL, TaskSpec.parent/backpressure
# 3: CLOSING (a raylet closing a connection says why), FILE descriptors
VERSION = 3

HELLO, SUBMIT, PUT, CREATE, SEAL, GET, WAIT, REF_ADD, REF_DEL, UNPIN, DONE, CALL, \
    EXECUTE, REPLY, EXIT, REVOKE, RETURNED, CANCEL, ITEM, GEN_NEXT, GEN_DROP, \
    GEN_ACK, CLOSING, DIRECT_ASK, GRANT, DIRECT_READY, RESUBMIT, OWN, FULFIL, \
    REGISTER, ACTOR_EXIT, BLOCK, UNBLOCK = range(33)

NAMES = ["HELLO", "SUBMIT", "PUT", "CREATE", "SEAL", "GET", "WAIT", "REF_ADD",
         "REF_DEL", "UNPIN", "DONE", "CALL", "EXECUTE", "REPLY", "EXIT", "REVOKE",
         "RETURNED", "CANCEL", "ITEM", "GEN_NEXT", "GEN_DROP", "GEN_ACK", "CLOSING",
         "DIRECT_ASK", "GRANT", "DIRECT_READY", "RESUBMIT", "OWN", "FULFIL",
         "REGISTER", "ACTOR_EXIT", "BLOCK", "UNBLOCK"]

# the direct link between a caller and an actor's worker (above)
D_HELLO, D_CALL, D_CANCEL, D_DONE = range(40, 44)
D_HANDSHAKE_MAX = 512    # bytes read from a caller before it is authenticated

METRICS = 50

INLINE, ARENA = 0, 1
FILE = 3     # (2 is REMOTE, below)
REGISTERED = 4   # direct-call result descriptor: the raylet has it (see D_DONE)

# Argument encodings inside a TaskSpec's args.
ARG_VALUE, ARG_REF = 0, 1

# Task kinds.
NORMAL_TASK, ACTOR_CREATION_TASK, ACTOR_TASK = 0, 1, 2

# TaskSpec.num_returns of generator tasks (Ray's num_returns="streaming" and
# "dynamic"); both have one return id: the completion object (streaming) or the
# DynamicObjectRefGenerator holding the yielded values' refs (dynamic).
STREAMING, DYNAMIC = -1, -2

_len = struct.Struct("<I")
_FIRST_RETURN = (1).to_bytes(4, "big")
_packb = msgpack.Packer(use_bin_type=True).pack


def frame(msg) -> bytes:
    body = msgpack.packb(msg, use_bin_type=True)
    return _len.pack(len(body)) + body


def frames(msgs) -> bytes:
    out = []
    for m in msgs:
        body = msgpack.packb(m, use_bin_type=True)
        out.append(_len.pack(len(body)))
        out.append(body)
    return b"".join(out)


class FrameReader:
    """Incremental decoder: feed bytes, get complete messages.

    `max_frame` (default config.MAX_FRAME_BYTES; None: no cap beyond the 4 GiB
    a length prefix can say) caps each frame: a larger prefix, or a body that
    is not a msgpack array, sets `error` (what was wrong) and stops decoding
    for good; the messages before it are still returned.  The owner then
    closes the connection: nothing is buffered for the bad frame."""
    __slots__ = ("_buf", "max_frame", "error")

    def __init__(self, max_frame=-1):
        self._buf = bytearray()
        self.max_frame = config.MAX_FRAME_BYTES if max_frame == -1 else max_frame
        self.error = None

    def buffered(self) -> int:
        """Bytes of an incomplete frame held (a bound for unauthenticated peers)."""
        return len(self._buf)

    def feed(self, data) -> list:
        if self.error is not None:
            return []
        buf = self._buf
        buf += data
        msgs = []
        pos = 0
        n = len(buf)
        unpack = msgpack.unpackb
        cap = self.max_frame
        while n - pos >= 4:
            (size,) = _len.unpack_from(buf, pos)
            if cap is not None and size > cap:
                self.error = (f"a frame of {size} bytes is larger than the maximum of "
                              f"{cap} bytes (BEAMLET_MAX_FRAME_BYTES)")
                break
            end = pos + 4 + size
            if end > n:
                break
            try:
                msg = unpack(memoryview(buf)[pos + 4:end], raw=False,
                             strict_map_key=False, use_list=True)
            except Exception as e:
                msg = e
            if not isinstance(msg, list) or not msg or not isinstance(msg[0], int):
                self.error = (f"a frame of {size} bytes is not a beamlet message "
                              f"(a msgpack array starting with its type)")
                break
            msgs.append(msg)
            pos = end
        if self.error is not None:
            buf.clear()
        elif pos:
            del buf[:pos]
        return msgs

    def peek(self, data) -> list:
        """The complete messages in what is buffered plus `data`, consuming
        nothing (a connection that broke: what did the other end say last?)."""
        r = FrameReader(None)
        return r.feed(bytes(self._buf) + bytes(data))


class TaskSpec:
    """Everything a worker needs to run one task, and the raylet to schedule it.

    Sent as a plain msgpack array (field order = __slots__ order); `to_wire` /
    `from_wire` convert.  `args` holds [ARG_VALUE, bytes] or [ARG_REF, oid] items;
    the last len(kwarg_names) of them are keyword arguments.
    """
    __slots__ = (
        "task_id",          # bytes(16)
        "job_id",           # bytes
        "kind",             # NORMAL_TASK | ACTOR_CREATION_TASK | ACTOR_TASK
        "function_key",     # bytes: GCS key of the exported function/class
        "name",             # str: qualified name, for logs and errors
        "args",             # list of [ARG_VALUE, data, contained] | [ARG_REF, oid]
        "kwarg_names",      # list of str
        "num_returns",      # int >= 0 | STREAMING | DYNAMIC
        "resources",        # dict name -> float, needed while running
        "max_retries",      # int: re-runs after a worker crash (-1: forever)
        "retry_exceptions", # bool | list of exception class names
        "actor_id",         # bytes | None
        "method",           # str | None (actor tasks)
        "actor_options",    # dict | None (actor creation: name, namespace, ...)
        "scheduling",       # list | None: strategy, see raylet.scheduler
        "caller",           # bytes: worker id of the submitter
        "seq",              # int: per-caller sequence number (actor ordering)
        "parent",           # bytes: id of the task whose code submitted it (a
                            # driver's: its own), for cancel(recursive=True)
        "backpressure",     # int: STREAMING tasks: at most this many items yielded
                            # and not yet taken by the consumer (0: no limit)
        "runtime_env",      # str | None: key of the task's runtime environment
                            # (GCS beamlet:runtime_env:<key>); workers are pooled
                            # by it.  None: the node's plain environment
    )

    def __init__(self, task_id, job_id, kind, function_key, name, args, kwarg_names,
                 num_returns, resources, max_retries=0, retry_exceptions=False,
                 actor_id=None, method=None, actor_options=None, scheduling=None,
                 caller=b"", seq=0, parent=b"", backpressure=0, runtime_env=None):
        self.task_id = task_id
        self.job_id = job_id
        self.kind = kind
        self.function_key = function_key
        self.name = name
        self.args = args
        self.kwarg_names = kwarg_names
        self.num_returns = num_returns
        self.resources = resources
        self.max_retries = max_retries
        self.retry_exceptions = retry_exceptions
        self.actor_id = actor_id
        self.method = method
        self.actor_options = actor_options
        self.scheduling = scheduling
        self.caller = caller
        self.seq = seq
        self.parent = parent
        self.backpressure = backpressure
        self.runtime_env = runtime_env

    def to_wire(self) -> list:
        return list(_spec_fields(self))

    @classmethod
    def from_wire(cls, fields: list) -> "TaskSpec":
        return cls(*fields)

    def return_ids(self) -> list:
        tid = self.task_id
        if self.num_returns == 1 or self.num_returns < 0:   # (1: on every hop)
            return [tid + _FIRST_RETURN]
        return [tid + i.to_bytes(4, "big") for i in range(1, self.num_returns + 1)]

    @property
    def streaming(self) -> bool:
        return self.num_returns == STREAMING

    def ref_args(self) -> list:
        return [a[1] for a in self.args if a[0] == ARG_REF]

    def __repr__(self):
        return f"<TaskSpec {self.name} {self.task_id.hex()[:12]}>"


# all fields in __slots__ order, read in one C call (to_wire is on every hop)
_spec_fields = operator.attrgetter(*TaskSpec.__slots__)


def item_id(task_id: bytes, index: int) -> bytes:
    """The object id of the index-th (0-based) value a generator task yields."""
    return task_id + (index + 2).to_bytes(4, "big")


# --- raylet <-> raylet (TCP, see beamlet/raylet/peers.py) ----------------------------
# Same framing (4-byte length + msgpack array).  The listener speaks first; nothing
# but the two handshake frames (each at most PEER_HANDSHAKE_MAX bytes) is read from
# a peer before it proved it holds the cluster token, and nothing from a peer is
# ever unpickled by a raylet.
#
#   CHALLENGE  s→c  [PEER_CHALLENGE, version, nonce]            32 random bytes
#   AUTH       c→s  [PEER_AUTH, hmac_sha256(token, nonce), node_id_hex, c_nonce]
#   AUTH_OK    s→c  [PEER_AUTH_OK, hmac_sha256(token, c_nonce)]  (mutual)
#   FORWARD    c→s  [PEER_FORWARD, spec, args, exported]   run this task for me;
#                   args: oid -> [data, is_error, contained] (inline objects) | None
#                   (pull it from me); the sender keeps the arguments alive until
#                   TASK_DONE
#   TASK_DONE  c→s  [PEER_TASK_DONE, task_id, results, exported]  a FORWARDed task
#                   ended; results: [[oid, [INLINE, data, is_error, contained]] |
#                            [oid, [REMOTE, size, is_error, contained]]]; a REMOTE
#                   result stays in the sender's store (or where the sender knows
#                   it is), held for the receiver (a "remote ref") until RELEASE;
#                   the receiver pulls it only when something there needs it
#   RELEASE    c→s  [PEER_RELEASE, oids]          drop the remote refs on these
#   PULL       c→s  [PEER_PULL, oid, want_data, hold]  answered once the object
#                   exists (the server waits for it) with [PEER_OBJECT, size,
#                   is_error, contained, data | None, exported] followed, when data
#                   is None, by `size` raw bytes (streamed from the arena); or
#                   [PEER_READY, oid, size] (want_data false, an arena object: it
#                   exists there); [PEER_REDIRECT, oid, node_hex] (it is or will be
#                   on that node: ask there); [PEER_MISSING, oid].  hold: the server
#                   also keeps the object itself alive for the puller (exported)
#   CANCEL     c→s  [PEER_CANCEL, task_id, force(, recursive)]  cancel() of a
#                   FORWARDed task (recursive: its children too; default True)
#   GEN_ITEM   c→s  [PEER_GEN_ITEM, task_id, index, result, exported]  a generator
#                   task FORWARDed here yielded item `index`; result as in TASK_DONE
#                   (a REMOTE one is held for the receiver until RELEASE)
#   GEN_END    c→s  [PEER_GEN_END, task_id, count]  ... and ended with `count`
#                   items (its error, if any, is the last); its TASK_DONE follows
#   GEN_ACK    c→s  [PEER_GEN_ACK, task_id, consumed, stop]  the submitter's side
#                   of GEN_ACK (see above), passed on to the worker running it
#   (GEN_ITEM and GEN_END go through the ordered outbox, cluster_scheduling.py)
#
# `exported` (FORWARD, TASK_DONE, OBJECT): the ids of the refs inside what the
# message carries (nested in values or by-value arguments) for which the sender
# now holds a ref on the receiver's behalf; the receiver records where they are
# (a proxy entry, fetched on demand) and RELEASEs each once it no longer needs it
# (at once if it knew the object already).
PEER_CHALLENGE, PEER_AUTH, PEER_AUTH_OK, PEER_FORWARD, PEER_TASK_DONE, PEER_RELEASE, \
    PEER_PULL, PEER_OBJECT, PEER_MISSING, PEER_REDIRECT, PEER_READY, \
    PEER_CANCEL, PEER_GEN_ITEM, PEER_GEN_END, PEER_GEN_ACK = range(100, 115)
PEER_HANDSHAKE_MAX = 512
REMOTE = 2   # result descriptor kind in TASK_DONE: the bytes stay on the sender

# Cluster scheduling (beamlet/raylet/cluster_scheduling.py), same link and framing:
#   ACTOR_CREATE c→s [PEER_ACTOR_CREATE, spec, args]  as FORWARD, for an actor's
#                    creation task: the receiver hosts the actor, and keeps it while
#                    the sender (its owner) holds its creation object (RELEASE ends it)
#   ACTOR_KILL   c→s [PEER_ACTOR_KILL, actor_id, no_restart]   beamlet.kill() there
#   PG_RESERVE   c→s [PEER_PG_RESERVE, pg_id, name, strategy, bundles, nodes, job_id,
#                    detached]  reserve the bundles i with nodes[i] == receiver,
#                    all or none  → [PEER_PG_RESERVED, pg_id, ok]
#   PG_CANCEL    c→s [PEER_PG_CANCEL, pg_id]   undo a reservation (the group failed)
#   PG_REMOVE    c→s [PEER_PG_REMOVE, pg_id]   remove_placement_group(): release the
#                    receiver's bundles, kill its actors and tasks in the group
#   JOB_FINISHED c→s [PEER_JOB_FINISHED, job_id]  the job's driver (connected to the
#                    sender) is gone: the receiver cancels the job's tasks that were
#                    submitted there (their senders cancel those they forwarded)
#                    and kills its non-detached actors
PEER_ACTOR_CREATE, PEER_ACTOR_KILL, PEER_PG_RESERVE, PEER_PG_RESERVED, PEER_PG_CANCEL, \
    PEER_PG_REMOVE, PEER_JOB_FINISHED = range(120, 127)

# Observability (beamlet/raylet/introspection.py), same authentication and
# framing, on a connection of its own (as a PULL), never on the ordered links:
#   STATE        c→s [PEER_STATE, query]  → [PEER_STATE_REPLY, answer]
#                    query {"op": "state", "kind", "filters", "limit", "detail"}:
#                      the receiver's own live rows (not its peers');
#                    {"op": "explain_task", "task_id": hex, "path": [hex...]}:
#                      the chain of task `task_id` as the receiver sees it
#                      (`path`: the tasks already in the chain: a cycle);
#                    {"op": "explain_object", "object_id": hex, "path": [...]};
#                    {"op": "logs"}: its log files; {"op": "log_read", "name",
#                      "offset", "max_bytes"}: bytes of one of them
PEER_STATE, PEER_STATE_REPLY = 130, 131
