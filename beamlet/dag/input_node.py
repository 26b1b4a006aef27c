"""InputNode: the DAG's input, given at each execute(); InputAttributeNode: a part
of it (`inp[0]`, `inp["key"]`, `inp.name`).

`dag.execute(v)` with one positional value makes the InputNode `v` itself, so
`inp[0]`, `inp["k"]` and `inp.k` index into, look up in, or read an attribute of
`v`.  With several values or keywords, `dag.execute(1, 2, x=3)`, the InputNode is a
DAGInputData: `inp[0]` is 1, `inp[1]` is 2, `inp.x` and `inp["x"]` are 3.
"""
from .dag_node import DAGNode


class DAGInputData:
    """The input of an execute() given several positional or keyword values."""

    def __init__(self, *args, **kwargs):
        self._args = list(args)
        self._kwargs = kwargs

    def __getitem__(self, key):
        if isinstance(key, int):
            return self._args[key]
        if isinstance(key, str):
            return self._kwargs[key]
        raise TypeError(f"DAG input keys are ints (positional) or strs (keywords), "
                        f"got {type(key).__name__}.")

    def __repr__(self):
        return f"DAGInputData(args={self._args!r}, kwargs={self._kwargs!r})"


class InputNode(DAGNode):
    _is_input_node = True

    def __init__(self, *args, input_type=None, _other_args_to_resolve=None, **kwargs):
        if args or kwargs:
            raise ValueError("InputNode() takes no arguments: it stands for the input "
                             "given at execute time, e.g. dag.execute(value).")
        super().__init__()
        self._in_context = False
        self._attributes = {}
        self.input_type = input_type

    def __enter__(self):
        self._in_context = True
        return self

    def __exit__(self, *exc):
        return None

    def __getitem__(self, key):
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"InputNode[...] takes an int index or a str key, got "
                            f"{type(key).__name__}.")
        return self._attribute(key, "item")

    def __getattr__(self, name):
        if name.startswith("__") or "_attributes" not in self.__dict__:
            raise AttributeError(name)
        return self._attribute(name, "attr")

    def _attribute(self, key, how):
        node = self._attributes.get((key, how))
        if node is None:
            node = self._attributes[(key, how)] = InputAttributeNode(self, key, how)
        return node

    def _execute_impl(self, run):
        if not self._in_context:
            raise ValueError("An InputNode must be created as a context manager: "
                             "`with InputNode() as inp:` and the DAG built inside it.")
        if len(run.input_args) == 1 and not run.input_kwargs:
            return run.input_args[0]
        return DAGInputData(*run.input_args, **run.input_kwargs)

    def _describe(self):
        return ""


class InputAttributeNode(DAGNode):
    def __init__(self, input_node, key, how):
        self._input = input_node
        self._key = key
        self._how = how          # "item": inp[key]; "attr": inp.key
        super().__init__(deps=[input_node])

    def _execute_impl(self, run):
        value = run.value(self._input)
        try:
            if isinstance(value, DAGInputData) or self._how == "item":
                return value[self._key]
            return getattr(value, self._key)
        except (LookupError, AttributeError, TypeError) as e:
            raise ValueError(f"The DAG reads {self._describe()} of its input, which "
                             f"execute() was given as {value!r}: {e!r}") from e

    def _describe(self):
        return f"inp[{self._key!r}]" if self._how == "item" else f"inp.{self._key}"
