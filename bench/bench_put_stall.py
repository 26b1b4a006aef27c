"""How long other work waits while large fresh objects are put (issue 12, first-touch
puts): a thread of the driver runs one small task after another and records each
round trip while the main thread puts fresh 200 MB arrays back to back (every ref
kept, so each put lands in arena pages never used before and the raylet's prefault
thread maps the pages ahead of it).  A prefault thread that holds its process's
GIL while the kernel creates pages stalls the raylet's loop (every client's
messages) for as long; the tail of the round trips shows it.

    python bench/bench_put_stall.py [--mb 200] [--puts 5] [--rounds 3]

Prints, per round: the puts' rate and the round trips' median, 99th percentile
and maximum."""
import argparse
import threading
import time

import numpy as np


def one_round(ray, mb, puts):
    ray.init(num_cpus=2, object_store_memory=max(2 << 30, (puts + 2) * mb << 20))
    try:
        @ray.remote
        def f():
            return 1

        ray.get([f.remote() for _ in range(50)])
        a = np.ones(mb << 20, dtype=np.uint8)
        lat, stop = [], threading.Event()

        def probe():
            while not stop.is_set():
                t = time.perf_counter()
                ray.get(f.remote())
                lat.append(time.perf_counter() - t)

        th = threading.Thread(target=probe)
        th.start()
        time.sleep(0.3)
        refs = []
        t0 = time.perf_counter()
        for _ in range(puts):
            refs.append(ray.put(a))
        dt = time.perf_counter() - t0
        time.sleep(0.3)
        stop.set()
        th.join()
        lat.sort()
        return (puts * mb / 1024 / dt, lat[len(lat) // 2], lat[int(len(lat) * 0.99)],
                lat[-1], len(lat))
    finally:
        ray.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="size of each array (MiB)")
    ap.add_argument("--puts", type=int, default=5, help="puts per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import beamlet as ray
    for r in range(args.rounds):
        gbs, p50, p99, mx, n = one_round(ray, args.mb, args.puts)
        print(f"round {r + 1}: puts {gbs:.2f} GiB/s; {n} small-task round trips: "
              f"median {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.1f} ms, max {mx * 1e3:.1f} ms",
              flush=True)


if __name__ == "__main__":
    main()
