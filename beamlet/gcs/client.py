"""Typed access to the GCS (see keys.py for the schema).

Every Redis client beamlet makes comes from `connect()`: a command or pipeline
that cannot reach Redis (refused, reset, timed out, or Redis still loading its
append-only file after a restart) is retried with backoff for up to
`retry_s` (GCS_RECONNECT_TIMEOUT_S by default), then raises
GcsUnavailableError saying where the GCS is and how long it was tried — never
a raw client exception.  Background threads that handle a lost GCS themselves
(write-behind, heartbeats, subscriptions) use retry_s=0: one attempt.

Also here: the write-behind queue of the raylet (it keeps writes the GCS could
not take and replays them), the Lua scripts that make a heartbeat and a death
atomic (fencing), and the membership feed (a subscription that keeps a view of
the node table current from deltas, resynced on every reconnect).
"""
import collections
import json
import queue
import sys
import threading
import time

from .. import exceptions
from .._private import config
from . import keys

_classes = None
SOCKET_TIMEOUT_S = 10.0


def _client_classes():
    """GcsRedis and its pipeline, made on first use: worker processes import
    beamlet but never talk to Redis, and the redis package costs them ~70 ms and
    ~15 MiB."""
    global _classes
    if _classes is not None:
        return _classes
    import redis
    from redis.client import Pipeline

    retryable = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)

    def with_retry(client, fn):
        limit = client.gcs_retry_s
        if limit is None:
            limit = config.GCS_RECONNECT_TIMEOUT_S
        start = time.monotonic()
        delay, attempts = 0.05, 0
        while True:
            attempts += 1
            try:
                return fn()
            except retryable as e:
                elapsed = time.monotonic() - start
                if elapsed >= limit:
                    raise unavailable(client.gcs_where, elapsed, attempts, e) from e
                time.sleep(min(delay, limit - elapsed))
                delay = min(delay * 2, 1.0)

    class GcsPipeline(Pipeline):
        gcs_retry_s = None
        gcs_where = "?"

        def execute(self, raise_on_error=True):
            if self.watching or self.explicit_transaction:
                # a WATCH cannot be replayed: redis-py turns a lost connection
                # into a WatchError, which the caller's optimistic loop handles
                return Pipeline.execute(self, raise_on_error)
            stack, scripts = list(self.command_stack), set(self.scripts)

            def once():
                self.command_stack, self.scripts = list(stack), set(scripts)
                return Pipeline.execute(self, raise_on_error)
            return with_retry(self, once)

        def immediate_execute_command(self, *args, **options):
            if self.watching:
                return Pipeline.immediate_execute_command(self, *args, **options)
            return with_retry(self, lambda: Pipeline.immediate_execute_command(
                self, *args, **options))

    class GcsRedis(redis.Redis):
        gcs_retry_s = None
        gcs_where = "?"

        def execute_command(self, *args, **options):
            return with_retry(self, lambda: redis.Redis.execute_command(
                self, *args, **options))

        def pipeline(self, transaction=True, shard_hint=None):
            p = GcsPipeline(self.connection_pool, self.response_callbacks, transaction,
                            shard_hint)
            p.gcs_retry_s, p.gcs_where = self.gcs_retry_s, self.gcs_where
            return p

    _classes = (GcsRedis, GcsPipeline)
    return _classes


def unavailable(where, elapsed, attempts, err) -> Exception:
    return exceptions.GcsUnavailableError(
        f"The GCS (Redis) at {where} is unreachable: tried for {elapsed:.1f} s "
        f"({attempts} attempt{'s' if attempts != 1 else ''}; last error: {err}). The "
        f"head node's monitor restarts a Redis that died; if this lasts, the head "
        f"node is down or cannot be reached from here (BEAMLET_GCS_RECONNECT_TIMEOUT_S "
        f"sets how long calls wait).")


