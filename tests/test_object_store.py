"""The shared-memory object store (issue 3): inline vs arena, zero-copy reads,
pinning, reference counting, spilling, the full-store error, sizing, cleanup and
`beamlet memory`.  Real clusters; the store's state is read through the raylet's
"status" and "memory" calls."""
import dataclasses
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import beamlet as ray
from beamlet import node as node_mod
from beamlet.worker import core_worker

from conftest import wait_for

MiB = 2**20


def core():
    return core_worker.global_worker


def store():
    return core().call("status")["store"]


def objects():
    return {o["object_id"]: o for o in core().call("memory")["objects"]}


def entry(ref):
    return objects().get(ref.hex())


def arena_used_settles(at_most=0, timeout=10):
    """Wait until the arena holds at most `at_most` bytes (refs are released in
    batches, so the raylet hears of a drop a moment later)."""
    gc.collect()
    wait_for(lambda: store()["arena_used"] <= at_most, timeout,
             msg=f"arena use <= {at_most} (is {store()['arena_used']})")


def memfd_location(arr):
    """(inode, byte offset in the file) of an array's first byte, from
    /proc/self/maps: the same pair in two processes means the same memory."""
    addr = arr.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi:
                path = " ".join(parts[5:])
                return int(parts[4]), int(parts[2], 16) + addr - lo, path
    return None


def fresh(**kw):
    """A cluster of this test's own (after the module's shared one, if still up:
    the tests that need their own store size come after those that share one)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(**kw)


@pytest.fixture(scope="module")
def store_cluster():
    ray.init(num_cpus=2, object_store_memory=512 * MiB)
    yield ray
    ray.shutdown()


# ----------------------------------------------------------------- inline / arena
def test_small_values_inline_large_in_arena(store_cluster):
    arena0 = store()["arena_used"]
    small = [ray.put(0), ray.put("x" * 1000), ray.put(np.zeros(100))]
    for r in small:
        assert entry(r)["where"] == "inline"
    assert store()["arena_used"] == arena0
    big = ray.put(np.zeros(1 * MiB // 8))
    e = entry(big)
    assert e["where"] == "arena" and e["size"] >= 1 * MiB
    assert store()["arena_used"] >= arena0 + 1 * MiB


@ray.remote
def make(n):
    return np.ones(n, dtype=np.uint8)


def test_task_returns_inline_or_arena(store_cluster):
    s, b = make.remote(10), make.remote(2 * MiB)
    assert ray.get(s).sum() == 10 and ray.get(b).sum() == 2 * MiB
    assert entry(s)["where"] == "inline"
    assert entry(b)["where"] == "arena"


# ----------------------------------------------------------------- zero-copy
def test_get_is_zero_copy_and_read_only(store_cluster):
    a = np.arange(4 * MiB // 8, dtype=np.int64)
    r = ray.put(a)
    x, y = ray.get(r), ray.get(r)
    assert np.shares_memory(x, y)
    assert not x.flags.writeable
    with pytest.raises(ValueError):
        x[0] = 5
    assert np.array_equal(x, a)
    # the array's memory is the arena (the memfd), not a private copy
    inode, off, path = memfd_location(x)
    assert "beamlet-object-store" in path
    del x, y


@ray.remote
def checksum(arrays):
    """(sum, address mod 64) of each array, read in a worker from the store."""
    return [(int(a.sum()), a.ctypes.data % 64) for a in arrays]


def test_large_buffers_from_any_page_offset_come_back_intact(store_cluster,
                                                              monkeypatch):
    """A large buffer is placed relative to its source's page offset (padding in
    the layout's length word): from sources at many offsets, several buffers in
    one object, the values read back whole and 64-byte aligned, here and in a
    worker (which reads the padding from the layout)."""
    from beamlet._private import serialization
    monkeypatch.setattr(serialization, "PLACE_MIN", 1 << 16)   # (2 MiB arrays)
    backing = np.arange(3 * MiB // 8 + 4096, dtype=np.int64)
    # sources 512 bytes apart modulo a page: alone, at least one of them lands
    # where it must be padded (a window of 1,023 offsets holds one of them)
    arrays = [backing[k:k + 256 * 1024] for k in range(0, 512, 64)]
    pads = [serialization.serialize(a).pads[0] for a in arrays]
    assert any(pads) and all(p % 64 == 0 for p in pads), pads
    for a in arrays:
        assert np.array_equal(serialization.deserialize(
            serialization.serialize(a).to_bytes()), a)
    s = serialization.serialize(arrays)
    back = serialization.deserialize(s.to_bytes())
    assert all(np.array_equal(x, y) for x, y in zip(back, arrays))
    r = ray.put(arrays)
    got = ray.get(r)
    for x, y in zip(got, arrays):
        assert np.array_equal(x, y) and x.ctypes.data % 64 == 0
    assert ray.get(checksum.remote(r)) == [(int(a.sum()), 0) for a in arrays]
    # the same through a task's argument and result
    assert ray.get(checksum.remote(arrays)) == [(int(a.sum()), 0) for a in arrays]


@dataclasses.dataclass
class Holder:
    name: str
    data: np.ndarray


def test_nested_arrays_zero_copy(store_cluster):
    a = np.arange(1 * MiB // 8, dtype=np.float64)
    r = ray.put({"list": [a, a + 1], "dc": Holder("h", a * 2), "t": (1, a + 3)})
    v1, v2 = ray.get(r), ray.get(r)
    pairs = [(v1["list"][0], v2["list"][0]), (v1["list"][1], v2["list"][1]),
             (v1["dc"].data, v2["dc"].data), (v1["t"][1], v2["t"][1])]
    for p, q in pairs:
        assert np.shares_memory(p, q) and not p.flags.writeable
        assert "beamlet-object-store" in memfd_location(p)[2]
    assert np.array_equal(v1["dc"].data, a * 2) and v1["dc"].name == "h"


@ray.remote
def where_is(arr):
    """In a worker: the array's checksum and where its memory is."""
    return float(arr.sum()), memfd_location(arr), arr.flags.writeable


