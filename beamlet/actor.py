"""@remote on a class: ActorClass, ActorHandle, ActorMethod, exit_actor."""
import inspect
import json


from ._private import ids
from ._private import protocol as P
from .gcs import keys
from .object_ref import ObjectRef
from .remote_function import (WithOptions, FunctionExport, check_options,
                              resource_request, _signature)

ACTOR_OPTIONS = {"num_cpus", "num_gpus", "resources", "name", "namespace", "lifetime",
                 "max_restarts", "max_task_retries", "max_concurrency",
                 "get_if_exists", "scheduling_strategy", "memory", "runtime_env",
                 "max_pending_calls", "concurrency_groups", "placement_group",
                 "placement_group_bundle_index", "_metadata", "enable_task_events",
                 "label_selector", "accelerator_type", "object_store_memory"}


def _method_table(cls) -> dict:
    """name -> {"num_returns": n, "is_async": bool} for the class's public methods."""
    out = {}
    for name, fn in inspect.getmembers(cls, predicate=callable):
        if name.startswith("__") and name != "__call__":
            continue
        opts = getattr(fn, "__beamlet_method_options__", {})
        out[name] = {"num_returns": opts.get("num_returns", 1),
                     "is_async": inspect.iscoroutinefunction(fn)
                     or inspect.isasyncgenfunction(fn)}
    return out


class ActorClass:
    def __init__(self, cls, options):
        self._cls = cls
        self._options = dict(options)
        check_options(self._options, ACTOR_OPTIONS, f"actor class {cls.__qualname__}")
        self._export = FunctionExport(cls)
        self._methods = _method_table(cls)
        self._is_async = any(m["is_async"] for m in self._methods.values())
        self._sig = _signature(cls.__init__) if "__init__" in cls.__dict__ or any(
            "__init__" in c.__dict__ for c in cls.__mro__[1:-1]) else None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor class {self.__name__} cannot be instantiated directly. "
                        f"Use {self.__name__}.remote(...) to create an actor.")

    def options(self, **options):
        check_options(options, ACTOR_OPTIONS, f"actor class {self.__name__}")
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
        from . import api
        core = api._core()
        if self._sig is not None:
            try:
                self._sig.bind(None, *args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{self.__name__}.remote(): {e}") from None
        gcs = api._state.gcs
        _check_actor_options(options)
        name = options.get("name")
        namespace = options.get("namespace")
        if namespace is None:
            namespace = current_namespace()
        lifetime = options.get("lifetime")
        actor_id = ids.random_id(16)
        key = self._export.ensure_exported(core, gcs)
        keep = []
        wire_args = core.encode_args(args, kwargs, keep)
        explicit = any(options.get(k) is not None for k in
                       ("num_cpus", "num_gpus", "resources", "memory"))
        if explicit:
            placement = resource_request(options, default_cpus=0)
            lifetime_res = placement
        else:
            placement, lifetime_res = {"CPU": 1.0}, {}
        max_conc = options.get("max_concurrency")
        if max_conc is None:
            max_conc = 1000 if self._is_async else 1
        if not isinstance(max_conc, int) or max_conc < 1:
            raise ValueError(f"max_concurrency must be an int >= 1, got {max_conc!r}.")
        actor_opts = {
            "name": name, "namespace": namespace, "lifetime": lifetime,
            "max_restarts": options.get("max_restarts") or 0,
            "max_task_retries": options.get("max_task_retries") or 0,
            "max_concurrency": max_conc, "is_async": self._is_async,
            "lifetime_resources": lifetime_res,
        }
        task_id = ids.new_task_id()
        creation_oid = ids.return_id(task_id, 1)
        # the record first, so whoever finds the name finds a complete record
        gcs.r.hset(keys.actor(actor_id), mapping={
            "class": self.__name__, "class_key": key.hex(),
            "creation_oid": creation_oid.hex(), "is_async": int(self._is_async),
            "methods": json.dumps(self._methods), "name": name or "",
            "namespace": namespace, "state": "PENDING_CREATION",
            "max_task_retries": actor_opts["max_task_retries"]})
        if name:
            holder = gcs.claim_actor_name(namespace, name, actor_id)
            if holder != actor_id and _actor_dead(gcs, holder):
                # the name's last holder is dead: take the name over (atomically,
                # so that of two racing creators only one wins)
                if _take_over_name(gcs, namespace, name, holder, actor_id):
                    holder = actor_id
            if holder != actor_id:
                gcs.r.delete(keys.actor(actor_id))
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
            actor_options=actor_opts, scheduling=api._scheduling(options),
            caller=core.worker_id)
        core.submit(spec)
        ref = ObjectRef(creation_oid, _registered=True)
        del keep
        return ActorHandle(actor_id, self.__name__, self._methods, ref,
                           actor_opts["max_task_retries"])


def make_actor_class(cls, options):
    return ActorClass(cls, options)


