"""Nested waits (issue 16, section 6): N tasks that each submit two subtasks and
get() them, on 2 CPUs.  Prints the time, the peak number of worker processes
and their peak resident memory (sampled every 0.2 s), per engine.

    python bench/bench_nested_waits.py [--n 150]
    python bench/bench_nested_waits.py --n 150 --compare ray --ray-python /work/ray-venv/bin/python

Each engine runs in its own subprocess (`--engine` runs one directly).  Before
the fix beamlet started a worker per blocked parent (152 workers and 4.9 GB at
N=150, 107 s): the CPU a blocked parent lent went to the next parent instead of
the children it waited for.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time


def _procs():
    """pid -> (parent pid, command line, resident bytes), from /proc (the Ray
    virtualenv may have no psutil)."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/statm") as f:
                rss = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        out[int(name)] = (ppid, cmd, rss)
    return out


def _workers_of(root):
    """(count, resident bytes) of the worker processes below pid `root`."""
    procs = _procs()
    kids, todo = set(), [root]
    while todo:
        p = todo.pop()
        for pid, (ppid, _, _) in procs.items():
            if ppid == p and pid not in kids:
                kids.add(pid)
                todo.append(pid)
    ws = [procs[p] for p in kids if "beamlet.worker.main" in procs[p][1] or
          "default_worker.py" in procs[p][1] or procs[p][1].startswith("ray::")]
    return len(ws), sum(w[2] for w in ws)


def run_engine(engine, n):
    if engine == "ray":
        import ray
    else:
        import beamlet as ray
    ray.init(num_cpus=2)

    @ray.remote
    def child(i):
        return i

    @ray.remote
    def parent(i):
        return sum(ray.get([child.remote(2 * i), child.remote(2 * i + 1)]))

    peak = {"workers": 0, "rss": 0}
    done = threading.Event()

    def watch():
        me = os.getpid()
        while not done.is_set():
            count, rss = _workers_of(me)
            peak["workers"] = max(peak["workers"], count)
            peak["rss"] = max(peak["rss"], rss)
            done.wait(0.2)

    ray.get([parent.remote(i) for i in range(2)])     # warm: the pool exists
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t0 = time.perf_counter()
    out = ray.get([parent.remote(i) for i in range(n)])
    dt = time.perf_counter() - t0
    done.set()
    th.join()
    assert out == [4 * i + 1 for i in range(n)]
    ray.shutdown()
    return {"engine": engine, "n": n, "seconds": round(dt, 2),
            "peak_workers": peak["workers"], "peak_worker_rss_mib": round(peak["rss"] / 2**20)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--compare", choices=["ray"])
    ap.add_argument("--ray-python", default="/work/ray-venv/bin/python")
    ap.add_argument("--engine", choices=["beamlet", "ray"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        print("RESULT " + json.dumps(run_engine(args.engine, args.n)), flush=True)
        return
    runs = [("beamlet", sys.executable)]
    if args.compare:
        runs.append(("ray", args.ray_python))
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(here))
    print(f"{'engine':8} {'N':>5} {'seconds':>8} {'peak workers':>13} {'worker RSS MiB':>15}")
    for engine, python in runs:
        p = subprocess.run([python, os.path.abspath(__file__), "--engine", engine,
                            "--n", str(args.n)], env=env if engine == "beamlet" else None,
                           capture_output=True, text=True, timeout=1800)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(f"{engine}: failed\n{p.stderr[-2000:]}")
            continue
        r = json.loads(line[0][len("RESULT "):])
        print(f"{engine:8} {r['n']:>5} {r['seconds']:>8} {r['peak_workers']:>13} "
              f"{r['peak_worker_rss_mib']:>15}")


if __name__ == "__main__":
    main()
