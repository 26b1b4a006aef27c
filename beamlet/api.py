"""The driver-facing API: init, shutdown, remote, get, put, wait, and friends."""
import atexit
import inspect
import json
import operator
import os
import sys
import threading

from . import exceptions
from ._private import ids
from .gcs import keys
from .gcs.client import GcsClient
from .object_ref import ObjectRef
from .worker import core_worker


class _State:
    """The process's connection to a cluster (driver) — or, in a worker, lazily
    made handles on the worker's own cluster."""

    def __init__(self):
        self.node = None          # the Node we started (init() without address)
        self._gcs = None
        self.namespace = None
        self.log_thread = None
        self.log_stop = None
        self.lock = threading.RLock()

    @property
    def gcs(self) -> GcsClient:
        if self._gcs is None:
            core = _core()
            host, port, password = core.node_info["redis"]
            self._gcs = GcsClient(host, port, password)
        return self._gcs


_state = _State()


def _core():
    core = core_worker.global_worker
    if core is None or core.closed:
        raise exceptions.RaySystemError(
            "beamlet is not initialized: call beamlet.init() first.")
    return core


def is_initialized() -> bool:
    core = core_worker.global_worker
    return core is not None and not core.closed


class ClusterInfo(dict):
    """What init() returns (a dict, also readable as attributes)."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()


def init(address=None, *, num_cpus=None, num_gpus=None, resources=None,
         object_store_memory=None, namespace=None, ignore_reinit_error=False,
         log_to_driver=True, _redis_password=None, **kwargs):
    """Start a local cluster (address=None) or connect to a running one
    (address="auto" or "HOST:PORT"); returns a dict describing it."""
    from .node import Node, find_cluster, init_node_options, resolve_address
    with _state.lock:
        if is_initialized():
            if ignore_reinit_error:
                return _info()
            raise RuntimeError(
                "beamlet.init() was called twice: this process is already connected to "
                "a cluster. Call beamlet.shutdown() first, or pass "
                "ignore_reinit_error=True to make the second call a no-op.")
        unknown = set(kwargs) - {"include_dashboard", "logging_level", "runtime_env",
                                 "local_mode", "configure_logging", "log_to_driver",
                                 "dashboard_host", "dashboard_port", "_temp_dir",
                                 "_system_config", "object_spilling_directory"}
        if unknown:
            raise TypeError(f"init() got unexpected keyword argument(s) {sorted(unknown)}.")
        address = resolve_address(address)   # env, "local"; None: start a cluster
        node_options = init_node_options(kwargs, connecting=address is not None)
        if address is None:
            node = Node(head=True, num_cpus=num_cpus, num_gpus=num_gpus,
                        resources=resources, object_store_memory=object_store_memory,
                        owner_pid=os.getpid(), **node_options).start()
            _state.node = node
            host, port, password = node.redis_host, node.redis_port, node.password
            socket_path = node.socket_path
        else:
            given = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                                       ("resources", resources),
                                       ("object_store_memory", object_store_memory))
                     if v is not None}
            if given:
                raise ValueError(
                    f"When connecting to an existing cluster, {sorted(given)} cannot be "
                    f"set: resources are fixed when a node starts (beamlet start ...).")
            info = find_cluster(address, root=node_options["session_root"])
            host, port = info["redis_host"], info["redis_port"]
            password = _redis_password or info["password"]
            socket_path = info["raylet_socket"]
        try:
            gcs = GcsClient(host, port, password)
            _state._gcs = gcs
            _state.namespace = namespace or ("anon-" + ids.random_id(6).hex())
            job_id = gcs.new_job(os.getpid(), b"", _state.namespace)
            # Workers add the driver's sys.path, so that what the driver imports
            # from its own directories (a class pickled by reference) loads there.
            gcs.r.hset(keys.job(job_id), "sys_path", json.dumps(sys.path))
            core = core_worker.CoreWorker(socket_path, "driver", job_id=job_id)
            core_worker.global_worker = core
            if log_to_driver:
                _start_log_thread(gcs, job_id)
        except BaseException:
            _teardown()
            raise
        atexit.register(shutdown)
        return _info()


def _info():
    core = _core()
    n = _state.node
    return ClusterInfo(
        address=f"{_state.gcs.host}:{_state.gcs.port}",
        node_id=core.node_id.hex(), session_dir=core.node_info["session_dir"],
        raylet_socket_name=n.socket_path if n else None,
        namespace=_state.namespace, job_id=core.job_id.hex())


def _start_log_thread(gcs, job_id):
    from .experimental.tqdm_ray import process_log_line   # tqdm_ray's bars
    stop = threading.Event()
    ps = gcs.r.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(keys.logs_channel(job_id), keys.errors_channel(job_id))
    logs_ch = keys.logs_channel(job_id).encode()

    def run():
        while not stop.is_set():
            try:
                m = ps.get_message(timeout=0.2)
            except Exception:
                return
            if not m:
                continue
            data = m["data"].decode("utf-8", "replace")
            if m["channel"] == logs_ch:
                stream = sys.stderr if data[:1] == "E" else sys.stdout
                if not process_log_line(data[1:], stream):
                    print(data[1:], file=stream, flush=True)
            else:
                print(f"beamlet warning: {data}", file=sys.stderr, flush=True)
        try:
            ps.close()
        except Exception:
            pass
    t = threading.Thread(target=run, daemon=True, name="beamlet-logs")
    t.start()
    _state.log_thread, _state.log_stop = t, stop


def _teardown():
    core = core_worker.global_worker
    if _state.log_stop is not None:
        _state.log_stop.set()
        _state.log_thread.join(1)
        _state.log_stop = _state.log_thread = None
    if core is not None:
        core.close()
    core_worker.global_worker = None
    if _state.node is not None:
        _state.node.stop()
        _state.node = None
    if _state._gcs is not None:
        try:
            _state._gcs.r.close()
        except Exception:
            pass
        _state._gcs = None


def shutdown():
    """Disconnect; if init() started the cluster, stop every process of it and
    remove its session directory."""
    with _state.lock:
        if core_worker.global_worker is None and _state.node is None:
            return
        if core_worker.global_worker is not None and \
                core_worker.global_worker.role == "worker":
            raise RuntimeError("shutdown() cannot be called inside a task or actor.")
        _teardown()


# ---------------------------------------------------------------- objects
def put(value, *, _owner=None) -> ObjectRef:
    """Store `value` in the object store; returns a ref to it."""
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef is not allowed: the object already "
                        "exists; pass the ref itself, or put [ref] to wrap it.")
    core = _core()
    return ObjectRef(core.put(value), _registered=True)


def get(object_refs, *, timeout=None):
    """The value(s) of one ObjectRef or a list of them; blocks until ready."""
    core = _core()
    if timeout is not None:
        if not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number or None, got {timeout!r}.")
    if type(object_refs) is ObjectRef:
        return core.get_values([object_refs.id], timeout)[0]
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if type(r) is not ObjectRef:
                raise TypeError(
                    f"get() expects an ObjectRef or a list of ObjectRefs; the list "
                    f"contains {type(r).__name__}: {r!r}.")
        return core.get_values([r.id for r in object_refs], timeout)
    from .actor import ActorHandle
    if isinstance(object_refs, ActorHandle):
        raise TypeError("get() of an actor handle: call a method, e.g. "
                        "get(handle.method.remote()).")
    raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got "
                    f"{type(object_refs).__name__}.")


_ref_id = operator.attrgetter("id")


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    """(ready, not_ready): the first `num_returns` refs that are ready (in input
    order) and the rest, once enough are ready or `timeout` seconds pass."""
    core = _core()
    if isinstance(object_refs, ObjectRef):
        raise TypeError("wait() expects a list of ObjectRefs, got a single ObjectRef; "
                        "wrap it in a list.")
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got "
                        f"{type(object_refs).__name__}.")
    # (checks written with map/set so that a loop of wait(num_returns=1) over 1,000
    # refs costs microseconds per call, not a Python-level pass per ref)
    bad = set(map(type, object_refs)) - {ObjectRef}
    if bad:
        raise TypeError(f"wait() expects a list of ObjectRefs; it contains "
                        f"{bad.pop().__name__}.")
    oids = list(map(_ref_id, object_refs))
    if len(set(oids)) != len(oids):
        raise ValueError("wait() requires a list of unique ObjectRefs.")
    if not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative int, got {num_returns!r}.")
    if num_returns > len(object_refs):
        raise ValueError(f"num_returns ({num_returns}) cannot exceed the number of "
                         f"refs ({len(object_refs)}).")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be non-negative, got {timeout!r}.")
    if not object_refs or num_returns == 0:
        return [], list(object_refs)
    idx = core.wait(oids, num_returns, timeout, bool(fetch_local))   # ascending indexes
    ready = [object_refs[i] for i in idx]
    not_ready = list(object_refs)
    for i in reversed(idx):
        del not_ready[i]
    return ready, not_ready


def cancel(object_ref, *, force=False, recursive=True):
    """Cancel the task that makes `object_ref`; its get raises TaskCancelledError."""
    if type(object_ref) is not ObjectRef:
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}.")
    _core().call("cancel", object_ref.id, bool(force), bool(recursive))


# ---------------------------------------------------------------- remote
def remote(*args, **kwargs):
    """@remote or @remote(**options) on a function (task) or class (actor)."""
    from .actor import make_actor_class
    from .remote_function import RemoteFunction

    def make(obj, options):
        if inspect.isclass(obj):
            return make_actor_class(obj, options)
        if callable(obj):
            return RemoteFunction(obj, options)
        raise TypeError(f"@remote applies to a function or a class, not "
                        f"{type(obj).__name__}.")
    if len(args) == 1 and not kwargs and callable(args[0]):
        return make(args[0], {})
    if args:
        raise TypeError("@remote takes keyword options only, e.g. @remote(num_cpus=2).")
    return lambda obj: make(obj, kwargs)


def method(*, num_returns=None, concurrency_group=None, max_task_retries=None,
           retry_exceptions=None):
    """@method(num_returns=N) on an actor method."""
    def deco(fn):
        opts = {}
        if num_returns is not None:
            opts["num_returns"] = num_returns
        fn.__beamlet_method_options__ = opts
        return fn
    return deco


def _scheduling(options):
    from .remote_function import scheduling_wire
    return scheduling_wire(options)


# ---------------------------------------------------------------- cluster
def nodes() -> list:
    """Every node the cluster has known, alive or dead (Ray's format)."""
    _core()
    out = []
    for n in _state.gcs.nodes():
        alive = n.get("state") == "ALIVE"
        out.append({
            "NodeID": n["node_id"], "Alive": alive, "alive": alive,
            "NodeManagerAddress": n.get("address"),
            "NodeManagerHostname": n.get("hostname"),
            "NodeManagerSocketName": n.get("socket"),
            "Resources": n.get("resources_total", {}) if alive else {},
            "ObjectStoreSocketName": n.get("socket"),
            "IsHead": n.get("is_head") == "1",
        })
    return out


def _other_nodes():
    core = _core()
    me = core.node_id.hex()
    return [n for n in _state.gcs.nodes() if n["node_id"] != me and n.get("state") == "ALIVE"]


def cluster_resources() -> dict:
    """Total resources of the alive nodes."""
    core = _core()
    total = dict(core.call("resources")["total"])
    for n in _other_nodes():
        for k, v in n.get("resources_total", {}).items():
            total[k] = total.get(k, 0) + v
    return {k: v for k, v in total.items() if v}


def available_resources() -> dict:
    """Resources free right now (exact for this node; others as of their last
    heartbeat)."""
    core = _core()
    avail = dict(core.call("resources")["available"])
    for n in _other_nodes():
        for k, v in n.get("resources_available", {}).items():
            avail[k] = avail.get(k, 0) + v
    return {k: v for k, v in avail.items() if v > 1e-9}


def get_gpu_ids() -> list:
    """GPU ids assigned to the current task or actor (driver: those visible)."""
    core = _core()
    if core.role == "worker":
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return [int(x) for x in cvd.split(",") if x.strip().isdigit()]
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return []
    return [int(x) for x in cvd.split(",") if x.strip().isdigit()]


def timeline(filename=None):
    """Task events (chrome://tracing format) of the tasks the GCS still records:
    one instant event per task at its last state change."""
    import json
    r = _state.gcs.r
    events = []
    for key in r.scan_iter(f"{keys.P}tasks:*"):
        node = key.decode().rsplit(":", 1)[1]
        for tid, v in r.hgetall(key).items():
            state, name, job, ts = v.decode().split(" ")
            events.append({"name": name, "cat": "task", "ph": "i", "pid": node,
                           "tid": job, "ts": float(ts) * 1e6,
                           "args": {"task_id": tid.decode(), "state": state}})
    events.sort(key=lambda e: e["ts"])
    if filename:
        with open(filename, "w") as f:
            json.dump(events, f)
        return None
    return events
