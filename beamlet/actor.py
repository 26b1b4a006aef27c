"""@remote on a class: ActorClass, ActorHandle, ActorMethod, method, exit_actor."""
import inspect
import json

from . import connection, exceptions
from ._private import ids
from ._private import options as opts
from ._private import protocol as P
from .gcs import keys
from .object_ref import ObjectRef
from .worker import core_worker
from .submission import (FunctionExport, WithOptions, backpressure_wire, call_site,
                         encode_args, resource_request, retry_wire, return_refs,
                         returns_wire, runtime_env_key, scheduling_wire, signature)

# exit_actor() raises it (kept here under its old name too)
ActorExit = exceptions.ActorExit

# Methods every actor has: a call that returns once the actor is created, and one
# that ends the actor after the calls queued before it (as Ray's).
READY_METHOD = "__ray_ready__"
TERMINATE_METHOD = "__ray_terminate__"
_BUILTIN_METHODS = {READY_METHOD: {"num_returns": 1, "is_async": False},
                    TERMINATE_METHOD: {"num_returns": 1, "is_async": False}}


def method(*args, **options):
    """@method(num_returns=..., concurrency_group=..., max_task_retries=..., ...)
    on an actor method: its defaults for every call (a call's .options() wins)."""
    if len(args) == 1 and not options and callable(args[0]):
        args[0].__beamlet_method_options__ = {}
        return args[0]
    if args:
        raise TypeError("@method takes keyword options only, e.g. "
                        "@method(num_returns=2).")
    opts.validate(options, opts.METHOD, "@method")

    def deco(fn):
        fn.__beamlet_method_options__ = dict(options)
        return fn
    return deco


def _method_table(cls) -> dict:
    """name -> {"num_returns", "is_async", and the @method defaults given} for the
    class's public methods (what a handle needs to submit calls)."""
    out = {}
    for name, fn in inspect.getmembers(cls, predicate=callable):
        if name.startswith("__") and name != "__call__":
            continue
        given = getattr(fn, "__beamlet_method_options__", {})
        is_generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        # as in Ray, a generator method streams its values unless told otherwise
        entry = {"num_returns": "streaming" if is_generator else 1,
                 "is_async": inspect.iscoroutinefunction(fn)
                 or inspect.isasyncgenfunction(fn)}
        for k in ("num_returns", "concurrency_group", "max_task_retries",
                  "_generator_backpressure_num_objects"):
            if given.get(k) is not None:
                entry[k] = given[k]
        if given.get("retry_exceptions"):
            entry["retry_exceptions"] = retry_wire(given["retry_exceptions"])  # (json)
        out[name] = entry
    return out


