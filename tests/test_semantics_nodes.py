"""Task and actor semantics across nodes (issue 10 §4): cancel(recursive=True) of
a task running on another node reaches the tasks it submitted there (PEER_CANCEL
carries `recursive`); a queued call to an actor on another node is cancelled
there; an actor placed on another node dies with the worker that created it
(fate sharing is the creating raylet's)."""
import os
import signal

import pytest

import beamlet as ray
from beamlet.cluster_utils import Cluster
from conftest import wait_for
from test_cancel import Sequential, children_end, parent, recorded


@pytest.fixture(scope="module")
def two_nodes():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=3, resources={"other": 10})
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c
    ray.shutdown()
    c.shutdown()


def test_recursive_cancel_across_nodes(two_nodes, tmp_path):
    ref = parent.options(resources={"other": 1}).remote(str(tmp_path), 2)
    for i in range(2):
        wait_for((tmp_path / f"started{i}").exists, timeout=60)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)
    (tmp_path / "stop").touch()
    assert children_end(tmp_path, 2) == ["cancelled"] * 2


def test_cancel_a_queued_call_of_an_actor_on_another_node(two_nodes, tmp_path):
    gate, log = tmp_path / "gate", tmp_path / "log"
    a = Sequential.options(resources={"other": 1}).remote()
    busy = a.block.remote(str(gate))
    calls = [a.record.remote(str(log), i) for i in range(3)]
    ray.cancel(calls[1])
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(calls[1], timeout=60)
    gate.touch()
    assert ray.get(busy, timeout=60) == "unblocked"
    assert ray.get([calls[0], calls[2]], timeout=60) == [0, 2]
    assert sorted(recorded(log)) == ["0", "2"]


@ray.remote
class Child:
    def where(self):
        return ray.get_runtime_context().get_node_id(), os.getpid()


@ray.remote
class Parent:
    def make_child(self):
        self.child = Child.options(resources={"other": 1}).remote()
        return self.child

    def pid(self):
        return os.getpid()


def test_child_actor_on_another_node_dies_with_its_parent(two_nodes):
    p = Parent.remote()
    child = ray.get(p.make_child.remote())
    node, _ = ray.get(child.where.remote(), timeout=60)
    assert node != two_nodes.head_node.node_id.hex()
    os.kill(ray.get(p.pid.remote()), signal.SIGKILL)

    def child_dead():
        try:
            ray.get(child.where.remote(), timeout=30)
            return False
        except ray.exceptions.RayActorError:
            return True
    wait_for(child_dead, timeout=60, msg="the child actor on node 2 dying")