def connect(host: str, port: int, password: str, retry_s=None):
    """A Redis client of the GCS whose calls wait up to `retry_s` (None:
    GCS_RECONNECT_TIMEOUT_S) for the GCS to answer again."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    cls = _client_classes()[0]
    # A stalled Redis accepts connections but never answers: a read gives up
    # after this long (then the call retries, within its window).  Not shorter:
    # on a loaded machine a busy Redis may take seconds to answer a big pipeline,
    # and a subscription that timed out would read the whole table again.
    timeout = SOCKET_TIMEOUT_S
    r = cls(host=host, port=port, password=password, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    r.gcs_retry_s, r.gcs_where = retry_s, f"{host}:{port}"
    return r


# --- scripts: atomic steps of liveness (each is one round trip) --------------------
# The heartbeat refreshes the node's entry only while its record says ALIVE, and
# answers the record's state: a node declared dead learns it on its next beat,
# and nothing it writes can make it alive again (fencing).  Times are the Redis
# server's clock, so the monitor and the nodes need no synchronized clocks.
_HEARTBEAT_LUA = """
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'UNKNOWN' end
if st ~= 'ALIVE' then return st end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
return 'OK'
"""

# Declares dead every ALIVE node whose last beat is older than ARGV[1] seconds,
# provided the monitor has been observing for that long (ARGV[2]: since when, in
# server time; 0: it just started or came back, so nothing is declared yet), and
# publishes each death on the membership channel (KEYS[2]).  ARGV[3]: the node
# key prefix, ARGV[4]: the death reason.  Returns {server time, {ids declared}}.
_DECLARE_DEAD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local timeout = tonumber(ARGV[1])
local since = tonumber(ARGV[2])
local dead = {}
if since == 0 or now - since <= timeout then return {tostring(now), dead} end
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - timeout)
for _, n in ipairs(stale) do
  redis.call('ZREM', KEYS[1], n)
  local k = ARGV[3] .. n
  if redis.call('HGET', k, 'state') == 'ALIVE' then
    redis.call('HSET', k, 'state', 'DEAD', 'death_reason', ARGV[4])
    redis.call('PUBLISH', KEYS[2],
               cjson.encode({node = n, kind = 'dead', reason = ARGV[4]}))
    table.insert(dead, n)
  end
end
return {tostring(now), dead}
"""


# Finished tasks of a job, as batches (keys.py, beamlet:task_events:<job>): adds
# one batch (ARGV[1]: a msgpack stream: the node id, then ARGV[2] records) scored by the job's count
# of finished tasks after it (HINCRBY tasks_finished: the same count on every
# node), records how many the readers keep (ARGV[3]) and drops every batch whose
# records are all older than the newest ARGV[3].  One member per flush, however
# many tasks ended: the raylet packs them as they end, Redis stores one string.
# The batches stay out of the append-only file (REPL_NONE: in memory only):
# writing ~100 bytes per task to it, fsynced each second, cost sync tasks about
# 8% (bench/bench_task_events.py); a Redis that restarts from its file has the
# counts, not the older records (the state API says so).
_ADD_TASK_EVENTS_LUA = """
redis.replicate_commands()
local n = redis.call('HINCRBY', KEYS[2], 'tasks_finished', ARGV[2])
redis.call('HSET', KEYS[2], 'task_events_keep', ARGV[3])
redis.set_repl(redis.REPL_NONE)
redis.call('ZADD', KEYS[1], n, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', n - tonumber(ARGV[3]))
return n
"""


def add_task_events(job_id: bytes, batch: bytes, count: int, keep: int) -> tuple:
    """The write (a WriteBehind.put's arguments) that records `count` finished
    tasks of a job, `batch` their packed records, and keeps the newest `keep`."""
    return ("eval", _ADD_TASK_EVENTS_LUA, 2, keys.task_events(job_id), keys.job(job_id),
            batch, count, keep)


