"""The driver-facing API: init, shutdown, remote, get, put, wait, and friends.

Layer: above remote functions and actors (it imports them); util/ and
beamlet/__init__.py import it.  The process's connection state lives in
connection.py (the core layer), which calls back into init() through the
auto-init hook registered at the end of this module.
"""
import atexit
import inspect
import json
import operator
import os
import sys
import threading
import time

from . import connection, exceptions
from ._private import config, ids, state_rows
from ._private import progress as _progress
from ._private import options as opts
from ._private.timeline import trace_events
from .actor import ActorHandle, make_actor_class, method  # noqa: F401 (re-exported)
from .gcs import keys
from .gcs.client import GcsClient, StateReader
from .generator import ObjectRefGenerator
from .log_printer import LogPrinter
from .object_ref import ObjectRef
from .remote_function import RemoteFunction
from .runtime_env.resolve import Resolver, job_runtime_env
from .worker import core_worker

# The names other modules and tests used when the state lived here.
_state = connection.state
_core = connection.core
is_initialized = connection.is_connected


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
         log_to_driver=True, runtime_env=None, job_config=None, _redis_password=None,
         **kwargs):
    """Start a local cluster (address=None) or connect to a running one
    (address="auto" or "HOST:PORT"); returns a dict describing it.  Options Ray
    has and beamlet does not act on are accepted (docs/api.md lists them)."""
    # (drivers only: workers never load node)
    from .node import (Node, announce, dashboard_url, find_cluster, init_node_options,
                       resolve_address)
    named = dict(address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                 resources=resources, object_store_memory=object_store_memory,
                 namespace=namespace, ignore_reinit_error=ignore_reinit_error,
                 log_to_driver=log_to_driver, runtime_env=runtime_env,
                 job_config=job_config, _redis_password=_redis_password)
    unknown = sorted(set(kwargs) - set(opts.INIT))
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s) {unknown}; "
                        f"valid ones are {sorted(opts.INIT)}.")
    opts.validate({**named, **kwargs}, opts.INIT, "init()")
    with connection.lock():
        if is_initialized():
            if ignore_reinit_error:
                return _info()
            raise RuntimeError(
                "beamlet.init() was called twice: this process is already connected to "
                "a cluster. Call beamlet.shutdown() first, or pass "
                "ignore_reinit_error=True to make the second call a no-op.")
        if job_config is not None:
            namespace = namespace or job_config.ray_namespace
            runtime_env = runtime_env if runtime_env is not None \
                else job_config.runtime_env
        address = resolve_address(address)   # env, "local"; None: start a cluster
        node_options = init_node_options(kwargs, connecting=address is not None)
        parts = connection.Attached()
        if address is None:
            node = parts.node = Node(
                head=True, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                object_store_memory=object_store_memory, owner_pid=os.getpid(),
                **node_options).start()
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
            gcs = parts.gcs = GcsClient(host, port, password)
            namespace = namespace or ("anon-" + ids.random_id(6).hex())
            job_id = gcs.new_job(os.getpid(), b"", namespace)
            # Workers add the driver's sys.path, so that what the driver imports
            # from its own directories (a class pickled by reference) loads there.
            record = {"sys_path": json.dumps(sys.path)}
            if job_config is not None:
                record["default_actor_lifetime"] = job_config.default_actor_lifetime
                record["metadata"] = json.dumps(job_config.metadata)
            resolver = Resolver(gcs)
            env, env_key, submission = job_runtime_env(resolver, runtime_env)
            if env:
                record["runtime_env"] = json.dumps(env, sort_keys=True)
            if submission:
                # this driver runs a job of `beamlet job submit`: each names the other
                record["submission_id"] = submission
                gcs.r.hset(keys.submission(submission), "job_id", job_id.hex())
            gcs.r.hset(keys.job(job_id), mapping=record)
            parts.core = core_worker.CoreWorker(socket_path, "driver", job_id=job_id)
            if log_to_driver:
                parts.log_printer = LogPrinter(host, port, password, job_id)
        except BaseException:
            _stop(parts)
            raise
        connection.attach(parts, namespace, job_id, record, resolver, env, env_key)
        atexit.register(shutdown)
        info = _info()
        if info["dashboard_url"]:
            # as Ray says it; the link carries the token once (it logs the
            # browser in with a cookie): docs/security.md
            announce(f"View the dashboard at {dashboard_url(info['dashboard_url'], password)}")
        return info


