"""cancel() as Ray documents it (issue 10 §4): actor calls still queued (in the
raylet, or sent ahead to the actor's worker) never run and raise
TaskCancelledError, for sequential, threaded and async actors; a running call of
a sync or threaded actor is only flagged (get_runtime_context().is_canceled()),
an async one's coroutine gets asyncio.CancelledError; force=True on an actor call
is a ValueError; cancel is recursive by default (the tasks a cancelled task
submitted are cancelled too), recursive=False leaves them; retry_exceptions on
actor methods; each concurrent call of an async actor has its own context."""
import asyncio
import os
import pathlib
import time

import pytest

import beamlet as ray
from conftest import wait_for


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4)
    yield
    ray.shutdown()


def wait_file(path, timeout=60):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


class Base:
    def block(self, gate):
        wait_file(gate)
        return "unblocked"

    def record(self, path, value):
        with open(path, "a") as f:
            f.write(f"{value}\n")
        return value

    def until_cancelled(self, started):
        pathlib.Path(started).touch()
        while not ray.get_runtime_context().is_canceled():
            time.sleep(0.01)
        return "saw the flag"


Sequential = ray.remote(Base)
Threaded = ray.remote(max_concurrency=2)(Base)


@ray.remote(concurrency_groups={"one": 1})
class Async:
    @ray.method(concurrency_group="one")
    async def block(self, gate):
        while not os.path.exists(gate):
            await asyncio.sleep(0.01)
        return "unblocked"

    @ray.method(concurrency_group="one")
    async def record(self, path, value):
        with open(path, "a") as f:
            f.write(f"{value}\n")
        return value

    async def sleeps(self, started, log):
        pathlib.Path(started).touch()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pathlib.Path(log).write_text("CancelledError")
            raise
        return "slept"

    async def is_canceled(self):
        return ray.get_runtime_context().is_canceled()


def recorded(path):
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("cls, width", [(Sequential, 1), (Threaded, 2), (Async, 1)])
def test_queued_actor_calls_never_run(cluster, tmp_path, cls, width):
    """The actor is busy (as many `block` calls as it runs at once: for the async
    actor, its group "one" is full); the calls behind wait -- sent ahead to its
    worker, or in the raylet -- and those cancelled never run."""
    gate, log = tmp_path / "gate", tmp_path / "log"
    a = cls.remote()
    busy = [a.block.remote(str(gate)) for _ in range(width)]
    calls = [a.record.remote(str(log), i) for i in range(5)]
    ray.cancel(calls[1])
    ray.cancel(calls[3])
    for i in (1, 3):
        with pytest.raises(ray.exceptions.TaskCancelledError):
            ray.get(calls[i], timeout=30)
    gate.touch()
    assert ray.get(busy, timeout=30) == ["unblocked"] * len(busy)
    assert ray.get([calls[0], calls[2], calls[4]], timeout=30) == [0, 2, 4]
    assert sorted(recorded(log)) == ["0", "2", "4"]      # the cancelled never ran


def test_queued_calls_of_an_async_actor_in_the_raylet(cluster, tmp_path):
    """max_concurrency=1: the calls behind the running one wait in the raylet."""
    gate, log = tmp_path / "gate", tmp_path / "log"
    a = Async.options(max_concurrency=1).remote()
    busy = a.sleeps.remote(str(tmp_path / "started"), str(tmp_path / "x"))
    wait_for((tmp_path / "started").exists, timeout=30)
    calls = [a.is_canceled.remote() for i in range(3)]
    ray.cancel(calls[1])
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(calls[1], timeout=30)
    ray.cancel(busy)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(busy, timeout=30)
    for r in (calls[0], calls[2]):
        with pytest.raises(RuntimeError):      # they ran: is_canceled() raises
            ray.get(r, timeout=30)


@pytest.mark.parametrize("cls", [Sequential, Threaded])
def test_running_call_of_a_sync_actor_is_only_flagged(cluster, tmp_path, cls):
    started = tmp_path / "started"
    a = cls.remote()
    ref = a.until_cancelled.remote(str(started))
    wait_for(started.exists, timeout=30)
    ray.cancel(ref)
    # the call ran on, saw the flag and returned; get raises, as in Ray
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    assert ray.get(a.record.remote(str(tmp_path / "log"), 7)) == 7   # alive


