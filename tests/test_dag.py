"""The DAG API (beamlet.dag, Ray's ray.dag) on a real cluster: the examples of Ray's
DAG guide as they are written there, plus inputs, nesting, reuse and errors."""
import os

import pytest

import beamlet as ray
from beamlet.dag import ClassMethodNode, ClassNode, FunctionNode, InputNode, MultiOutputNode
from beamlet.dag.input_node import InputNode as InputNodeByPath
from beamlet.dag.output_node import MultiOutputNode as MultiOutputNodeByPath


@ray.remote
def func(src, inc=1):
    return src + inc


@ray.remote
def combine(x, y):
    return x + y


@ray.remote
class Actor:
    def __init__(self, init_value):
        self.i = init_value

    def inc(self, x):
        self.i += x

    def get(self):
        return self.i

    def pid(self):
        return os.getpid()


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def value(self):
        return self.n


def test_module_paths_match_ray():
    assert InputNodeByPath is InputNode and MultiOutputNodeByPath is MultiOutputNode


# ------------------------------------------------------------ Ray's guide, verbatim
def test_guide_functions(shared_cluster):
    a_ref = func.bind(1, inc=2)
    assert isinstance(a_ref, FunctionNode)
    assert ray.get(a_ref.execute()) == 3
    b_ref = func.bind(a_ref, inc=3)
    assert ray.get(b_ref.execute()) == 6
    c_ref = func.bind(b_ref, inc=a_ref)
    assert ray.get(c_ref.execute()) == 9


def test_guide_actors_and_call_chain(shared_cluster):
    a1 = Actor.bind(10)
    assert isinstance(a1, ClassNode)
    val = a1.get.bind()
    assert isinstance(val, ClassMethodNode)
    assert ray.get(val.execute()) == 10
    a2 = Actor.bind(10)
    a1.inc.bind(2)      # calls bound on a1 run, in order, before the next one
    a1.inc.bind(4)
    a2.inc.bind(6)
    dag = combine.bind(a1.get.bind(), a2.get.bind())
    assert ray.get(dag.execute()) == 32


def test_guide_input_node(shared_cluster):
    @ray.remote
    def a(user_input):
        return user_input * 2

    @ray.remote
    def b(user_input):
        return user_input + 1

    with InputNode() as dag_input:
        dag = combine.bind(a.bind(dag_input), b.bind(dag_input))
    assert ray.get(dag.execute(2)) == 7
    assert ray.get(dag.execute(3)) == 10


def test_guide_multi_output_node(shared_cluster):
    with InputNode() as input_data:
        dag = MultiOutputNode([func.bind(input_data["x"]), func.bind(input_data["y"])])
    refs = dag.execute({"x": 1, "y": 2})
    assert isinstance(refs, list) and all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [2, 3]


def test_guide_live_actor_is_reused_across_executes(shared_cluster):
    worker = Counter.remote()
    with InputNode() as inp:
        dag = MultiOutputNode([worker.incr.bind(), func.bind(inp)])
    assert ray.get(dag.execute(1)) == [1, 2]
    assert ray.get(dag.execute(2)) == [2, 3]
    assert ray.get(dag.execute(3)) == [3, 4]
    assert ray.get(worker.value.remote()) == 3


# ------------------------------------------------------------ inputs
class Obj:
    def __init__(self, m1, m2):
        self.m1, self.m2 = m1, m2


def test_input_index_attribute_and_kwargs(shared_cluster):
    with InputNode() as inp:
        dag = combine.bind(inp[0], inp.x)
    assert ray.get(dag.execute(1, x=2)) == 3            # positional + keyword
    with InputNode() as inp:
        by_attr = combine.bind(inp.m1, inp.m2)
        by_index = combine.bind(inp[0], inp[1])
        by_key = combine.bind(inp["m1"], inp["m2"])
    assert ray.get(by_attr.execute(Obj(10, 20))) == 30  # one object: its attributes
    assert ray.get(by_index.execute([2, 3])) == 5        # one list: its items
    assert ray.get(by_index.execute(4, 5)) == 9          # several values
    assert ray.get(by_key.execute({"m1": 1, "m2": 7})) == 8
    assert ray.get(by_key.execute(m1=3, m2=4)) == 7      # keywords by key
    assert inp[0] is inp[0] and inp.m1 is inp.m1         # one node per key


def test_input_node_passed_whole_with_several_values(shared_cluster):
    @ray.remote
    def show(d):
        return (d[0], d[1], d["k"])

    with InputNode() as inp:
        dag = show.bind(inp)
    assert ray.get(dag.execute(1, 2, k=3)) == (1, 2, 3)


