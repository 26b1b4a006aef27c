"""How long a node's own faults take to detect and recover from (the numbers of
docs/fault-tolerance.md, "A node's own faults").  Each row makes the fault for
real and times what a user waits for:

    python bench/bench_node_faults.py [--rows dead_driver,disk_full,oom,frames]

  dead_driver  a two-node `beamlet start` cluster; a driver with tasks running on
               both nodes is SIGKILLed: seconds until its tasks' processes are
               gone, and until a new driver sees every CPU free
  disk_full    spill directory on a 40 MiB tmpfs (root): the put that cannot
               spill (OutOfDiskError), and a get of a spilled object with no
               room to restore it (read from its file)
  oom          a task growing ~1 GiB/s in a 1 GiB memory cgroup (root),
               threshold 0.6, refresh 100 ms: seconds from its start to
               OutOfMemoryError (no retries), and memory use at the kill
  frames       a 2^31 length prefix on the raylet's unix socket: seconds until
               the connection is closed (with the reason)
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

MiB = 2**20
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def cli(args, env):
    return subprocess.run([sys.executable, "-m", "beamlet.cli"] + args, env=env,
                          capture_output=True, text=True, timeout=120)


def row_dead_driver():
    root = tempfile.mkdtemp(prefix="blbf", dir="/tmp")
    env = dict(os.environ, BEAMLET_SESSION_ROOT=root, PYTHONPATH=ROOT)
    try:
        p = cli(["start", "--head", "--port", "0", "--num-cpus", "2",
                 "--object-store-memory", str(100 * MiB)], env)
        addr = re.search(r"address:\s+(\S+)", p.stdout).group(1)
        token = re.search(r"--redis-password (\S+)", p.stdout).group(1)
        cli(["start", "--address", addr, "--redis-password", token, "--num-cpus", "2",
             "--object-store-memory", str(100 * MiB), "--resources", '{"w": 2}'], env)
        d = tempfile.mkdtemp(dir=root)
        code = textwrap.dedent(f"""
            import os, time, beamlet as ray
            ray.init(address="auto")
            @ray.remote
            def spin():
                open(os.path.join({d!r}, str(os.getpid())), "w").close()
                while True:
                    time.sleep(0.1)
            refs = [spin.remote() for _ in range(2)] + \\
                [spin.options(resources={{"w": 1}}).remote() for _ in range(2)]
            refs += [spin.remote() for _ in range(10)]
            while len(os.listdir({d!r})) < 4:
                time.sleep(0.05)
            print("READY", flush=True)
            time.sleep(600)
        """)
        drv = subprocess.Popen([sys.executable, "-c", code], env=env,
                               stdout=subprocess.PIPE, text=True)
        assert drv.stdout.readline().startswith("READY")
        pids = [int(x) for x in os.listdir(d)]
        t0 = time.perf_counter()
        os.kill(drv.pid, signal.SIGKILL)
        drv.wait()
        while any(os.path.exists(f"/proc/{p}") and
                  open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
                  for p in pids):
            time.sleep(0.01)
        killed = time.perf_counter() - t0
        q = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import time, beamlet as ray
            t0 = time.perf_counter()
            ray.init(address="auto")
            while ray.available_resources().get("CPU", 0) < 4:
                time.sleep(0.02)
            print(time.perf_counter() - t0)
        """)], env=env, capture_output=True, text=True, timeout=120)
        free = time.perf_counter() - t0
        return {"tasks_killed_s": round(killed, 3), "cpus_free_for_new_driver_s":
                round(free, 3), "new_driver_init_and_wait_s": round(float(q.stdout), 3)}
    finally:
        cli(["stop", "--grace-period", "2"], env)
        shutil.rmtree(root, ignore_errors=True)


def row_disk_full():
    import numpy as np
    import beamlet as ray
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a tmpfs"}
    mnt = tempfile.mkdtemp(prefix="blbf-disk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt], check=True)
    try:
        ray.init(num_cpus=1, object_store_memory=64 * MiB, object_spilling_directory=mnt)
        refs = []
        try:
            while True:
                t0 = time.perf_counter()
                refs.append(ray.put(np.full(12 * MiB // 8, len(refs))))
        except ray.exceptions.OutOfDiskError:
            failed = time.perf_counter() - t0
        keep = [ray.get(r) for r in refs[-5:]]      # map what is in memory
        t0 = time.perf_counter()
        v = ray.get(refs[0])                        # spilled: no room to restore
        from_file = time.perf_counter() - t0
        assert v[0] == 0
        del keep, v, refs
        ray.shutdown()
        return {"failing_put_s": round(failed, 4), "get_from_spill_file_s":
                round(from_file, 4)}
    finally:
        subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)


def row_oom():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from beamlet.raylet import memory_monitor as mm
    if os.geteuid() != 0:
        return {"skipped": "needs root to make a memory cgroup"}
    for version, d, _ in mm._cgroup_dirs():
        child = os.path.join(d, f"blbf-{os.getpid()}")
        try:
            os.mkdir(child)
            with open(os.path.join(child, "memory.max" if version == 2 else
                                   "memory.limit_in_bytes"), "w") as f:
                f.write(str(1024 * MiB))
            break
        except OSError:
            if os.path.isdir(child):
                os.rmdir(child)
            child = None
    if child is None:
        return {"skipped": "no memory cgroup can be made"}
    code = textwrap.dedent("""
        import json, time, beamlet as ray
        ray.init(num_cpus=1, object_store_memory=64 * 2**20)
        @ray.remote(max_retries=0)
        def hog():
            chunks = []
            while True:
                chunks.append(bytearray(b"x") * (16 * 2**20))
                time.sleep(0.005)
        ray.get(ray.remote(lambda: 1).remote())
        t0 = time.perf_counter()
        try:
            ray.get(hog.remote())
        except ray.exceptions.OutOfMemoryError as e:
            used = e.args[0].split("memory use was ")[1].split(" MiB")[0]
            print(json.dumps({"start_to_error_s": round(time.perf_counter() - t0, 3),
                              "memory_at_kill_mib": int(used),
                              "threshold_mib": int(0.6 * 1024)}))
        ray.shutdown()
    """)
    env = dict(os.environ, BEAMLET_MEMORY_USAGE_THRESHOLD="0.6",
               BEAMLET_MEMORY_MONITOR_REFRESH_MS="100", PYTHONPATH=ROOT)
    try:
        p = subprocess.run(["sh", "-c", f'echo $$ > {child}/cgroup.procs && exec "$0" -c '
                            f'"$1"', sys.executable, code], env=env, capture_output=True,
                           text=True, timeout=120)
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        os.rmdir(child)


def row_frames():
    import beamlet as ray
    from beamlet.worker import core_worker
    ray.init(num_cpus=1)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(core_worker.global_worker.conn.path)
            t0 = time.perf_counter()
            s.sendall(struct.pack("<I", 2**31))
            while s.recv(65536):
                pass
            return {"closed_after_s": round(time.perf_counter() - t0, 4)}
    finally:
        ray.shutdown()


ROWS = {"dead_driver": row_dead_driver, "disk_full": row_disk_full, "oom": row_oom,
        "frames": row_frames}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS))
    args = ap.parse_args()
    for name in args.rows.split(","):
        print(f"{name:12} {json.dumps(ROWS[name]())}", flush=True)


if __name__ == "__main__":
    main()
