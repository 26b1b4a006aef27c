"""Multi-node clusters on one machine (beamlet.cluster_utils.Cluster): placement
across nodes, object transfer, node death, join/leave, peer authentication."""
import os
import socket
import struct
import time

import msgpack
import numpy as np
import pytest

import beamlet
from beamlet.cluster_utils import Cluster
from beamlet.gcs.client import GcsClient
from beamlet.scheduler.placement import choose_node

from conftest import read_frame, wait_for


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    c = Cluster(initialize_head=True, head_node_args={
        # nodes killed here are declared dead after 4 s (the default is 30)
        "num_cpus": 1, "_system_config": {"node_death_s": 4}})
    yield c
    c.shutdown()


@beamlet.remote
def node_of(*args):
    return beamlet.get_runtime_context().get_node_id()


@beamlet.remote
def total_bytes(*arrays):
    return beamlet.get_runtime_context().get_node_id(), sum(int(a.sum()) for a in arrays)


def _node_record(c, node):
    gcs = GcsClient(c.head_node.redis_host, c.head_node.redis_port, c.head_node.password)
    try:
        return next(n for n in gcs.nodes() if n["node_id"] == node.node_id.hex())
    finally:
        gcs.r.close()


# ---- the placement policy (pure) ------------------------------------------------------
def _n(i, total, avail, demand=()):
    return {"node_id": i, "state": "ALIVE", "resources_total": total,
            "resources_available": avail, "demand": list(demand)}


def test_choose_node_policy():
    a = _n("a", {"CPU": 4}, {"CPU": 0})
    b = _n("b", {"CPU": 4, "gpu_x": 1}, {"CPU": 4, "gpu_x": 1})
    c = _n("c", {"CPU": 4}, {"CPU": 2})
    # only b has the resource
    assert choose_node({"gpu_x": 1}, [a, b, c]) == "b"
    assert choose_node({"tpu": 1}, [a, b, c]) is None
    # argument bytes win over load
    assert choose_node({"CPU": 1}, [a, b, c], {"a": 10**8, "c": 10}) == "a"
    # then where it fits now, least loaded
    assert choose_node({"CPU": 1}, [a, b, c]) == "b"
    dead = dict(b, state="DEAD")
    assert choose_node({"CPU": 1}, [a, dead, c]) == "c"


# ---- placement ---------------------------------------------------------------------------
def test_custom_resource_placement_and_join(cluster):
    beamlet.init(address=cluster.address)
    head = cluster.head_node.node_id.hex()
    assert beamlet.get(node_of.remote()) == head
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    n3 = cluster.add_node(num_cpus=1, resources={"node3": 1})
    refs = [node_of.options(resources={"node2": 1}).remote() for _ in range(3)] + \
           [node_of.options(resources={"node3": 1}).remote() for _ in range(3)]
    got = beamlet.get(refs, timeout=60)
    assert got == [n2.node_id.hex()] * 3 + [n3.node_id.hex()] * 3
    alive = [n for n in beamlet.nodes() if n["Alive"]]
    assert len(alive) == 3
    # leave: a removed node is reported dead, the rest keeps working
    cluster.remove_node(n3)
    wait_for(lambda: sum(n["Alive"] for n in beamlet.nodes()) == 2, 20, msg="node 3 gone")
    assert beamlet.get(node_of.options(resources={"node2": 1}).remote(),
                       timeout=60) == n2.node_id.hex()


def test_nested_submission_from_worker_node(cluster):
    """A task on node 2 submits one needing node 3's resource."""
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    n3 = cluster.add_node(num_cpus=1, resources={"node3": 1})
    beamlet.init(address=cluster.address)

    @beamlet.remote(resources={"node2": 1})
    def outer():
        return (beamlet.get_runtime_context().get_node_id(),
                beamlet.get(node_of.options(resources={"node3": 1}).remote()))
    assert beamlet.get(outer.remote(), timeout=60) == (n2.node_id.hex(), n3.node_id.hex())


