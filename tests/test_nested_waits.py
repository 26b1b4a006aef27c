"""Nested waits do not start a worker per blocked task (issue 16, section 6).

A worker blocked in get lends its CPU; what runs on it must be the tasks the
blocked one waits for, not the next parent (which would block too and need a
worker of its own): N = 150 parents of two children each, on 2 CPUs, need a
handful of workers.  Past the pool's soft limit, workers still start (one per
backoff period, with a log line), so tasks that block on something else never
deadlock."""
import os
import time

import beamlet as ray
from beamlet.worker import core_worker

from conftest import wait_for


def status():
    return core_worker.global_worker.call("status")


@ray.remote
def child(i):
    return i


@ray.remote
def parent(i):
    return sum(ray.get([child.remote(2 * i), child.remote(2 * i + 1)]))


@ray.remote
def grandparent(i):
    return ray.get(parent.remote(i)) + 1


def test_150_nested_waits_use_a_few_workers():
    ray.init(num_cpus=2)
    try:
        n = 150
        assert ray.get([parent.remote(i) for i in range(n)], timeout=240) == \
            [4 * i + 1 for i in range(n)]
        # two parents blocked, their children on the lent CPUs: about 6 (a
        # worker started for a queued task may arrive after a finishing one took
        # it, more so on a loaded machine); never past the soft limit (8)
        peak = status()["workers_peak"]
        assert peak <= 8, f"{peak} workers for {n} nested waits on 2 CPUs"
        # two levels deep as well: up to the soft limit (8), then one at once and
        # one more per backoff period at most (1 s, doubling): a slow machine
        # may see a few
        t0 = time.monotonic()
        assert ray.get([grandparent.remote(i) for i in range(40)], timeout=240) == \
            [4 * i + 2 for i in range(40)]
        elapsed, extra, waited, delay = time.monotonic() - t0, 1, 0.0, 1.0
        while waited + delay <= elapsed:
            waited, extra, delay = waited + delay, extra + 1, min(2 * delay, 10.0)
        peak = status()["workers_peak"]
        assert peak <= 8 + extra, f"{peak} workers in {elapsed:.1f} s (40 grandparents)"
        assert peak < 40        # not a worker per blocked task
    finally:
        ray.shutdown()


@ray.remote
def wait_for_file(path):
    import time
    while not os.path.exists(path):
        time.sleep(0.02)
    return 1


@ray.remote
def blocked_on(refs):
    return ray.get(refs[0]) + 1


def test_past_the_soft_limit_workers_still_start_and_it_is_logged(monkeypatch, tmp_path):
    """Tasks blocked on something no queued task here makes need a worker each:
    past the soft limit they still get one (one per backoff period), and the
    raylet's log says why."""
    monkeypatch.setenv("BEAMLET_WORKER_SOFT_LIMIT", "3")
    monkeypatch.setenv("BEAMLET_WORKER_CAP_BACKOFF_S", "0.2")
    info = ray.init(num_cpus=2)
    try:
        gate_file = str(tmp_path / "open")
        gate = wait_for_file.options(num_cpus=0).remote(gate_file)
        outs = [blocked_on.remote([gate]) for _ in range(6)]
        # 1 gate + 6 blocked tasks need 7 workers: beyond the limit of 3
        wait_for(lambda: status()["workers_peak"] >= 7, 60,
                 msg="workers start past the soft limit")
        open(gate_file, "w").close()
        assert ray.get(outs, timeout=60) == [2] * 6
        log = open(os.path.join(info["session_dir"], "logs", "raylet.err")).read()
        assert "above its soft limit of 3 (BEAMLET_WORKER_SOFT_LIMIT)" in log
    finally:
        ray.shutdown()


def test_what_a_blocked_task_waits_for_runs_first(tmp_path):
    """On one CPU, a parent blocked on its child: the child runs before the
    sibling parents queued ahead of it."""
    ray.init(num_cpus=1)
    try:
        @ray.remote
        def note(tag, *deps):
            with open(tmp_path / "order", "a") as f:
                f.write(tag + "\n")
            return tag

        @ray.remote
        def blocked_parent():
            return ray.get(note.remote("child"))

        first = blocked_parent.remote()
        others = [note.remote(f"sibling{i}") for i in range(3)]
        assert ray.get(first, timeout=60) == "child"
        ray.get(others, timeout=60)
        order = (tmp_path / "order").read_text().split()
        assert order[0] == "child", order
    finally:
        ray.shutdown()


def test_a_child_that_waited_for_its_argument_goes_first_too(tmp_path):
    """The child still waits for its own argument when its parent blocks: the
    lent CPU runs a sibling meanwhile, but once the child is ready it goes
    before the siblings still queued."""
    ray.init(num_cpus=1)
    try:
        order_file = tmp_path / "order"

        @ray.remote
        def note(tag, *deps):
            with open(order_file, "a") as f:
                f.write(tag + "\n")
            return tag

        @ray.remote
        def made(gate_path):
            while not os.path.exists(gate_path):
                pass
            with open(order_file, "a") as f:
                f.write("argument\n")
            return 0

        @ray.remote
        def busy(path):
            while not os.path.exists(path):
                pass
            return "busy"

        @ray.remote
        def blocked_parent(gate_path):
            c = note.remote("child", made.options(num_cpus=0).remote(gate_path))
            open(gate_path, "w").close()
            return ray.get(c)

        first = blocked_parent.remote(str(tmp_path / "gate"))
        # the lent CPU runs `busy` until the child's argument exists
        hold = busy.remote(str(tmp_path / "go"))
        others = [note.remote(f"sibling{i}") for i in (1, 2)]
        wait_for(lambda: order_file.exists() and "argument" in order_file.read_text(),
                 60, msg="the child's argument is made")
        open(tmp_path / "go", "w").close()
        assert ray.get(first, timeout=60) == "child"
        ray.get(others + [hold], timeout=60)
        order = order_file.read_text().split()
        assert order.index("child") < order.index("sibling1"), order
    finally:
        ray.shutdown()