class ActorClass:
    def __init__(self, cls, options):
        self._cls = cls
        self._options = dict(options)
        opts.validate(self._options, opts.ACTOR, f"actor class {cls.__qualname__}")
        self._export = FunctionExport(cls, "actor class", cls.__qualname__)
        self._methods = _method_table(cls)
        self._is_async = any(m["is_async"] for m in self._methods.values())
        groups = self._options.get("concurrency_groups") or {}
        for name, m in self._methods.items():
            g = m.get("concurrency_group")
            if g is not None and g not in groups:
                raise ValueError(
                    f"Method {cls.__qualname__}.{name} is in concurrency group {g!r}, "
                    f"which the class does not define: add it to "
                    f"@remote(concurrency_groups={{{g!r}: N, ...}}).")
        self._sig = signature(cls.__init__) if "__init__" in cls.__dict__ or any(
            "__init__" in c.__dict__ for c in cls.__mro__[1:-1]) else None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor class {self.__name__} cannot be instantiated directly. "
                        f"Use {self.__name__}.remote(...) to create an actor.")

    def options(self, **options):
        """These options (as @remote takes) for the next `.remote()`."""
        what = f"actor class {self.__name__}"
        opts.validate(options, opts.ACTOR, what)
        if "concurrency_groups" in options:
            raise ValueError(f"Option 'concurrency_groups' of {what} cannot be set in "
                             f".options(); give it to @remote.")
        return WithOptions(self, self._create, {**self._options, **options})

    def remote(self, *args, **kwargs):
        return self._create(args, kwargs, self._options)

    def bind(self, *args, **kwargs):
        """A DAG node that creates this actor at each execute() (beamlet.dag)."""
        return self._bind(args, kwargs, {})

    def _bind(self, args, kwargs, options):
        from .dag.class_node import ClassNode
        return ClassNode(self, args, kwargs, options, set(self._methods))

    def _create(self, args, kwargs, options):
        core = connection.core()
        if self._sig is not None:
            try:
                self._sig.bind(None, *args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{self.__name__}.remote(): {e}") from None
        gcs = connection.gcs()
        name = options.get("name")
        if options.get("get_if_exists") and not name:
            raise ValueError("get_if_exists=True needs a name: use "
                             ".options(name=..., get_if_exists=True).")
        namespace = options.get("namespace")
        if namespace is None:
            namespace = connection.current_namespace()
        lifetime = options.get("lifetime") or \
            connection.job_setting("default_actor_lifetime")   # JobConfig's
        actor_id = ids.random_id(16)
        key = self._export.ensure_exported(core, gcs)
        env = runtime_env_key(options)
        keep = []
        wire_args = encode_args(core, args, kwargs, keep)
        explicit = any(options.get(k) is not None for k in
                       ("num_cpus", "num_gpus", "resources", "memory"))
        if explicit:
            placement = resource_request(options, default_cpus=0)
            lifetime_res = placement
        else:
            placement, lifetime_res = {"CPU": 1.0}, {}
        default_conc = options.get("max_concurrency")
        if default_conc is None:
            default_conc = 1000 if self._is_async else 1
        groups = dict(options.get("concurrency_groups") or {})
        actor_opts = {
            "name": name, "namespace": namespace, "lifetime": lifetime,
            "max_restarts": options.get("max_restarts") or 0,
            "max_task_retries": options.get("max_task_retries") or 0,
            # the raylet's window of calls in flight: every group's limit together
            # (the worker bounds each group by its own)
            "max_concurrency": default_conc + sum(groups.values()),
            "default_concurrency": default_conc, "concurrency_groups": groups,
            "is_async": self._is_async, "lifetime_resources": lifetime_res,
            "call_site": call_site(),
        }
        task_id = ids.new_task_id()
        creation_oid = ids.return_id(task_id, 1)
        # the record first, so whoever finds the name finds a complete record
        gcs.r.hset(keys.actor(actor_id), mapping={
            "class": self.__name__, "class_key": key.hex(),
            "creation_oid": creation_oid.hex(), "is_async": int(self._is_async),
            "methods": json.dumps(self._methods), "name": name or "",
            "namespace": namespace, "state": "PENDING_CREATION",
            "max_task_retries": actor_opts["max_task_retries"],
            "call_site": actor_opts["call_site"], "job": core.job_id.hex()})
        if name:
            holder = gcs.claim_actor_name(namespace, name, actor_id)
            if holder != actor_id and _actor_dead(gcs, holder):
                # the name's last holder is dead: take the name over (atomically,
                # so that of two racing creators only one wins)
                if _take_over_name(gcs, namespace, name, holder, actor_id):
                    holder = actor_id
            if holder != actor_id:
                gcs.r.delete(keys.actor(actor_id))
                if keep:
                    core.release(keep)
                if options.get("get_if_exists"):
                    return _handle_from_gcs(holder)
                raise ValueError(
                    f"An actor named {name!r} already exists in namespace "
                    f"{namespace!r}. Use a different name, get the existing actor "
                    f"with get_actor({name!r}"
                    f"{', namespace=%r' % namespace if options.get('namespace') else ''}"
                    f"), or pass get_if_exists=True to options().")
        spec = P.TaskSpec(
            task_id, core.job_id, P.ACTOR_CREATION_TASK, key, self.__name__, wire_args,
            list(kwargs), 1, placement, 0, False, actor_id=actor_id,
            actor_options=actor_opts, scheduling=scheduling_wire(options, core.task),
            caller=core.worker_id, parent=core.task.task_id, runtime_env=env)
        core.submit(spec)
        ref = ObjectRef(creation_oid, _registered=True)
        if keep:
            core.release(keep)
        return ActorHandle(actor_id, self.__name__, self._methods, ref,
                           actor_opts["max_task_retries"])


def make_actor_class(cls, options):
    return ActorClass(cls, options)


def _actor_dead(gcs, actor_id) -> bool:
    info = gcs.actor_info(actor_id)
    return not info or info.get("state") == "DEAD"


def _take_over_name(gcs, namespace, name, old_id, new_id) -> bool:
    """Replace `old_id` by `new_id` as the holder of `name`, unless someone else
    did first."""
    import redis  # only drivers get here; workers never import redis
    k = keys.actor_names(namespace)
    with gcs.r.pipeline() as p:
        try:
            p.watch(k)
            cur = p.hget(k, name)
            if cur is not None and cur.decode() != old_id.hex():
                p.unwatch()
                return False
            p.multi()
            p.hset(k, name, new_id.hex())
            p.execute()
            return True
        except redis.WatchError:
            return False


class ActorMethod:
    def __init__(self, handle, name, defaults):
        self._handle = handle
        self._name = name
        self._defaults = defaults       # the method's entry in the method table

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor method {self._name} cannot be called directly; use "
                        f"handle.{self._name}.remote(...).")

    def options(self, **options):
        """Per-call options: num_returns, concurrency_group, max_task_retries, name
        (and Ray's others, accepted: see docs/api.md)."""
        opts.validate(options, opts.METHOD, f"actor method {self._name}")
        return WithOptions(self, self._submit, options)

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, None)

    def bind(self, *args, **kwargs):
        """A DAG node that calls this method of the live actor (beamlet.dag)."""
        return self._bind(args, kwargs, {})

    def _bind(self, args, kwargs, options):
        from .dag.class_node import ClassMethodNode
        return ClassMethodNode(self._handle, self._name, args, kwargs, options)

    def _submit(self, args, kwargs, options):
        core = connection.core()
        h = self._handle
        d = self._defaults
        if options:
            d = {**d, **{k: v for k, v in options.items() if v is not None}}
        num_returns = returns_wire(d.get("num_returns", 1), False)
        retries = d.get("max_task_retries")
        if retries is None:
            retries = h._max_task_retries
        group = d.get("concurrency_group")
        keep = []
        wire_args = encode_args(core, args, kwargs, keep)
        spec = P.TaskSpec(
            ids.new_task_id(), core.job_id, P.ACTOR_TASK, b"",
            d.get("name") or f"{h._class_name}.{self._name}", wire_args, list(kwargs),
            num_returns, {}, retries, retry_wire(d.get("retry_exceptions", False)),
            actor_id=h._actor_id, method=self._name,
            actor_options=None if group is None else {"concurrency_group": group},
            caller=core.worker_id, parent=core.task.task_id,
            backpressure=backpressure_wire(d))
        # the refs first: a direct call's results are settled against them (the
        # answer may come before submit returns)
        refs = return_refs(spec)
        creation = h._creation_ref
        core.submit_actor_call(spec, creation.id if creation is not None else None)
        if keep:
            core.release(keep)
        return refs


