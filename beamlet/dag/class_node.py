"""ClassNode (`Actor.bind(...)`) and ClassMethodNode (`node.method.bind(...)` on a
bound actor, or `handle.method.bind(...)` on a live actor).

As in Ray, a ClassNode creates a new actor each time a DAG containing it is
executed ("the actor will be instantiated every time the node is executed"); the
actor lives while the run's calls need it.  To keep state across executes, bind
methods of a live actor (`handle = Actor.remote(); handle.method.bind(...)`).

Calls bound on one ClassNode form a chain: each remembers the call bound before
it, which runs first.  So `a.inc.bind(2); a.inc.bind(4); dag = a.get.bind()`
executes inc(2), inc(4), then get() on the same actor, in that order.
"""
from .dag_node import DAGNode, misuse_message


class ClassNode(DAGNode):
    def __init__(self, actor_class, args, kwargs, options, methods=None):
        from .input_node import InputAttributeNode, InputNode
        self._body = actor_class
        self._methods = methods          # method names (None: not known)
        self._last_call = None
        super().__init__(args, kwargs, options)
        if any(isinstance(n, (InputNode, InputAttributeNode)) for n in self._children()):
            raise ValueError(
                f"{self._describe()}.bind(): an InputNode cannot be an argument of an "
                f"actor's constructor — the DAG's input exists only when it is "
                f"executed. Pass it to a method instead: actor.method.bind(inp).")

    def _execute_impl(self, run):
        args, kwargs = run.resolve(self)
        target = self._body.options(**self._bound_options) if self._bound_options \
            else self._body
        return target.remote(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        msg = misuse_message(self, name)
        if msg:
            raise AttributeError(msg)
        methods = self.__dict__.get("_methods")
        if methods is not None and name not in methods:
            raise AttributeError(f"Actor class {self._describe()} has no method {name!r} "
                                 f"(its methods: {', '.join(sorted(methods)) or 'none'}).")
        return _UnboundMethod(self, name, {})

    def _describe(self):
        return getattr(self.__dict__.get("_body"), "__name__", "?")


class _UnboundMethod:
    """`node.method` on a ClassNode: `.bind(...)` makes the call's node."""

    def __init__(self, parent, name, options):
        self._parent = parent
        self._name = name
        self._options = options

    def options(self, **options):
        return _UnboundMethod(self._parent, self._name, {**self._options, **options})

    def bind(self, *args, **kwargs):
        parent = self._parent
        node = ClassMethodNode(parent, self._name, args, kwargs, self._options,
                               prev=parent._last_call)
        parent._last_call = node
        return node

    def remote(self, *args, **kwargs):
        raise AttributeError(f".remote() cannot be used on a method of a bound actor "
                             f"(a ClassNode): use .{self._name}.bind(...) to add the call "
                             f"to the DAG, then run it with .execute().")


class ClassMethodNode(DAGNode):
    def __init__(self, parent, method_name, args, kwargs, options, prev=None):
        # parent: a ClassNode (bound actor, created per execute) or a live handle
        self._parent = parent
        self._method_name = method_name
        deps = [parent, prev] if isinstance(parent, ClassNode) else []
        super().__init__(args, kwargs, options, deps)

    def _execute_impl(self, run):
        parent = self._parent
        handle = run.value(parent) if isinstance(parent, ClassNode) else parent
        method = getattr(handle, self._method_name)
        if self._bound_options:
            method = method.options(**self._bound_options)
        args, kwargs = run.resolve(self)
        return method.remote(*args, **kwargs)

    def get_method_name(self) -> str:
        return self._method_name

    def _describe(self):
        p = self._parent
        owner = p._describe() if isinstance(p, ClassNode) else repr(p)
        return f"{owner}.{self._method_name}"