def _check_actor_options(options):
    """Clear errors for bad actor options (those check_options does not cover)."""
    name = options.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"An actor name must be a non-empty string, got {name!r}.")
    ns = options.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not ns):
        raise ValueError(f"namespace must be a non-empty string, got {ns!r}.")
    lifetime = options.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be 'detached', 'non_detached' or None, got "
                         f"{lifetime!r}.")
    for k in ("max_restarts", "max_task_retries"):
        v = options.get(k)
        if v is not None and (type(v) is not int or v < -1):
            raise ValueError(f"{k} must be an int >= -1 (-1: unlimited), got {v!r}.")
    if options.get("get_if_exists") and not name:
        raise ValueError("get_if_exists=True needs a name: use "
                         ".options(name=..., get_if_exists=True).")


_job_namespaces = {}


def current_namespace() -> str:
    """The namespace of this process's job: the driver's init(namespace=...), or,
    inside a task or actor, the namespace of the job it runs for."""
    from . import api
    if api._state.namespace is not None:
        return api._state.namespace
    core = api._core()
    ns = _job_namespaces.get(core.job_id)
    if ns is None:
        v = api._state.gcs.r.hget(keys.job(core.job_id), "namespace")
        ns = _job_namespaces[core.job_id] = v.decode() if v else ""
    return ns


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
    def __init__(self, handle, name, num_returns):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor method {self._name} cannot be called directly; use "
                        f"handle.{self._name}.remote(...).")

    def options(self, **options):
        bad = set(options) - {"num_returns", "name", "max_task_retries",
                              "retry_exceptions", "concurrency_group"}
        if bad:
            raise ValueError(f"Invalid option(s) {sorted(bad)} for an actor method.")
        parent = self

        class _Bound:
            def remote(self_inner, *args, **kwargs):
                return parent._submit(args, kwargs,
                                      options.get("num_returns", parent._num_returns))
        return _Bound()

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._num_returns)

    def bind(self, *args, **kwargs):
        """A DAG node that calls this method of the live actor (beamlet.dag)."""
        from .dag.class_node import ClassMethodNode
        return ClassMethodNode(self._handle, self._name, args, kwargs, {})

    def _submit(self, args, kwargs, num_returns):
        from . import api
        core = api._core()
        h = self._handle
        keep = []
        wire_args = core.encode_args(args, kwargs, keep)
        spec = P.TaskSpec(
            ids.new_task_id(), core.job_id, P.ACTOR_TASK, b"",
            f"{h._class_name}.{self._name}", wire_args, list(kwargs), num_returns,
            {}, h._max_task_retries, False, actor_id=h._actor_id, method=self._name,
            caller=core.worker_id)
        core.submit(spec)
        refs = [ObjectRef(rid, _registered=True) for rid in spec.return_ids()]
        del keep
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs


class ActorHandle:
    def __init__(self, actor_id, class_name, methods, creation_ref, max_task_retries=0):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._creation_ref = creation_ref    # keeps the actor alive
        self._max_task_retries = max_task_retries

    def __getattr__(self, name):
        # Methods are made on access, not stored: a stored ActorMethod pointing
        # back at its handle would make a cycle, and the actor would only be freed
        # by the garbage collector instead of when the last handle goes away.
        m = self.__dict__.get("_methods", {}).get(name)
        if m is not None:
            return ActorMethod(self, name, m["num_returns"])
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
    from . import api
    info = api._state.gcs.actor_info(actor_id)
    if not info:
        raise ValueError(f"Actor {actor_id.hex()} does not exist.")
    ref = ObjectRef(bytes.fromhex(info["creation_oid"]))
    return ActorHandle(actor_id, info["class"], json.loads(info["methods"]), ref,
                       int(info.get("max_task_retries") or 0))


def get_actor(name: str, namespace=None) -> ActorHandle:
    """The handle of the live actor called `name` in `namespace` (default: the
    driver's namespace)."""
    from . import api
    api._core()
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty name, got {name!r}.")
    ns = namespace if namespace is not None else current_namespace()
    actor_id = api._state.gcs.lookup_actor_name(ns, name)
    if actor_id is None or api._state.gcs.actor_info(actor_id).get("state") == "DEAD":
        raise ValueError(f"Failed to look up actor with name {name!r} in namespace "
                         f"{ns!r}: no live actor has that name.")
    return _handle_from_gcs(actor_id)


def kill(actor, *, no_restart=True):
    """Kill an actor at once: its pending and later calls raise ActorDiedError."""
    from . import api
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() expects an actor handle, got {type(actor).__name__}.")
    api._core().call("kill_actor", actor._actor_id, bool(no_restart))


def exit_actor():
    """End the current actor from inside one of its methods."""
    from .worker import core_worker
    core = core_worker.global_worker
    if core is None or core.role != "worker" or core.task.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor method.")
    raise ActorExit()


class ActorExit(BaseException):
    """Raised by exit_actor() to end the actor after the current call.  A
    BaseException, so that a method's `except Exception` does not swallow it."""
