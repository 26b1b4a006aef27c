"""The raylet's own CPU time per operation, for the hot paths (tasks, actor calls,
small put/get): a measure that other load on the machine disturbs far less than
throughput does, for comparing two versions of the raylet on a shared machine.

    python bench/bench_raylet_cpu.py [--n 5000] [--rounds 3]

Each row warms up with n/10 operations, then runs n, and reports the CPU seconds
(user + system) the raylet process used meanwhile, per operation, in
microseconds, with the wall time per operation beside it.  The kernel counts CPU
time in clock ticks (10 ms): n = 5000 resolves 2 us per operation.  To compare versions,
run it alternately from two checkouts (PYTHONPATH=<checkout>), as
bench/README.md describes.
"""
import argparse
import json
import statistics
import time

import psutil

import beamlet as ray


def raylet_process():
    me = psutil.Process()
    for p in me.children(recursive=True):
        try:
            if "beamlet.raylet.raylet" in " ".join(p.cmdline()):
                return p
        except psutil.NoSuchProcess:
            continue
    raise RuntimeError("no raylet among this driver's processes")


def cpu(p):
    t = p.cpu_times()
    return t.user + t.system


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="operations per row (default 5000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; medians shown")
    ap.add_argument("--json", help="also write the per-round results here")
    args = ap.parse_args()
    ray.init(num_cpus=2)
    try:
        @ray.remote
        def small():
            return b"ok"

        @ray.remote
        class Actor:
            def small(self):
                return b"ok"

        a = Actor.remote()
        ray.get(a.small.remote())
        n = args.n
        rows = {
            "tasks sync": lambda k: [ray.get(small.remote()) for _ in range(k)],
            "tasks async": lambda k: ray.get([small.remote() for _ in range(k)]),
            "actor calls sync": lambda k: [ray.get(a.small.remote()) for _ in range(k)],
            "actor calls async": lambda k: ray.get([a.small.remote() for _ in range(k)]),
            "put small": lambda k: [ray.put(b"x" * 100) for _ in range(k)],
            "put + get small": lambda k: [ray.get(ray.put(b"x" * 100)) for _ in range(k)],
        }
        p = raylet_process()
        results = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, body in rows.items():
                body(max(1, n // 10))   # warm up (workers started, caches filled)
                c0, t0 = cpu(p), time.perf_counter()
                body(n)
                c1, t1 = cpu(p), time.perf_counter()
                results[name].append({"cpu_us": (c1 - c0) / n * 1e6,
                                      "wall_us": (t1 - t0) / n * 1e6})
        print(f"{'row':20s} {'raylet CPU/op':>14s} {'wall/op':>10s}")
        for name, rs in results.items():
            c = statistics.median(r["cpu_us"] for r in rs)
            w = statistics.median(r["wall_us"] for r in rs)
            print(f"{name:20s} {c:11.1f} us {w:7.1f} us")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