def _decode_record(i, h) -> dict:
    d = {k.decode(): v.decode() for k, v in h.items()}
    for f in ("resources_total", "resources_available", "demand"):
        if f in d:
            d[f] = json.loads(d[f])
    d["node_id"] = i
    return d


def _encode_record(info: dict) -> dict:
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
            for k, v in info.items()}


def member_event(node_hex: str, kind: str, seq: int = 0, fields=None) -> str:
    """A message of the membership channel (format: keys.py)."""
    ev = {"node": node_hex, "kind": kind, "seq": seq}
    if fields:
        ev["fields"] = fields
    return json.dumps(ev)


class GcsClient:
    def __init__(self, host: str, port: int, password: str, retry_s=None):
        self.host, self.port, self.password = host, port, password
        self.r = connect(host, port, password, retry_s)
        self._heartbeat = self.r.register_script(_HEARTBEAT_LUA)
        self._declare_dead = self.r.register_script(_DECLARE_DEAD_LUA)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        try:
            self.r.close()
        except Exception:
            pass

    # --- cluster / nodes -------------------------------------------------------
    def cluster_info(self) -> dict:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(keys.CLUSTER).items()}

    def register_node(self, node_id: bytes, info: dict, seq: int = 1) -> None:
        """Write this node's record, list it, announce it (a "join" delta with the
        whole record) and beat once: from here on every raylet counts it."""
        hexid = node_id.hex()
        p = self.r.pipeline(transaction=True)
        p.hset(keys.node(node_id), mapping=dict(_encode_record(info), seq=seq))
        p.sadd(keys.NODES, hexid)
        p.publish(keys.MEMBERSHIP, member_event(hexid, "join", seq, info))
        p.execute()
        self.heartbeat(node_id)

    def heartbeat(self, node_id: bytes) -> str:
        """One beat: "OK", "DEAD" (this node was declared dead: it is fenced) or
        "UNKNOWN" (the GCS has no record of it: register again)."""
        st = self._heartbeat(keys=[keys.node(node_id), keys.HEARTBEATS],
                             args=[node_id.hex()])
        return st.decode() if isinstance(st, bytes) else str(st)

    def declare_dead(self, timeout: float, observing_since: float, reason: str):
        """(server time, [node hex declared dead now]) — see _DECLARE_DEAD_LUA."""
        now, dead = self._declare_dead(
            keys=[keys.HEARTBEATS, keys.MEMBERSHIP],
            args=[timeout, observing_since, keys.node_prefix(), reason])
        return float(now), [n.decode() for n in dead]

    def node_stopped(self, node_id: bytes, reason="stopped") -> None:
        """A node leaves on purpose: DEAD at once, and every raylet hears of it."""
        hexid = node_id.hex()
        p = self.r.pipeline(transaction=True)
        p.hset(keys.node(node_id), mapping={"state": "DEAD", "death_reason": reason})
        p.zrem(keys.HEARTBEATS, hexid)
        p.publish(keys.MEMBERSHIP, member_event(hexid, "dead"))
        p.execute()

    def node_state(self, node_id: bytes):
        """The state of a node's record (None: no record)."""
        s = self.r.hget(keys.node(node_id), "state")
        return s.decode() if s else None

    def node_states(self, node_hexes) -> dict:
        """node hex -> its record's state (None: no record)."""
        p = self.r.pipeline(transaction=False)
        for i in node_hexes:
            p.hget(keys.node(bytes.fromhex(i)), "state")
        return {i: (s.decode() if s else None) for i, s in zip(node_hexes, p.execute())}

    def nodes(self) -> list:
        ids = sorted(x.decode() for x in self.r.smembers(keys.NODES))
        p = self.r.pipeline(transaction=False)
        for i in ids:
            p.hgetall(keys.node(bytes.fromhex(i)))
        p.zrange(keys.HEARTBEATS, 0, -1, withscores=True)
        res = p.execute()
        beats = {k.decode(): s for k, s in res[-1]}
        out = []
        for i, h in zip(ids, res[:-1]):
            if not h:
                continue    # listed, but its record is gone (the GCS lost it)
            d = _decode_record(i, h)
            d["last_heartbeat"] = beats.get(i)
            out.append(d)
        return out

    # --- objects ---------------------------------------------------------------
    def bytes_by_node(self, oids) -> dict:
        """node hex -> bytes of these objects held there (their locations), in
        one attempt: a caller that cannot wait for the GCS gets
        GcsUnavailableError at once."""
        p = self.r.pipeline(transaction=False)
        p.gcs_retry_s = 0
        for oid in oids:
            p.hgetall(keys.obj(oid))
        out = collections.Counter()
        for h in p.execute():
            for node, size in h.items():
                out[node.decode()] += int(size)
        return out

    # --- functions -------------------------------------------------------------
    def export_function(self, key: bytes, blob: bytes) -> None:
        self.r.set(keys.function(key), blob, nx=True)

    def fetch_function(self, key: bytes, timeout=10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            blob = self.r.get(keys.function(key))
            if blob is not None or time.monotonic() > deadline:
                return blob
            time.sleep(0.01)

    # --- runtime environments (runtime_env/resolve.py stores, setup.py reads) --
    def put_package(self, digest: str, blob: bytes) -> None:
        if not self.r.exists(keys.package(digest)):
            self.r.set(keys.package(digest), blob, nx=True)

    def has_package(self, digest: str) -> bool:
        return bool(self.r.exists(keys.package(digest)))

    def get_package(self, digest: str):
        return self.r.get(keys.package(digest))

    def put_runtime_env(self, key: str, text: str) -> None:
        self.r.set(keys.runtime_env(key), text, nx=True)

    def get_runtime_env(self, key: str):
        raw = self.r.get(keys.runtime_env(key))
        return raw.decode() if raw is not None else None

    # --- jobs ------------------------------------------------------------------
    def new_job(self, driver_pid: int, node_id: bytes, namespace: str) -> bytes:
        n = self.r.incr(keys.JOB_COUNTER)
        job_id = n.to_bytes(4, "big")
        self.r.hset(keys.job(job_id), mapping={
            "driver_pid": driver_pid, "node": node_id.hex(), "namespace": namespace,
            "started_at": time.time(), "state": "RUNNING"})
        self.r.sadd(keys.JOBS, job_id.hex())
        return job_id

    # --- actors ----------------------------------------------------------------
    def claim_actor_name(self, namespace: str, name: str, actor_id: bytes) -> bytes:
        """Register a name; returns the id already holding it (or ours)."""
        k = keys.actor_names(namespace)
        if self.r.hsetnx(k, name, actor_id.hex()):
            return actor_id
        return bytes.fromhex(self.r.hget(k, name).decode())

    def lookup_actor_name(self, namespace: str, name: str):
        v = self.r.hget(keys.actor_names(namespace), name)
        return bytes.fromhex(v.decode()) if v else None

    def actor_info(self, actor_id: bytes) -> dict:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(keys.actor(actor_id)).items()}

    def list_named_actors(self, namespace=None) -> list:
        out = []
        if namespace is not None:
            spaces = [namespace]
        else:
            spaces = [k.decode().split(":", 2)[2] for k in self.r.scan_iter(
                keys.actor_names("*"))]
        for ns in spaces:
            for name in self.r.hkeys(keys.actor_names(ns)):
                out.append({"name": name.decode(), "namespace": ns})
        return out


