"""A get/wait that makes no progress says why (issue 11 §1), on a real cluster:
the diagnosis printed once to stderr (by the driver, and by a worker whose own
get is stuck), GetTimeoutError's message, deadlocks named as such, and nothing
for a task that simply runs long.

Every scenario blocks a get in a thread, waits for the diagnosis to appear,
then unblocks what blocked it (so the get returns or fails) — no sleeps."""
import os
import threading

import pytest

import beamlet as ray
from beamlet._private import config
from beamlet.util import placement_group, remove_placement_group
from beamlet.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from conftest import wait_for

STUCK_S = 1.0


@pytest.fixture(scope="module")
def cluster():
    old = os.environ.get("BEAMLET_STUCK_WARNING_S")
    os.environ["BEAMLET_STUCK_WARNING_S"] = str(STUCK_S)   # the workers' too
    saved = config.STUCK_WARNING_S
    config.STUCK_WARNING_S = STUCK_S
    ray.init(num_cpus=1)
    yield ray
    ray.shutdown()
    config.STUCK_WARNING_S = saved
    if old is None:
        del os.environ["BEAMLET_STUCK_WARNING_S"]
    else:
        os.environ["BEAMLET_STUCK_WARNING_S"] = old


class Output:
    """What the driver printed (its own lines and its workers')."""

    def __init__(self, capsys):
        self.capsys = capsys
        self.text = ""

    def read(self):
        out, err = self.capsys.readouterr()
        self.text += out + err
        return self.text

    def wait_for(self, *parts):
        return wait_for(lambda: all(p in self.read() for p in parts), timeout=90,
                        msg=f"{parts} in the output:\n{self.text}")

    def diagnosis(self, ref, *parts):
        """Wait for the line saying that a get of `ref` has waited, containing
        `parts`; it."""
        def found():
            lines = [x for x in self.diagnoses(ref) if all(p in x for p in parts)]
            return lines[0] if lines else None
        return wait_for(found, timeout=90,
                        msg=f"a diagnosis of {ref} with {parts}:\n{self.text}")

    def diagnoses(self, ref):
        """Lines saying that a get of `ref` has waited."""
        self.read()
        mark = f"get(ObjectRef({ref.hex()[:16]}"
        return [line for line in self.text.splitlines()
                if "has waited" in line and mark in line]


class Blocked:
    """A get in a thread (the test's main thread watches the output)."""

    def __init__(self, ref):
        self.ref, self.value, self.error = ref, None, None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            self.value = ray.get(self.ref)
        except Exception as e:
            self.error = e

    def join(self):
        self.thread.join(90)
        assert not self.thread.is_alive(), "the get did not return once unblocked"
        return self


@ray.remote(num_cpus=1)
class Hog:
    def f(self):
        return os.getpid()


def test_actor_holding_the_only_cpu(cluster, capsys):
    out = Output(capsys)
    a = Hog.remote()       # (the line recorded as where A was created)
    apid = ray.get(a.f.remote())
    b = Hog.remote()
    blocked = Blocked(b.f.remote())
    line = out.diagnosis(blocked.ref, "held by actor")
    assert f"actor Hog (pid {apid}) created at test_stuck.py:" in line
    assert "waits for actor Hog to be created" in line and "waits for 1 CPU" in line
    assert "num_cpus=0" in line
    # GetTimeoutError says the same
    with pytest.raises(ray.exceptions.GetTimeoutError, match="held by actor Hog"):
        ray.get(blocked.ref, timeout=0.5)
    ray.kill(a)            # its CPU goes to b: the get returns
    assert blocked.join().value and blocked.error is None
    assert len(out.diagnoses(blocked.ref)) == 1       # said once
    ray.kill(b)


