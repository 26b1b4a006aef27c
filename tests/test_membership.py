"""Membership as deltas: the raylets' view of the node table follows the
membership channel (no raylet re-reads the table while the cluster is at rest),
a node counts from its first heartbeat (the first SPREAD job on a fresh cluster
uses every node), and the pure parts: how a view applies snapshots and events,
and since when the monitor may declare deaths."""
import collections
import time

import beamlet
from beamlet.cluster_utils import Cluster
from beamlet.gcs.client import GcsClient
from beamlet.raylet.node_table import NodeTable
from beamlet.scheduler.global_scheduler import Watch

from conftest import wait_for


@beamlet.remote
def where():
    return beamlet.get_runtime_context().get_node_id()


def test_first_spread_job_on_a_fresh_cluster_uses_every_node_evenly():
    """Issue 15: no settling time between adding nodes and the first job."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        nodes = [c.add_node(num_cpus=1) for _ in range(3)]
        beamlet.init(address=c.address)
        got = beamlet.get([where.options(scheduling_strategy="SPREAD").remote()
                           for _ in range(8)], timeout=60)
        ids = [c.head_node.node_id.hex()] + [n.node_id.hex() for n in nodes]
        assert collections.Counter(got) == {i: 2 for i in ids}
    finally:
        c.shutdown()


def _commands(g) -> dict:
    return {k[len("cmdstat_"):]: v["calls"]
            for k, v in g.r.info("commandstats").items()}


def test_a_cluster_at_rest_reads_no_node_table():
    """At rest the GCS sees heartbeats (one script per node per period) and the
    monitor's check: no raylet reads the node table, nothing is announced."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        nodes = [c.add_node(num_cpus=1) for _ in range(3)]
        h = c.head_node
        g = GcsClient(h.redis_host, h.redis_port, h.password)
        try:
            ids = [h.node_id] + [n.node_id for n in nodes]
            # at rest once every raylet made its first load report
            wait_for(lambda: all(g.r.hexists(f"beamlet:node:{i.hex()}",
                                             "object_store_used") for i in ids),
                     30, msg="every node's first load report")
            before = _commands(g)
            time.sleep(2.0)     # a window to count commands in (not a wait)
            after = _commands(g)
        finally:
            g.close()
        grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        for read in ("hgetall", "smembers", "zrange", "publish", "hset"):
            assert grew.get(read, 0) == 0, (read, grew)
        assert grew.get("evalsha", 0) > 0       # the heartbeats, and the monitor
    finally:
        c.shutdown()


# ---- the pure parts ------------------------------------------------------------------------
ME, A, B = "00" * 16, "aa" * 16, "bb" * 16


def _rec(i, seq, cpu=1.0, state="ALIVE"):
    return {"node_id": i, "state": state, "seq": str(seq), "peer_port": "1",
            "resources_total": {"CPU": 1.0}, "resources_available": {"CPU": cpu}}


def _table():
    t = NodeTable(bytes.fromhex(ME), None)
    died, fenced = [], []
    t.wire(on_death=died.append, on_fenced=fenced.append)
    return t, died, fenced


def test_node_table_applies_snapshots_and_deltas_in_order():
    t, died, fenced = _table()
    t.apply_snapshot([_rec(ME, 1), _rec(A, 3)])
    assert set(t.nodes) == {A} and t.multi          # never itself
    # an event the snapshot already covers is dropped; a newer one applies
    t.apply_event({"node": A, "kind": "load", "seq": 3,
                   "fields": {"resources_available": {"CPU": 0.0}}})
    assert t.nodes[A]["resources_available"] == {"CPU": 1.0}
    t.apply_event({"node": A, "kind": "load", "seq": 4,
                   "fields": {"resources_available": {"CPU": 0.0}}})
    assert t.nodes[A]["resources_available"] == {"CPU": 0.0}
    # a load change of a node not joined yet waits for its join (or a snapshot)
    t.apply_event({"node": B, "kind": "load", "seq": 2, "fields": {}})
    assert B not in t.nodes
    t.apply_event({"node": B, "kind": "join", "seq": 1, "fields": _rec(B, 1)})
    assert B in t.nodes
    # a snapshot older than what events brought keeps the newer record
    t.apply_snapshot([_rec(A, 2, cpu=1.0), _rec(B, 1)])
    assert t.nodes[A]["resources_available"] == {"CPU": 0.0}
    # a node missing from a snapshot (the GCS lost it) leaves the view, not dead
    t.apply_snapshot([_rec(B, 1)])
    assert set(t.nodes) == {B} and died == []


def test_node_table_deaths_are_final_and_its_own_death_fences_it():
    t, died, fenced = _table()
    t.apply_snapshot([_rec(A, 1), _rec(B, 1)])
    t.apply_event({"node": A, "kind": "dead", "reason": "no heartbeat"})
    t.apply_event({"node": A, "kind": "dead"})
    assert died == [A] and A in t.dead and A not in t.nodes
    # nothing brings a dead id back: not a late join, not a snapshot
    t.apply_event({"node": A, "kind": "join", "seq": 9, "fields": _rec(A, 9)})
    t.apply_snapshot([_rec(A, 9), _rec(B, 1, state="DEAD")])
    assert A not in t.nodes and died == [A, B] and not t.alive(A)
    assert fenced == []
    t.apply_event({"node": ME, "kind": "dead", "reason": "no heartbeat for 30 s"})
    assert len(fenced) == 1 and "declared this node dead" in fenced[0]


def test_monitor_declares_deaths_only_after_watching_that_long():
    w = Watch(period=0.5)
    assert w.before_check(100.0) == 0.0          # just started: nobody dies yet
    w.checked(100.0, server_now=5000.0)
    assert w.before_check(100.5) == 5000.0       # watching since then
    w.checked(100.5, server_now=5000.5)
    # the monitor itself was paused (checks came 10 s apart): a new watch
    assert w.before_check(110.5) == 0.0
    w.checked(110.5, server_now=5010.5)
    assert w.before_check(111.0) == 5010.5
    w.failed()                                   # the GCS was unreachable
    assert w.before_check(111.5) == 0.0
