"""MultiOutputNode: a DAG with several outputs; execute() returns a list."""
from .dag_node import DAGNode


class MultiOutputNode(DAGNode):
    def __init__(self, args, other_args_to_resolve=None):
        if not isinstance(args, (list, tuple)):
            raise TypeError(f"MultiOutputNode takes a list of DAG nodes, got "
                            f"{type(args).__name__}.")
        for i, a in enumerate(args):
            if not isinstance(a, DAGNode):
                raise TypeError(f"MultiOutputNode takes a list of DAG nodes; item {i} "
                                f"is a {type(a).__name__}. Make it a node with .bind().")
        super().__init__(args)

    def _execute_impl(self, run):
        return [run.value(n) for n in self._bound_args]

    def _describe(self):
        return f"{len(self._bound_args)} outputs"