def test_locality_prefers_node_with_argument_bytes(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"shared": 1})
    n3 = cluster.add_node(num_cpus=1, resources={"shared": 1, "maker": 1})
    beamlet.init(address=cluster.address)

    @beamlet.remote(resources={"maker": 1})
    def make():
        return np.ones(20_000_000, dtype=np.uint8)
    ref = make.remote()
    beamlet.wait([ref], timeout=60)
    # node 3 still holds the result (the driver's node holds a copy and a remote ref)
    for _ in range(3):
        nid, s = beamlet.get(total_bytes.options(resources={"shared": 1}).remote(ref),
                             timeout=60)
        assert nid == n3.node_id.hex() and s == 20_000_000


# ---- object transfer ---------------------------------------------------------------------
def test_large_objects_both_ways(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1},
                          object_store_memory=700 * 2**20)
    beamlet.init(address=cluster.address)
    big = np.arange(25_000_000, dtype=np.int64)          # 200 MB, driver's node
    ref = beamlet.put(big)

    @beamlet.remote(resources={"node2": 1})
    def roundtrip(a):
        assert a.nbytes == 200_000_000
        return beamlet.get_runtime_context().get_node_id(), int(a[-1]), a[::-1].copy()
    nid, last, back = beamlet.get(roundtrip.remote(ref), timeout=120)
    assert nid == n2.node_id.hex() and last == 25_000_000 - 1
    assert back.nbytes == 200_000_000 and back[0] == 25_000_000 - 1 and back[-1] == 0
    del back


def test_many_small_objects_and_shared_argument(cluster):
    cluster.add_node(num_cpus=2, resources={"node2": 2})
    beamlet.init(address=cluster.address)
    smalls = [beamlet.put(np.full(10, i)) for i in range(200)]
    mids = [beamlet.put(np.full(200_000, i, dtype=np.uint8)) for i in range(5)]

    @beamlet.remote(resources={"node2": 1})
    def add(x, m):
        return int(x[0]) + int(m[0])
    refs = [add.remote(s, mids[i % 5]) for i, s in enumerate(smalls)]
    assert beamlet.get(refs, timeout=120) == [i + i % 5 for i in range(200)]

    # results made on node 2 come back as many small objects
    @beamlet.remote(resources={"node2": 1})
    def make(i):
        return np.full(1000, i)
    outs = beamlet.get([make.remote(i) for i in range(100)], timeout=120)
    assert [int(o[0]) for o in outs] == list(range(100))


def test_objects_freed_on_both_nodes(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)

    @beamlet.remote(resources={"node2": 1})
    def make():
        return np.ones(5_000_000, dtype=np.uint8)
    ref = make.remote()
    assert beamlet.get(ref, timeout=60).sum() == 5_000_000
    used = lambda node: int(_node_record(cluster, node).get("object_store_used", 0))
    wait_for(lambda: used(n2) >= 5_000_000, 10, msg="node 2 holds the result")
    del ref
    wait_for(lambda: used(n2) == 0, 20, msg="node 2 freed its copy")
    wait_for(lambda: used(cluster.head_node) == 0, 20, msg="head freed its copy")


# ---- node death --------------------------------------------------------------------------
def test_node_killed_mid_task_is_retried_elsewhere(cluster, tmp_path):
    n2 = cluster.add_node(num_cpus=1, resources={"shared": 1})
    beamlet.init(address=cluster.address)
    marker = tmp_path / "started"

    @beamlet.remote(resources={"shared": 1}, max_retries=2)
    def slow(path):
        import pathlib
        pathlib.Path(path).touch()
        time.sleep(3)
        return beamlet.get_runtime_context().get_node_id(), np.ones(1_000_000)
    ref = slow.remote(str(marker))
    wait_for(marker.exists, 60, msg="the task started on node 2")
    n3 = cluster.add_node(num_cpus=1, resources={"shared": 1})
    cluster.remove_node(n2, allow_graceful=False)        # SIGKILL: it goes silent
    nid, arr = beamlet.get(ref, timeout=90)
    assert nid == n3.node_id.hex() and arr.sum() == 1_000_000


def test_node_killed_without_retries_fails_clearly(cluster, tmp_path):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)
    marker = tmp_path / "started"

    @beamlet.remote(resources={"node2": 1}, max_retries=0)
    def slow(path):
        import pathlib
        pathlib.Path(path).touch()
        time.sleep(60)
    ref = slow.remote(str(marker))
    wait_for(marker.exists, 60, msg="the task started on node 2")
    cluster.remove_node(n2, allow_graceful=False)
    with pytest.raises(beamlet.exceptions.NodeDiedError, match="no retries left"):
        beamlet.get(ref, timeout=60)


