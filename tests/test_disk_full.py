"""A full spill disk never loses stored objects (issue 16, section 5).

The spill directory is put on a small tmpfs mounted for the test (as root; the
test is skipped, saying why, where mounting is not allowed).  Putting past what
the store and that disk hold fails with OutOfDiskError naming the sizes and the
directory; every object stored before stays readable with its contents (from
memory, or from its spill file when no room can be made for it), as a value and
as a task argument, and the cluster goes on working once references go."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import beamlet as ray
from beamlet.worker import core_worker

from conftest import wait_for

MiB = 2**20


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MiB filesystem (tmpfs) at a fresh directory, unmounted afterwards."""
    path = tmp_path / "small"
    path.mkdir()
    if os.geteuid() != 0:
        print("SKIP: mounting a small filesystem needs root")
        pytest.skip("mounting a small filesystem needs root")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs",
                        str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"SKIP: cannot mount a tmpfs here: {p.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@ray.remote
def first_last(a):
    return int(a[0]), int(a[-1]), int(a.sum())


@ray.remote
def make_big():
    return np.ones(12 * MiB // 8)


def store():
    return core_worker.global_worker.call("status")["store"]


def spilled_paths():
    objs = core_worker.global_worker.call("memory")["objects"]
    return [o["spill_path"] for o in objs if o["where"] == "spilled"]


def test_full_disk_keeps_every_stored_object(small_disk):
    n = 12 * MiB // 8      # 12 MiB objects: 5 fit the store, 3 more the disk
    ray.init(num_cpus=1, object_store_memory=64 * MiB,
             object_spilling_directory=small_disk)
    try:
        refs = []
        with pytest.raises(ray.exceptions.OutOfDiskError) as ei:
            for i in range(30):
                refs.append(ray.put(np.full(n, i, dtype=np.int64)))
        msg = str(ei.value)
        assert isinstance(ei.value, ray.exceptions.ObjectStoreFullError)
        assert small_disk in msg and str(64 * MiB) in msg
        size = int(re.search(r"An object of (\d+) bytes", msg).group(1))
        assert n * 8 <= size < n * 8 + 4096      # the array and its pickle header
        assert "bytes free there" in msg and "already stored are kept" in msg
        assert 5 <= len(refs) < 30
        assert store()["spilled_bytes"] > 0
        assert all(p.startswith(small_disk + os.sep) for p in spilled_paths())
        # every object put before is readable, intact: in order, in reverse,
        # and as a task argument (each get of a spilled one needs room that
        # only a spill to the full disk could make: it is read from its file)
        for order in (range(len(refs)), reversed(range(len(refs)))):
            for i in order:
                v = ray.get(refs[i], timeout=60)
                assert v[0] == i and v[-1] == i and int(v.sum()) == i * n
                del v
        assert ray.get([first_last.remote(r) for r in refs], timeout=120) == \
            [(i, i, i * n) for i in range(len(refs))]
        # a task whose result cannot be stored fails with the same error
        with pytest.raises(ray.exceptions.OutOfDiskError):
            ray.get(make_big.remote(), timeout=60)
        # the cluster stays usable: once references go, puts work again
        del refs[: len(refs) // 2]
        wait_for(lambda: store()["spilled_bytes"] == 0 or store()["arena_used"] <
                 64 * MiB - 13 * MiB, msg="room again")
        more = [ray.put(np.full(n, 100 + i, dtype=np.int64)) for i in range(2)]
        assert [ray.get(first_last.remote(r))[0] for r in more] == [100, 101]
        assert ray.get(first_last.remote(ray.put(np.arange(10))))[2] == 45
    finally:
        ray.shutdown()
    assert os.listdir(small_disk) == []     # the node's spill directory is gone


def test_spilling_directory_from_the_environment(tmp_path):
    """BEAMLET_OBJECT_SPILLING_DIRECTORY in a driver's environment reaches the
    raylet it starts (a real process, not a patched setting)."""
    code = textwrap.dedent("""
        import numpy as np, beamlet as ray
        from beamlet.worker import core_worker
        ray.init(num_cpus=1, object_store_memory=64 * 2**20)
        refs = [ray.put(np.full(2**20, i)) for i in range(12)]
        objs = core_worker.global_worker.call("memory")["objects"]
        print("\\n".join(o["spill_path"] for o in objs if o["where"] == "spilled"))
        assert [int(ray.get(r)[0]) for r in refs] == list(range(12))
        ray.shutdown()
    """)
    where = str(tmp_path / "env-spill")
    env = dict(os.environ, BEAMLET_OBJECT_SPILLING_DIRECTORY=where)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    paths = p.stdout.split()
    assert paths and all(x.startswith(where + os.sep) for x in paths), paths
    assert os.listdir(where) == []
