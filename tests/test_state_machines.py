"""Tier 1: the pure state machines, without any process."""
import pytest

from beamlet._private import protocol as P
from beamlet.raylet.object_store import (Allocator, IllegalTransition as ObjIllegal,
                                         ObjectTable, ObjState, PAGE)
from beamlet.raylet.placement_groups import PGState, PlacementGroup, PlacementGroups
from beamlet.raylet.scheduler import (IllegalTransition, ReadyQueue, ResourceSet, Task,
                                      TaskState)


def spec(resources=None, scheduling=None):
    return P.TaskSpec(b"t" * 16, b"j", P.NORMAL_TASK, b"k", "f", [], [], 1,
                      resources if resources is not None else {"CPU": 1.0},
                      scheduling=scheduling)


def test_task_transitions_follow_the_table():
    t = Task(spec())
    t.move(TaskState.WAITING_FOR_RESOURCES)
    t.move(TaskState.RUNNING)
    t.move(TaskState.FINISHED)
    with pytest.raises(IllegalTransition, match="FINISHED -> RUNNING.*history"):
        t.move(TaskState.RUNNING)


def test_running_task_can_be_requeued_for_retry():
    t = Task(spec())
    for s in (TaskState.WAITING_FOR_RESOURCES, TaskState.RUNNING,
              TaskState.WAITING_FOR_RESOURCES, TaskState.RUNNING, TaskState.FAILED):
        t.move(s)


def test_resource_set_fits_acquire_release():
    r = ResourceSet({"CPU": 2, "GPU": 2, "x": 1})
    assert r.feasible({"CPU": 2}) and not r.feasible({"CPU": 3})
    ids = r.acquire({"CPU": 1, "GPU": 1})
    assert ids == [0] and r.available["CPU"] == 1
    assert r.acquire({"GPU": 1}) == [1]
    assert not r.fits({"GPU": 0.5})
    r.release({"GPU": 1}, [1])
    a = r.acquire({"GPU": 0.5})
    b = r.acquire({"GPU": 0.5})
    assert a == b == [1]            # fractions pack onto one GPU
    r.release({"GPU": 0.5}, a)
    r.release({"GPU": 0.5}, b)
    r.release({"CPU": 1, "GPU": 1}, ids)
    assert r.available == r.total


def test_ready_queue_groups_by_shape_and_keeps_order():
    q = ReadyQueue()
    tasks = [Task(spec({"CPU": 1.0})) for _ in range(3)] + [Task(spec({"GPU": 1.0}))]
    for t in tasks:
        q.push(t)
    heads = q.heads()
    assert len(heads) == 2 and len(q) == 4
    assert heads[0][1][0] is tasks[0]
    assert q.remove(tasks[1]) and len(q) == 3
    assert q.demand() == [{"resources": {"CPU": 1.0}, "count": 2},
                          {"resources": {"GPU": 1.0}, "count": 1}]


def test_allocator_first_fit_and_coalescing():
    a = Allocator(10 * PAGE)
    x = a.alloc(PAGE)
    y = a.alloc(3 * PAGE + 1)        # rounds up to 4 pages
    z = a.alloc(PAGE)
    assert (x, y, z) == (0, PAGE, 5 * PAGE)
    assert a.alloc(5 * PAGE) is None
    a.free(y, 3 * PAGE + 1)
    a.free(x, PAGE)
    assert a.largest_hole() == 5 * PAGE  # x and y merged
    a.free(z, PAGE)
    assert a.largest_hole() == 10 * PAGE and a.used == 0


def test_object_states_and_spill_candidates():
    t = ObjectTable(8 * PAGE)
    o = t.get_or_create(b"o" * 20)
    with pytest.raises(ObjIllegal):
        o.move(ObjState.SPILLED)
    assert t.reserve(o, PAGE) == 0
    t.seal_arena(o, False, ())
    p = t.get_or_create(b"p" * 20)
    t.reserve(p, PAGE)
    t.seal_arena(p, False, ())
    p.pins = 1
    assert t.spill_candidates() == [o]   # pinned objects are never spilled


def test_placement_group_reserve_all_or_nothing():
    node = ResourceSet({"CPU": 2, "GPU": 1})
    pgs = PlacementGroups(node)
    big = PlacementGroup(b"a" * 16, [{"CPU": 2}, {"CPU": 1}], "PACK", "", b"r", b"j", False)
    pgs.groups[big.pg_id] = big
    assert not pgs.feasible_here(big) and not pgs.try_reserve(big)
    assert node.available["CPU"] == 2
    g = PlacementGroup(b"b" * 16, [{"CPU": 1, "GPU": 1}, {"CPU": 1}], "PACK", "", b"r",
                       b"j", False)
    pgs.groups[g.pg_id] = g
    assert pgs.try_reserve(g) and g.state is PGState.CREATED
    assert node.available["CPU"] == 0
    pool, bundle = pgs.pool_for(["PG", g.pg_id, None], {"GPU": 1})
    assert bundle.index == 0 and pool.fits({"GPU": 1})
    assert pgs.pool_for(["PG", g.pg_id, 1], {"GPU": 1}) == (None, None)
    pgs.remove(g)
    assert node.available == node.total
    with pytest.raises(LookupError):
        pgs.pool_for(["PG", g.pg_id, 0], {"CPU": 1})
