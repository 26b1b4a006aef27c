"""The memory monitor (issue 16, "memory pressure"): when the node's memory use
crosses the threshold, the worker of the newest retriable task is killed (never
the raylet or the driver), its task is retried per max_retries and then fails
with OutOfMemoryError naming the task and its memory use.

The policy and the memory readers are checked without processes; the monitor
itself on a real cluster inside a memory cgroup made for the test (as root;
cgroup v2 if it has the memory controller, else v1; skipped, saying why, where
neither can be made)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from beamlet.raylet import memory_monitor as mm

MiB = 2**20


# ----------------------------------------------------------------- the policy (pure)
def C(name, owner, started, retriable=True):
    return mm.Candidate(name, owner, started, retriable, name)


def test_policy_prefers_retriable_then_the_busiest_caller_then_the_newest():
    assert mm.choose_victim([]) is None
    # retriable work first, however new the other is
    assert mm.choose_victim([C("a", 1, 1.0), C("b", 1, 9.0, False)]).key == "a"
    # only non-retriable left: the newest of them
    assert mm.choose_victim([C("a", 1, 1.0, False), C("b", 1, 2.0, False)]).key == "b"
    # the caller with most running tasks, its newest task
    cands = [C("x1", "X", 1.0), C("x2", "X", 5.0), C("x3", "X", 3.0),
             C("y1", "Y", 8.0), C("y2", "Y", 9.0)]
    assert mm.choose_victim(cands).key == "x2"
    # a tie: the caller whose first task started last
    cands = [C("x1", "X", 1.0), C("x2", "X", 7.0), C("y1", "Y", 2.0), C("y2", "Y", 3.0)]
    assert mm.choose_victim(cands).key == "y2"


# ----------------------------------------------------------------- reading memory
def _tree(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def test_reads_a_cgroup_v2_limit_less_inactive_file_cache(tmp_path):
    root = _tree(tmp_path, {
        "proc/cgroup": "0::/job/task\n",
        "proc/mountinfo": f"41 31 0:38 / {tmp_path}/cg rw - cgroup2 cgroup2 rw\n",
        "cg/job/task/memory.max": "max\n",          # no limit here ...
        "cg/job/task/memory.current": "100\n",
        "cg/job/memory.max": str(1000 * MiB) + "\n",  # ... but on its parent
        "cg/job/memory.current": str(700 * MiB) + "\n",
        "cg/job/memory.stat": f"anon 1\ninactive_file {100 * MiB}\n",
        "meminfo": "MemTotal: 8000000 kB\nMemAvailable: 7000000 kB\n",
    })
    used, limit, where = mm.read_memory(proc=f"{root}/proc", meminfo=f"{root}/meminfo")
    assert (used, limit) == (600 * MiB, 1000 * MiB) and "cgroup v2" in where


def test_reads_a_cgroup_v1_limit_else_the_machine(tmp_path):
    root = _tree(tmp_path, {
        "proc/cgroup": "4:memory:/pod/c1\n0::/\n",
        "proc/mountinfo": (f"35 31 0:32 / {tmp_path}/mem rw - cgroup cgroup rw,memory\n"
                           f"41 31 0:38 / {tmp_path}/v2 rw - cgroup2 cgroup2 rw\n"),
        "v2/memory.current": "5\n",                 # v2 without a memory limit
        "mem/pod/c1/memory.limit_in_bytes": str(512 * MiB) + "\n",
        "mem/pod/c1/memory.usage_in_bytes": str(300 * MiB) + "\n",
        "mem/pod/c1/memory.stat": f"cache 1\ntotal_inactive_file {44 * MiB}\n",
        "meminfo": "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\n",
    })
    used, limit, where = mm.read_memory(proc=f"{root}/proc", meminfo=f"{root}/meminfo")
    assert (used, limit) == (256 * MiB, 512 * MiB) and "cgroup v1" in where
    # no limit anywhere: the machine, MemTotal - MemAvailable
    (tmp_path / "mem/pod/c1/memory.limit_in_bytes").write_text(str(2**63 - 4096))
    used, limit, where = mm.read_memory(proc=f"{root}/proc", meminfo=f"{root}/meminfo")
    assert (used, limit, where) == (2000000 * 1024, 8000000 * 1024, "the machine")


# ----------------------------------------------------------------- a real cluster
def _make_memory_cgroup(limit):
    """A child memory cgroup of this process's own with `limit` bytes: (its
    cgroup.procs path, how to remove it), or pytest.skip saying why not."""
    if os.geteuid() != 0:
        print("SKIP: creating a cgroup needs root")
        pytest.skip("creating a cgroup needs root")
    why = []
    for version, d, _ in mm._cgroup_dirs():
        child = os.path.join(d, f"beamlet-test-{os.getpid()}")
        try:
            os.mkdir(child)
        except OSError as e:
            why.append(f"v{version} {d}: {e.strerror}")
            continue
        knob = "memory.max" if version == 2 else "memory.limit_in_bytes"
        try:
            with open(os.path.join(child, knob), "w") as f:
                f.write(str(limit))
        except OSError as e:
            os.rmdir(child)
            why.append(f"v{version} {d}: no memory limit ({e.strerror})")
            continue
        return os.path.join(child, "cgroup.procs"), lambda c=child: os.rmdir(c)
    print(f"SKIP: no memory cgroup can be made here: {why}")
    pytest.skip(f"no memory cgroup can be made here: {why}")


DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import beamlet as ray
    from beamlet.worker import core_worker
    MiB = 2**20
    ray.init(num_cpus=2, object_store_memory=64 * MiB)
    core = core_worker.global_worker
    out = {"start": core.call("status")["memory"],
           "raylet_pid": core.node_info["raylet_pid"]}

    def grab_forever():
        chunks = []
        while True:      # written bytes, so the pages are really used
            chunks.append(bytearray(b"x") * (16 * MiB))
            time.sleep(0.01)

    @ray.remote(max_retries=1)
    def hog():
        grab_forever()

    @ray.remote(max_retries=2)
    def hog_once(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            grab_forever()
        return "done after a retry"

    @ray.remote
    class Hog:
        def grab(self):
            grab_forever()

    try:
        ray.get(hog.remote(), timeout=120)
        out["hog"] = "returned"
    except ray.exceptions.OutOfMemoryError as e:
        out["hog"] = "OutOfMemoryError"
        out["hog_msg"] = str(e)
    out["kills_after_hog"] = core.call("status")["memory"]["kills"]
    out["hog_once"] = ray.get(hog_once.remote(sys.argv[1]), timeout=120)
    h = Hog.remote()
    try:
        ray.get(h.grab.remote(), timeout=120)
    except ray.exceptions.ActorDiedError as e:
        out["actor_msg"] = str(e)
    out["after"] = ray.get(ray.remote(lambda: 42).remote(), timeout=60)
    out["raylet_alive"] = os.path.exists(f"/proc/{out['raylet_pid']}")
    out["kills"] = core.call("status")["memory"]["kills"]
    ray.shutdown()
    print("RESULT " + json.dumps(out))
""")


