"""Process failures on real local clusters: workers that die in a task, a driver
killed with SIGKILL, and shutdown's clean-up."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import beamlet as ray
from conftest import alive, wait_for


def _crash_counting(path):
    with open(path, "a") as f:
        f.write("x")
    os._exit(1)


@ray.remote
def crash_default(path):
    _crash_counting(path)


@ray.remote(max_retries=0)
def crash_no_retry(path):
    _crash_counting(path)


@ray.remote(max_retries=1)
def crash_once(path):
    with open(path, "a") as f:
        f.write("x")
    if len(open(path).read()) == 1:
        os._exit(1)
    return "second try"


@ray.remote
def pid_of():
    return os.getpid()


def test_worker_crash_retried_then_fails(ray_start, tmp_path):
    attempts = tmp_path / "attempts"
    t0 = time.time()
    with pytest.raises(ray.WorkerCrashedError, match="crash_default"):
        ray.get(crash_default.remote(str(attempts)), timeout=120)
    assert attempts.read_text() == "xxxx"   # 1 try + 3 retries (max_retries=3)
    assert time.time() - t0 < 120
    # dead workers were replaced: the cluster still runs tasks
    assert len(set(ray.get([pid_of.remote() for _ in range(4)]))) >= 1


def test_worker_crash_no_retries(ray_start, tmp_path):
    attempts = tmp_path / "attempts"
    with pytest.raises(ray.WorkerCrashedError) as ei:
        ray.get(crash_no_retry.remote(str(attempts)), timeout=60)
    assert attempts.read_text() == "x"
    assert "max_retries=0" in str(ei.value)
    assert ray.get(pid_of.remote()) != os.getpid()


def test_worker_crash_retry_succeeds(ray_start, tmp_path):
    attempts = tmp_path / "attempts"
    assert ray.get(crash_once.remote(str(attempts)), timeout=60) == "second try"
    assert attempts.read_text() == "xx"
    # a dependent task sees the value, not the crash
    ref = crash_default.options(max_retries=2).remote(str(tmp_path / "other"))
    with pytest.raises(ray.WorkerCrashedError):
        ray.get(ref, timeout=60)


def test_worker_killed_from_outside(ray_start, tmp_path):
    @ray.remote(max_retries=0)
    def report_and_sleep(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    pidfile = tmp_path / "pid"
    ref = report_and_sleep.remote(str(pidfile))
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=30, msg="task start")
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    with pytest.raises(ray.WorkerCrashedError, match="SIGKILL"):
        ray.get(ref, timeout=30)
    assert ray.get(pid_of.remote(), timeout=30) > 0


def test_shutdown_removes_session():
    info = ray.init(num_cpus=1)
    try:
        session = info["session_dir"]
        assert os.path.isdir(session)
        worker = ray.get(pid_of.remote())
        children = psutil.Process().children(recursive=True)
        assert worker in {c.pid for c in children}
    finally:
        ray.shutdown()
    assert not os.path.exists(session)
    for c in children:
        assert not alive(c.pid)


DRIVER = textwrap.dedent("""
    import os, sys, time
    import beamlet as ray
    info = ray.init(num_cpus=2)

    @ray.remote
    def pid():
        return os.getpid()
    pids = ray.get([pid.remote() for _ in range(4)])
    print("SESSION", info["session_dir"], flush=True)
    print("READY", flush=True)
    time.sleep(120)
""")


def _descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_driver_sigkill_leaves_nothing(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        session = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("SESSION"):
                session = line.split(None, 1)[1].strip()
            if line.startswith("READY"):
                break
        assert session, f"driver did not start: {proc.stderr.read()[-2000:]}"
        assert os.path.isdir(session)
        procs = _descendants(proc.pid)
        # redis, monitor, raylet and its workers
        assert len(procs) >= 4, [p.cmdline() for p in procs]
        proc.kill()
        proc.wait(10)
        t0 = time.time()
        wait_for(lambda: not [p for p in procs if alive(p.pid)],
                 timeout=10, msg="the cluster's processes to exit")
        wait_for(lambda: not os.path.exists(session), timeout=10,
                 msg="the session dir to be removed")
        assert time.time() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in _descendants(proc.pid):
            p.kill()


def test_cluster_started_in_a_thread_outlives_the_thread():
    """The node's processes die with the driver process, not with the thread that
    called init() (PR_SET_PDEATHSIG is per thread)."""
    import threading

    t = threading.Thread(target=lambda: ray.init(num_cpus=1))
    t.start()
    t.join()
    try:
        time.sleep(1.0)   # the thread is gone; a per-thread death signal has fired

        @ray.remote
        def seven():
            return 7
        assert ray.get(seven.remote(), timeout=30) == 7
    finally:
        ray.shutdown()
