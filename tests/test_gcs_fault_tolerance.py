"""The GCS survives: its redis-server is killed for real (SIGKILL) mid-job; the
head's monitor restarts it on the same port with the same token and its
append-only file; raylets, the monitor and the driver reconnect.  While it is
unreachable (here: the monitor is stopped, so nobody restarts it) calls that need
it raise GcsUnavailableError after GCS_RECONNECT_TIMEOUT_S, and the raylets keep
their writes and replay them."""
import json
import os
import signal
import time

import psutil
import pytest

import beamlet
from beamlet._private import config, process
from beamlet.cluster_utils import Cluster
from beamlet.exceptions import GcsUnavailableError
from beamlet.gcs import keys
from beamlet.gcs.client import GcsClient, StateReader
from beamlet.scheduler import global_scheduler
from beamlet.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import wait_for


@pytest.fixture
def cluster():
    c = Cluster(initialize_head=True, head_node_args={
        # short enough that a false death after the outage would show
        "num_cpus": 1, "_system_config": {"node_death_s": 4}})
    yield c
    c.shutdown()


def _gcs(c):
    h = c.head_node
    return GcsClient(h.redis_host, h.redis_port, h.password)


def _alive(c):
    g = _gcs(c)
    try:
        return {n["node_id"] for n in g.nodes() if n.get("state") == "ALIVE"}
    finally:
        g.close()


def _kill_redis(c):
    c.head_node.redis_proc.send_signal(signal.SIGKILL)
    c.head_node.redis_proc.wait(10)


def _monitor_log(c):
    with open(os.path.join(c.head_node.session_dir, "logs", "monitor.err")) as f:
        return f.read()


@beamlet.remote
def where():
    return beamlet.get_runtime_context().get_node_id()


@beamlet.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_redis_killed_mid_job_is_restarted_with_the_cluster_state(cluster, tmp_path):
    n2 = cluster.add_node(num_cpus=1, resources={"n2": 1})
    ids = {cluster.head_node.node_id.hex(), n2.node_id.hex()}
    beamlet.init(address=cluster.address)
    keep = Counter.options(name="keep", lifetime="detached").remote()
    assert beamlet.get(keep.incr.remote(), timeout=60) == 1
    marker = tmp_path / "started"

    @beamlet.remote(resources={"n2": 1})
    def slow(path):
        import pathlib
        pathlib.Path(path).touch()
        time.sleep(2)
        return "done"
    running = slow.remote(str(marker))
    wait_for(marker.exists, 60, msg="the task started on n2")
    _kill_redis(cluster)
    # running work finishes
    assert beamlet.get(running, timeout=60) == "done"
    # calls that need the GCS wait for the restarted one, then work: a function
    # defined now, a new actor, nodes(), a named actor from before the kill
    @beamlet.remote
    def defined_after():
        return "new"
    assert beamlet.get(defined_after.remote(), timeout=60) == "new"
    fresh = Counter.remote()
    assert beamlet.get(fresh.incr.remote(), timeout=60) == 1
    assert {n["NodeID"] for n in beamlet.nodes() if n["Alive"]} == ids
    again = beamlet.get_actor("keep")
    assert beamlet.get(again.incr.remote(), timeout=60) == 2
    # both nodes still work, and nobody was declared dead meanwhile
    s = NodeAffinitySchedulingStrategy(n2.node_id.hex(), soft=False)
    assert beamlet.get(where.options(scheduling_strategy=s).remote(),
                       timeout=60) == n2.node_id.hex()
    assert _alive(cluster) == ids
    assert "starting it again" in _monitor_log(cluster)
    beamlet.kill(again)


