"""Placement groups seen from inside tasks and actors, and GPU visibility
(issue 10 §5), on a real local cluster with 4 CPUs and 2 (declared) GPUs."""
import os

import pytest

import beamlet as ray
from beamlet.util import get_current_placement_group, placement_group
from beamlet.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@pytest.fixture(scope="module")
def cluster():
    # the driver sees both GPUs: a task that asks for none must still see none
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"
    ray.init(num_cpus=4, num_gpus=2)
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = old


@ray.remote
def current_group():
    pg = get_current_placement_group()
    ctx = ray.get_runtime_context()
    return (pg.id.hex() if pg else None, pg.bundle_specs if pg else None,
            ctx.get_placement_group_id())


@ray.remote
def parent(strategy_for_child=None):
    """Where this task's child lands (it gives the child no strategy unless told)."""
    child = current_group.options(scheduling_strategy=strategy_for_child) \
        if strategy_for_child is not None else current_group
    return ray.get(child.remote())


@ray.remote
def grandparent():
    return ray.get(parent.remote())


@ray.remote
class InGroup:
    def group(self):
        pg = get_current_placement_group()
        return pg.id.hex() if pg else None

    def child_group(self):
        return ray.get(current_group.remote())[0]


def _strategy(pg, capture=None, index=-1):
    return PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=index,
        placement_group_capture_child_tasks=capture)


def test_driver_and_plain_tasks_have_no_group(cluster):
    assert get_current_placement_group() is None
    assert ray.get(current_group.remote()) == (None, None, None)


def test_task_and_actor_in_a_group_see_it(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(60)
    try:
        got, bundles, ctx_id = ray.get(
            current_group.options(scheduling_strategy=_strategy(pg, index=1)).remote(),
            timeout=60)
        assert got == pg.id.hex() == ctx_id
        assert bundles == [{"CPU": 1.0}, {"CPU": 1.0}]
        a = InGroup.options(num_cpus=1, scheduling_strategy=_strategy(pg)).remote()
        assert ray.get(a.group.remote(), timeout=60) == pg.id.hex()
        # the legacy options form too
        got, _, _ = ray.get(current_group.options(placement_group=pg).remote(),
                            timeout=60)
        assert got == pg.id.hex()
        ray.kill(a)
    finally:
        ray.util.remove_placement_group(pg)


def test_children_are_captured_only_when_asked(cluster):
    pg = placement_group([{"CPU": 3}])
    assert pg.wait(60)
    try:
        captured = ray.get(parent.options(
            num_cpus=1, scheduling_strategy=_strategy(pg, capture=True)).remote(),
            timeout=60)
        assert captured[0] == pg.id.hex()
        # ... and so are theirs (the capture is inherited)
        deep = ray.get(grandparent.options(
            num_cpus=0.5, scheduling_strategy=_strategy(pg, capture=True)).remote(),
            timeout=60)
        assert deep[0] == pg.id.hex()
        # without capture a child runs outside the group
        free = ray.get(parent.options(
            num_cpus=1, scheduling_strategy=_strategy(pg)).remote(), timeout=60)
        assert free[0] is None
        # placement_group=None opts a child out of a capturing group (as in Ray)
        opted_out = ray.get(parent.options(
            num_cpus=1, scheduling_strategy=_strategy(pg, capture=True)).remote(
            PlacementGroupSchedulingStrategy(placement_group=None)), timeout=60)
        assert opted_out[0] is None
        # an actor's children too
        a = InGroup.options(num_cpus=1,
                            scheduling_strategy=_strategy(pg, capture=True)).remote()
        assert ray.get(a.child_group.remote(), timeout=60) == pg.id.hex()
        ray.kill(a)
    finally:
        ray.util.remove_placement_group(pg)


def test_strategy_without_a_group_is_the_default(cluster):
    s = PlacementGroupSchedulingStrategy(placement_group=None)
    assert ray.get(current_group.options(scheduling_strategy=s).remote(),
                   timeout=60) == (None, None, None)
    with pytest.raises(TypeError, match="PlacementGroup"):
        PlacementGroupSchedulingStrategy(placement_group="pg")


# ---------------------------------------------------------------- GPUs
@ray.remote
def visible():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


@ray.remote(num_gpus=1)
def one_gpu():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


@ray.remote
class GpuActor:
    def visible(self):
        return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


def test_task_without_gpus_sees_none(cluster):
    assert ray.get(visible.remote()) == ("", [])
    env, ids = ray.get(one_gpu.remote())
    assert len(ids) == 1 and env == str(ids[0])
    # the same worker may run both kinds: the env follows each task
    for env, ids in ray.get([visible.remote() for _ in range(4)] +
                            [one_gpu.remote() for _ in range(2)]):
        assert env == ",".join(map(str, ids))


def test_options_num_gpus_zero_overrides_the_decorator(cluster):
    assert ray.get(one_gpu.options(num_gpus=0).remote()) == ("", [])

    @ray.remote(num_gpus=2)
    def holds():
        return ray.get_runtime_context().get_assigned_resources().get("GPU", 0)
    assert ray.get(holds.options(num_gpus=0).remote()) == 0


def test_actor_without_gpus_sees_none(cluster):
    a = GpuActor.remote()
    assert ray.get(a.visible.remote()) == ("", [])
    g = GpuActor.options(num_gpus=1).remote()
    env, ids = ray.get(g.visible.remote())
    assert len(ids) == 1 and env == str(ids[0])
    ray.kill(a)
    ray.kill(g)
