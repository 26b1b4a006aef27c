"""Scheduling across nodes (beamlet.cluster_utils.Cluster, several nodes with
different resources): actors placed by resources and called from anywhere,
SPREAD and node affinity, placement groups whose bundles span nodes, the
infeasible warning with the cluster's totals.  Real processes, nothing mocked."""
import os
import time

import psutil
import pytest

import beamlet
from beamlet._private.config import HEARTBEAT_S
from beamlet.cluster_utils import Cluster
from beamlet.exceptions import ActorDiedError, TaskUnschedulableError
from beamlet.scheduler.placement import place_bundles, spread_node
from beamlet.util import placement_group, placement_group_table, remove_placement_group
from beamlet.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                                PlacementGroupSchedulingStrategy)

from conftest import alive, wait_for


@pytest.fixture
def cluster():
    c = Cluster(initialize_head=True, head_node_args={
        # nodes killed here are declared dead after 4 s (the default is 30)
        "num_cpus": 1, "_system_config": {"node_death_s": 4}})
    yield c
    c.shutdown()


def settle():
    """Every raylet re-reads the node table each heartbeat: wait for that after
    nodes join, so that placement decisions see them all."""
    time.sleep(2 * HEARTBEAT_S + 0.2)


def node_id():
    return beamlet.get_runtime_context().get_node_id()


@beamlet.remote
def where(*_):
    return node_id()


@beamlet.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, by=1):
        self.n += by
        return self.n

    def node(self):
        return node_id()

    def pid(self):
        return os.getpid()


# ---- the pure policy ---------------------------------------------------------------------
def test_place_bundles_policy():
    nodes = [("a", {"CPU": 2}), ("b", {"CPU": 2}), ("c", {"CPU": 1, "x": 1})]
    one = {"CPU": 1}
    assert place_bundles([one, one], "STRICT_PACK", nodes) == ["a", "a"]
    assert place_bundles([one] * 3, "STRICT_PACK", nodes) is None
    assert place_bundles([one] * 3, "PACK", nodes) == ["a", "a", "b"]
    assert place_bundles([one] * 3, "STRICT_SPREAD", nodes) == ["a", "b", "c"]
    assert place_bundles([one] * 4, "STRICT_SPREAD", nodes) is None
    assert sorted(place_bundles([one] * 3, "SPREAD", nodes)) == ["a", "b", "c"]
    assert place_bundles([one] * 4, "SPREAD", nodes) == ["a", "b", "c", "a"]
    # a bundle only one node can hold goes there, others around it
    assert place_bundles([{"x": 1}, one], "STRICT_SPREAD", nodes) == ["c", "a"]
    assert place_bundles([{"GPU": 1}], "PACK", nodes) is None
    assert [spread_node(one, nodes, i) for i in range(4)] == ["a", "b", "c", "a"]
    assert spread_node({"x": 1}, nodes, 5) == "c"