def test_running_call_of_an_async_actor_gets_cancelled_error(cluster, tmp_path):
    started, log = tmp_path / "started", tmp_path / "log"
    a = Async.remote()
    ref = a.sleeps.remote(str(started), str(log))
    wait_for(started.exists, timeout=30)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    assert log.read_text() == "CancelledError"
    with pytest.raises(RuntimeError, match="async actors"):
        ray.get(a.is_canceled.remote())          # as in Ray


def test_force_cancel_of_an_actor_call_is_a_value_error(cluster, tmp_path):
    a = Sequential.remote()
    ref = a.block.remote(str(tmp_path / "gate"))
    with pytest.raises(ValueError, match="force=True is not supported"):
        ray.cancel(ref, force=True)
    (tmp_path / "gate").touch()
    assert ray.get(ref, timeout=30) == "unblocked"


def test_cancel_of_a_finished_call_does_nothing(cluster, tmp_path):
    a = Sequential.remote()
    ref = a.record.remote(str(tmp_path / "log"), 1)
    assert ray.get(ref) == 1
    ray.cancel(ref)
    assert ray.get(ref) == 1


# ---------------------------------------------------------------- is_canceled
def test_is_canceled_in_a_task(cluster, tmp_path):
    started, seen = tmp_path / "started", tmp_path / "seen"

    @ray.remote
    def task():
        pathlib.Path(started).touch()
        try:
            while True:
                time.sleep(0.01)
        except KeyboardInterrupt:
            pathlib.Path(seen).write_text(str(ray.get_runtime_context().is_canceled()))
            raise

    ref = task.remote()
    wait_for(started.exists, timeout=30)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    assert seen.read_text() == "True"

    @ray.remote
    def not_cancelled():
        return ray.get_runtime_context().is_canceled()
    assert ray.get(not_cancelled.remote()) is False


# ---------------------------------------------------------------- recursive
@ray.remote
def child(d, i):
    """Runs until d/stop exists ("finished") or it is cancelled ("cancelled")."""
    pathlib.Path(d, f"started{i}").touch()
    try:
        while not os.path.exists(os.path.join(d, "stop")):
            time.sleep(0.01)
        pathlib.Path(d, f"child{i}").write_text("finished")
    except KeyboardInterrupt:
        pathlib.Path(d, f"child{i}").write_text("cancelled")
        raise


@ray.remote
def parent(d, n):
    refs = [child.remote(d, i) for i in range(n)]
    for r in refs:
        ray.get(r)


def children_end(d, n):
    for i in range(n):
        wait_for((d / f"child{i}").exists, timeout=30, msg=f"child {i} ending")
    return [(d / f"child{i}").read_text() for i in range(n)]


@pytest.mark.parametrize("recursive", [True, False])
def test_cancel_is_recursive_by_default(cluster, tmp_path, recursive):
    ref = parent.remote(str(tmp_path), 2)
    for i in range(2):
        wait_for((tmp_path / f"started{i}").exists, timeout=30)
    if recursive:
        ray.cancel(ref)
    else:
        ray.cancel(ref, recursive=False)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    (tmp_path / "stop").touch()     # children not cancelled finish now
    assert children_end(tmp_path, 2) == ["cancelled" if recursive else "finished"] * 2


def test_cancel_reaches_queued_children_and_their_actor_calls(cluster, tmp_path):
    gate = tmp_path / "gate"

    submitted = tmp_path / "submitted"

    @ray.remote
    def submits(actor, gate, submitted):
        calls = [actor.record.remote(os.path.join(os.path.dirname(gate), "log"), i)
                 for i in range(3)]
        last = actor.block.remote(gate)
        pathlib.Path(submitted).touch()
        ray.get(last)                   # (blocks; the calls queue behind `blocker`)
        return ray.get(calls)

    a = Sequential.remote()
    blocker = a.block.remote(str(gate))     # the actor is busy: calls queue
    ref = submits.remote(a, str(gate), str(submitted))
    wait_for(submitted.exists, timeout=30)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    gate.touch()
    assert ray.get(blocker, timeout=30) == "unblocked"
    assert recorded(tmp_path / "log") == []     # the children's calls never ran
