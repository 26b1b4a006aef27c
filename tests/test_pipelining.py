"""Normal tasks sent ahead to busy workers (raylet.send_ahead): a task queued behind
a short running one must still behave as if it waited in the raylet's queue."""
import os
import time

import pytest

import beamlet as ray
from beamlet import exceptions

from conftest import wait_for


def sent_ahead():
    return ray.api._core().call("status")["tasks_sent_ahead"]


@ray.remote
def leaf(i):
    return i


@ray.remote
def outer(i, nest):
    if not nest:
        return i
    ref = leaf.remote(i)
    time.sleep(0.05)    # the raylet sends `leaf` ahead to this (busy) worker
    return ray.get(ref)


@ray.remote
def nap(s, path=None):
    if path:
        with open(path, "a") as f:
            f.write("ran\n")
    time.sleep(s)
    return s


@ray.remote(max_retries=0)
def maybe_die(die, s):
    time.sleep(s)
    if die:
        os._exit(1)
    return "ok"


@pytest.fixture(autouse=True)
def every_task_counts_as_short(monkeypatch):
    # "short" means under PIPELINE_TASK_S (2 ms) on its last run; on a loaded
    # machine a trivial task can take longer, and then nothing is sent ahead and
    # the path under test is never taken.  (autouse: set before the cluster
    # fixtures start the raylet, which reads it from its environment)
    monkeypatch.setenv("BEAMLET_PIPELINE_TASK_S", "0.02")   # 20 ms; nap(0.05) stays long


def test_blocked_worker_gives_back_the_task_sent_ahead(ray_start_1cpu):
    # both functions are known to be short: on one CPU, the leaf is sent ahead to
    # the worker running `outer`, which then blocks in get() on that very leaf;
    # it must give it back so that another worker runs it (or this deadlocks)
    assert ray.get([leaf.remote(i) for i in range(10)]) == list(range(10))
    assert ray.get(outer.remote(0, False)) == 0     # outer is known to be short
    before = sent_ahead()
    assert ray.get(outer.remote(0, True), timeout=60) == 0
    assert sent_ahead() == before + 1
    # a function whose task blocked is not pipelined any more (nor is anything
    # sent ahead behind it), short as its later runs are
    for i in range(1, 3):
        assert ray.get(outer.remote(i, False)) == i
        before = sent_ahead()
        assert ray.get(outer.remote(i, True), timeout=60) == i
        assert sent_ahead() == before
    wait_for(lambda: ray.available_resources() == ray.cluster_resources(),
             msg="all resources free at rest")


def test_cancel_of_a_task_sent_ahead(ray_start, tmp_path):
    ray.get([nap.remote(0) for _ in range(6)])       # nap is short (last run)
    busy = [nap.remote(1.0) for _ in range(2)]       # both CPUs
    path = str(tmp_path / "ran")
    before = sent_ahead()
    queued = nap.remote(0, path)                     # sent ahead behind one of them
    wait_for(lambda: sent_ahead() > before, msg="a task sent ahead")
    ray.cancel(queued)
    with pytest.raises(exceptions.TaskCancelledError):
        ray.get(queued, timeout=30)
    assert ray.get(busy, timeout=30) == [1.0, 1.0]
    assert not os.path.exists(path), "a cancelled task that had not started ran"
    wait_for(lambda: ray.available_resources() == ray.cluster_resources(),
             msg="all resources free at rest")


def test_several_sent_ahead_run_in_order_and_one_of_them_is_cancelled(
        ray_start_1cpu, tmp_path):
    # up to PIPELINE_DEPTH (4) wait sent ahead to one worker; cancelling the
    # middle one leaves the others to run, in order
    ray.get([nap.remote(0) for _ in range(4)])        # nap is short (last run)
    busy = nap.remote(1.0)
    before = sent_ahead()
    paths = [str(tmp_path / f"ran{i}") for i in range(3)]
    queued = [nap.remote(0, p) for p in paths]
    wait_for(lambda: sent_ahead() >= before + 3, msg="three tasks sent ahead")
    ray.cancel(queued[1])
    with pytest.raises(exceptions.TaskCancelledError):
        ray.get(queued[1], timeout=30)
    assert ray.get([busy, queued[0], queued[2]], timeout=30) == [1.0, 0, 0]
    assert os.path.exists(paths[0]) and os.path.exists(paths[2])
    assert not os.path.exists(paths[1]), "a cancelled task that had not started ran"
    assert os.stat(paths[0]).st_mtime_ns <= os.stat(paths[2]).st_mtime_ns
    wait_for(lambda: ray.available_resources() == ray.cluster_resources(),
             msg="all resources free at rest")


def test_crash_requeues_the_task_sent_ahead_without_using_a_retry(ray_start):
    ray.get([maybe_die.remote(False, 0) for _ in range(6)])
    dying = maybe_die.remote(True, 0.5)
    other = maybe_die.remote(False, 0.5)
    before = sent_ahead()
    behind = [maybe_die.remote(False, 0) for _ in range(4)]
    wait_for(lambda: sent_ahead() >= before + 2, msg="tasks sent ahead")
    with pytest.raises(exceptions.WorkerCrashedError):
        ray.get(dying, timeout=30)
    # max_retries=0, yet the task queued behind the crashed one never started:
    # it runs elsewhere instead of failing
    assert ray.get(behind + [other], timeout=30) == ["ok"] * 5
    wait_for(lambda: ray.available_resources() == ray.cluster_resources(),
             msg="all resources free at rest")


def test_nothing_is_sent_ahead_behind_a_long_function(ray_start):
    ray.get([nap.remote(0.05) for _ in range(2)])    # nap took 50 ms last time
    before = sent_ahead()
    assert ray.get([nap.remote(0.05) for _ in range(6)], timeout=30) == [0.05] * 6
    assert sent_ahead() == before


def test_resources_exact_after_a_burst(ray_start):
    for _ in range(3):
        assert ray.get([leaf.remote(i) for i in range(2000)]) == list(range(2000))
    assert sent_ahead() > 0
    wait_for(lambda: ray.available_resources() == ray.cluster_resources(),
             msg="all resources free at rest")