# ---- actors --------------------------------------------------------------------------------
def test_actor_placed_by_resources_and_called_in_order(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    n3 = cluster.add_node(num_cpus=2, resources={"node3": 1})
    beamlet.init(address=cluster.address)
    c = Counter.options(resources={"node2": 1}).remote()
    assert beamlet.get(c.node.remote(), timeout=60) == n2.node_id.hex()
    # one caller: its calls run in submission order
    assert beamlet.get([c.incr.remote() for _ in range(100)], timeout=60) == \
        list(range(1, 101))
    # arguments that are refs (ready later) keep the order too
    slow = where.options(resources={"node3": 1}).remote()
    got = beamlet.get([c.incr.remote(0), c.node.remote(), c.incr.remote()], timeout=60)
    assert got == [100, n2.node_id.hex(), 101]
    del slow

    # a task on node 3 holding the handle calls it; so does an actor there
    @beamlet.remote(resources={"node3": 0.5})
    def call_from_task(h, k):
        return node_id(), beamlet.get([h.incr.remote(1000) for _ in range(k)])

    nid, vals = beamlet.get(call_from_task.remote(c, 5), timeout=60)
    assert nid == n3.node_id.hex()
    assert vals == [101 + 1000 * i for i in range(1, 6)]

    @beamlet.remote(resources={"node3": 0.5})
    class Caller:
        def go(self, h):
            return node_id(), beamlet.get(h.incr.remote(1))
    caller = Caller.remote()
    assert beamlet.get(caller.go.remote(c), timeout=60) == (n3.node_id.hex(), 5102)
    # the driver's own calls still see every increment
    assert beamlet.get(c.incr.remote(0), timeout=60) == 5102


def test_remote_named_actor_get_actor_and_kill(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)
    c = Counter.options(name="remote_counter", resources={"node2": 1}).remote(10)
    assert beamlet.get(c.incr.remote(), timeout=60) == 11
    h = beamlet.get_actor("remote_counter")
    assert beamlet.get(h.incr.remote(), timeout=60) == 12
    assert beamlet.get(h.node.remote(), timeout=60) == n2.node_id.hex()
    beamlet.kill(h)
    with pytest.raises(ActorDiedError):
        beamlet.get(c.incr.remote(), timeout=60)
    wait_for(lambda: _no_actor("remote_counter"), 20, msg="name released")


def _no_actor(name):
    try:
        beamlet.get_actor(name)
        return False
    except ValueError:
        return True


def test_remote_actor_ends_when_handles_go(cluster):
    cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)
    c = Counter.options(resources={"node2": 1}).remote()
    pid = beamlet.get(c.pid.remote(), timeout=60)
    assert psutil.pid_exists(pid)
    del c
    wait_for(lambda: not alive(pid), 20,
             msg="the remote actor's worker to exit")


def test_remote_actor_dies_with_its_node(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)
    c = Counter.options(resources={"node2": 1}).remote()
    assert beamlet.get(c.incr.remote(), timeout=60) == 1
    cluster.remove_node(n2, allow_graceful=False)
    t0 = time.time()
    with pytest.raises(ActorDiedError):
        beamlet.get(c.incr.remote(), timeout=60)
    assert time.time() - t0 < 45


def test_remote_actor_restarts_on_another_node(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"pool": 1})
    n3 = cluster.add_node(num_cpus=1, resources={"pool": 1})
    beamlet.init(address=cluster.address)
    # calls in flight when the node dies are retried on the restarted actor
    c = Counter.options(resources={"pool": 1}, max_restarts=1,
                        max_task_retries=1).remote(5)
    first = beamlet.get(c.node.remote(), timeout=60)
    assert first in (n2.node_id.hex(), n3.node_id.hex())
    victim = n2 if first == n2.node_id.hex() else n3
    cluster.remove_node(victim, allow_graceful=False)
    # the constructor runs again on the other node: its state starts over
    second = beamlet.get(c.node.remote(), timeout=60)
    assert second != first and second in (n2.node_id.hex(), n3.node_id.hex())
    assert beamlet.get(c.incr.remote(), timeout=60) == 6


# ---- strategies ----------------------------------------------------------------------------
def test_node_affinity_to_other_nodes(cluster):
    n2 = cluster.add_node(num_cpus=1)
    n3 = cluster.add_node(num_cpus=1)
    beamlet.init(address=cluster.address)
    for n in (n2, n3, cluster.head_node):
        s = NodeAffinitySchedulingStrategy(n.node_id.hex(), soft=False)
        assert beamlet.get([where.options(scheduling_strategy=s).remote()
                            for _ in range(3)], timeout=60) == [n.node_id.hex()] * 3
        a = Counter.options(scheduling_strategy=s).remote()
        assert beamlet.get(a.node.remote(), timeout=60) == n.node_id.hex()
    gone = n3.node_id.hex()
    cluster.remove_node(n3)
    wait_for(lambda: sum(x["Alive"] for x in beamlet.nodes()) == 2, 20, msg="n3 dead")
    time.sleep(1.5)     # every raylet's node table has caught up
    with pytest.raises(TaskUnschedulableError):
        beamlet.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            gone, soft=False)).remote(), timeout=60)
    assert beamlet.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        gone, soft=True)).remote(), timeout=60) != gone