# ---- security ----------------------------------------------------------------------------
def test_unauthenticated_peer_refused(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    rec = _node_record(cluster, n2)
    addr = (rec["address"], int(rec["peer_port"]))
    # 1. a wrong proof: the connection is closed without an answer
    with socket.create_connection(addr, timeout=10) as s:
        challenge = read_frame(s)
        assert challenge[0] == 100     # PEER_CHALLENGE
        body = msgpack.packb([101, b"\0" * 32, "intruder", b"\1" * 32])
        s.sendall(struct.pack("<I", len(body)) + body)
        assert read_frame(s) is None
    # 2. skipping the handshake (a PULL right away, or a huge frame): closed too
    with socket.create_connection(addr, timeout=10) as s:
        read_frame(s)
        body = msgpack.packb([106, b"x" * 20])
        s.sendall(struct.pack("<I", len(body)) + body)
        assert read_frame(s) is None
    with socket.create_connection(addr, timeout=10) as s:
        read_frame(s)
        s.sendall(struct.pack("<I", 1 << 30))
        assert read_frame(s) is None
    # the node still works for the cluster
    beamlet.init(address=cluster.address)
    assert beamlet.get(node_of.options(resources={"node2": 1}).remote(),
                       timeout=60) == n2.node_id.hex()
    # and Redis wants the token too
    import redis
    r = redis.Redis(cluster.head_node.redis_host, cluster.head_node.redis_port)
    with pytest.raises(redis.AuthenticationError):
        r.ping()


# ---- refs across nodes: nested, put inside forwarded tasks, on demand ----------------------
@beamlet.remote
def put_inside(n):
    """Runs on another node: puts a small and a large object, returns their refs."""
    small = beamlet.put(("small", n))
    big = beamlet.put(np.full(3_000_000, n, dtype=np.uint8))
    return [small, big]


@beamlet.remote
def read_nested(box):
    """`box` is a list of refs (by value): get them here."""
    vals = beamlet.get(box)
    return [v if isinstance(v, tuple) else int(v.sum()) for v in vals]


def test_refs_nested_and_put_in_forwarded_tasks(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    n3 = cluster.add_node(num_cpus=1, resources={"node3": 1})
    beamlet.init(address=cluster.address)
    # objects put inside a task on node 2, their refs returned to the driver
    small, big = beamlet.get(put_inside.options(resources={"node2": 1}).remote(7),
                             timeout=60)
    assert beamlet.get(small, timeout=60) == ("small", 7)
    assert int(beamlet.get(big, timeout=60).sum()) == 7 * 3_000_000
    # ... and read on a third node: refs nested in a by-value argument
    assert beamlet.get(read_nested.options(resources={"node3": 1}).remote([small, big]),
                       timeout=60) == [("small", 7), 7 * 3_000_000]
    # refs nested inside an object (put on the driver's node) read on node 2
    box = beamlet.put([small, big])
    assert beamlet.get(read_nested.options(resources={"node2": 1}).remote(box),
                       timeout=60) == [("small", 7), 7 * 3_000_000]

    # a task on node 2 returns a ref made by a task it submitted to node 3
    @beamlet.remote(resources={"node2": 1})
    def outer():
        return [put_inside.options(resources={"node3": 1}).remote(3)]
    [inner] = beamlet.get(outer.remote(), timeout=60)
    s, b = beamlet.get(inner, timeout=60)
    assert beamlet.get(s, timeout=60) == ("small", 3)
    assert int(beamlet.get(b, timeout=60).sum()) == 3 * 3_000_000
    # everything is freed on every node once the driver lets go
    del small, big, box, inner, s, b
    used = lambda node: int(_node_record(cluster, node).get("object_store_used", 0))
    for node in (cluster.head_node, n2, n3):
        wait_for(lambda: used(node) == 0, 30, msg=f"node {node.node_id.hex()[:8]} freed")


def test_unknown_id_found_through_gcs(cluster):
    """A node that was never sent an id (here: raw bytes made into a ref) finds the
    object through its GCS location."""
    cluster.add_node(num_cpus=1, resources={"node2": 1})
    cluster.add_node(num_cpus=1, resources={"node3": 1})
    beamlet.init(address=cluster.address)
    small, big = beamlet.get(put_inside.options(resources={"node2": 1}).remote(5),
                             timeout=60)

    @beamlet.remote(resources={"node3": 1})
    def by_id(raw):
        from beamlet.object_ref import ObjectRef
        vals = beamlet.get([ObjectRef(r) for r in raw], timeout=60)
        return vals[0], int(vals[1].sum())
    assert beamlet.get(by_id.remote([small.binary(), big.binary()]), timeout=90) == \
        (("small", 5), 5 * 3_000_000)


def test_id_no_node_knows_is_lost_not_a_hang(monkeypatch):
    """A get of an id that no node of a multi-node cluster ever listed ends with
    ObjectLostError naming it (after UNKNOWN_OBJECT_WAIT_S), never a hang."""
    monkeypatch.setenv("BEAMLET_UNKNOWN_OBJECT_WAIT_S", "2")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        time.sleep(1.2)   # one heartbeat: the head's raylet knows it has a peer
        beamlet.init(address=c.address)
        from beamlet.object_ref import ObjectRef
        forged = ObjectRef(b"\x07" * 20)
        start = time.time()
        with pytest.raises(beamlet.exceptions.ObjectLostError, match="07070707"):
            beamlet.get(forged, timeout=60)
        assert time.time() - start < 30
    finally:
        beamlet.shutdown()
        c.shutdown()


def test_results_pulled_on_demand_and_wait_fetch_local(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)

    @beamlet.remote(resources={"node2": 1})
    def make():
        return np.ones(30_000_000, dtype=np.uint8)
    used = lambda node: int(_node_record(cluster, node).get("object_store_used", 0))
    ref = make.remote()
    # ready on node 2 without a copy here
    ready, _ = beamlet.wait([ref], timeout=60, fetch_local=False)
    assert ready == [ref]
    wait_for(lambda: used(n2) >= 30_000_000, 10, msg="node 2 holds the result")
    time.sleep(1.5)     # two heartbeats: a copy here would show by now
    assert used(cluster.head_node) == 0, "the result was copied eagerly"
    # fetch_local=True (the default) pulls it; get then reads the local copy
    ready, _ = beamlet.wait([ref], timeout=60)
    assert ready == [ref]
    wait_for(lambda: used(cluster.head_node) >= 30_000_000, 10, msg="pulled here")
    assert int(beamlet.get(ref, timeout=60).sum()) == 30_000_000


def test_cancel_reaches_forwarded_task(cluster, tmp_path):
    cluster.add_node(num_cpus=1, resources={"node2": 1})
    beamlet.init(address=cluster.address)
    marker = tmp_path / "started"

    @beamlet.remote(resources={"node2": 1}, max_retries=0)
    def sleeper(path):
        import pathlib
        pathlib.Path(path).touch()
        time.sleep(120)
    ref = sleeper.remote(str(marker))
    wait_for(marker.exists, 60, msg="the task started on node 2")
    beamlet.cancel(ref)
    with pytest.raises(beamlet.exceptions.TaskCancelledError):
        beamlet.get(ref, timeout=60)
    # the node is free again
    assert beamlet.get(node_of.options(resources={"node2": 1}).remote(), timeout=60)


def test_lost_put_object_and_lineage_through_nested_refs(cluster):
    n2 = cluster.add_node(num_cpus=1, resources={"shared": 1, "node2": 1})
    beamlet.init(address=cluster.address)
    # a put whose only copy is on node 2
    small, big = beamlet.get(put_inside.options(resources={"node2": 1}).remote(1),
                             timeout=60)

    # a task result left on node 2 (not fetched), reachable only through a nested ref
    @beamlet.remote(resources={"shared": 1}, max_retries=1)
    def make():
        return np.full(2_000_000, 9, dtype=np.uint8)
    r = make.remote()
    beamlet.wait([r], timeout=60, fetch_local=False)
    box = beamlet.put([r])
    del r
    n3 = cluster.add_node(num_cpus=1, resources={"shared": 1})
    cluster.remove_node(n2, allow_graceful=False)
    for ref in (small, big):
        with pytest.raises(beamlet.exceptions.ObjectLostError, match=ref.hex()):
            beamlet.get(ref, timeout=60)
    [r] = beamlet.get(box, timeout=60)
    assert int(beamlet.get(r, timeout=90).sum()) == 9 * 2_000_000