def test_gcs_unreachable_raises_a_clear_error_then_recovers(cluster, monkeypatch):
    beamlet.init(address=cluster.address)

    @beamlet.remote
    def f(x):
        return x
    assert beamlet.get(f.remote(0), timeout=60) == 0        # exported, cached
    monitor = cluster.head_node.monitor_proc.pid
    os.kill(monitor, signal.SIGSTOP)        # nobody restarts Redis now
    try:
        _kill_redis(cluster)
        monkeypatch.setattr(config, "GCS_RECONNECT_TIMEOUT_S", 1.5)
        where_ = f"{cluster.head_node.redis_host}:{cluster.head_node.redis_port}"
        with pytest.raises(GcsUnavailableError, match=f"{where_}.*tried for 1"):
            beamlet.nodes()

        @beamlet.remote
        def g():
            return "g"
        with pytest.raises(GcsUnavailableError, match="unreachable"):
            g.remote()      # its export needs the GCS
        # what needs no GCS still runs: a task of a function exported before
        assert beamlet.get(f.remote(1), timeout=60) == 1
        tid = f.remote(2)
        assert beamlet.get(tid, timeout=60) == 2
    finally:
        os.kill(monitor, signal.SIGCONT)    # it restarts Redis
    monkeypatch.setattr(config, "GCS_RECONNECT_TIMEOUT_S", 60.0)
    assert beamlet.get(g.remote(), timeout=60) == "g"
    assert [n["Alive"] for n in beamlet.nodes()] == [True]
    # the raylet kept what it could not write meanwhile, and wrote it since: the
    # task that ran while the GCS was away is among the job's finished tasks
    g_ = _gcs(cluster)
    job = beamlet.get_runtime_context().get_job_id()

    def recorded():
        recs = StateReader(g_.r).finished_tasks([job])[0]
        return any(r[0].hex() == tid.task_id().hex() and r[5] == "FINISHED"
                   for r in recs)
    try:
        wait_for(recorded, 30, msg="the kept task record written")
    finally:
        g_.close()


def test_gcs_that_lost_its_data_gets_the_nodes_again(cluster):
    n2 = cluster.add_node(num_cpus=1)
    ids = {cluster.head_node.node_id.hex(), n2.node_id.hex()}
    g = _gcs(cluster)
    try:
        g.r.flushall()      # as a Redis restarted without its file would be
        assert _alive(cluster) == set()
        # every raylet learns from its next heartbeat that its record is gone
        wait_for(lambda: _alive(cluster) == ids, 30, msg="the nodes registered again")
        wait_for(lambda: g.r.exists(keys.CLUSTER), 30, msg="the cluster record back")
    finally:
        g.close()
    beamlet.init(address=cluster.address)
    got = beamlet.get([where.options(scheduling_strategy="SPREAD").remote()
                       for _ in range(4)], timeout=60)
    assert set(got) == ids


def test_a_flush_before_the_monitors_first_look_loses_no_cluster_record():
    """The head hands its monitor the cluster record it wrote: a Redis that
    loses its data before the monitor first read it (a slow start on a loaded
    machine) still gets the record back."""
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": True})
    h = cluster.head_node
    g = _gcs(cluster)
    monitor = h.monitor_proc.pid
    try:
        record = g.cluster_info()
        assert "dashboard_address" in record
        head_wrote = {k: v for k, v in record.items() if k != "dashboard_address"}
        argv = psutil.Process(monitor).cmdline()
        argv = argv[argv.index("beamlet.scheduler.global_scheduler") + 1:]
        given = json.loads(argv[argv.index("--cluster-record") + 1])
        assert {k: str(v) for k, v in given.items()} == head_wrote
        # a monitor started from those arguments (its own token pipe), which
        # never read Redis
        argv[argv.index(process.SECRET_FD_FLAG) + 1] = str(
            process.prefilled_pipe(h.password.encode()))
        fresh = global_scheduler.Monitor(global_scheduler.parse_args(argv))
        os.kill(monitor, signal.SIGSTOP)     # (the head's own would restore it)
        try:
            g.r.delete(keys.CLUSTER)
            fresh.keep_cluster_record()
            assert g.cluster_info() == head_wrote
            g.r.delete(keys.CLUSTER)
        finally:
            os.kill(monitor, signal.SIGCONT)
            fresh.gcs.close()
        # the head's monitor writes all of it again, its dashboard's address too
        wait_for(lambda: g.cluster_info() == record, 30, msg="the whole record back")
    finally:
        g.close()
        cluster.shutdown()