def _auto_init():
    """The first API call that needs a cluster, in a driver that has none: join the
    one BEAMLET_ADDRESS / RAY_ADDRESS names, or start a local one (as Ray does).
    It is shut down at exit like one init() started."""
    info = init()
    if connection.started_cluster():
        what = f"Started a local beamlet instance (session {info['session_dir']})"
    else:
        what = f"Connected to the beamlet cluster at {info['address']}"
    print(f"beamlet: {what}: the first call that needs a cluster ran init() itself. "
          f"Call beamlet.init(...) before it to choose the options.",
          file=sys.stderr, flush=True)


connection.set_auto_init(_auto_init)


def _info():
    core = _core()
    gcs = connection.gcs()
    dashboard = gcs.r.hget(keys.CLUSTER, "dashboard_address")
    dashboard = dashboard.decode() if dashboard else ""
    return ClusterInfo(
        # host:port of the head's dashboard ("" without one), as Ray's
        dashboard_url=dashboard, webui_url=dashboard,
        address=f"{gcs.host}:{gcs.port}",
        node_id=core.node_id.hex(), session_dir=core.node_info["session_dir"],
        raylet_socket_name=core.conn.path if connection.started_cluster() else None,
        namespace=connection.current_namespace(), job_id=core.job_id.hex())


def _stop(parts):
    """Stop what a connection was made of: for a cluster we started, the printer
    prints all the cluster publishes until it stops; for one we joined (which
    keeps running), until its output has been quiet a moment."""
    printer = parts.log_printer
    if printer is not None:
        printer.closing() if parts.node is not None else printer.drain()
    if parts.core is not None:
        parts.core.close()
    if parts.node is not None:
        parts.node.stop()
    if printer is not None:
        printer.close()
    if parts.gcs is not None:
        try:
            parts.gcs.r.close()
        except Exception:
            pass


def shutdown():
    """Disconnect; if init() started the cluster, stop every process of it and
    remove its session directory."""
    with connection.lock():
        core = core_worker.global_worker
        if core is not None and core.role == "worker":
            raise RuntimeError("shutdown() cannot be called inside a task or actor.")
        if core is None and not connection.started_cluster():
            return
        _stop(connection.detach())


# ---------------------------------------------------------------- objects
def put(value, *, _owner=None) -> ObjectRef:
    """Store `value` in the object store; returns a ref to it."""
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef is not allowed: the object already "
                        "exists; pass the ref itself, or put [ref] to wrap it.")
    core = _core()
    return ObjectRef(core.put(value), _registered=True)


def _check_live(refs) -> None:
    """Refs made before this process's last shutdown() name objects of a cluster
    connection that is gone: say so at once (instead of starting a new cluster
    that never heard of them and waiting forever)."""
    for r in refs:
        c = r._core
        if c is not None and c.closed:
            raise exceptions.RaySystemError(
                f"{r!r} was made before this process disconnected from its cluster "
                f"(shutdown()); objects do not outlive that connection. Make it "
                f"again after init().")


def _maybe_stale() -> bool:
    # only a process that disconnected (or reconnected) can hold stale refs
    return connection.state.sessions > 1 or not is_initialized()


