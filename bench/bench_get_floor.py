"""The floor under microbench's "get 10k small objects" row (Ray's single-node
release test: 10,000 objects of list(range(10000)), one get of all of them).

Each arm runs in a fresh process, the arms interleaved round by round, the
10,000 results kept as the row keeps them:
  beamlet     put the 10,000 objects, then time get() of all of them
  loads       pickle.loads of the same bytes 10,000 times, in-process
  list(range) the 10,000 lists built directly: no engine and no pickle
  ... no gc   the same two with the cyclic GC off while they run (beamlet's get
              of many values pauses it, serialization.pause_gc: with it on,
              every collection during the build traverses the lists built so
              far again)
`--profile` adds one cProfile of the beamlet get (where its time goes).

    python bench/bench_get_floor.py [--rounds 3] [--profile]
"""
import argparse
import gc
import pickle
import subprocess
import sys
import time

N = 10_000
VALUE = list(range(10_000))


def arm(name):
    if name.endswith(" no gc"):
        gc.disable()
        try:
            return arm(name[:-len(" no gc")])
        finally:
            gc.enable()
    if name == "loads":
        b = pickle.dumps(VALUE, 5)
        t = time.perf_counter()
        kept = [pickle.loads(b) for _ in range(N)]
        return time.perf_counter() - t, kept
    if name == "list(range)":
        t = time.perf_counter()
        kept = [list(range(10_000)) for _ in range(N)]
        return time.perf_counter() - t, kept
    import beamlet as ray
    ray.init(num_cpus=2)
    try:
        refs = [ray.put(VALUE) for _ in range(N)]
        if name == "profile":
            import cProfile
            import pstats
            pr = cProfile.Profile()
            pr.enable()
            got = ray.get(refs)
            pr.disable()
            pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(8)
            return 0.0, got
        t = time.perf_counter()
        got = ray.get(refs)
        dt = time.perf_counter() - t
        assert len(got) == N and got[-1] == VALUE
        return dt, got
    finally:
        ray.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="also one cProfile of the beamlet get (printed to stderr)")
    ap.add_argument("--arm", help=argparse.SUPPRESS)   # (the child's part)
    args = ap.parse_args()
    if args.arm:
        dt, _ = arm(args.arm)
        print(f"{dt:.3f}")
        return
    arms = ["beamlet", "loads", "list(range)", "loads no gc", "list(range) no gc"]
    times = {a: [] for a in arms}
    for r in range(args.rounds):
        for a in arms:
            out = subprocess.run([sys.executable, __file__, "--arm", a],
                                 capture_output=True, text=True, check=True)
            times[a].append(float(out.stdout.split()[-1]))
        print(f"round {r + 1}: " + ", ".join(f"{a} {times[a][-1]:.2f} s" for a in arms))
    for a in arms:
        print(f"{a:18s} median {sorted(times[a])[len(times[a]) // 2]:.2f} s")
    if args.profile:
        out = subprocess.run([sys.executable, __file__, "--arm", "profile"],
                             capture_output=True, text=True, check=True)
        print(out.stderr)


if __name__ == "__main__":
    main()