def _log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)
class StateReader:
    """The GCS's records of the state API (beamlet/util/state): jobs, actors,
    placement groups and finished tasks, read in a few pipelined round trips."""

    def __init__(self, r):
        self.r = r

    def _hashes(self, pattern: str) -> list:
        names = list(self.r.scan_iter(pattern, count=1000))
        p = self.r.pipeline(transaction=False)
        for k in names:
            p.hgetall(k)
        out = []
        for k, h in zip(names, p.execute()):
            d = {a.decode(): b.decode("utf-8", "replace") for a, b in h.items()}
            d["_id"] = k.decode().rsplit(":", 1)[1]
            out.append(d)
        return out

    def jobs(self) -> list:
        ids = sorted(x.decode() for x in self.r.smembers(keys.JOBS))
        p = self.r.pipeline(transaction=False)
        for i in ids:
            p.hgetall(keys.job(bytes.fromhex(i)))
        return [{"_id": i, **{a.decode(): b.decode("utf-8", "replace")
                              for a, b in h.items()}}
                for i, h in zip(ids, p.execute())]

    def actors(self) -> list:
        return self._hashes(keys.actor_pattern())

    def placement_groups(self) -> list:
        return self._hashes(keys.placement_group_pattern())

    def finished_tasks(self, job_ids, limit=None):
        """(the newest finished-task records of each job, oldest first, at most
        `limit` per job, each as raylet/scheduler.py task_record with the job id
        after the task id and the node id last (the fields of
        _private/state_rows.row_from_record); job id -> how many records the
        GCS keeps for it)."""
        import msgpack
        p = self.r.pipeline(transaction=False)
        for j in job_ids:
            p.zrange(keys.task_events(bytes.fromhex(j)), 0, -1)
            p.hget(keys.job(bytes.fromhex(j)), "task_events_keep")
        res = p.execute()
        out, kept = [], {}
        for j, batches, keep in zip(job_ids, res[::2], res[1::2]):
            job = bytes.fromhex(j)
            recs = []
            for b in batches:   # a stream: node id, then records without job or node
                u = msgpack.Unpacker(raw=False)
                u.feed(b)
                node = next(u)
                recs.extend(r[:1] + [job] + r[1:] + [node] for r in u)
            if keep is not None:
                recs = recs[-int(keep):] if int(keep) > 0 else []
            kept[j] = len(recs)
            out.extend(recs[-limit:] if limit else recs)
        return out, kept


