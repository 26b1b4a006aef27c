"""Actor failures on real clusters: kill(), crashed actor processes, restarts
(max_restarts), resent calls (max_task_retries), exit_actor(), failed constructors.
Processes are really killed (SIGKILL / os._exit), nothing is mocked."""
import os
import signal
import time

import pytest

import beamlet as ray
from conftest import alive, wait_for


@pytest.fixture(scope="module", autouse=True)
def _shutdown_at_end():
    yield
    ray.shutdown()


@pytest.fixture
def cluster():
    """A 2-CPU cluster reused by consecutive tests of this module."""
    if not ray.is_initialized():
        ray.init(num_cpus=2)
    yield ray


@ray.remote
class Victim:
    def __init__(self, marker=None):
        self.n = 0
        self.marker = marker
        if marker:                      # count constructor runs in a file
            with open(marker, "a") as f:
                f.write("init\n")

    def inc(self):
        self.n += 1
        return self.n

    def pid(self):
        return os.getpid()

    def sleep(self, s):
        time.sleep(s)
        return s

    def crash(self):
        os._exit(3)

    def crash_once(self, path):
        # dies the first time it runs, succeeds when resent to the restarted actor
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "done"

    def leave(self):
        ray.exit_actor()


def _inits(marker):
    with open(marker) as f:
        return f.read().count("init")


# ------------------------------------------------------------------ kill
def test_kill_fails_pending_and_later_calls(cluster):
    v = Victim.remote()
    pid = ray.get(v.pid.remote())
    running = v.sleep.remote(30)
    queued = v.inc.remote()
    time.sleep(0.2)
    ray.kill(v)
    for ref in (running, queued, v.inc.remote()):
        with pytest.raises(ray.ActorDiedError, match="killed by beamlet.kill"):
            ray.get(ref, timeout=20)
    assert issubclass(ray.ActorDiedError, ray.RayActorError)   # (Ray's hierarchy)
    wait_for(lambda: not alive(pid), msg="the killed actor's process to exit")


def test_kill_before_creation_finishes(cluster):
    @ray.remote
    class SlowInit:
        def __init__(self):
            time.sleep(30)

        def ping(self):
            return 1

    s = SlowInit.remote()
    ref = s.ping.remote()
    time.sleep(0.3)
    ray.kill(s)
    with pytest.raises(ray.ActorDiedError):
        ray.get(ref, timeout=20)
    # the creation's CPU came back
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0, msg="CPUs back")


def test_kill_rejects_non_handles(cluster):
    with pytest.raises(TypeError, match="actor handle"):
        ray.kill("not an actor")


# ------------------------------------------------------------------ crashes
def test_crashed_actor_raises_with_cause(cluster):
    v = Victim.remote()
    ray.get(v.inc.remote())
    with pytest.raises(ray.ActorDiedError, match="exited with code 3"):
        ray.get(v.crash.remote(), timeout=20)
    with pytest.raises(ray.ActorDiedError, match="exited with code 3"):
        ray.get(v.inc.remote(), timeout=20)


def test_actor_process_killed_from_outside(cluster):
    v = Victim.remote()
    pid = ray.get(v.pid.remote())
    pending = v.sleep.remote(30)
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ray.ActorDiedError, match="SIGKILL"):
        ray.get(pending, timeout=20)


def test_failed_constructor(cluster):
    @ray.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("no good")

        def ping(self):
            return 1

    b = Broken.remote()
    with pytest.raises(ray.ActorDiedError, match="no good"):
        ray.get(b.ping.remote(), timeout=20)
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0, msg="CPUs back")


# ------------------------------------------------------------------ restarts
def test_max_restarts_reruns_constructor(cluster, tmp_path):
    marker = str(tmp_path / "inits")
    v = Victim.options(max_restarts=2).remote(marker)
    pids = set()
    for restart in range(3):
        assert ray.get(v.inc.remote(), timeout=30) == 1   # fresh state each time
        pids.add(ray.get(v.pid.remote()))
        with pytest.raises(ray.ActorDiedError):
            ray.get(v.crash.remote(), timeout=30)
    assert _inits(marker) == 3 and len(pids) == 3
    # restarts used up: dead for good
    with pytest.raises(ray.ActorDiedError):
        ray.get(v.inc.remote(), timeout=30)


def test_kill_with_restart_allowed(cluster, tmp_path):
    marker = str(tmp_path / "inits")
    v = Victim.options(max_restarts=1).remote(marker)
    ray.get(v.inc.remote())
    ray.kill(v, no_restart=False)
    wait_for(lambda: _inits(marker) == 2, timeout=30, msg="the constructor to run again")
    assert ray.get(v.inc.remote(), timeout=30) == 1
    ray.kill(v)                         # no_restart=True: gone for good
    with pytest.raises(ray.ActorDiedError):
        ray.get(v.inc.remote(), timeout=30)


