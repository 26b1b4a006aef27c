"""What remote functions and actors share to submit a task: the export of the
function or class (pickled once, size-checked), the wire form of arguments,
resources and placement, and the refs a submission returns.

Layer: above the core (core worker, ObjectRef), below remote_function.py and
actor.py; it imports no API module.
"""
import hashlib
import inspect
import os
import sys
import warnings

from . import connection
from ._private import config, serialization
from ._private import protocol as P
from .generator import ObjectRefGenerator
from .object_ref import ObjectRef

_MiB = 1024 * 1024


def call_site() -> str:
    """file:line of the user's code that called into beamlet (the first frame
    outside the beamlet package): recorded when an actor is created, so that a
    stuck get can say where the actor holding a CPU came from.  A frame walk of
    a few steps, once per creation."""
    f = sys._getframe(1)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if mod != "beamlet" and not mod.startswith("beamlet."):
            return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
        f = f.f_back
    return ""


class FunctionExport:
    """A function or class pickled once per process, keyed by its content hash."""

    def __init__(self, obj, kind: str, name: str):
        self.obj = obj
        self.kind = kind            # "remote function" | "actor class"
        self.name = name
        self._key = None
        self._blob = None

    def key(self):
        if self._key is None:
            blob = serialization.dumps_function(self.obj)
            check_export_size(len(blob), self.kind, self.name)
            self._blob = blob
            self._key = hashlib.sha1(blob).digest()[:16]
        return self._key

    def ensure_exported(self, core, gcs):
        key = self.key()
        if key not in core.exported:
            core.export(gcs, key, self._blob)
        return key


def check_export_size(size: int, kind: str, name: str) -> None:
    """Refuse (ValueError) or warn about a function or class whose pickle is large:
    it is stored in Redis and loaded by every worker that runs it, which is almost
    always a large array captured by mistake."""
    tip = ("Check that its definition does not capture a large array or other "
           "object from its scope (a global or a closure variable). Tip: put() the "
           "large object in the object store and pass its ref as an argument.")
    if size > config.FUNCTION_SIZE_ERROR_BYTES:
        raise ValueError(
            f"The {kind} {name} is too large to export: its pickle is "
            f"{size / _MiB:.0f} MiB, over the limit of "
            f"{config.FUNCTION_SIZE_ERROR_BYTES / _MiB:.0f} MiB "
            f"(BEAMLET_FUNCTION_SIZE_ERROR_BYTES). {tip}")
    if size > config.FUNCTION_SIZE_WARN_BYTES:
        warnings.warn(
            f"The {kind} {name} is very large: its pickle is {size / _MiB:.0f} MiB "
            f"(warning above {config.FUNCTION_SIZE_WARN_BYTES / _MiB:.0f} MiB, "
            f"BEAMLET_FUNCTION_SIZE_WARN_BYTES). {tip}", UserWarning, stacklevel=4)


def encode_args(core, args, kwargs, keep: list) -> list:
    """Wire arguments; large values are put first.  The ids of those are appended
    to `keep`, whose refs the caller drops (core.release) once the task is queued
    (from then on the raylet counts them for the task)."""
    out = []
    threshold = core.inline_threshold
    for a in (args if not kwargs else list(args) + list(kwargs.values())):
        if type(a) is ObjectRef:
            out.append([P.ARG_REF, a.id])
            continue
        s = serialization.serialize(a)
        if s.size < threshold:
            out.append([P.ARG_VALUE, s.to_bytes(), s.contained])
        else:
            oid = core.new_put_id()
            core.put_serialized(oid, s)
            core.ref_inc(oid, registered=True)
            keep.append(oid)
            out.append([P.ARG_REF, oid])
    return out


def return_refs(spec):
    """What `.remote()` returns: one ref, a list of them, None (num_returns=0), or
    an ObjectRefGenerator (streaming).  The raylet counts the returned refs as the
    submitter's (registered)."""
    n = spec.num_returns
    if n == 1 or n == P.DYNAMIC:
        return ObjectRef(spec.return_ids()[0], _registered=True)
    if n == P.STREAMING:
        return ObjectRefGenerator(ObjectRef(spec.return_ids()[0], _registered=True))
    if n == 0:
        return None
    return [ObjectRef(rid, _registered=True) for rid in spec.return_ids()]


_RETURNS_WIRE = {"streaming": P.STREAMING, "dynamic": P.DYNAMIC}


def returns_wire(num_returns, is_generator: bool) -> int:
    """TaskSpec.num_returns for the option (None: Ray's default, "streaming" for
    a generator function, else 1)."""
    if num_returns is None:
        return P.STREAMING if is_generator else 1
    return _RETURNS_WIRE.get(num_returns, num_returns)


def retry_wire(retry):
    """retry_exceptions as the worker checks it: a bool, or the classes' names."""
    if isinstance(retry, (list, tuple)):
        return [c if isinstance(c, str) else f"{c.__module__}.{c.__qualname__}"
                for c in retry]
    return bool(retry)


def backpressure_wire(options) -> int:
    """_generator_backpressure_num_objects (Ray's): 0 for none."""
    n = options.get("_generator_backpressure_num_objects")
    return n if n is not None and n > 0 else 0


def runtime_env_key(options: dict):
    """The key of the runtime environment a task or actor given `options` runs
    in: the submitter's own (the job's, or the running task's) when the options
    give none, else that merged with the one given, as Ray does (env_vars
    merged, other fields replaced); local paths in it are uploaded first."""
    env = options.get("runtime_env")
    parent, parent_key = connection.runtime_env()
    if not env:
        return parent_key
    return connection.env_resolver().child(parent, parent_key, env)[1]


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


def scheduling_wire(options: dict, current):
    """The wire form of a task's placement constraint (raylet/constraints.py reads
    it): None, ["SPREAD"], ["NODE", node_id, soft] or ["PG", pg_id, bundle_index |
    None] (+ True when its children are captured into the group).

    `current` is the submitter's TaskContext: a task that gives no strategy, run
    by a task or actor whose placement group captures its children, goes into
    that group (any bundle), as in Ray."""
    s = options.get("scheduling_strategy")
    pg = options.get("placement_group", "default")
    if s is None:
        if pg is None:
            return None                 # explicitly not in a group
        if pg != "default":             # the legacy options form
            return pg_wire(pg, options.get("placement_group_bundle_index", -1),
                           options.get("placement_group_capture_child_tasks"))
        parent = current.scheduling
        if parent is not None and len(parent) > 3 and parent[3]:
            return ["PG", parent[1], None, True]
        return None
    if s == "DEFAULT":
        return None
    if s == "SPREAD":
        return ["SPREAD"]
    return s.to_wire()


def pg_wire(pg, bundle_index=-1, capture=False):
    wire = ["PG", pg.id.binary(), None if bundle_index is None or bundle_index < 0
            else bundle_index]
    if capture:
        wire.append(True)
    return wire


def signature(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def bind_check(sig, args, kwargs, name):
    """A call that does not match the function's signature fails at the call site
    (as a local call would), not later in a worker."""
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{name}.remote(): {e}") from None


class WithOptions:
    """What `.options(...)` returns: `.remote()` with those options applied."""

    def __init__(self, target, submit, options):
        self._target = target
        self._submit = submit
        self._options = options

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def bind(self, *args, **kwargs):
        """A DAG node with these options (beamlet.dag)."""
        return self._target._bind(args, kwargs, self._options)

    def __call__(self, *args, **kwargs):
        return self._target(*args, **kwargs)   # raises the "use .remote" TypeError
