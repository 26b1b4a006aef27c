"""Restoring a spilled object (issue 15): get() of a spilled 100 MiB object in a
200 MiB store, against writing and reading the same bytes to and from a file in
the same directory in the same run.

    python bench/bench_spill_restore.py [--mb 100] [--store-mb 200] [--gets 6]

Only one object fits in the store, so each get spills the object the previous
get read (a file write) and restores the one asked for (a file read): its cost
should be about one write plus one read of the object, not a wait (before the
fix each get stalled ~10 s, the CREATE_WAIT_S path).

Rows:
  file write + read   write the bytes to a file and read them back (fsync-free,
                      as spilling is), the floor a restore is compared with
  get (restore)       get() of a spilled object, the value dropped each time
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--store-mb", type=int, default=200)
    ap.add_argument("--gets", type=int, default=6)
    args = ap.parse_args()

    import beamlet as ray
    from beamlet.worker import core_worker
    MiB = 2**20
    ray.init(num_cpus=1, object_store_memory=args.store_mb * MiB)
    try:
        refs = [ray.put(np.full(args.mb * MiB, i, dtype=np.uint8)) for i in range(3)]
        spill_dir = os.path.join(core_worker.global_worker.node_info["session_dir"],
                                 "spill")
        data = np.ones(args.mb * MiB, dtype=np.uint8)
        disk = []
        with tempfile.TemporaryDirectory(dir=spill_dir) as d:
            path = os.path.join(d, "x")
            buf = bytearray(data.nbytes)
            for _ in range(3):
                t0 = time.perf_counter()
                with open(path, "wb") as f:
                    f.write(data)
                with open(path, "rb") as f:
                    f.readinto(buf)
                disk.append(time.perf_counter() - t0)
                os.unlink(path)
        gets = []
        for k in range(args.gets):
            ref = refs[k % 3]
            t0 = time.perf_counter()
            v = ray.get(ref)
            gets.append(time.perf_counter() - t0)
            assert v[0] == k % 3
            del v
        st = core_worker.global_worker.call("status")["store"]
        assert st["spilled_bytes"] > 0
    finally:
        ray.shutdown()
    print(f"{args.mb} MiB objects, {args.store_mb} MiB store")
    print(f"{'file write + read':24} median {statistics.median(disk):8.3f} s  "
          f"(all: {', '.join(f'{x:.3f}' for x in disk)})")
    print(f"{'get (restore)':24} median {statistics.median(gets):8.3f} s  "
          f"(all: {', '.join(f'{x:.3f}' for x in gets)})")


if __name__ == "__main__":
    main()