def test_two_processes_share_memory(store_cluster):
    a = np.random.default_rng(0).random(2 * MiB // 8)
    r = ray.put(a)
    mine = ray.get(r)
    total, loc, writeable = ray.get(where_is.remote(r))
    assert total == pytest.approx(a.sum()) and not writeable
    # same memfd inode, same byte offset in it: the same physical pages
    assert loc[:2] == memfd_location(mine)[:2]
    assert "beamlet-object-store" in loc[2]


# ----------------------------------------------------------------- beamlet memory
def test_beamlet_memory_command(store_cluster):
    big = ray.put(np.ones(2 * MiB))
    small = ray.put("hello")
    address = ray.init(ignore_reinit_error=True).address   # this cluster's GCS
    cmd = [sys.executable, "-m", "beamlet.cli", "memory", "--address", address]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = {l.split()[0]: l for l in out.stdout.splitlines() if l.strip()}
    assert "arena" in lines[big.hex()] and "driver pid=" in lines[big.hex()]
    assert "inline" in lines[small.hex()]
    js = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=60)
    table = {o["object_id"]: o for o in json.loads(js.stdout)["objects"]}
    assert table[big.hex()]["refcount"] == 1 and table[big.hex()]["where"] == "arena"
    h = subprocess.run([sys.executable, "-m", "beamlet.cli", "memory", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "spilled" in h.stdout


# ----------------------------------------------------------------- ref counting
def test_freed_when_last_ref_dropped(store_cluster):
    r = ray.put(np.zeros(MiB))
    oid = r.hex()
    assert oid in objects()
    del r
    wait_for(lambda: oid not in objects(), msg="object freed")


@ray.remote
class Keeper:
    def __init__(self):
        self.refs = None

    def keep(self, refs):
        self.refs = refs     # a list: the ref inside stays a ref
        return True

    def total(self):
        return float(ray.get(self.refs[0]).sum())

    def drop(self):
        self.refs = None
        return True


def test_ref_held_by_another_process(store_cluster):
    r = ray.put(np.ones(MiB))
    oid = r.hex()
    k = Keeper.remote()
    assert ray.get(k.keep.remote([r]))
    del r
    time.sleep(0.3)
    assert oid in objects(), "freed while an actor holds a ref"
    assert any("worker" in h for h in objects()[oid]["holders"])
    assert ray.get(k.total.remote()) == MiB
    assert ray.get(k.drop.remote())
    wait_for(lambda: oid not in objects(), msg="freed after the actor dropped it")
    ray.kill(k)


@ray.remote
def wait_for_file(path):
    while not os.path.exists(path):
        time.sleep(0.01)
    return 1


@ray.remote
def total_of(gate, arr):
    return float(arr.sum())


def test_pending_task_arg_keeps_object(store_cluster, tmp_path):
    gate_file = str(tmp_path / "go")
    r = ray.put(np.ones(MiB))
    oid = r.hex()
    gate = wait_for_file.remote(gate_file)
    out = total_of.remote(gate, r)
    del r
    time.sleep(0.3)
    e = objects().get(oid)
    assert e is not None, "freed while a pending task needs it"
    assert any("total_of" in h for h in e["holders"])
    open(gate_file, "w").close()
    assert ray.get(out) == MiB
    wait_for(lambda: oid not in objects(), msg="freed after the task ran")


def test_nested_ref_kept_alive_by_outer(store_cluster):
    inner = ray.put(np.arange(MiB // 8))
    inner_id = inner.hex()
    outer = ray.put([inner, "meta"])
    del inner
    time.sleep(0.3)
    assert inner_id in objects()
    assert any("inside object" in h for h in objects()[inner_id]["holders"])
    got = ray.get(outer)
    assert ray.get(got[0])[5] == 5
    del got, outer
    wait_for(lambda: inner_id not in objects(), msg="inner freed with the outer")


def _refuse(ref):
    raise ValueError(f"not this one: {ref!r}")


class Refused:
    """Unpickles to an error, after the refs before it were rebuilt."""
    def __init__(self, ref):
        self.ref = ref

    def __reduce__(self):
        return (_refuse, (self.ref,))


def test_refs_unpickled_together_are_counted_as_one_by_one(store_cluster):
    """The refs inside one value are counted once the value is rebuilt (one
    call): a ref twice in it, one this process holds already, and a value whose
    unpickling fails half-way all keep and free their objects as before."""
    kept = ray.put(np.arange(MiB // 8))
    dropped = ray.put(np.ones(MiB // 8))
    smalls = [ray.put(i) for i in range(100)]
    ids = {"kept": kept.hex(), "dropped": dropped.hex()}
    outer = ray.put([kept, kept, dropped, "meta"] + smalls)
    del dropped, smalls
    got = ray.get(outer)
    del outer
    time.sleep(0.3)
    table = objects()
    assert all(i in table for i in ids.values())
    assert any(h.startswith("driver") for h in table[ids["dropped"]]["holders"])
    assert ray.get(got[2])[0] == 1 and ray.get(got[4:]) == list(range(100))
    small_ids = [r.hex() for r in got[4:]]
    del got
    wait_for(lambda: ids["dropped"] not in objects() and
             not any(i in objects() for i in small_ids),
             msg="the dropped refs' objects freed")
    assert ids["kept"] in objects(), "freed while the driver holds a ref"

    # a value whose unpickling raises after a ref was rebuilt: nothing leaks
    inner = ray.put(np.zeros(MiB // 8))
    inner_id = inner.hex()
    bad = ray.put([inner, Refused(kept)])
    with pytest.raises(ValueError, match="not this one"):
        ray.get(bad)
    assert ray.get(inner)[0] == 0
    del inner, bad, kept
    wait_for(lambda: inner_id not in objects() and ids["kept"] not in objects(),
             msg="objects freed after a failed unpickling")


def test_the_cyclic_gc_is_on_again_after_a_get(store_cluster):
    """A large get builds its values with the cyclic GC paused; afterwards it is
    on again (also when the get raised), and a program that turned it off
    finds it off."""
    @ray.remote
    def fail():
        raise KeyError("boom")

    values = [ray.put([i] * 100) for i in range(32)]
    big = ray.put([[i] for i in range(20000)])      # a pickle over 32 KiB
    assert gc.isenabled()
    assert ray.get(values)[31] == [31] * 100 and gc.isenabled()
    assert len(ray.get(big)) == 20000 and gc.isenabled()
    with pytest.raises(KeyError):
        ray.get(values + [fail.remote()])
    assert gc.isenabled()
    gc.disable()
    try:
        assert ray.get(values)[0] == [0] * 100 and len(ray.get(big)) == 20000
        assert not gc.isenabled()
    finally:
        gc.enable()


# ----------------------------------------------------------------- pinning
def test_view_pins_object_after_ref_dropped():
    fresh(num_cpus=1, object_store_memory=64 * MiB)
    try:
        n = 16 * MiB // 8
        r = ray.put(np.full(n, 7, dtype=np.int64))
        view = ray.get(r)
        oid = r.hex()
        del r
        # no ref left: the object is freed, but its range stays allocated
        wait_for(lambda: store()["freed_pinned"] == 1, msg="freed but pinned")
        assert objects()[oid]["state"] == "FREED" and objects()[oid]["pins"] == 1
        # fill the store again and again: nothing may overwrite the viewed range
        for i in range(20):
            ref = ray.put(np.full(n, i, dtype=np.int64))
            keep = [ray.put(np.full(n, -i, dtype=np.int64)) for _ in range(2)]
            del ref, keep
        assert (view == 7).all()
        # a view derived from it keeps it pinned too
        part = view[10:20]
        del view
        gc.collect()
        time.sleep(0.1)
        assert store()["freed_pinned"] == 1 and (part == 7).all()
        del part
        arena_used_settles(0)
        assert store()["freed_pinned"] == 0
    finally:
        ray.shutdown()


@ray.remote
class ViewHolder:
    def hold(self, refs):
        self.view = ray.get(refs[0])     # a view only: no ref kept
        return True

    def check(self):
        return bool((self.view == 7).all())

    def release(self):
        self.view = None
        return True


def test_view_in_another_process_pins_object():
    fresh(num_cpus=2, object_store_memory=64 * MiB)
    try:
        n = 16 * MiB // 8
        r = ray.put(np.full(n, 7, dtype=np.int64))
        h = ViewHolder.remote()
        assert ray.get(h.hold.remote([r]))
        del r
        wait_for(lambda: store()["freed_pinned"] == 1, msg="freed but pinned")
        for i in range(10):
            keep = [ray.put(np.full(n, i, dtype=np.int64)) for _ in range(3)]
            del keep
        assert ray.get(h.check.remote())
        assert ray.get(h.release.remote())
        arena_used_settles(0)
        ray.kill(h)
    finally:
        ray.shutdown()


# ----------------------------------------------------------------- put/drop loop
def test_put_drop_loop_500x100MB():
    fresh(num_cpus=1, object_store_memory=1024 * MiB)
    try:
        a = np.ones(100 * MiB // 8)
        for _ in range(500):
            ref = ray.put(a)
            del ref
        arena_used_settles(0)
        assert store()["spilled_bytes"] == 0
    finally:
        ray.shutdown()


# ----------------------------------------------------------------- spilling
def test_spill_3x_store_and_read_back():
    fresh(num_cpus=1, object_store_memory=128 * MiB)
    try:
        n = 16 * MiB // 8
        refs = [ray.put(np.full(n, i, dtype=np.int64)) for i in range(24)]  # 384 MiB
        st = store()
        assert st["spilled_bytes"] > 0 and st["arena_used"] <= 128 * MiB
        spill_dir = os.path.join(core().node_info["session_dir"], "spill")
        assert os.listdir(spill_dir)
        for i, r in enumerate(refs):
            v = ray.get(r)
            assert v[0] == i and v[-1] == i
            del v
        # in reverse too (restores spill others back out)
        for i, r in reversed(list(enumerate(refs))):
            assert ray.get(r)[n // 2] == i
        wheres = {o["where"] for o in objects().values()}
        assert "spilled" in wheres
        del refs, r
        wait_for(lambda: store()["spilled_bytes"] == 0 and store()["objects"] == 0,
                 msg="all freed")
        wait_for(lambda: not os.listdir(spill_dir), msg="spill files removed")
        arena_used_settles(0)
    finally:
        ray.shutdown()


def get_in_thread(ref):
    """Start get(ref) (no timeout) in a thread; returns (thread, result box).
    (A get with a timeout would not do here: when it expires, the raylet
    restores a spilled object synchronously.)"""
    box = {}

    def run():
        try:
            box["value"] = ray.get(ref)
        except Exception as e:   # (the cluster stopped under a stuck get)
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_restore_makes_room_without_waiting_for_the_create_deadline(monkeypatch):
    """A get of a spilled object is restored at once when the object in its
    way was mapped by the getter itself (it spills), and read from its spill
    file when another process maps it; a put that needs that room goes on as
    soon as the mapping goes.  None of them waits for the wait for room
    (CREATE_WAIT_S, set here far beyond the test) to run out.  Issue 15: each
    such get stalled ~10 s."""
    monkeypatch.setenv("BEAMLET_CREATE_WAIT_S", "3600")
    fresh(num_cpus=1, object_store_memory=200 * MiB)
    try:
        n = 100 * MiB
        refs = [ray.put(np.full(n, i, dtype=np.uint8)) for i in range(3)]
        # only one fits: each get restores one object, spilling the one the
        # previous get mapped (this driver's own, just released), both orders
        for i in [0, 1, 2, 0, 2, 1]:
            t, box = get_in_thread(refs[i])
            t.join(60)
            assert not t.is_alive(), f"get of spilled object {i} is stuck"
            assert box["value"][0] == i and box["value"][-1] == i
            del box
        # the object in the way is mapped by another process: the get does not
        # wait for it, it reads the spilled object from its file
        holder = ViewHolder.remote()
        assert ray.get(holder.hold.remote([refs[1]]))
        assert entry(refs[0])["where"] == "spilled"
        t, box = get_in_thread(refs[0])
        t.join(60)
        assert not t.is_alive(), "the get waits although it could read the file"
        assert box["value"][5] == 0 and entry(refs[0])["where"] == "spilled"
        del box
        # a put that needs that room waits for it, and goes on as soon as the
        # holder lets the object go (it can be spilled then)
        box = {}
        t = threading.Thread(target=lambda: box.update(ref=ray.put(
            np.full(n, 3, dtype=np.uint8))), daemon=True)
        t.start()
        wait_for(lambda: store()["waiting_for_room"] == 1, msg="the put waits for room")
        # (the reply's ref stays held: freeing any object retries the waiting
        # creates too, which would hide the case tested here)
        released = holder.release.remote()
        assert ray.get(released)
        t.join(60)
        assert not t.is_alive(), "the put stayed stuck after the object was unmapped"
        assert ray.get(box["ref"])[7] == 3
    finally:
        ray.shutdown()


@ray.remote
def sum_all(*arrs):
    return float(sum(a.sum() for a in arrs))


def test_spilled_objects_as_task_args():
    fresh(num_cpus=1, object_store_memory=64 * MiB)
    try:
        n = 8 * MiB // 8
        refs = [ray.put(np.full(n, 1.0)) for _ in range(20)]   # 160 MiB
        assert store()["spilled_bytes"] > 0
        outs = [sum_all.remote(r) for r in refs]
        assert ray.get(outs) == [float(n)] * 20
    finally:
        ray.shutdown()


# ----------------------------------------------------------------- full store
def test_store_full_error_only_when_it_can_never_fit():
    fresh(num_cpus=1, object_store_memory=32 * MiB)
    try:
        with pytest.raises(ray.exceptions.ObjectStoreFullError) as ei:
            ray.put(np.zeros(40 * MiB // 8))
        msg = str(ei.value)
        assert str(32 * MiB) in msg and "object_store_memory" in msg
        assert "can never fit" in msg and "4194" in msg  # the object's size (40 MiB+)
        # a task whose return can never fit fails with the same error at get
        with pytest.raises(ray.exceptions.ObjectStoreFullError):
            ray.get(make.remote(40 * MiB))
        # objects that fit one at a time always work (spilling the others)
        keep = [ray.put(np.zeros(12 * MiB // 8)) for _ in range(8)]
        assert all(ray.get(r).shape == (12 * MiB // 8,) for r in keep)
    finally:
        ray.shutdown()


def test_store_full_of_mapped_objects_waits_then_errors(monkeypatch):
    """Objects mapped by a process cannot be spilled: a put waits for them to be
    released (and succeeds if they are), and fails with the sizes only when they
    stay mapped past the wait."""
    import threading
    monkeypatch.setenv("BEAMLET_CREATE_WAIT_S", "1.5")
    fresh(num_cpus=1, object_store_memory=32 * MiB)
    try:
        held = [ray.get(ray.put(np.full(12 * MiB // 8, 1.0))) for _ in range(2)]
        with pytest.raises(ray.exceptions.ObjectStoreFullError) as ei:
            ray.put(np.zeros(12 * MiB // 8))
        msg = str(ei.value)
        assert str(32 * MiB) in msg and "in use" in msg
        # released while the put waits: the put succeeds
        box = {"views": held}
        del held
        t = threading.Timer(0.3, box.clear)
        t.start()
        r = ray.put(np.full(12 * MiB // 8, 2.0))
        t.join()
        assert ray.get(r)[0] == 2.0
    finally:
        ray.shutdown()


def test_spilled_object_without_room_is_read_from_its_file():
    """A spilled object for which no room can be made (every object in the
    store is mapped) is read from its spill file, at once and read-only; once
    the store's objects are released it is restored into the store."""
    fresh(num_cpus=1, object_store_memory=32 * MiB)
    try:
        n = 12 * MiB // 8
        a = ray.put(np.full(n, 1.0))
        views = [ray.get(ray.put(np.full(n, 2.0))) for _ in range(2)]  # spills a
        assert entry(a)["where"] == "spilled"
        v = ray.get(a, timeout=30)
        assert v[0] == 1.0 and v[-1] == 1.0 and not v.flags.writeable
        assert entry(a)["where"] == "spilled"
        # as a task argument too
        assert ray.get(sum_all.remote(a)) == float(n)
        del views, v
        wait_for(lambda: ray.get(a, timeout=30)[0] == 1.0 and
                 entry(a)["where"] == "arena", msg="restored once there is room")
    finally:
        ray.shutdown()


# ----------------------------------------------------------------- sizing
def test_object_store_memory_option():
    fresh(num_cpus=1, object_store_memory=200 * MiB)
    try:
        assert store()["arena_capacity"] == 200 * MiB
        assert ray.cluster_resources()["object_store_memory"] == 200 * MiB
    finally:
        ray.shutdown()


@pytest.mark.parametrize("bad", [-1, 0, 100, 1.5, "1GB", 10**15])
def test_bad_object_store_memory(bad):
    with pytest.raises(ValueError, match="object_store_memory"):
        fresh(num_cpus=1, object_store_memory=bad)
    assert not ray.is_initialized()


def test_default_object_store_memory(monkeypatch):
    import psutil
    size = node_mod.default_object_store_memory()
    st = os.statvfs("/dev/shm")
    assert 0 < size <= st.f_bavail * st.f_frsize
    assert size <= psutil.virtual_memory().total * 0.31
    # a /dev/shm too small for the store: a clear error saying what to do
    real = os.statvfs

    class Tiny:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda p: Tiny() if p == "/dev/shm" else real(p))
    with pytest.raises(RuntimeError, match=r"/dev/shm.*(shm-size|object_store_memory)"):
        node_mod.default_object_store_memory()


# ----------------------------------------------------------------- cleanup
def _dev_shm():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def test_shutdown_leaves_nothing_in_dev_shm():
    before = _dev_shm()
    fresh(num_cpus=1, object_store_memory=64 * MiB)
    r = ray.put(np.ones(4 * MiB))
    assert ray.get(r).sum() == 4 * MiB
    raylet_pid = core().node_info["raylet_pid"]
    del r
    ray.shutdown()
    assert _dev_shm() - before == set()
    wait_for(lambda: not os.path.exists(f"/proc/{raylet_pid}"), msg="raylet gone")


def test_driver_death_leaves_nothing():
    before = _dev_shm()
    code = textwrap.dedent("""
        import os, sys, numpy as np, beamlet as ray
        from beamlet.worker import core_worker
        ray.init(num_cpus=1, object_store_memory=64 * 2**20)
        r = ray.put(np.ones(2**20))
        x = ray.get(r)
        print(core_worker.global_worker.node_info["raylet_pid"],
              core_worker.global_worker.node_info["session_dir"], flush=True)
        os.kill(os.getpid(), 9)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    pid, session = p.stdout.split()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 15, msg="raylet exits")
    assert _dev_shm() - before == set()