class WriteBehind:
    """Batches GCS writes off the hot path: callers enqueue (cheap), a thread
    flushes every GCS_FLUSH_S in one pipeline.

    While the GCS is unreachable the batches are kept, in order, and replayed
    once it answers (every write here is idempotent or, like a log line, better
    late than lost); at most `max_pending` are kept, the oldest dropped first,
    and a log line counts what was dropped."""

    def __init__(self, r, interval: float, max_pending=None):
        self.r = r
        self.interval = interval
        self.max_pending = max_pending or config.GCS_PENDING_WRITES_MAX
        self.q = queue.SimpleQueue()
        self.kept = collections.deque()    # ops the GCS did not take yet, in order
        self.dropped = 0
        self.failing_since = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gcs-write-behind",
                                       daemon=True)
        self.thread.start()

    def put(self, op, *args, **kw):
        """op: a redis pipeline method name, e.g. "hset"."""
        self.q.put((op, args, kw))

    def _run(self):
        while not self._stop.is_set():
            if not self.kept:
                # idle: sleep until a write comes (no wake-ups at rest), then let
                # the writes of the next interval join it in one pipeline
                try:
                    self.kept.append(self.q.get(timeout=1.0))
                except queue.Empty:
                    continue
                if self._stop.wait(self.interval):
                    break
            elif self._stop.wait(1.0):
                break   # (the GCS is away: try about once a second)
            self.flush()

    def discard(self) -> None:
        """Forget every write not made yet, and stop (a fenced node: what it would
        write describes a node the cluster has declared dead)."""
        self._stop.set()
        self.kept.clear()
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                break

    def flush(self) -> bool:
        """Write what is queued; False if the GCS could not be reached (the
        writes are kept for the next flush)."""
        ops = self.kept
        while True:
            try:
                ops.append(self.q.get_nowait())
            except queue.Empty:
                break
        if not ops:
            return True
        batch = list(ops)
        try:
            p = self.r.pipeline(transaction=False)
            for op, args, kw in batch:
                try:
                    getattr(p, op)(*args, **kw)
                except Exception as e:
                    # one malformed write must not drop the whole batch
                    _log(f"GCS write-behind: skipped {op}{args!r:.200}: {e}")
            p.execute(raise_on_error=False)
        except exceptions.GcsUnavailableError as e:
            self._keep(e)
            return False
        except Exception as e:      # a reply we cannot parse: not worth retrying
            _log(f"GCS write-behind: a batch of {len(batch)} writes failed: {e!r}")
        for _ in range(len(batch)):
            ops.popleft()
        if self.failing_since is not None:
            _log(f"GCS reachable again after {time.monotonic() - self.failing_since:.1f}"
                 f" s: wrote the {len(batch)} writes kept meanwhile"
                 + (f" ({self.dropped} older ones were dropped)" if self.dropped else ""))
            self.failing_since, self.dropped = None, 0
        return True

    def _keep(self, err):
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            _log(f"GCS unreachable; keeping writes to replay later: {err}")
        over = len(self.kept) - self.max_pending
        for _ in range(max(0, over)):
            self.kept.popleft()
        self.dropped += max(0, over)

    def close(self):
        self._stop.set()
        self.put("ping")       # wakes the thread if it sleeps on the queue
        self.thread.join(2)
        self.flush()


