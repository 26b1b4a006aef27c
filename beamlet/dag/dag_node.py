"""DAGNode: the base of every node, and the executor that runs a graph.

A node holds what `.bind()` was given: positional and keyword arguments (in which
other nodes may appear, also nested in lists, tuples, sets and dicts), options,
and `deps` — nodes it needs run first without taking their values as arguments
(a method call's actor, the call bound before it on the same actor, an input
attribute's InputNode).

`execute(*args, **kwargs)` runs the graph below the node once, bottom-up: every
node reachable from it runs exactly once per execute (a node used twice is
shared), in an order where each node's arguments and deps ran before it.  A node
found as a top-level argument is passed as its result — an ObjectRef, which the
task then sees as its value; a node nested inside a container is passed as its
ObjectRef, as any ref nested in an argument is (Ray's rule).
"""
import uuid


class DAGNode:
    # True only on InputNode: lets the runner find the input without importing
    # input_node (which imports this module)
    _is_input_node = False

    def __init__(self, args=(), kwargs=None, options=None, deps=()):
        self._bound_args = tuple(args)
        self._bound_kwargs = dict(kwargs or {})
        self._bound_options = dict(options or {})
        self._deps = [d for d in deps if d is not None]
        self._stable_uuid = uuid.uuid4().hex

    # ---------------------------------------------------------------- reading
    def get_args(self) -> tuple:
        """The positional arguments given to bind()."""
        return self._bound_args

    def get_kwargs(self) -> dict:
        """The keyword arguments given to bind()."""
        return dict(self._bound_kwargs)

    def get_options(self) -> dict:
        """The options the node's task or actor is submitted with."""
        return dict(self._bound_options)

    def get_stable_uuid(self) -> str:
        """An id of this node, fixed when it was made."""
        return self._stable_uuid

    # ---------------------------------------------------------------- running
    def execute(self, *args, **kwargs):
        """Run the graph below this node once; returns this node's result: an
        ObjectRef for a task or method call, an actor handle for a bound actor, a
        list of those for a MultiOutputNode.  args/kwargs are the InputNode's
        value for this run."""
        return _run_graph(self, args, kwargs)

    def experimental_compile(self, *args, **kwargs):
        raise NotImplementedError(
            "experimental_compile(): compiled graphs (Ray's accelerated DAGs, "
            "ray.dag.compiled_dag_node) are not implemented in beamlet. Run the DAG "
            "with dag.execute(...), which submits its tasks and actor calls as usual.")

    def _execute_impl(self, run):
        """This node's result, given `run` (a _Run) holding the results of the
        nodes below it."""
        raise NotImplementedError

    def _children(self):
        """The nodes this one needs run first."""
        out = []
        _find_nodes(self._bound_args, out)
        _find_nodes(self._bound_kwargs, out)
        out.extend(self._deps)
        return out

    def __getattr__(self, name):
        raise AttributeError(misuse_message(self, name) or name)

    def __repr__(self):
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self) -> str:
        return ""


def misuse_message(node, name):
    """The error text for `.remote`/`.bind` on a node, None for other names."""
    kind = type(node).__name__
    if name == "remote":
        return (f".remote() cannot be used on a {kind} (a node of a DAG built with "
                f".bind()): run the DAG with .execute(...).")
    if name == "bind":
        return (f".bind() cannot be used on a {kind}: it is already a bound DAG node; "
                f"pass it as an argument of another .bind() instead.")
    return None


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _find_nodes(value, out):
    if isinstance(value, DAGNode):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _find_nodes(v, out)
    elif isinstance(value, _CONTAINERS):
        for v in value:
            _find_nodes(v, out)


def _replace_nodes(value, results):
    """`value` with every node in it replaced by its result (containers rebuilt
    only when they hold a node)."""
    if isinstance(value, DAGNode):
        return results[id(value)]
    if isinstance(value, dict):
        new = {k: _replace_nodes(v, results) for k, v in value.items()}
        if all(new[k] is value[k] for k in value):
            return value
        if type(value) is not dict:
            try:
                return type(value)(new)    # OrderedDict and the like
            except TypeError:
                pass
        return new
    if isinstance(value, _CONTAINERS):
        items = [_replace_nodes(v, results) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        if isinstance(value, tuple) and hasattr(value, "_fields"):   # namedtuple
            return type(value)(*items)
        return type(value)(items)
    return value


class _Run:
    """One execute(): the DAG's input and the results of the nodes run so far."""

    def __init__(self, input_args, input_kwargs):
        self.input_args = input_args
        self.input_kwargs = input_kwargs
        self.results = {}

    def value(self, node):
        return self.results[id(node)]

    def resolve(self, node):
        """The node's bound (args, kwargs) with nodes replaced by their results."""
        args = tuple(_replace_nodes(a, self.results) for a in node._bound_args)
        kwargs = {k: _replace_nodes(v, self.results) for k, v in node._bound_kwargs.items()}
        return args, kwargs


def _topological(root):
    """Every node reachable from root, each after the nodes it needs (iterative,
    so a long chain does not hit the recursion limit)."""
    order = []
    seen = {id(root)}
    stack = [(root, iter(root._children()))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append((child, iter(child._children())))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def _run_graph(root, args, kwargs):
    order = _topological(root)
    inputs = [n for n in order if n._is_input_node]
    if len(inputs) > 1:
        raise ValueError(f"A DAG has at most one InputNode; this one reads {len(inputs)} "
                         f"different InputNodes. Build it inside one `with InputNode() "
                         f"as inp:` block and use `inp` (or inp[i], inp.name) everywhere.")
    if inputs and not args and not kwargs:
        raise TypeError("This DAG reads an InputNode: pass its input to execute(), e.g. "
                        "dag.execute(value) or dag.execute(a, b, key=c).")
    if not inputs and (args or kwargs):
        raise TypeError(f"This DAG has no InputNode, so execute() takes no arguments "
                        f"(got {len(args)} positional, {len(kwargs)} keyword). Read "
                        f"inputs through `with InputNode() as inp:` when building it.")
    run = _Run(args, kwargs)
    for node in order:
        run.results[id(node)] = node._execute_impl(run)
    return run.results[id(root)]