# ------------------------------------------------------------ graph shape
def test_nested_nodes_in_lists_and_dicts_arrive_as_refs(shared_cluster):
    @ray.remote
    def collect(items, mapping, top):
        # as with any ref nested in an argument, nested nodes arrive as refs
        assert all(isinstance(r, ray.ObjectRef) for r in items)
        assert isinstance(mapping["b"], ray.ObjectRef)
        return sum(ray.get(items)) + ray.get(mapping["b"]) + top + mapping["c"]

    with InputNode() as inp:
        x = func.bind(inp, inc=1)
        dag = collect.bind([x, func.bind(inp, inc=2)], {"b": func.bind(x), "c": 100}, x)
    # inp=1: x=2, items=[2, 3], b=3, top=2, c=100
    assert ray.get(dag.execute(1)) == 2 + 3 + 3 + 2 + 100


def test_shared_node_runs_once_per_execute(shared_cluster):
    counter = Counter.remote()
    c = counter.incr.bind()
    dag = combine.bind(c, func.bind(c, inc=0))   # c used twice
    assert ray.get(dag.execute()) == 2           # 1 + 1: incr ran once
    assert ray.get(dag.execute()) == 4           # 2 + 2
    assert ray.get(counter.value.remote()) == 2


def test_bound_actor_is_created_per_execute(shared_cluster):
    # Ray's DAG guide: "The Actor will be instantiated every time the node is
    # executed" — state does not carry over between executes.
    node = Counter.bind()
    dag = node.incr.bind()
    assert [ray.get(dag.execute()) for _ in range(3)] == [1, 1, 1]
    h1, h2 = node.execute(), node.execute()       # a ClassNode root: actor handles
    assert isinstance(h1, type(Counter.remote())) and h1 != h2
    assert ray.get([h1.incr.remote(), h1.incr.remote(), h2.incr.remote()]) == [1, 2, 1]


def test_one_actor_per_class_node_within_an_execute(shared_cluster):
    a = Actor.bind(0)
    dag = MultiOutputNode([a.pid.bind(), a.pid.bind(), Actor.bind(0).pid.bind()])
    p1, p2, p3 = ray.get(dag.execute())
    assert p1 == p2 and p3 != p1


def test_options_on_bind(shared_cluster):
    @ray.remote
    def two(x):
        return x, -x

    refs = two.options(num_returns=2).bind(5).execute()
    assert ray.get(refs) == [5, -5]

    @ray.remote
    class Pair:
        @ray.method(num_returns=2)
        def pair(self, v):
            return v, v + 1

        def one(self, v):
            return [v]

    p = Pair.options(max_concurrency=2).bind()
    assert ray.get(p.pair.bind(1).execute()) == [1, 2]
    assert ray.get(p.one.options(num_returns=1).bind(3).execute()) == [3]


def test_error_in_a_node_surfaces_at_get(shared_cluster):
    @ray.remote
    def boom(x):
        raise KeyError(f"bad {x}")

    dag = func.bind(boom.bind(1))
    with pytest.raises(KeyError, match="bad 1"):
        ray.get(dag.execute())


def test_long_chain_does_not_recurse(shared_cluster):
    node = func.bind(0)
    for _ in range(1500):        # deeper than Python's recursion limit
        node = func.bind(node)
    assert ray.get(node.execute()) == 1501


# ------------------------------------------------------------ misuse
def test_experimental_compile_names_compiled_graphs(shared_cluster):
    with pytest.raises(NotImplementedError, match="compiled graphs"):
        func.bind(1).experimental_compile()


def test_clear_errors_on_misuse(shared_cluster):
    node = func.bind(1)
    with pytest.raises(AttributeError, match=r"\.execute"):
        node.remote()
    with pytest.raises(AttributeError, match="already a bound DAG node"):
        node.bind()
    a = Actor.bind(1)
    with pytest.raises(AttributeError, match="has no method 'nope'"):
        a.nope.bind()
    with pytest.raises(AttributeError, match=r"\.bind\(\.\.\.\)"):
        a.get.remote()
    with pytest.raises(TypeError, match="list of DAG nodes"):
        MultiOutputNode(node)
    with pytest.raises(TypeError, match="item 1"):
        MultiOutputNode([node, 3])
    with pytest.raises(ValueError, match="takes no arguments"):
        InputNode(1)
    with InputNode() as inp:
        with pytest.raises(ValueError, match="constructor"):
            Actor.bind(inp[0])
        with_input = func.bind(inp)
    with pytest.raises(TypeError, match="pass its input"):
        with_input.execute()
    with pytest.raises(TypeError, match="no InputNode"):
        node.execute(5)
    with pytest.raises(ValueError, match="at most one InputNode"):
        with InputNode() as other:
            combine.bind(inp, other).execute(1)
    loose = InputNode()
    with pytest.raises(ValueError, match="context manager"):
        func.bind(loose).execute(1)
    with InputNode() as inp:
        dag = func.bind(inp.missing)
    with pytest.raises(ValueError, match="inp.missing"):
        dag.execute(Obj(1, 2))