class MembershipFeed:
    """A thread that keeps a view of the node table current from the membership
    channel (deltas), as `deliver("snapshot", [records])` then
    `deliver("events", [event dicts])` calls, in order.

    On every (re)connect it subscribes first, waits until Redis confirms, then
    reads the whole table once (the snapshot): every change after the snapshot
    arrives as an event, and events that the snapshot already covers carry a
    sequence number no newer than the record's (the view drops them).  So a view
    is resynced after a lost connection or a restarted Redis, and otherwise costs
    the GCS nothing but the deltas."""

    def __init__(self, host, port, password, deliver, name="membership"):
        self.where = (host, port, password)
        self.deliver = deliver
        self._stop = threading.Event()
        self._ps = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self.thread.start()

    def close(self):
        self._stop.set()
        ps = self._ps
        if ps is not None:
            try:
                ps.connection.disconnect()  # wakes the thread's read at once
            except Exception:
                pass
        if self.thread.is_alive():
            self.thread.join(1.0)

    def _run(self):
        delay, failing_since = 0.05, None
        while not self._stop.is_set():
            client = ps = None
            try:
                client = GcsClient(*self.where, retry_s=0)
                ps = self._ps = client.r.pubsub()
                ps.subscribe(keys.MEMBERSHIP)
                deadline = time.monotonic() + 10
                while True:     # Redis confirms the subscription: now read the table
                    m = ps.get_message(timeout=1.0)
                    if m and m["type"] == "subscribe":
                        break
                    if time.monotonic() > deadline or self._stop.is_set():
                        raise ConnectionError("no subscription confirmed")
                self.deliver("snapshot", client.nodes())
                if failing_since is not None:
                    _log(f"membership: resynced with the GCS after "
                         f"{time.monotonic() - failing_since:.1f} s")
                delay, failing_since = 0.05, None
                while not self._stop.is_set():
                    m = ps.get_message(timeout=1.0)
                    batch = []
                    while m is not None and len(batch) < 1000:
                        if m["type"] == "message":
                            try:
                                batch.append(json.loads(m["data"]))
                            except ValueError:
                                pass
                        m = ps.get_message(timeout=0)
                    if batch:
                        self.deliver("events", batch)
            except Exception as e:
                if self._stop.is_set():
                    return
                if failing_since is None:
                    failing_since = time.monotonic()
                    _log(f"membership: lost the GCS ({e!r:.200}); resubscribing")
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)
            finally:
                for c in (ps, client):
                    try:
                        if c is not None:
                            c.close()
                    except Exception:
                        pass
