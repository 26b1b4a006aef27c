"""Object store speed (issue 3): put/get of a 200 MB numpy array against a plain
in-process numpy copy measured in the same run, and small-object put/get rates.

    python bench/bench_object_store.py [--mb 200] [--seconds 2] [--store-gb 2]

Rows:
  numpy copy          a.copy() of the array (fresh memory each time, as a put is)
  numpy copyto        a copy into one preallocated array (a warm memcpy)
  put, ref dropped    put(a) in a loop, each ref dropped at once (the arena range
                      is reused, so this is the steady state of a put/drop loop)
  put, refs kept      put(a) while keeping every ref (fresh arena ranges each time:
                      first-touch page faults), until half the store is used
  get (large)         get(ref) of the array, the result dropped each time
  get (200 B array)   the same for a tiny array (inline object)
  put(0) / get small  small-object rates
"""
import argparse
import gc
import time

import numpy as np


def rate(fn, seconds, warm=1):
    for _ in range(warm):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--store-gb", type=float, default=2.0)
    args = ap.parse_args()

    import beamlet as ray
    ray.init(num_cpus=1, object_store_memory=int(args.store_gb * 2**30))
    nbytes = args.mb * 2**20
    a = np.random.default_rng(0).random(nbytes // 8)
    gb = nbytes / 1e9
    rows = []

    def row(name, per_s, unit="GB/s", scale=gb):
        rows.append((name, per_s * scale if unit == "GB/s" else per_s, unit))
        print(f"{name:28} {rows[-1][1]:12,.2f} {unit}", flush=True)

    row("numpy copy", rate(lambda: a.copy(), args.seconds))
    dst = np.empty_like(a)
    row("numpy copyto (warm)", rate(lambda: np.copyto(dst, a), args.seconds))
    del dst
    row("put, ref dropped", rate(lambda: ray.put(a), args.seconds))

    kept = []
    limit = int(args.store_gb * 2**30 / 2 // nbytes)
    t0 = time.perf_counter()
    for _ in range(max(1, limit)):
        kept.append(ray.put(a))
    row(f"put, refs kept (x{len(kept)})", len(kept) / (time.perf_counter() - t0))
    del kept
    gc.collect()

    ref = ray.put(a)
    row("get (large), gets/s", rate(lambda: ray.get(ref), args.seconds), "ops/s")
    tiny = ray.put(np.zeros(25))
    row("get (200 B array), gets/s", rate(lambda: ray.get(tiny), args.seconds), "ops/s")
    row("put(0), puts/s", rate(lambda: ray.put(0), args.seconds), "ops/s")
    small = ray.put(0)
    row("get small, gets/s", rate(lambda: ray.get(small), args.seconds), "ops/s")
    del ref, tiny, small
    ray.shutdown()

    d = {r[0]: r[1] for r in rows}
    print(f"\nput/copy ratio (ref dropped): {d['put, ref dropped'] / d['numpy copy']:.2f}"
          f"  (goal >= 0.5)")
    kept_row = [r for r in rows if r[0].startswith("put, refs kept")][0]
    print(f"put/copy ratio (refs kept):   {kept_row[1] / d['numpy copy']:.2f}")


if __name__ == "__main__":
    main()
