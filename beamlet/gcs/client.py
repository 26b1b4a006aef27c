"""Typed access to the GCS (see keys.py for the schema)."""
import json
import queue
import sys
import threading
import time

from . import keys


def connect(host: str, port: int, password: str):
    # imported here: worker processes import beamlet but never talk to Redis, and
    # the redis package costs them ~70 ms and ~15 MiB
    import redis
    return redis.Redis(host=host, port=port, password=password, socket_timeout=30,
                       socket_connect_timeout=10)


class GcsClient:
    def __init__(self, host: str, port: int, password: str):
        self.host, self.port, self.password = host, port, password
        self.r = connect(host, port, password)

    # --- cluster / nodes -------------------------------------------------------
    def cluster_info(self) -> dict:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(keys.CLUSTER).items()}

    def register_node(self, node_id: bytes, info: dict) -> None:
        enc = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
               for k, v in info.items()}
        p = self.r.pipeline()
        p.hset(keys.node(node_id), mapping=enc)
        p.sadd(keys.NODES, node_id.hex())
        p.zadd(keys.HEARTBEATS, {node_id.hex(): time.time()})
        p.execute()

    def nodes(self) -> list:
        ids = sorted(x.decode() for x in self.r.smembers(keys.NODES))
        p = self.r.pipeline()
        for i in ids:
            p.hgetall(keys.node(bytes.fromhex(i)))
        p.zrange(keys.HEARTBEATS, 0, -1, withscores=True)
        res = p.execute()
        beats = {k.decode(): s for k, s in res[-1]}
        out = []
        for i, h in zip(ids, res[:-1]):
            d = {k.decode(): v.decode() for k, v in h.items()}
            for f in ("resources_total", "resources_available", "demand"):
                if f in d:
                    d[f] = json.loads(d[f])
            d["node_id"] = i
            d["last_heartbeat"] = beats.get(i)
            out.append(d)
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
        """(the newest finished-task records (msgpack lists, see
        raylet/scheduler.py task_record) of each job, at most `limit` per job;
        job id -> how many records the GCS keeps for it)."""
        import msgpack
        p = self.r.pipeline(transaction=False)
        for j in job_ids:
            key = keys.task_events(bytes.fromhex(j))
            p.zrange(key, -limit if limit else 0, -1)
            p.zcard(key)
        res = p.execute()
        out, kept = [], {}
        for j, members, n in zip(job_ids, res[::2], res[1::2]):
            out.extend(msgpack.unpackb(m, raw=False) for m in members)
            kept[j] = n
        return out, kept


class WriteBehind:
    """Batches GCS writes off the hot path: callers enqueue (cheap), a thread
    flushes every GCS_FLUSH_S in one pipeline."""

    def __init__(self, r, interval: float):
        self.r = r
        self.interval = interval
        self.q = queue.SimpleQueue()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gcs-write-behind",
                                       daemon=True)
        self.thread.start()

    def put(self, op, *args, **kw):
        """op: a redis pipeline method name, e.g. "hset"."""
        self.q.put((op, args, kw))

    def _run(self):
        while not self._stop.is_set():
            self._stop.wait(self.interval)
            self.flush()

    def flush(self):
        ops = []
        while True:
            try:
                ops.append(self.q.get_nowait())
            except queue.Empty:
                break
        if not ops:
            return
        try:
            p = self.r.pipeline(transaction=False)
            for op, args, kw in ops:
                try:
                    getattr(p, op)(*args, **kw)
                except Exception as e:
                    # one malformed write must not drop the whole batch
                    print(f"GCS write-behind: skipped {op}{args!r:.200}: {e}",
                          file=sys.stderr, flush=True)
            p.execute(raise_on_error=False)
        except Exception:
            pass  # the GCS is gone (shutting down); nothing to do

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.flush()
