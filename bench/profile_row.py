"""Where the time of one microbenchmark row goes, per process: CPU share and the
hottest Python functions of every process of the cluster, sampled with py-spy
while the row runs in a loop.

    python bench/profile_row.py --row '1:1 actor calls sync' --seconds 5
    python bench/profile_row.py --engine ray --python /work/ray-venv/bin/python \\
        --row 'single client tasks sync' --load 2

The row runs in a child process (the driver) with a fresh cluster, exactly as
bench/microbench.py defines it; once it is warm, py-spy samples the driver and
each of its descendants (raylet, workers; for Ray also the GCS server and the
rest) for --seconds, without pausing them (--nonblocking), and psutil measures
each process's CPU time over the same interval.  The report per process: its
share of one core, its sample count, the functions with the most samples where
they are the innermost frame ("self"; only samples holding the GIL, so time
blocked in a syscall or waiting is not counted), and the rate the row reached.
py-spy must be on PATH or next to this Python (`pip install py-spy`).
--load N runs N CPU spinners during the measurement, as microbench.py does.
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import microbench  # noqa: E402  (the rows and the load spinners)


def child(engine, row, seconds):
    import importlib
    import numpy as np
    ray = importlib.import_module(engine)
    ray.init(num_cpus=microbench.NUM_CPUS)
    d = microbench.define(ray)
    ray.get(d.small_value.remote())
    for name, unit, setup, _phases in microbench.rows(ray, d, np):
        if name == row:
            break
    else:
        sys.exit(f"no row named {row!r}")
    body, ops = setup()
    t_end = time.perf_counter() + 1.0
    while time.perf_counter() < t_end:   # warm: workers up, channels open
        body()
    print("READY", flush=True)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        body()
        n += 1
    print("RATE", json.dumps(n * ops / (time.perf_counter() - t0)), flush=True)
    ray.shutdown()


def describe(p):
    try:
        cmd = " ".join(p.cmdline())
    except Exception:
        return "?"
    for key, name in (("default_worker", "worker"), ("worker.main", "worker"),
                      ("raylet", "raylet"), ("gcs_server", "gcs_server"),
                      ("redis-server", "redis"), ("global_scheduler", "monitor"),
                      ("dashboard", "dashboard"), ("log_monitor", "log_monitor"),
                      ("profile_row.py", "driver")):
        if key in cmd:
            return name
    return os.path.basename(p.name())


def top_self(path, n):
    """(total samples, [(count, function)]) from py-spy's raw (collapsed) output."""
    counts, total = collections.Counter(), 0
    with open(path) as f:
        for line in f:
            stack, _, c = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            c = int(c)
            total += c
            leaf = stack.split(";")[-1]
            counts[leaf.split(" (")[0] + " (" + leaf.split(" (")[-1]
                   if " (" in leaf else leaf] += c
    return total, counts.most_common(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="beamlet", choices=["beamlet", "ray"])
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter that has the engine (Ray: its virtualenv)")
    ap.add_argument("--row", required=True, help="the row's exact name")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--load", type=int, default=0, metavar="N")
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.engine, args.row, args.seconds)
        return
    import psutil
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable),
                                                 "py-spy")
    if not os.path.exists(spy):
        ap.error("py-spy not found: pip install py-spy")
    load = microbench.start_load(args.load, sys.executable)
    out = tempfile.mkdtemp(prefix="profile-row-")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen([args.python, os.path.abspath(__file__), "--child",
                             "--engine", args.engine, "--row", args.row,
                             "--seconds", str(args.seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)
    spies = []
    try:
        line = proc.stdout.readline()
        if line.strip() != "READY":
            sys.exit(f"the row did not start: {line!r}")
        me = psutil.Process(proc.pid)
        procs = [me] + me.children(recursive=True)
        names = {p.pid: describe(p) for p in procs}
        before = {}
        for p in procs:
            try:
                before[p.pid] = sum(p.cpu_times()[:2])
            except psutil.Error:
                continue
            spies.append((p, os.path.join(out, f"{p.pid}.txt"), subprocess.Popen(
                [spy, "record", "--nonblocking", "--gil", "--format", "raw", "-r",
                 str(args.rate), "-d", str(int(args.seconds)), "--pid", str(p.pid),
                 "-o", os.path.join(out, f"{p.pid}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        t0 = time.monotonic()
        rate = None
        for line in proc.stdout:
            if line.startswith("RATE "):
                rate = json.loads(line[5:])
                break
        wall = time.monotonic() - t0
        cpu = {}
        for p in procs:
            try:
                cpu[p.pid] = (sum(p.cpu_times()[:2]) - before.get(p.pid, 0)) / wall
            except psutil.Error:
                pass
        for _, _, s in spies:
            s.wait()
        proc.wait()
    finally:
        microbench.stop_load(load)
        if proc.poll() is None:
            proc.kill()
    print(f"{args.engine}: {args.row} at {rate:,.0f}/s with {args.load} spinners"
          if rate else f"{args.engine}: {args.row}: no rate")
    for p, path, _ in sorted(spies, key=lambda s: -cpu.get(s[0].pid, 0)):
        if not os.path.exists(path):
            continue
        total, top = top_self(path, args.top)
        print(f"\n  {names[p.pid]} pid={p.pid}: CPU {cpu.get(p.pid, 0):.0%}, "
              f"{total} samples")
        for fn, c in top:
            print(f"    {c / max(total, 1):6.1%}  {fn}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