def test_unlimited_restarts(cluster):
    v = Victim.options(max_restarts=-1).remote()
    for _ in range(4):
        with pytest.raises(ray.ActorDiedError):
            ray.get(v.crash.remote(), timeout=30)
    assert ray.get(v.inc.remote(), timeout=30) == 1


def test_max_task_retries_resends_inflight_calls(cluster, tmp_path):
    flag = str(tmp_path / "crashed")
    v = Victim.options(max_restarts=1, max_task_retries=1).remote()
    assert ray.get(v.crash_once.remote(flag), timeout=30) == "done"
    assert os.path.exists(flag)


def test_without_task_retries_inflight_call_fails_but_later_calls_run(cluster, tmp_path):
    flag = str(tmp_path / "crashed")
    v = Victim.options(max_restarts=1).remote()
    with pytest.raises(ray.ActorDiedError, match="max_task_retries=0"):
        ray.get(v.crash_once.remote(flag), timeout=30)
    assert ray.get(v.inc.remote(), timeout=30) == 1


def test_restart_keeps_large_constructor_argument(cluster):
    import numpy as np

    @ray.remote(max_restarts=1)
    class Big:
        def __init__(self, arr):
            self.total = int(arr.sum())

        def total_(self):
            return self.total

        def crash(self):
            os._exit(1)

    arr = np.ones(1_000_000, dtype=np.int64)     # goes through the object store
    b = Big.remote(arr)
    del arr
    assert ray.get(b.total_.remote()) == 1_000_000
    with pytest.raises(ray.ActorDiedError):
        ray.get(b.crash.remote(), timeout=30)
    assert ray.get(b.total_.remote(), timeout=30) == 1_000_000


# ------------------------------------------------------------------ exit_actor
def test_exit_actor(cluster):
    v = Victim.remote()
    pid = ray.get(v.pid.remote())
    with pytest.raises(ray.ActorDiedError, match="exit_actor"):
        ray.get(v.leave.remote(), timeout=20)
    with pytest.raises(ray.ActorDiedError):
        ray.get(v.inc.remote(), timeout=20)
    wait_for(lambda: not alive(pid), msg="the actor's process to exit")


def test_exit_actor_is_not_restarted(cluster, tmp_path):
    marker = str(tmp_path / "inits")
    v = Victim.options(max_restarts=3).remote(marker)
    ray.get(v.inc.remote())
    with pytest.raises(ray.ActorDiedError):
        ray.get(v.leave.remote(), timeout=20)
    with pytest.raises(ray.ActorDiedError):
        ray.get(v.inc.remote(), timeout=20)
    assert _inits(marker) == 1


def test_exit_actor_outside_an_actor(cluster):
    with pytest.raises(TypeError, match="inside an actor"):
        ray.exit_actor()

    @ray.remote
    def task():
        try:
            ray.exit_actor()
        except TypeError as e:
            return str(e)
    assert "inside an actor" in ray.get(task.remote())


def test_async_actor_exit_and_crash(cluster):
    @ray.remote
    class A:
        async def leave(self):
            ray.exit_actor()

        async def ping(self):
            return 1

    a = A.remote()
    assert ray.get(a.ping.remote()) == 1
    with pytest.raises(ray.ActorDiedError):
        ray.get(a.leave.remote(), timeout=20)
    with pytest.raises(ray.ActorDiedError):
        ray.get(a.ping.remote(), timeout=20)


def test_driver_exit_kills_its_actors():
    # a cluster owned by this process: a second driver's non-detached actor dies
    # when that driver's connection goes
    import subprocess
    import sys
    import textwrap
    ray.shutdown()
    info = ray.init(num_cpus=2, namespace="owner")
    try:
        script = textwrap.dedent("""
            import sys, os, beamlet as ray
            ray.init(address=sys.argv[1], namespace="owner")
            @ray.remote
            class A:
                def pid(self):
                    return os.getpid()
            a = A.options(name="short_lived").remote()
            print(ray.get(a.pid.remote()), flush=True)
        """)
        out = subprocess.run([sys.executable, "-c", script, info["address"]],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        pid = int(out.stdout.split()[-1])
        wait_for(lambda: not alive(pid), msg="the job's actor to die")
        with pytest.raises(ValueError):
            ray.get_actor("short_lived")
    finally:
        ray.shutdown()
