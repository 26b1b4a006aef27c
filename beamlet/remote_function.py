"""@remote on a function: RemoteFunction, its options, and task submission."""
import hashlib
import inspect

from ._private import config, ids, serialization
from ._private import protocol as P

TASK_OPTIONS = {"num_returns", "num_cpus", "num_gpus", "resources", "max_retries",
                "retry_exceptions", "scheduling_strategy", "memory", "name",
                "runtime_env", "max_calls", "placement_group",
                "placement_group_bundle_index", "_metadata", "accelerator_type",
                "label_selector", "enable_task_events", "object_store_memory"}


def check_options(options: dict, allowed: set, what: str) -> None:
    bad = set(options) - allowed
    if bad:
        raise ValueError(f"Invalid option(s) {sorted(bad)} for {what}; valid options "
                         f"are {sorted(allowed)}.")
    for k in ("num_cpus", "num_gpus", "memory"):
        v = options.get(k)
        if v is not None and (not isinstance(v, (int, float)) or v < 0):
            raise ValueError(f"{k} must be a non-negative number, got {v!r}.")
    res = options.get("resources")
    if res is not None:
        if not isinstance(res, dict):
            raise TypeError(f"resources must be a dict, got {type(res).__name__}.")
        for k, v in res.items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"Use num_{k.lower()}s=..., not resources={{'{k}': ...}}.")
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"resource {k!r} must be a non-negative number, got {v!r}.")
    nr = options.get("num_returns")
    if nr is not None and (not isinstance(nr, int) or nr < 0):
        raise ValueError(f"num_returns must be a non-negative int, got {nr!r}.")


def resource_request(options: dict, default_cpus=1.0) -> dict:
    req = {}
    cpus = options.get("num_cpus")
    cpus = default_cpus if cpus is None else cpus
    if cpus:
        req["CPU"] = float(cpus)
    if options.get("num_gpus"):
        req["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        req["memory"] = float(options["memory"])
    for k, v in (options.get("resources") or {}).items():
        if v:
            req[k] = float(v)
    return req


def scheduling_wire(options: dict):
    """The wire form of a task's placement constraint (see raylet.check_constraint)."""
    s = options.get("scheduling_strategy")
    pg = options.get("placement_group")
    if pg is not None and pg != "default":
        from .util.scheduling_strategies import PlacementGroupSchedulingStrategy
        s = PlacementGroupSchedulingStrategy(
            pg, options.get("placement_group_bundle_index", -1))
    if s is None or s == "DEFAULT":
        return None
    if isinstance(s, str):
        if s not in ("SPREAD",):
            raise ValueError(f"Unknown scheduling_strategy {s!r}: use 'DEFAULT', 'SPREAD' "
                             f"or a strategy object from beamlet.util.scheduling_strategies.")
        return [s]
    to_wire = getattr(s, "to_wire", None)
    if to_wire is None:
        raise ValueError(f"Unknown scheduling_strategy {s!r}.")
    return to_wire()


class FunctionExport:
    """A function or class pickled once per process, keyed by its content hash."""

    def __init__(self, obj):
        self.obj = obj
        self._key = None
        self._blob = None

    def key(self):
        if self._key is None:
            self._blob = serialization.dumps_function(self.obj)
            self._key = hashlib.sha1(self._blob).digest()[:16]
        return self._key

    def ensure_exported(self, core, gcs):
        key = self.key()
        if key not in core.exported:
            core.export(gcs, key, self._blob)
        return key


def bind_check(sig, args, kwargs, name):
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{name}.remote(): {e}") from None


def _signature(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


class WithOptions:
    """What `.options(...)` returns: `.remote()` with those options applied."""

    def __init__(self, target, submit, options):
        self._target = target
        self._submit = submit
        self._options = options

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def bind(self, *args, **kwargs):
        return self._target._bind(args, kwargs, self._options)

    def __call__(self, *args, **kwargs):
        return self._target(*args, **kwargs)   # raises the "use .remote" TypeError


class RemoteFunction:
    def __init__(self, fn, options=None):
        self._function = fn
        self._name = f"{fn.__module__}.{fn.__qualname__}" if fn.__module__ != "__main__" \
            else fn.__qualname__
        self._options = dict(options or {})
        check_options(self._options, TASK_OPTIONS, f"remote function {self._name}")
        self._export = FunctionExport(fn)
        self._sig = _signature(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "function")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = fn.__module__
        self.__wrapped__ = fn

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Remote function {self._name} cannot be called directly. Use "
            f"{self.__name__}.remote(...) to run it as a task (and beamlet.get() on the "
            f"result), or call the original function via {self.__name__}.__wrapped__.")

    def options(self, **options):
        check_options(options, TASK_OPTIONS, f"remote function {self._name}")
        return WithOptions(self, self._submit, {**self._options, **options})

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def bind(self, *args, **kwargs):
        """A DAG node that runs this function as a task at execute() (beamlet.dag)."""
        return self._bind(args, kwargs, {})

    def _bind(self, args, kwargs, options):
        from .dag.function_node import FunctionNode
        return FunctionNode(self, args, kwargs, options)

    def _submit(self, args, kwargs, options):
        from . import api
        from .object_ref import ObjectRef
        core = api._core()
        bind_check(self._sig, args, kwargs, self._name)
        key = self._export.ensure_exported(core, api._state.gcs)
        keep = []
        wire_args = core.encode_args(args, kwargs, keep)
        num_returns = options.get("num_returns", 1)
        max_retries = options.get("max_retries")
        if max_retries is None:
            max_retries = config.DEFAULT_MAX_RETRIES
        retry = options.get("retry_exceptions", False)
        if isinstance(retry, (list, tuple)):
            retry = [f"{c.__module__}.{c.__qualname__}" for c in retry]
        spec = P.TaskSpec(
            ids.new_task_id(), core.job_id, P.NORMAL_TASK, key,
            options.get("name") or self._name, wire_args, list(kwargs),
            num_returns, resource_request(options), max_retries, retry,
            scheduling=api._scheduling(options), caller=core.worker_id)
        core.submit(spec)
        refs = [ObjectRef(rid, _registered=True) for rid in spec.return_ids()]
        del keep
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs
