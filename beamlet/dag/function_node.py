"""FunctionNode: `f.bind(...)` on a remote function; runs as a task."""
from .dag_node import DAGNode


class FunctionNode(DAGNode):
    def __init__(self, remote_function, args, kwargs, options):
        self._body = remote_function
        super().__init__(args, kwargs, options)

    def _execute_impl(self, run):
        args, kwargs = run.resolve(self)
        target = self._body.options(**self._bound_options) if self._bound_options \
            else self._body
        return target.remote(*args, **kwargs)

    def _describe(self):
        return getattr(self._body, "__name__", "?")
