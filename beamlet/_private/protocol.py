"""The wire protocol between drivers/workers and their raylet (and between raylets).

Framing: every message is a frame = 4-byte little-endian length + a msgpack array
whose first element is the message type below.  Writers coalesce the frames queued
during one turn of their loop into a single write, so a backlog costs one syscall,
not one per message.  Nothing on this channel is ever unpickled by the raylet:
values travel as opaque `bytes` produced by `serialization.py`.

Messages (c = client: driver or worker, r = raylet).  `req` is a request number
chosen by the client; the raylet answers with REPLY carrying the same number.

  HELLO    c→r  [HELLO, version, role, worker_id, pid, job_id]       → REPLY(req=0)
                role: "driver" | "worker"; the reply is a dict describing the node.
  SUBMIT   c→r  [SUBMIT, spec]            one-way; spec: see TaskSpec below
  PUT      c→r  [PUT, oid, data, contained]   an inline (small) object, one-way
  CREATE   c→r  [CREATE, req, oid, size]  → REPLY [offset] | [None, error message]
                reserves `size` bytes of the arena for a large object
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
  EXECUTE  r→c  [EXECUTE, spec, arg_descriptors]   run this task (workers only)
  REPLY    r→c  [REPLY, req, payload]
  EXIT     r→c  [EXIT, reason]            the worker must exit (pool shrink, kill)
  REVOKE   r→c  [REVOKE, task_id]         give back a task sent ahead (pipelined
                behind the running one) if it has not started; handled by whichever
                thread reads the socket, at once (the worker may be blocked in get)
  RETURNED c→r  [RETURNED, task_id, returned]  the answer: returned is False when
                the task had started already (its DONE comes as usual)

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

An object descriptor says where an object's serialized bytes are:
  [INLINE, data, is_error]           the bytes themselves (small objects, errors)
  [ARENA, offset, size, is_error]    a slice of the node's shared-memory arena;
                                     the receiving process is counted as pinning it
                                     until it sends UNPIN
"""
import operator
import struct

import msgpack

VERSION = 1

HELLO, SUBMIT, PUT, CREATE, SEAL, GET, WAIT, REF_ADD, REF_DEL, UNPIN, DONE, CALL, \
    EXECUTE, REPLY, EXIT, REVOKE, RETURNED = range(17)

NAMES = ["HELLO", "SUBMIT", "PUT", "CREATE", "SEAL", "GET", "WAIT", "REF_ADD",
         "REF_DEL", "UNPIN", "DONE", "CALL", "EXECUTE", "REPLY", "EXIT", "REVOKE",
         "RETURNED"]

METRICS = 50

INLINE, ARENA = 0, 1

# Argument encodings inside a TaskSpec's args.
ARG_VALUE, ARG_REF = 0, 1

# Task kinds.
NORMAL_TASK, ACTOR_CREATION_TASK, ACTOR_TASK = 0, 1, 2

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
    """Incremental decoder: feed bytes, get complete messages."""
    __slots__ = ("_buf",)

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data) -> list:
        buf = self._buf
        buf += data
        msgs = []
        pos = 0
        n = len(buf)
        unpack = msgpack.unpackb
        while n - pos >= 4:
            (size,) = _len.unpack_from(buf, pos)
            end = pos + 4 + size
            if end > n:
                break
            msgs.append(unpack(memoryview(buf)[pos + 4:end], raw=False,
                               strict_map_key=False, use_list=True))
            pos = end
        if pos:
            del buf[:pos]
        return msgs


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
        "num_returns",      # int
        "resources",        # dict name -> float, needed while running
        "max_retries",      # int: re-runs after a worker crash (-1: forever)
        "retry_exceptions", # bool | list of exception class names
        "actor_id",         # bytes | None
        "method",           # str | None (actor tasks)
        "actor_options",    # dict | None (actor creation: name, namespace, ...)
        "scheduling",       # list | None: strategy, see raylet.scheduler
        "caller",           # bytes: worker id of the submitter
        "seq",              # int: per-caller sequence number (actor ordering)
    )

    def __init__(self, task_id, job_id, kind, function_key, name, args, kwarg_names,
                 num_returns, resources, max_retries=0, retry_exceptions=False,
                 actor_id=None, method=None, actor_options=None, scheduling=None,
                 caller=b"", seq=0):
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

    def to_wire(self) -> list:
        return list(_spec_fields(self))

    @classmethod
    def from_wire(cls, fields: list) -> "TaskSpec":
        return cls(*fields)

    def return_ids(self) -> list:
        tid = self.task_id
        if self.num_returns == 1:   # the common case, on every hop of every task
            return [tid + _FIRST_RETURN]
        return [tid + i.to_bytes(4, "big") for i in range(1, self.num_returns + 1)]

    def ref_args(self) -> list:
        return [a[1] for a in self.args if a[0] == ARG_REF]

    def __repr__(self):
        return f"<TaskSpec {self.name} {self.task_id.hex()[:12]}>"


# all fields in __slots__ order, read in one C call (to_wire is on every hop)
_spec_fields = operator.attrgetter(*TaskSpec.__slots__)


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
#   CANCEL     c→s  [PEER_CANCEL, task_id, force]  cancel() of a FORWARDed task
#
# `exported` (FORWARD, TASK_DONE, OBJECT): the ids of the refs inside what the
# message carries (nested in values or by-value arguments) for which the sender
# now holds a ref on the receiver's behalf; the receiver records where they are
# (a proxy entry, fetched on demand) and RELEASEs each once it no longer needs it
# (at once if it knew the object already).
PEER_CHALLENGE, PEER_AUTH, PEER_AUTH_OK, PEER_FORWARD, PEER_TASK_DONE, PEER_RELEASE, \
    PEER_PULL, PEER_OBJECT, PEER_MISSING, PEER_REDIRECT, PEER_READY, \
    PEER_CANCEL = range(100, 112)
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
PEER_ACTOR_CREATE, PEER_ACTOR_KILL, PEER_PG_RESERVE, PEER_PG_RESERVED, PEER_PG_CANCEL, \
    PEER_PG_REMOVE = range(120, 126)

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
