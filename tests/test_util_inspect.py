"""beamlet.util.inspect_serializability and beamlet.util.list_named_actors."""
import io
import sys
import threading

import cloudpickle
import pytest

import beamlet as ray
from beamlet.util import inspect_serializability, list_named_actors
from beamlet.util.check_serialize import FailureTuple

LOCK = threading.Lock()          # a lock cannot be pickled


def uses_global_lock():
    with LOCK:
        return 1


def make_closure():
    lock = threading.Lock()

    def inner():
        return lock
    return inner


class Holder:
    def __init__(self):
        self.fine = [1, 2, 3]
        self.bad = threading.Lock()


@pytest.fixture(autouse=True)
def by_value():
    """Pickle this module's functions by value, as those of a script's __main__ are
    (by reference they would not capture their globals)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def report(obj, **kw):
    out = io.StringIO()
    ok, failures = inspect_serializability(obj, print_file=out, **kw)
    return ok, failures, out.getvalue()


def test_serializable_object():
    ok, failures, text = report({"a": [1, 2]}, name="d")
    assert ok is True and failures == set()
    assert "Checking Serializability of" in text and "FAIL" not in text


def test_global_of_a_function_is_found():
    ok, failures, text = report(uses_global_lock)
    assert ok is False
    [f] = failures
    assert isinstance(f, FailureTuple)
    assert f.name == "LOCK" and f.obj is LOCK and f.parent is uses_global_lock
    assert "Detected 1 global variables" in text
    assert "!!! FAIL serialization" in text and "was found to be non-serializable" in text
    assert "FailTuple(LOCK" in text


def test_closure_variable_is_found():
    fn = make_closure()
    ok, failures, text = report(fn)
    assert not ok and [f.name for f in failures] == ["lock"]
    assert "nonlocal variables" in text


def test_attribute_of_an_object_and_item_of_a_list():
    h = Holder()
    ok, failures, _ = report(h)
    assert not ok and {(f.name, f.parent is h) for f in failures} == {("bad", True)}
    ok, failures, _ = report([1, h], name="stuff")
    assert not ok and [f.name for f in failures] == ["bad"]


def test_depth_limits_the_walk():
    h = Holder()
    ok, failures, text = report([h], depth=0, name="top")
    assert not ok and [(f.name, f.obj) for f in failures] == [("top", [h])]
    with pytest.raises(ValueError, match="depth"):
        inspect_serializability(h, depth=-1)


# ------------------------------------------------------------ list_named_actors
@ray.remote
class Named:
    def ping(self):
        return "pong"


def test_list_named_actors():
    ray.init(num_cpus=1, namespace="here")
    try:
        a = Named.options(name="alpha").remote()
        b = Named.options(name="beta", namespace="elsewhere").remote()
        anonymous = Named.remote()
        ray.get([a.ping.remote(), b.ping.remote(), anonymous.ping.remote()])
        assert sorted(list_named_actors()) == ["alpha"]
        everywhere = list_named_actors(all_namespaces=True)
        assert {"name": "alpha", "namespace": "here"} in everywhere
        assert {"name": "beta", "namespace": "elsewhere"} in everywhere
        assert all(set(e) == {"name", "namespace"} for e in everywhere)
        ray.kill(a)
        from conftest import wait_for
        wait_for(lambda: "alpha" not in list_named_actors(), msg="a killed actor to go")
        assert {"name": "beta", "namespace": "elsewhere"} in \
            list_named_actors(all_namespaces=True)
    finally:
        ray.shutdown()