def test_hog_task_is_killed_with_out_of_memory_error(tmp_path):
    procs, remove = _make_memory_cgroup(1024 * MiB)
    try:
        env = dict(os.environ, BEAMLET_MEMORY_USAGE_THRESHOLD="0.6",
                   BEAMLET_MEMORY_MONITOR_REFRESH_MS="100")
        # the driver, and so the cluster it starts, runs in the cgroup
        p = subprocess.run(
            ["sh", "-c", f'echo $$ > {procs} && exec "$0" -c "$1" "$2"', sys.executable,
             DRIVER, str(tmp_path / "marker")],
            env=env, capture_output=True, text=True, timeout=280)
    finally:
        try:
            remove()
        except OSError:
            pass
    assert p.returncode == 0, p.stdout + p.stderr
    line, = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    start = out["start"]
    assert start["enabled"] and start["threshold"] == 0.6
    assert start["limit"] == 1024 * MiB and "cgroup" in start["where"]
    assert start["used"] < 0.6 * start["limit"]
    # killed, retried once (max_retries=1), killed again: OutOfMemoryError
    assert out["hog"] == "OutOfMemoryError", out
    msg = out["hog_msg"]
    assert "hog" in msg and "memory usage threshold 0.6" in msg and "MiB resident" in msg
    assert "max_retries=1" in msg
    assert out["kills_after_hog"] == 2
    # a task killed once succeeds on its retry
    assert out["hog_once"] == "done after a retry"
    # an actor (max_restarts=0) dies with the reason
    assert "memory monitor" in out["actor_msg"] and "Hog" in out["actor_msg"]
    assert out["kills"] == 4
    # the raylet and the driver survived, and the cluster still runs tasks
    assert out["raylet_alive"] and out["after"] == 42