def get(object_refs, *, timeout=None, progress=None):
    """The value(s) of one ObjectRef or a list of them; blocks until ready.
    `progress=True` draws a progress line on stderr while a list is waited for
    (beamlet's; BEAMLET_GET_PROGRESS=1 does it for long gets of many refs)."""
    if timeout is not None:
        if type(timeout) is bool or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number or None, got "
                             f"{timeout!r}.")
    if type(object_refs) is ObjectRef:
        if _maybe_stale():
            _check_live((object_refs,))
        return _core().get_values([object_refs.id], timeout)[0]
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if type(r) is not ObjectRef:
                raise TypeError(
                    f"get() expects an ObjectRef or a list of ObjectRefs; the list "
                    f"contains {type(r).__name__}: {r!r}.")
        if _maybe_stale():
            _check_live(object_refs)
        oids = [r.id for r in object_refs]
        if progress or (progress is None and len(oids) >= config.GET_PROGRESS_MIN_REFS
                        and _progress.enabled_by_env()):
            return _get_with_progress(_core(), oids, timeout,
                                      0.0 if progress else config.GET_PROGRESS_DELAY_S)
        return _core().get_values(oids, timeout)
    if isinstance(object_refs, ActorHandle):
        raise TypeError("get() of an actor handle: call a method, e.g. "
                        "get(handle.method.remote()).")
    if isinstance(object_refs, ObjectRefGenerator):
        raise TypeError("get() of an ObjectRefGenerator is not allowed (as in Ray): "
                        "iterate it (for ref in gen: get(ref)), or get(gen.completed()) "
                        "to wait for the task to end.")
    raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got "
                    f"{type(object_refs).__name__}.")


def _get_with_progress(core, oids, timeout, delay_s):
    """get_values(oids, timeout) as usual (its errors, timeout and stuck
    diagnosis unchanged), while a thread counts the refs that are ready (a
    WAIT that does not block, every REDRAW_S) for the progress line."""
    start = time.monotonic()
    unique = list(dict.fromkeys(oids))
    bar = _progress.ProgressLine(len(unique), sys.stderr, start, delay_s)
    done = threading.Event()
    count = [0]

    def watch():
        remaining = unique
        while remaining and not done.wait(_progress.REDRAW_S):
            try:
                ready = set(core.wait(remaining, len(remaining), 0))
            except Exception:      # the get itself reports what went wrong
                return
            remaining = [o for i, o in enumerate(remaining) if i not in ready]
            count[0] = len(unique) - len(remaining)
            if not done.is_set():
                bar.update(count[0], time.monotonic())
    watcher = threading.Thread(target=watch, daemon=True, name="beamlet-get-progress")
    watcher.start()
    ok = False
    try:
        values = core.get_values(oids, timeout)
        ok = True
        return values
    finally:
        done.set()
        watcher.join()
        bar.finish(len(unique) if ok else count[0], time.monotonic())


_ref_id = operator.attrgetter("id")


def _waitable_id(r) -> bytes:
    """What wait() waits on: a ref's object, or a generator's next item (ready
    once it is stored, or the generator ended: Ray's rule)."""
    return r.id if type(r) is ObjectRef else r._next_item_id()


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    """(ready, not_ready): the first `num_returns` refs that are ready (in input
    order) and the rest, once enough are ready or `timeout` seconds pass.  The
    list may hold ObjectRefGenerators too: one is ready when next() on it would
    return at once (its next item is stored, or it has ended)."""
    if isinstance(object_refs, (ObjectRef, ObjectRefGenerator)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got a single "
                        f"{type(object_refs).__name__}; wrap it in a list.")
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got "
                        f"{type(object_refs).__name__}.")
    # (checks written with map/set so that a loop of wait(num_returns=1) over 1,000
    # refs costs microseconds per call, not a Python-level pass per ref)
    kinds = set(map(type, object_refs))
    bad = kinds - {ObjectRef, ObjectRefGenerator}
    if bad:
        raise TypeError(f"wait() expects a list of ObjectRefs (or ObjectRefGenerators); "
                        f"it contains {bad.pop().__name__}.")
    oids = list(map(_ref_id if ObjectRefGenerator not in kinds else _waitable_id,
                    object_refs))
    if len(set(oids)) != len(oids):
        raise ValueError("wait() requires a list of unique ObjectRefs.")
    if type(num_returns) is not int or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative int, got {num_returns!r}.")
    if num_returns > len(object_refs):
        raise ValueError(f"num_returns ({num_returns}) cannot exceed the number of "
                         f"refs ({len(object_refs)}).")
    if timeout is not None and (type(timeout) is bool or
                                not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number or None, got "
                         f"{timeout!r}.")
    if _maybe_stale():
        _check_live([r for r in object_refs if type(r) is ObjectRef])
    core = _core()
    if not object_refs or num_returns == 0:
        return [], list(object_refs)
    idx = core.wait(oids, num_returns, timeout, bool(fetch_local))   # ascending indexes
    ready = [object_refs[i] for i in idx]
    not_ready = list(object_refs)
    for i in reversed(idx):
        del not_ready[i]
    return ready, not_ready


