"""A dead driver's work stops (issue 16, section 4): on a standalone cluster of two
nodes started with the real `beamlet start`, a driver is SIGKILLed while its
tasks run (on both nodes, one of them blocked in get on a child) and more wait
in the queue.  Its running tasks' workers are killed, its queued tasks never
start, its non-detached actors die, on every node; its detached actor lives on,
and the CPUs are free again for the next driver."""
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time

from beamlet._private.process import pid_alive

from clitools import MiB, cli_env, run, run_python, start_head  # noqa: F401
from conftest import wait_for

DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import beamlet as ray
    ray.init(address="auto", namespace="dd")
    d = sys.argv[1]

    @ray.remote
    def spin(tag):
        open(os.path.join(d, f"{tag}.{os.getpid()}"), "w").close()
        while True:
            time.sleep(0.1)

    @ray.remote
    def parent(tag):       # blocked in get on its child (its CPU lent back)
        return ray.get(spin.remote(tag + "-child"))

    @ray.remote
    class Holder:
        def pid(self):
            return os.getpid()

    keep = Holder.options(name="keep", lifetime="detached", num_cpus=0).remote()
    plain = Holder.options(num_cpus=0).remote()
    plain_w = Holder.options(num_cpus=0, resources={"w": 0.1}).remote()
    running = [spin.remote("head"), spin.options(resources={"w": 1}).remote("w"),
               parent.options(resources={"w": 1}).remote("parent")]
    pids = {"keep": ray.get(keep.pid.remote()), "plain": ray.get(plain.pid.remote()),
            "plain_w": ray.get(plain_w.pid.remote())}
    want = {"head", "w", "parent-child"}
    while want - {f.split(".")[0] for f in os.listdir(d)}:
        time.sleep(0.05)
    queued = [spin.remote(f"queued{i}") for i in range(8)]   # more than the CPUs
    time.sleep(0.5)       # (they reach the raylet; some may start on a free CPU)
    print("READY " + json.dumps(pids), flush=True)
    time.sleep(600)
""")


def _task_pids(d):
    return {name: int(name.rsplit(".", 1)[1]) for name in os.listdir(d)}


def test_sigkilled_driver_stops_its_tasks_and_actors_on_every_node(cli_env, tmp_path):
    address, _ = start_head(cli_env, "--num-cpus", "2")
    head_info = run(["status"], cli_env)
    assert head_info.returncode == 0, head_info.stderr
    token = re.search(r"--redis-password (\S+)", _).group(1)
    p = run(["start", "--address", address, "--redis-password", token, "--num-cpus",
             "2", "--object-store-memory", str(100 * MiB), "--resources", '{"w": 3}'],
            cli_env)
    assert p.returncode == 0, p.stderr
    d = tmp_path / "tasks"
    d.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(d)], env=cli_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.time() + 120
        while not line.startswith("READY ") and time.time() < deadline:
            if select.select([driver.stdout], [], [], 1.0)[0]:
                line = driver.stdout.readline()
                if not line:
                    break       # the driver exited
        assert line.startswith("READY "), driver.stderr.read() if driver.poll() else line
        actors = json.loads(line[len("READY "):])
        tasks = _task_pids(d)
        assert {"head", "w", "parent-child"} <= {n.split(".")[0] for n in tasks}
        assert all(pid_alive(p) for p in list(tasks.values()) + list(actors.values()))
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        driver.stdout.close()
        driver.stderr.close()
    # every running task's worker and the non-detached actors, on both nodes, die
    wait_for(lambda: not any(pid_alive(p) for p in tasks.values()), 30,
             msg="the dead driver's running tasks are killed")
    wait_for(lambda: not pid_alive(actors["plain"]) and not pid_alive(actors["plain_w"]),
             30, msg="its non-detached actors die")
    assert pid_alive(actors["keep"])
    # the next driver finds every CPU free (a queued task that started would
    # spin forever and hold one), the detached actor alive, and no queued task ran
    code = textwrap.dedent(f"""
        import time, beamlet as ray
        ray.init(address="auto", namespace="dd")
        deadline = time.time() + 60
        while ray.available_resources().get("CPU", 0) < 4 and time.time() < deadline:
            time.sleep(0.1)
        print("CPU", ray.available_resources().get("CPU", 0))
        keep = ray.get_actor("keep")
        print("KEEP", ray.get(keep.pid.remote()) == {actors["keep"]})
        ray.kill(keep)
        ray.shutdown()
    """)
    q = run_python(code, cli_env, timeout=120)
    assert q.returncode == 0, q.stderr
    assert "CPU 4.0" in q.stdout and "KEEP True" in q.stdout, q.stdout
    assert set(_task_pids(d)) == set(tasks)     # no queued task started after