def test_spread_uses_every_node(cluster):
    n2 = cluster.add_node(num_cpus=1)
    n3 = cluster.add_node(num_cpus=1, resources={"only3": 1})
    beamlet.init(address=cluster.address)
    settle()
    got = beamlet.get([where.options(scheduling_strategy="SPREAD").remote()
                       for _ in range(12)], timeout=60)
    assert set(got) == {cluster.head_node.node_id.hex(), n2.node_id.hex(),
                        n3.node_id.hex()}
    # SPREAD still honours resources
    got = beamlet.get([where.options(scheduling_strategy="SPREAD",
                                     resources={"only3": 1}).remote()
                       for _ in range(4)], timeout=60)
    assert got == [n3.node_id.hex()] * 4
    actors = [Counter.options(scheduling_strategy="SPREAD", num_cpus=0).remote()
              for _ in range(3)]
    assert len(set(beamlet.get([a.node.remote() for a in actors], timeout=60))) == 3


# ---- placement groups ------------------------------------------------------------------------
def _three_nodes(cluster):
    n2 = cluster.add_node(num_cpus=2)
    n3 = cluster.add_node(num_cpus=2)
    beamlet.init(address=cluster.address)
    settle()
    return [cluster.head_node.node_id.hex(), n2.node_id.hex(), n3.node_id.hex()]


def _bundle_nodes(pg):
    t = placement_group_table(pg)
    return [t["bundles_to_node_id"][i] for i in range(len(t["bundles"]))]


def _run_in_bundles(pg, n):
    return beamlet.get([where.options(
        num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
        for i in range(n)], timeout=60)


def test_placement_group_strategies_across_nodes(cluster):
    nodes = _three_nodes(cluster)
    one = {"CPU": 1}
    pg = placement_group([one] * 3, strategy="STRICT_SPREAD")
    assert pg.wait(30)
    placed = _bundle_nodes(pg)
    assert sorted(placed) == sorted(nodes)
    assert _run_in_bundles(pg, 3) == placed     # each bundle's tasks run on its node
    remove_placement_group(pg)

    pg = placement_group([one, one], strategy="STRICT_PACK")
    assert pg.wait(30)
    placed = _bundle_nodes(pg)
    assert len(set(placed)) == 1 and placed[0] != nodes[0]  # head has 1 CPU only
    assert _run_in_bundles(pg, 2) == placed
    remove_placement_group(pg)

    pg = placement_group([one, one], strategy="SPREAD")
    assert pg.wait(30)
    placed = _bundle_nodes(pg)
    assert len(set(placed)) == 2
    assert _run_in_bundles(pg, 2) == placed
    remove_placement_group(pg)

    pg = placement_group([one] * 4, strategy="PACK")     # 5 CPUs: fits, on >1 node
    assert pg.wait(30)
    placed = _bundle_nodes(pg)
    assert 2 <= len(set(placed)) <= 3
    assert _run_in_bundles(pg, 4) == placed
    remove_placement_group(pg)

    # all or nothing: 4 bundles cannot be strictly spread over 3 nodes
    pg = placement_group([one] * 4, strategy="STRICT_SPREAD")
    assert not pg.wait(2)
    assert placement_group_table(pg)["state"] == "PENDING"
    remove_placement_group(pg)
    # every reservation is released on every node
    wait_for(lambda: beamlet.available_resources().get("CPU") == 5, 20,
             msg="all CPUs free again")


def test_placement_group_bundle_limits_and_removal(cluster):
    nodes = _three_nodes(cluster)
    pg = placement_group([{"CPU": 1}, {"CPU": 2}], strategy="STRICT_SPREAD")
    assert pg.wait(30)
    placed = _bundle_nodes(pg)
    assert placed[1] != nodes[0]           # the head has 1 CPU: bundle 1 is elsewhere
    # an actor in the remote bundle runs there and uses only its resources
    A = Counter.options(num_cpus=2, scheduling_strategy=PlacementGroupSchedulingStrategy(
        pg, 1))
    a = A.remote()
    assert beamlet.get(a.node.remote(), timeout=60) == placed[1]
    # bundle 1 is full (the actor): a task asking for it waits
    blocked = where.options(num_cpus=1, scheduling_strategy=
                            PlacementGroupSchedulingStrategy(pg, 1)).remote()
    ready, _ = beamlet.wait([blocked], timeout=1.5)
    assert not ready
    # a task that no bundle could ever hold fails clearly
    with pytest.raises(TaskUnschedulableError):
        beamlet.get(where.options(num_cpus=3, scheduling_strategy=
                                  PlacementGroupSchedulingStrategy(pg)).remote(),
                    timeout=60)
    remove_placement_group(pg)
    with pytest.raises(ActorDiedError):
        beamlet.get(a.incr.remote(), timeout=60)
    with pytest.raises(TaskUnschedulableError):
        beamlet.get(blocked, timeout=60)
    assert placement_group_table(pg)["state"] == "REMOVED"
    wait_for(lambda: beamlet.available_resources().get("CPU") == 5, 20,
             msg="all CPUs free again")


def test_placement_group_task_from_another_node(cluster):
    """A task on node 3 submits into a group created by the driver on the head."""
    nodes = _three_nodes(cluster)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert pg.wait(30)
    placed = _bundle_nodes(pg)

    @beamlet.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        nodes[2], soft=False))
    def submit_into(g):
        return beamlet.get([where.options(
            num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(g, i)).remote()
            for i in range(2)])
    assert beamlet.get(submit_into.remote(pg), timeout=60) == placed
    remove_placement_group(pg)