def cancel(object_ref, *, force=False, recursive=True):
    """Cancel the task that makes `object_ref` (or an ObjectRefGenerator's task);
    its get raises TaskCancelledError.  A running normal task gets a
    KeyboardInterrupt (force=True: its worker is killed); a running actor call is
    only flagged (get_runtime_context().is_canceled()), an async one's coroutine
    gets asyncio.CancelledError; force=True on an actor call is a ValueError, as
    in Ray.  recursive (default): the tasks it submitted are cancelled too."""
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.completed()
    if type(object_ref) is not ObjectRef:
        raise TypeError(f"cancel() expects an ObjectRef or an ObjectRefGenerator, got "
                        f"{type(object_ref).__name__}.")
    _check_live((object_ref,))
    refused = _core().cancel(object_ref.id, force, recursive)
    if isinstance(refused, str):
        raise ValueError(refused)


# ---------------------------------------------------------------- remote
def remote(*args, **kwargs):
    """@remote or @remote(**options) on a function (task) or class (actor)."""
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


# ---------------------------------------------------------------- cluster
def nodes() -> list:
    """Every node the cluster has known, alive or dead (Ray's format)."""
    _core()
    out = []
    for n in connection.gcs().nodes():
        alive = n.get("state") == "ALIVE"
        out.append({
            "NodeID": n["node_id"], "Alive": alive, "alive": alive,
            "NodeManagerAddress": n.get("address"),
            "NodeManagerHostname": n.get("hostname"),
            "NodeManagerSocketName": n.get("socket"),
            "Resources": n.get("resources_total", {}) if alive else {},
            "ObjectStoreSocketName": n.get("socket"),
            "IsHead": n.get("is_head") == "1",
            # the node's Prometheus endpoint (raylet/metrics.py), as Ray's
            "MetricsExportPort": int(n["metrics_export_port"])
            if n.get("metrics_export_port") else None,
        })
    return out


def _other_nodes():
    core = _core()
    me = core.node_id.hex()
    return [n for n in connection.gcs().nodes()
            if n["node_id"] != me and n.get("state") == "ALIVE"]


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
    """The cluster's task timeline as Chrome trace events (open the file in
    chrome://tracing or ui.perfetto.dev): one duration event per task execution
    on its worker's row (process: node, thread: worker pid), from the tasks
    running now and the finished ones the GCS keeps (TASK_EVENTS_PER_JOB per
    job).  With `filename`, written there (JSON) and None returned."""
    core = _core()
    live = core.call("state", "tasks", [], None, True)
    reader = StateReader(connection.gcs().r)
    records, _kept = reader.finished_tasks([j["_id"] for j in reader.jobs()])
    rows = state_rows.merge_tasks(live.get("rows", []),
                                  [state_rows.row_from_record(r) for r in records])
    events = trace_events(rows)
    if filename:
        with open(filename, "w") as f:
            json.dump(events, f)
        return None
    return events
