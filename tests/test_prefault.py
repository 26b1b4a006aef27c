"""First-touch puts (issue 12): once a large object is created, the raylet maps
arena pages a bounded window ahead of the highest offset ever allocated (in a
thread of its own), so the next large put writes into pages that exist; an idle
cluster's arena does not grow, nor one that only stores small objects."""
import os

import numpy as np

import beamlet as ray
from beamlet.worker import core_worker
from conftest import wait_for

MiB = 2**20


def arena_bytes():
    """Bytes of the node's arena (a memfd) that have pages (the kernel's count)."""
    return os.stat(core_worker.global_worker.node_info["arena_path"]).st_blocks * 512


def test_prefault_window_ahead_of_large_puts_only():
    ray.init(num_cpus=1, object_store_memory=256 * MiB)
    try:
        # small objects and an arena object under the threshold: nothing ahead
        small = [ray.put(i) for i in range(100)]
        one = ray.put(np.ones(MiB // 8))
        assert ray.get(one).sum() == MiB // 8
        assert arena_bytes() < 4 * MiB

        # a 16 MiB put: the window (twice its size) past it gets its pages
        a = np.arange(2 * MiB, dtype=np.int64)            # 16 MiB
        r1 = ray.put(a)
        frontier = 18 * MiB     # (1 MiB + 16 MiB, page-rounded, and headers)
        wait_for(lambda: arena_bytes() >= 17 * MiB + 32 * MiB, timeout=30,
                 msg="pages mapped ahead of the 16 MiB put")
        assert arena_bytes() <= frontier + 32 * MiB + 2 * MiB   # (whole 2 MiB chunks)

        # the next large put lands in the mapped window; values are intact
        r2 = ray.put(a + 1)
        assert np.array_equal(ray.get(r1), a)
        assert np.array_equal(ray.get(r2), a + 1)
        assert ray.get(small) == list(range(100))
    finally:
        ray.shutdown()
