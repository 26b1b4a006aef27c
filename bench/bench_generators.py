"""Generator tasks: how fast a stream reaches its consumer.

    python bench/bench_generators.py            # beamlet
    python bench/bench_generators.py --rounds 5

Rows (median of the rounds, a fresh cluster per round):
  small items/s      a task yields 5,000 ints; the driver takes each (next) and
                     gets it (inline: its bytes came with the GEN_NEXT reply)
  small, actor       the same from a sync actor's generator method
  1 MiB items        a task yields 500 arrays of 1 MiB (arena); the driver gets
                     and drops each: MiB/s
  1 MiB, backpressure 4   the same with _generator_backpressure_num_objects=4
  list baseline      one task returning the 5,000 ints as a list (for scale)
"""
import argparse
import statistics
import time


def run_round():
    import numpy as np

    import beamlet as ray
    ray.init(num_cpus=2, log_to_driver=False)

    @ray.remote
    def small(n):
        for i in range(n):
            yield i

    @ray.remote
    def as_list(n):
        return list(range(n))

    @ray.remote
    class A:
        def small(self, n):
            for i in range(n):
                yield i

    def chunks(n):
        for i in range(n):
            yield np.full(1 << 17, i, dtype=np.int64)
    big = ray.remote(chunks)
    big_bp = ray.remote(_generator_backpressure_num_objects=4)(chunks)

    out = {}
    ray.get(as_list.remote(10))
    for name, make in (("small items/s", lambda: small.remote(5000)),
                       ("small, actor (items/s)", lambda: a.small.remote(5000))):
        a = A.remote()
        ray.get(a.__ray_ready__.remote())
        list(small.remote(10))
        t = time.perf_counter()
        n = sum(1 for r in make() if ray.get(r) is not None)
        out[name] = n / (time.perf_counter() - t)
    for name, fn in (("1 MiB items (MiB/s)", big), ("1 MiB, backpressure 4 (MiB/s)", big_bp)):
        list(fn.remote(3))
        t = time.perf_counter()
        n = 0
        for r in fn.remote(500):
            arr = ray.get(r)
            n += 1
            del arr, r
        out[name] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    ray.get(as_list.remote(5000))
    out["list baseline (items/s)"] = 5000 / (time.perf_counter() - t)
    ray.shutdown()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rounds = [run_round() for _ in range(args.rounds)]
    for key in rounds[0]:
        print(f"{key:34s} {statistics.median(r[key] for r in rounds):12,.0f}")


if __name__ == "__main__":
    main()
