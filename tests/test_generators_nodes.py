"""Generators with more than one node, and on a node of one CPU: a stream whose
task runs on another node (forwarded) reaches the driver item by item — small
items in the relay messages, large ones pulled on demand — with its errors, its
end, wait(), backpressure and drop; a task consuming a stream on a 1-CPU node."""
import os
import pathlib
import time

import numpy as np
import pytest

import beamlet as ray
from beamlet.cluster_utils import Cluster
from conftest import wait_for


@ray.remote
def count(n):
    for i in range(n):
        yield i


def test_a_task_consumes_a_stream_on_one_cpu():
    """The consumer waits in next() lending its CPU, so the generator runs."""
    ray.init(num_cpus=1)
    try:
        @ray.remote
        def consumer(n):
            return sum(ray.get(r) for r in count.remote(n))
        assert ray.get(consumer.remote(10), timeout=60) == 45
    finally:
        ray.shutdown()


def test_node_death_mid_stream_ends_it_with_errors(tmp_path):
    """The node running a stream dies: the items it held are lost
    (ObjectLostError naming them, not rebuilt), and the stream ends with the
    task's failure — no consumer waits forever."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        n2 = c.add_node(num_cpus=1, resources={"other": 1})
        c.wait_for_nodes()
        ray.init(address=c.address)
        started = tmp_path / "started"

        @ray.remote(resources={"other": 1}, max_retries=0)
        def stalls(path):
            yield np.ones(300_000)       # arena: stays on node 2 until pulled
            pathlib.Path(path).touch()
            time.sleep(120)
            yield "never"

        gen = stalls.remote(str(started))
        first = next(gen)
        wait_for(started.exists, timeout=60)
        c.remove_node(n2, allow_graceful=False)
        with pytest.raises(ray.exceptions.NodeDiedError):
            ray.get(next(gen), timeout=60)
        with pytest.raises(StopIteration):
            next(gen)
        with pytest.raises(ray.exceptions.ObjectLostError, match=first.hex()):
            ray.get(first, timeout=60)
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def two_nodes():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    other = c.add_node(num_cpus=2, resources={"other": 2})
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield other.node_id.hex()
    ray.shutdown()
    c.shutdown()


@ray.remote(resources={"other": 1})
def remote_items(n, size):
    node = ray.get_runtime_context().get_node_id()
    for i in range(n):
        yield node, np.full(size, i, dtype=np.int64)


def test_stream_from_another_node(two_nodes):
    for size in (4, 200_000):       # inline items, then arena items (pulled)
        got = [ray.get(r) for r in remote_items.remote(5, size)]
        assert [node for node, _ in got] == [two_nodes] * 5
        assert [int(a[0]) for _, a in got] == list(range(5))
        assert all(a.size == size for _, a in got)


def test_remote_stream_refs_go_to_other_tasks(two_nodes):
    @ray.remote
    def first(item):
        return int(item[1][0])
    refs = list(remote_items.remote(3, 200_000))
    assert ray.get([first.remote(r) for r in refs]) == [0, 1, 2]


def test_remote_stream_error_wait_and_end(two_nodes, tmp_path):
    @ray.remote(resources={"other": 1})
    def fails(gate):
        yield 1
        while not os.path.exists(gate):
            time.sleep(0.01)
        raise KeyError("remote failure")

    gate = tmp_path / "gate"
    gen = fails.remote(str(gate))
    ready, _ = ray.wait([gen], timeout=60)
    assert ready == [gen]
    assert ray.get(next(gen)) == 1
    ready, _ = ray.wait([gen], timeout=0)
    assert ready == []                      # waits for the gate
    gate.touch()
    ref = next(gen)
    with pytest.raises(KeyError, match="remote failure"):
        ray.get(ref)
    with pytest.raises(StopIteration):
        next(gen)


def test_remote_stream_backpressure_and_drop(two_nodes, tmp_path):
    log = tmp_path / "yielded"
    marker = tmp_path / "stopped"

    @ray.remote(resources={"other": 1}, _generator_backpressure_num_objects=2)
    def produce(log, marker):
        try:
            i = 0
            while True:
                with open(log, "a") as f:
                    f.write(f"{i}\n")
                yield i
                i += 1
        finally:
            pathlib.Path(marker).touch()

    gen = produce.remote(str(log), str(marker))
    for consumed in range(1, 11):
        assert ray.get(next(gen)) == consumed - 1
        assert len(log.read_text().split()) <= consumed + 2
    del gen
    wait_for(marker.exists, timeout=30, msg="the remote generator stopping")


def test_stream_of_an_actor_on_another_node(two_nodes):
    @ray.remote(resources={"other": 1})
    class A:
        def f(self, n):
            for i in range(n):
                yield ray.get_runtime_context().get_node_id(), i

    a = A.remote()
    assert [ray.get(r) for r in a.f.remote(3)] == [(two_nodes, i) for i in range(3)]

