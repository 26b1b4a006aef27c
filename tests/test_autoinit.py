"""Auto-init (issue 10 §1): a driver that never calls init() gets a cluster on the
first call that needs one, as Ray does.  Each case runs a real script in its own
Python process (no init() call in it) and checks what it printed, and that the
cluster it started is gone once the script exits."""
import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

import beamlet as ray
from conftest import wait_for

# what every script prints last: where its cluster lived, so the test can check
# that nothing of it is left
_REPORT = textwrap.dedent("""
    import json as _json
    from beamlet import api as _api
    _info = _api._core().node_info
    print("REPORT " + _json.dumps({"session_dir": _info["session_dir"],
                                   "raylet_pid": _info["raylet_pid"],
                                   "node_id": _info["node_id"].hex()}), flush=True)
""")


def run_script(body: str, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.pop("BEAMLET_ADDRESS", None)
    env.pop("RAY_ADDRESS", None)
    env.update(env_extra or {})
    code = textwrap.dedent(body) + _REPORT
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=timeout, env=env)
    report = None
    for line in p.stdout.splitlines():
        if line.startswith("REPORT "):
            report = json.loads(line[len("REPORT "):])
    return p, report


def _session_processes(session_dir):
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(session_dir in part for part in proc.info["cmdline"] or ()):
                out.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def assert_cluster_gone(report):
    wait_for(lambda: not psutil.pid_exists(report["raylet_pid"]), timeout=20,
             msg="the auto-started raylet to exit")
    wait_for(lambda: not _session_processes(report["session_dir"]), timeout=20,
             msg="every process of the auto-started cluster to exit")
    wait_for(lambda: not os.path.exists(report["session_dir"]), timeout=20,
             msg="the session directory to be removed")


HEADER = """
import beamlet as ray

@ray.remote
def double(x):
    return 2 * x

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def incr(self):
        self.n += 1
        return self.n
"""

# The first call of each script is the one that must start the cluster.
FIRST_CALLS = {
    "task": "print('RESULT', ray.get(double.remote(21)))",
    "actor": "c = Counter.remote()\nprint('RESULT', ray.get([c.incr.remote(), "
             "c.incr.remote()]))",
    "put": "print('RESULT', ray.get(ray.put([1, 2])))",
    "wait": "r = double.remote(1)\nprint('RESULT', len(ray.wait([r])[0]))",
    "get_actor": ("try:\n    ray.get_actor('nobody')\nexcept ValueError as e:\n"
                  "    print('RESULT', 'no such actor' if 'nobody' in str(e) else e)"),
    "nodes": "print('RESULT', len(ray.nodes()))",
    "cluster_resources": "print('RESULT', ray.cluster_resources()['CPU'] > 0)",
    "available_resources": "print('RESULT', 'CPU' in ray.available_resources())",
    "get_runtime_context": "print('RESULT', len(ray.get_runtime_context().get_job_id()))",
}
EXPECTED = {"task": "42", "actor": "[1, 2]", "put": "[1, 2]", "wait": "1",
            "get_actor": "no such actor", "nodes": "1", "cluster_resources": "True",
            "available_resources": "True", "get_runtime_context": "8"}


@pytest.mark.parametrize("call", sorted(FIRST_CALLS))
def test_first_call_starts_a_local_cluster(call):
    p, report = run_script(HEADER + "assert not ray.is_initialized()\n" +
                           FIRST_CALLS[call] + "\nassert ray.is_initialized()\n")
    assert p.returncode == 0, p.stderr
    assert f"RESULT {EXPECTED[call]}" in p.stdout, p.stdout + p.stderr
    # Ray's message, once
    assert p.stderr.count("Started a local beamlet instance") == 1, p.stderr
    assert_cluster_gone(report)


def test_explicit_init_after_auto_init_is_the_usual_error():
    p, report = run_script(HEADER + """
ray.get(double.remote(1))
try:
    ray.init()
except RuntimeError as e:
    print("REINIT", "already connected" in str(e) and "ignore_reinit_error" in str(e))
info = ray.init(ignore_reinit_error=True)
print("SAME", bool(info["session_dir"]))
""")
    assert p.returncode == 0, p.stderr
    assert "REINIT True" in p.stdout and "SAME True" in p.stdout, p.stdout + p.stderr
    assert_cluster_gone(report)


def test_auto_init_joins_the_cluster_named_by_the_address_env():
    info = ray.init(num_cpus=1)
    try:
        me = ray.get_runtime_context().get_node_id()
        p, report = run_script(HEADER + "print('RESULT', ray.get(double.remote(4)))\n",
                               env_extra={"BEAMLET_ADDRESS": info["address"]})
        assert p.returncode == 0, p.stderr
        assert "RESULT 8" in p.stdout
        assert "Connected to the beamlet cluster at" in p.stderr, p.stderr
        assert "Started a local" not in p.stderr
        assert report["node_id"] == me                 # it ran on our cluster
        # ... which the script did not stop when it exited
        assert ray.get(ray.put(5), timeout=30) == 5
        assert ray.get(ray.remote(lambda: 10).remote(), timeout=30) == 10
        assert psutil.pid_exists(report["raylet_pid"])
    finally:
        ray.shutdown()


def test_auto_init_can_be_turned_off():
    p, _ = run_script(HEADER + """
try:
    ray.put(1)
except Exception as e:
    print("ERROR", type(e).__name__, "init()" in str(e))
print("CONNECTED", ray.is_initialized())
raise SystemExit(0)
""", env_extra={"RAY_ENABLE_AUTO_CONNECT": "0"})
    assert "ERROR RaySystemError True" in p.stdout, p.stdout + p.stderr
    assert "CONNECTED False" in p.stdout


def test_refs_from_before_shutdown_fail_clearly_without_a_new_cluster():
    ray.init(num_cpus=1)
    ref = ray.put(1)
    ray.shutdown()
    with pytest.raises(ray.exceptions.RaySystemError, match="shutdown"):
        ray.get(ref)
    with pytest.raises(ray.exceptions.RaySystemError, match="shutdown"):
        ray.wait([ref])
    assert not ray.is_initialized()      # no cluster was started for it
    del ref
