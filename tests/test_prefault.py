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


def test_mapping_populate_creates_pages_keeps_data_and_lets_threads_run():
    """pages.Mapping.populate (the raylet's prefault thread and the putter's
    map-ahead thread use it): it creates the memfd's pages, changes no byte
    already written, and releases the GIL while the kernel works, so the
    process's other threads (the raylet's loop) run meanwhile; mmap.madvise held
    it for the whole call."""
    import mmap
    import threading
    import time
    from beamlet._private import pages

    size = 256 * MiB
    fd = os.memfd_create("beamlet-test-pages")
    try:
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size)
        mm[5 * MiB:5 * MiB + 5] = b"hello"
        m = pages.Mapping(mm)
        if not pages.POPULATE_WRITE or m.fn is False:
            import pytest
            pytest.skip("no MADV_POPULATE_WRITE on this platform")
        ticks, stop = [], threading.Event()

        def other():
            while not stop.is_set():
                ticks.append(time.perf_counter())

        th = threading.Thread(target=other)
        th.start()
        while not ticks:
            time.sleep(0.001)
        t0 = time.perf_counter()
        assert m.populate(1, size - 1)          # (rounded out to whole pages)
        t1 = time.perf_counter()
        stop.set()
        th.join()
        assert os.fstat(fd).st_blocks * 512 >= size
        assert mm[5 * MiB:5 * MiB + 5] == b"hello" and mm[0] == 0 and mm[size - 1] == 0
        # the middle half of the call: a thread that held the GIL (mmap.madvise)
        # let the other run only before the kernel call began and after it ended
        q = (t1 - t0) / 4
        during = [t for t in ticks if t0 + q < t < t1 - q]
        assert during, f"no other thread ran during a {t1 - t0:.3f} s populate"
        # touch (the fallback for older kernels) reads, never writes
        m.touch(5 * MiB, 4096)
        assert mm[5 * MiB:5 * MiB + 5] == b"hello"
        mm.close()
    finally:
        os.close(fd)
