"""The DAG API (Ray's `ray.dag`): build a lazy graph of tasks and actor calls with
`.bind()`, run it with `.execute()`.

    with InputNode() as inp:
        dag = combine.bind(f.bind(inp[0]), Model.bind(2).forward.bind(inp.x))
    ray.get(dag.execute(1, x=2))

`f.bind(...)` (a remote function), `Actor.bind(...)` (an actor class),
`node.method.bind(...)` (a method of a bound actor) and `handle.method.bind(...)`
(a method of a live actor) each make a node; nodes are arguments of other nodes,
also inside lists, tuples and dicts.  This package imports nothing of beamlet's
API: a node runs its target through the target's own `.options()` / `.remote()`.
"""
from .class_node import ClassMethodNode, ClassNode
from .dag_node import DAGNode
from .function_node import FunctionNode
from .input_node import DAGInputData, InputAttributeNode, InputNode
from .output_node import MultiOutputNode

__all__ = ["DAGNode", "FunctionNode", "ClassNode", "ClassMethodNode", "InputNode",
           "InputAttributeNode", "DAGInputData", "MultiOutputNode"]