class ActorHandle:
    def __init__(self, actor_id, class_name, methods, creation_ref, max_task_retries=0):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        # keeps the actor alive (None: a handle that does not, such as the one an
        # actor gets for itself from get_runtime_context().current_actor)
        self._creation_ref = creation_ref
        self._max_task_retries = max_task_retries

    def __getattr__(self, name):
        # Methods are made on access, not stored: a stored ActorMethod pointing
        # back at its handle would make a cycle, and the actor would only be freed
        # by the garbage collector instead of when the last handle goes away.
        m = self.__dict__.get("_methods", {}).get(name) or _BUILTIN_METHODS.get(name)
        if m is not None:
            return ActorMethod(self, name, m)
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"Actor {self.__dict__.get('_class_name')} has no method "
                             f"{name!r}.")

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._class_name, self._methods,
                              self._creation_ref, self._max_task_retries))

    def __repr__(self):
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)

    @property
    def _ray_actor_id(self):
        return ids.ActorID(self._actor_id)


def _handle_from_gcs(actor_id) -> ActorHandle:
    info = connection.gcs().actor_info(actor_id)
    if not info:
        raise ValueError(f"Actor {actor_id.hex()} does not exist.")
    ref = ObjectRef(bytes.fromhex(info["creation_oid"]))
    return ActorHandle(actor_id, info["class"], json.loads(info["methods"]), ref,
                       int(info.get("max_task_retries") or 0))


def handle_for_current_actor(hosted) -> ActorHandle:
    """A handle on the actor this process hosts (`hosted`: the worker's
    HostedActor), that does not keep the actor alive: held by the actor itself it
    would otherwise keep it alive forever."""
    return ActorHandle(hosted.actor_id, hosted.class_name, _method_table(hosted.cls),
                       None, hosted.max_task_retries)


def get_actor(name: str, namespace=None) -> ActorHandle:
    """The handle of the live actor called `name` in `namespace` (default: the
    driver's namespace)."""
    connection.core()
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty name, got {name!r}.")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"get_actor(): namespace must be a str, got "
                        f"{type(namespace).__name__}.")
    gcs = connection.gcs()
    ns = namespace if namespace is not None else connection.current_namespace()
    actor_id = gcs.lookup_actor_name(ns, name)
    if actor_id is None or gcs.actor_info(actor_id).get("state") == "DEAD":
        raise ValueError(f"Failed to look up actor with name {name!r} in namespace "
                         f"{ns!r}: no live actor has that name.")
    return _handle_from_gcs(actor_id)


def kill(actor, *, no_restart=True):
    """Kill an actor at once: its pending and later calls raise ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() expects an actor handle, got {type(actor).__name__}.")
    connection.core().call("kill_actor", actor._actor_id, bool(no_restart))


def exit_actor():
    """End the current actor from inside one of its methods."""
    core = core_worker.global_worker
    if core is None or core.role != "worker" or core.task.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor method.")
    raise ActorExit()


def current_namespace() -> str:
    return connection.current_namespace()
