"""Ray's ownership semantics (issue 10 §4), with real SIGKILLs: an object put by
a worker process (an actor, a task's worker) is lost once that process dies —
get raises OwnerDiedError, an ObjectLostError — and a worker that owns live
objects is not ended as idle; an actor created by an actor or a task dies with
its creator (fate sharing) unless it is detached."""
import os
import signal

import numpy as np
import pytest

import beamlet as ray
from conftest import alive, wait_for


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2)
    yield
    ray.shutdown()


@ray.remote
class Owner:
    def make(self, big):
        value = np.arange(200_000) if big else "small value"
        return [ray.put(value)]            # nested: the caller borrows the ref

    def pid(self):
        return os.getpid()

    def crash(self):
        os._exit(1)


@pytest.mark.parametrize("big", [False, True])
def test_object_put_by_a_killed_actor_raises_owner_died(cluster, big):
    a = Owner.remote()
    [ref] = ray.get(a.make.remote(big))
    ray.kill(a)
    with pytest.raises(ray.exceptions.OwnerDiedError) as info:
        ray.get(ref, timeout=30)
    assert isinstance(info.value, ray.exceptions.ObjectLostError)
    assert ref.hex() in str(info.value)


def test_object_put_by_a_crashed_actor_is_lost_even_if_it_restarts(cluster):
    a = Owner.options(max_restarts=1).remote()
    [ref] = ray.get(a.make.remote(True))
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(a.crash.remote())
    with pytest.raises(ray.exceptions.OwnerDiedError):
        ray.get(ref, timeout=30)
    assert ray.get(a.pid.remote(), timeout=60) > 0     # restarted meanwhile


@ray.remote
def use(x):
    return len(x)


def owner_died_seen(ref):
    """A task using `ref` fails with OwnerDiedError (the raylet noticed the owner's
    death: it sees the SIGKILL when the socket closes, within moments)."""
    try:
        ray.get(use.remote(ref), timeout=30)
        return False
    except ray.exceptions.OwnerDiedError:
        return True


def test_owner_died_reaches_tasks_that_use_the_object(cluster):
    a = Owner.remote()
    [ref] = ray.get(a.make.remote(True))
    pid = ray.get(a.pid.remote())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: owner_died_seen(ref), timeout=30, msg="OwnerDiedError")


def test_object_put_by_a_task_whose_worker_dies(cluster):
    @ray.remote
    def put_one():
        return os.getpid(), [ray.put(np.ones(100_000))]

    pid, [ref] = ray.get(put_one.remote())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: owner_died_seen(ref), timeout=30, msg="OwnerDiedError")


def test_objects_the_driver_put_and_returned_values_are_not_affected(cluster):
    @ray.remote
    class Maker:
        def value(self):
            return np.full(100_000, 7)       # a return value: owned by the caller

    m = Maker.remote()
    ref = m.value.remote()
    mine = ray.put("the driver's")
    ray.get(ref)
    ray.kill(m)
    assert int(ray.get(ref)[0]) == 7
    assert ray.get(mine) == "the driver's"


# ---------------------------------------------------------------- fate sharing
@ray.remote
class Child:
    def pid(self):
        return os.getpid()


@ray.remote
class Parent:
    def make_child(self, detached=False, name=None):
        opts = {"lifetime": "detached", "name": name} if detached else {}
        self.child = Child.options(**opts).remote()
        return self.child

    def pid(self):
        return os.getpid()


def test_child_actor_dies_with_its_parent_actor(cluster):
    p = Parent.remote()
    child = ray.get(p.make_child.remote())     # the driver holds a handle too
    child_pid = ray.get(child.pid.remote())
    os.kill(ray.get(p.pid.remote()), signal.SIGKILL)
    wait_for(lambda: not alive(child_pid), timeout=30, msg="the child actor dying")
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(child.pid.remote(), timeout=30)


def test_detached_child_outlives_its_parent(cluster):
    p = Parent.remote()
    child = ray.get(p.make_child.remote(True, "detached-child"))
    child_pid = ray.get(child.pid.remote())
    parent_pid = ray.get(p.pid.remote())
    os.kill(parent_pid, signal.SIGKILL)
    wait_for(lambda: not alive(parent_pid), timeout=30)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(p.pid.remote(), timeout=30)    # the parent is dead by now
    assert ray.get(child.pid.remote(), timeout=30) == child_pid
    ray.kill(child)


def test_actor_created_by_a_task_dies_with_the_task_worker(cluster):
    @ray.remote
    def create():
        return os.getpid(), Child.remote()

    pid, child = ray.get(create.remote())
    child_pid = ray.get(child.pid.remote())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(child_pid), timeout=30, msg="the child actor dying")
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(child.pid.remote(), timeout=30)