def test_infeasible_and_a_chain_ending_there(cluster, capsys):
    out = Output(capsys)

    @ray.remote(num_gpus=1)
    def needs_gpu():
        return 1

    @ray.remote
    def after(x):
        return x

    first = needs_gpu.remote()
    blocked = Blocked(after.remote(first))
    line = out.diagnosis(blocked.ref, "is infeasible")
    assert "waits for argument" in line and "needs_gpu" in line
    assert "requires 1 CPU, 1 GPU" in line and "the cluster has 1 CPU" in line
    with pytest.raises(ray.exceptions.GetTimeoutError, match="is infeasible"):
        ray.get(first, timeout=0.5)
    ray.cancel(first)
    assert isinstance(blocked.join().error, ray.exceptions.TaskCancelledError)


def test_placement_group_that_cannot_be_placed(cluster, capsys):
    out = Output(capsys)
    pg = placement_group([{"CPU": 8}])

    @ray.remote
    def inside():
        return 1

    blocked = Blocked(inside.options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote())
    line = out.diagnosis(blocked.ref, "waits for placement group")
    assert "cannot be placed" in line and "8 CPU" in line
    remove_placement_group(pg)
    assert blocked.join().error is not None


def test_actor_calling_itself_is_a_deadlock(cluster, capsys):
    out = Output(capsys)

    @ray.remote
    class Selfish:
        def outer(self):
            me = ray.get_runtime_context().current_actor
            return ray.get(me.inner.remote())

        def inner(self):
            return 1

    s = Selfish.remote()
    blocked = Blocked(s.outer.remote())
    line = out.diagnosis(blocked.ref, "calls itself synchronously")
    assert "deadlock" in line and "Selfish.outer" in line and "Selfish.inner" in line
    # the actor's own get is stuck too: its worker says so, and that reaches us
    out.wait_for("(Selfish pid=")
    assert any(x.startswith("(Selfish pid=") and "calls itself synchronously" in x
               for x in out.text.splitlines())
    ray.kill(s)
    assert isinstance(blocked.join().error, ray.exceptions.ActorDiedError)


def test_cycle_between_two_actors_is_a_deadlock(cluster, capsys):
    out = Output(capsys)

    @ray.remote
    class Ping:
        def start(self, other, me):
            return ray.get(other.bounce.remote(me))

        def back(self):
            return 1

    @ray.remote
    class Pong:
        def bounce(self, ping):
            return ray.get(ping.back.remote())

    ping, pong = Ping.remote(), Pong.remote()
    blocked = Blocked(ping.start.remote(pong, ping))
    line = out.diagnosis(blocked.ref, "wait on each other in a cycle")
    assert "Ping.start" in line and "Pong.bounce" in line and "Ping.back" in line
    ray.kill(ping)
    ray.kill(pong)
    assert blocked.join().error is not None


def test_stuck_nested_get_in_a_task_is_reported_by_its_worker(cluster, capsys):
    out = Output(capsys)

    @ray.remote
    def outer():
        @ray.remote(resources={"nowhere": 1})
        def inner():
            return 1
        return ray.get(inner.remote())

    blocked = Blocked(outer.remote())
    out.wait_for("(outer pid=", "nowhere")
    worker_lines = [x for x in out.text.splitlines()
                    if x.startswith("(outer pid=") and "has waited" in x]
    assert worker_lines and "is infeasible" in worker_lines[0]
    line = out.diagnosis(blocked.ref, "is infeasible")
    assert "waits in get()" in line
    ray.cancel(blocked.ref, force=True)
    assert blocked.join().error is not None


def test_a_long_running_task_is_progress(cluster, capsys):
    out = Output(capsys)

    @ray.remote
    def long(seconds):
        import time
        time.sleep(seconds)
        return "done"

    # it runs for several detector periods: its get must stay silent
    assert ray.get(long.remote(4 * STUCK_S)) == "done"
    assert "has waited" not in out.read()
    ready, _ = ray.wait([long.remote(3 * STUCK_S)], timeout=60)
    assert ready and "has waited" not in out.read()
