"""@remote on a function: RemoteFunction, its options, and task submission."""
import inspect

from . import connection
from ._private import config, ids
from ._private import options as opts
from ._private import protocol as P
from .submission import (FunctionExport, WithOptions, backpressure_wire, bind_check,
                         encode_args, resource_request, retry_wire, return_refs,
                         returns_wire, runtime_env_key, scheduling_wire, signature)


class RemoteFunction:
    def __init__(self, fn, options=None):
        self._function = fn
        self._name = f"{fn.__module__}.{fn.__qualname__}" if fn.__module__ != "__main__" \
            else fn.__qualname__
        self._options = dict(options or {})
        opts.validate(self._options, opts.TASK, f"remote function {self._name}")
        self._export = FunctionExport(fn, "remote function", self._name)
        self._sig = signature(fn)
        # as in Ray, a generator function streams its values unless told otherwise
        self._is_generator = inspect.isgeneratorfunction(fn)
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
        """These options (as @remote takes) for the next `.remote()`; the others
        stay as the decorator set them."""
        what = f"remote function {self._name}"
        opts.validate(options, opts.TASK, what)
        if "max_calls" in options:
            raise ValueError(f"Option 'max_calls' of {what} cannot be set in "
                             f".options(); give it to @remote.")
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
        core = connection.core()
        bind_check(self._sig, args, kwargs, self._name)
        key = self._export.ensure_exported(core, connection.gcs())
        env = runtime_env_key(options)
        keep = []
        wire_args = encode_args(core, args, kwargs, keep)
        num_returns = returns_wire(options.get("num_returns"), self._is_generator)
        max_retries = options.get("max_retries")
        if max_retries is None:
            max_retries = config.DEFAULT_MAX_RETRIES
        current = core.task
        spec = P.TaskSpec(
            ids.new_task_id(), core.job_id, P.NORMAL_TASK, key,
            options.get("name") or self._name, wire_args, list(kwargs),
            num_returns, resource_request(options), max_retries,
            retry_wire(options.get("retry_exceptions", False)),
            scheduling=scheduling_wire(options, current), caller=core.worker_id,
            parent=current.task_id, backpressure=backpressure_wire(options),
            runtime_env=env)
        core.submit(spec)
        refs = return_refs(spec)
        if keep:
            core.release(keep)
        return refs
