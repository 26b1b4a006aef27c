"""Resources and scheduling on one node: CPUs, GPUs, custom resources, placement
groups, strategies, infeasible requests.  Real clusters; concurrency is observed
through timestamps the tasks record."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

import beamlet as ray
from beamlet.util import (placement_group, placement_group_table,
                          remove_placement_group, get_placement_group)
from beamlet.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                                PlacementGroupSchedulingStrategy)

from conftest import wait_for


@ray.remote
def span(seconds=0.5):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def overlaps(spans):
    spans = sorted(spans)
    return any(b[0] < a[1] - 0.05 for a, b in zip(spans, spans[1:]))


@pytest.fixture
def gpu_cluster():
    ray.init(num_cpus=4, num_gpus=2, resources={"special": 2})
    yield
    ray.shutdown()


def test_num_cpus_2_tasks_never_overlap(ray_start):
    spans = ray.get([span.options(num_cpus=2).remote(0.3) for _ in range(3)])
    assert not overlaps(spans)


def test_one_cpu_tasks_do_overlap(ray_start):
    spans = ray.get([span.remote(1.0) for _ in range(2)])
    assert overlaps(spans)


def test_zero_cpu_tasks_are_not_limited_by_cpu(ray_start_1cpu):
    spans = ray.get([span.options(num_cpus=0).remote(1.0) for _ in range(4)])
    # all four ran at once although the node has a single CPU
    starts = sorted(s for s, _ in spans)
    assert starts[-1] - starts[0] < 0.9


def test_custom_resources_limit_concurrency(gpu_cluster):
    spans = ray.get([span.options(resources={"special": 2}).remote(0.3) for _ in range(3)])
    assert not overlaps(spans)
    assert ray.cluster_resources()["special"] == 2


def test_available_resources_exact_at_rest_and_while_held(gpu_cluster):
    total = ray.cluster_resources()
    assert total["CPU"] == 4 and total["GPU"] == 2
    wait_for(lambda: ray.available_resources().get("CPU") == 4, msg="idle CPUs")
    ref = span.options(num_cpus=3, num_gpus=1, resources={"special": 1}).remote(2.0)
    wait_for(lambda: ray.available_resources().get("CPU") == 1, msg="CPU held")
    avail = ray.available_resources()
    assert avail["GPU"] == 1 and avail["special"] == 1
    ray.get(ref)
    wait_for(lambda: ray.available_resources() == total, msg="resources returned")


@ray.remote(num_gpus=1)
def gpu_task():
    time.sleep(0.5)
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_ids_assigned_and_exported(gpu_cluster):
    (ids1, env1), (ids2, env2) = ray.get([gpu_task.remote(), gpu_task.remote()])
    assert len(ids1) == 1 and len(ids2) == 1 and ids1 != ids2
    assert env1 == str(ids1[0]) and env2 == str(ids2[0])


@ray.remote(num_gpus=0.5)
def half_gpu():
    time.sleep(0.5)
    return ray.get_gpu_ids()


def test_fractional_gpus_pack_onto_one_gpu(gpu_cluster):
    a, b = ray.get([half_gpu.remote(), half_gpu.remote()])
    assert a == b and len(a) == 1


def test_actor_gets_gpu_for_its_lifetime(gpu_cluster):
    @ray.remote(num_gpus=1)
    class G:
        def ids(self):
            return ray.get_gpu_ids()
    g = G.remote()
    first = ray.get(g.ids.remote())
    assert len(first) == 1
    assert ray.get(g.ids.remote()) == first
    wait_for(lambda: ray.available_resources().get("GPU") == 1, msg="GPU held by actor")


def test_infeasible_task_warns_driver_once(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import time, beamlet as ray
        ray.init(num_cpus=1)
        @ray.remote(num_gpus=4)
        def f():
            return 1
        ref = f.remote()
        ready, _ = ray.wait([ref], timeout=3)
        print("READY" if ready else "PENDING", flush=True)
        ray.shutdown()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60)
    assert "PENDING" in out.stdout
    warnings = [l for l in out.stderr.splitlines() if "cannot be scheduled" in l]
    assert len(warnings) == 1, out.stderr
    assert "f" in warnings[0] and "'GPU': 4.0" in warnings[0] and "CPU" in warnings[0]


def test_placement_group_reserves_and_releases(gpu_cluster):
    pg = placement_group([{"CPU": 1, "GPU": 1}, {"CPU": 1}], strategy="PACK", name="g1")
    assert ray.get(pg.ready(), timeout=10) is True
    assert pg.wait(5)
    avail = ray.available_resources()
    assert avail["CPU"] == 2 and avail["GPU"] == 1
    table = placement_group_table(pg)
    assert table["state"] == "CREATED" and table["strategy"] == "PACK"
    assert get_placement_group("g1") == pg
    # a task in bundle 0 gets that bundle's GPU
    ids = ray.get(gpu_task.options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote())[0]
    assert len(ids) == 1
    remove_placement_group(pg)
    wait_for(lambda: ray.available_resources().get("CPU") == 4, msg="bundles released")
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_bundle_limits_concurrency(gpu_cluster):
    pg = placement_group([{"CPU": 1}])
    pg.wait(5)
    strat = PlacementGroupSchedulingStrategy(pg, 0)
    spans = ray.get([span.options(scheduling_strategy=strat).remote(0.3) for _ in range(3)])
    assert not overlaps(spans)   # one CPU in the bundle, though the node has three free


def test_task_too_big_for_its_bundle_fails_clearly(gpu_cluster):
    pg = placement_group([{"CPU": 1}])
    pg.wait(5)
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="bundle"):
        ray.get(span.options(num_cpus=2, scheduling_strategy=
                             PlacementGroupSchedulingStrategy(pg, 0)).remote())


def test_removing_group_kills_its_actors(gpu_cluster):
    pg = placement_group([{"CPU": 1}])
    pg.wait(5)

    @ray.remote(num_cpus=1)
    class A:
        def ping(self):
            return "pong"
    a = A.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()
    assert ray.get(a.ping.remote()) == "pong"
    remove_placement_group(pg)
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(a.ping.remote(), timeout=10)


def test_infeasible_placement_group_stays_pending(gpu_cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert not pg.wait(1)
    assert placement_group_table(pg)["state"] == "PENDING"
    remove_placement_group(pg)


def test_pending_placement_group_created_when_resources_free(gpu_cluster):
    ref = span.options(num_cpus=4).remote(1.0)
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, msg="CPUs busy")
    pg = placement_group([{"CPU": 2}])
    assert not pg.wait(0.2)
    ray.get(ref)
    assert pg.wait(10)


def test_placement_group_bad_input():
    ray.init(num_cpus=1)
    try:
        with pytest.raises(ValueError, match="non-empty list"):
            placement_group([])
        with pytest.raises(ValueError, match="strategy"):
            placement_group([{"CPU": 1}], strategy="TIGHT")
        with pytest.raises(ValueError, match="bundle 0"):
            placement_group([{"CPU": -1}])
    finally:
        ray.shutdown()


def test_scheduling_strategies(ray_start):
    node = ray.get_runtime_context().get_node_id()
    assert ray.get(span.options(scheduling_strategy="SPREAD").remote(0)) is not None
    assert ray.get(span.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node, soft=False)).remote(0)) is not None
    other = "ab" * 16
    assert ray.get(span.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        other, soft=True)).remote(0)) is not None
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match=other):
        ray.get(span.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            other, soft=False)).remote(0))
    with pytest.raises(ValueError, match="scheduling_strategy"):
        span.options(scheduling_strategy="FASTEST").remote()


def test_bad_resource_requests_are_rejected(ray_start):
    with pytest.raises(ValueError, match="num_cpus"):
        span.options(num_cpus=-1).remote()
    with pytest.raises(ValueError, match="num_gpus"):
        span.options(resources={"GPU": 1}).remote()


def test_many_queued_tasks_complete(ray_start):
    @ray.remote
    def one():
        return 1
    assert sum(ray.get([one.remote() for _ in range(20000)])) == 20000


def test_100k_tasks_at_once_complete_in_bounded_memory(ray_start):
    """Back-pressure: 100,000 tasks submitted at once all complete, and the
    cluster's memory stays bounded (about 2 KB per queued task in the raylet)."""
    import psutil

    @ray.remote
    def one():
        return 1

    def cluster_rss():
        me = psutil.Process()
        return sum(p.memory_info().rss for p in [me] + me.children(recursive=True))

    ray.get([one.remote() for _ in range(100)])
    before = cluster_rss()
    refs = [one.remote() for _ in range(100_000)]
    assert sum(ray.get(refs)) == 100_000
    grown = cluster_rss() - before
    assert grown < 1024 * 2**20, f"the cluster grew by {grown / 2**20:.0f} MiB"