# ---- infeasible and pending demand -------------------------------------------------------------
def test_infeasible_warning_reports_cluster_totals(cluster, capfd):
    cluster.add_node(num_cpus=2, resources={"node2": 3})
    beamlet.init(address=cluster.address)
    ref = where.options(resources={"nowhere": 1}).remote()
    ready, _ = beamlet.wait([ref], timeout=1)
    assert not ready

    def warned():
        err = capfd.readouterr().err
        warned.text += err
        return "cannot be scheduled" in warned.text
    warned.text = ""
    wait_for(warned, 20, msg="the infeasible warning")
    line = next(l for l in warned.text.splitlines() if "cannot be scheduled" in l)
    # the totals of both nodes: 1 + 2 CPUs and node 2's custom resource
    assert "'nowhere': 1.0" in line and "'node2': 3.0" in line and "'CPU': 3.0" in line
    # once a node with the resource joins, the task runs there
    n3 = cluster.add_node(num_cpus=1, resources={"nowhere": 1})
    assert beamlet.get(ref, timeout=60) == n3.node_id.hex()


def test_status_shows_pending_demand_per_node(cluster):
    import subprocess
    import sys
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)
    settle()

    @beamlet.remote(resources={"node2": 1})
    def hold():
        time.sleep(30)
    busy = [hold.remote() for _ in range(3)]        # 1 runs on node 2, 2 queue there
    never = where.options(resources={"nowhere": 2}).remote()   # infeasible (head)

    def status():
        out = subprocess.run([sys.executable, "-m", "beamlet.cli", "status",
                              "--address", cluster.address], capture_output=True,
                             text=True, timeout=60)
        status.text = out.stdout + out.stderr
        lines = status.text.splitlines()
        return any(n2.node_id.hex()[:12] in l and "'node2': 1.0" in l and "x 2" in l
                   and "(queued)" in l for l in lines) and \
            any(cluster.head_node.node_id.hex()[:12] in l and "'nowhere': 2.0" in l
                and "(infeasible)" in l for l in lines)
    status.text = ""
    try:
        wait_for(status, 30, interval=0.5, msg="pending demand in `beamlet status`")
    except AssertionError:
        raise AssertionError(status.text)
    for r in busy + [never]:
        beamlet.cancel(r, force=True)


def test_refs_nested_in_remote_actor_arguments(cluster):
    """Small objects referenced only from inside an argument of a remote actor's
    constructor or method reach that actor (remote refs travel with the call)."""
    cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)

    @beamlet.remote(resources={"node2": 1})
    class Holder:
        def __init__(self, boxed):
            self.first = beamlet.get(boxed[0])

        def read(self, boxed):
            return self.first, beamlet.get(boxed["ref"])

    h = Holder.remote([beamlet.put("in constructor")])
    assert beamlet.get(h.read.remote({"ref": beamlet.put("in method")}), timeout=60) == \
        ("in constructor", "in method")
