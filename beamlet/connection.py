"""The process's connection to a cluster: its core worker, its GCS client, its
namespace, and the cluster that init() started, if any.

This is the core layer of the driver API (with worker/core_worker.py and
object_ref.py): it imports no API module.  Every API call reaches the cluster
through `core()`.  A driver that has no cluster yet is connected on that first
call, as Ray does ("auto-init"): `core()` runs the hook api.py registers with
`set_auto_init` (init() with no arguments, which joins the cluster named by
BEAMLET_ADDRESS / RAY_ADDRESS or starts a local one).  A worker never
auto-initialises: its core worker exists for its whole life, and a closed one
means its raylet is gone.
"""
import threading

from . import exceptions
from ._private import config
from .gcs import keys
from .gcs.client import GcsClient
from .runtime_env.resolve import Resolver
from .worker import core_worker


class ConnectionState:
    """What init() set up in this process (drivers), or — in a worker — handles
    on the worker's own cluster, made when first needed.  Other modules reach it
    through the functions below; api.py's init()/shutdown() are the only ones that
    attach and detach a connection."""

    def __init__(self):
        self.node = None          # the Node init() started (None: joined one)
        self._gcs = None
        self.namespace = None     # the driver's namespace (workers: the job's)
        self.log_printer = None   # the driver's LogPrinter (log_printer.py)
        self.lock = threading.RLock()
        self.auto_init = None     # api.py's hook: connect on the first call
        self.sessions = 0         # connections this process made so far
        self.job_records = {}     # job id -> its GCS record (workers: read once)
        # called before a connection is forgotten, while its core worker can
        # still send (util/metrics.py sends the values it has not reported yet)
        self.detach_hooks = []
        # the runtime environment this process's tasks and actors inherit (the
        # job's in a driver, its own in a worker started for one): canonical
        # form and key (runtime_env/resolve.py); None: the plain environment
        self.runtime_env = None
        self.runtime_env_key = None
        self._env_resolver = None  # uploads environments to this cluster's GCS

    @property
    def env_resolver(self) -> Resolver:
        if self._env_resolver is None:
            self._env_resolver = Resolver(self.gcs)
        return self._env_resolver

    @property
    def gcs(self) -> GcsClient:
        if self._gcs is None:
            host, port, password = core().node_info["redis"]
            self._gcs = GcsClient(host, port, password)
        return self._gcs


state = ConnectionState()


class Attached:
    """What a connection is made of, in the order shutdown stops them."""
    __slots__ = ("log_printer", "core", "node", "gcs")

    def __init__(self, log_printer=None, core=None, node=None, gcs=None):
        self.log_printer = log_printer
        self.core = core
        self.node = node
        self.gcs = gcs


def set_auto_init(hook) -> None:
    """api.py registers init-with-defaults here (the core layer cannot import it)."""
    state.auto_init = hook


def lock():
    """Held by init() and shutdown() (and auto-init) while they change the state."""
    return state.lock


def is_connected() -> bool:
    core = core_worker.global_worker
    return core is not None and not core.closed


def core() -> core_worker.CoreWorker:
    """This process's core worker; a driver without one is connected first."""
    c = core_worker.global_worker
    if c is not None and not c.closed:
        return c
    if c is not None and c.role == "worker":
        raise exceptions.RaySystemError(
            "This worker lost its connection to its raylet (the node stopped).")
    if state.auto_init is None or not config.auto_connect_enabled():
        raise exceptions.RaySystemError(
            "beamlet is not initialized: call beamlet.init() first (auto-init is "
            "off: BEAMLET_ENABLE_AUTO_CONNECT / RAY_ENABLE_AUTO_CONNECT is '0').")
    with state.lock:
        if not is_connected():
            state.auto_init()
    return core_worker.global_worker


def gcs() -> GcsClient:
    """The GCS client of this process's cluster (connecting a driver first)."""
    return state.gcs


def started_cluster() -> bool:
    """Whether this process's init() started the cluster it is connected to."""
    return state.node is not None


def attach(parts: Attached, namespace: str, job_id: bytes, job_record: dict,
           resolver=None, runtime_env=None, runtime_env_key=None) -> None:
    """init() made these: they are now this process's connection (with the job's
    runtime environment, uploaded by `resolver`)."""
    state.node, state._gcs, state.log_printer = parts.node, parts.gcs, parts.log_printer
    state._env_resolver = resolver
    state.runtime_env, state.runtime_env_key = runtime_env or None, runtime_env_key
    state.namespace = namespace
    state.job_records[job_id] = {"namespace": namespace, **job_record}
    core_worker.global_worker = parts.core
    state.sessions += 1


def before_detach(hook) -> None:
    """Call `hook()` each time this process is about to disconnect (shutdown())."""
    if hook not in state.detach_hooks:
        state.detach_hooks.append(hook)


def detach() -> Attached:
    """Forget the connection (shutdown() stops what this returns)."""
    for hook in state.detach_hooks:
        try:
            hook()
        except Exception:   # (a hook's failure must not keep the cluster running)
            pass
    parts = Attached(state.log_printer, core_worker.global_worker, state.node,
                     state._gcs)
    state.node = state._gcs = state.log_printer = state.namespace = None
    state._env_resolver = state.runtime_env = state.runtime_env_key = None
    core_worker.global_worker = None
    return parts


def current_namespace() -> str:
    """The namespace of this process's job: the driver's init(namespace=...), or,
    inside a task or actor, the namespace of the job it runs for."""
    if state.namespace is not None:
        return state.namespace
    return job_setting("namespace", "")


def job_setting(field: str, default=None):
    """A field of this process's job record (beamlet:job:<job>): set by the
    driver's init(); read once per job inside tasks and actors."""
    c = core()
    record = state.job_records.get(c.job_id)
    if record is None:
        raw = state.gcs.r.hgetall(keys.job(c.job_id))
        record = state.job_records[c.job_id] = {
            k.decode(): v.decode() for k, v in raw.items()}
    return record.get(field) or default


def runtime_env():
    """(canonical environment, key) that this process's tasks and actors inherit;
    (None, None): the plain one."""
    return state.runtime_env, state.runtime_env_key


def set_runtime_env(env, key) -> None:
    """A worker started for runtime environment `key` runs in it (setup.py)."""
    state.runtime_env, state.runtime_env_key = env or None, key


def env_resolver() -> Resolver:
    """What uploads runtime environments to this process's cluster."""
    return state.env_resolver
