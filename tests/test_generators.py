"""Generators (issue 10 §2), as Ray's "Ray Generators" page documents them: a
generator task streams refs to its values while it runs (ObjectRefGenerator:
next, for, async for, wait, cancel, drop, backpressure), actor methods stream too
(sync, threaded, async), num_returns="dynamic" returns one ref to a
DynamicObjectRefGenerator; values are stored as they come (large ones in the
arena) and a long stream consumed item by item keeps memory bounded."""
import asyncio
import os
import pathlib
import time

import numpy as np
import psutil
import pytest

import beamlet as ray
from beamlet.worker import core_worker
from conftest import wait_for


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2)
    yield
    ray.shutdown()


def wait_file(path, timeout=60):
    """(inside tasks) block until `path` exists."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


@ray.remote
def count(n):
    for i in range(n):
        yield i


@ray.remote
def gated(n, gate_dir):
    """Yields i, then waits for the file gate_dir/i before going on."""
    for i in range(n):
        yield i
        wait_file(os.path.join(gate_dir, str(i)))


def open_gate(gate_dir, i):
    pathlib.Path(gate_dir, str(i)).touch()


def store_used():
    return core_worker.global_worker.call("status")["store"]["arena_used"]


# ---------------------------------------------------------------- basics
def test_generator_function_streams_by_default(cluster):
    gen = count.remote(3)
    assert isinstance(gen, ray.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [0, 1, 2]
    with pytest.raises(StopIteration):
        next(gen)


def test_names_where_ray_exports_them():
    from beamlet._raylet import DynamicObjectRefGenerator, ObjectRefGenerator
    assert ObjectRefGenerator is ray.ObjectRefGenerator
    assert DynamicObjectRefGenerator is ray.DynamicObjectRefGenerator


def test_refs_come_before_the_task_ends(cluster, tmp_path):
    gen = gated.remote(3, str(tmp_path))
    first = next(gen)                       # the task waits for gate 0 meanwhile
    assert ray.get(first) == 0
    ready, _ = ray.wait([gen.completed()], timeout=0)
    assert ready == []                      # the task has not ended
    open_gate(tmp_path, 0)
    assert ray.get(next(gen)) == 1
    open_gate(tmp_path, 1)
    assert ray.get(next(gen)) == 2
    open_gate(tmp_path, 2)
    with pytest.raises(StopIteration):
        next(gen)
    assert ray.get(gen.completed()) is None


def test_explicit_streaming_and_int_num_returns(cluster):
    @ray.remote(num_returns="streaming")
    def f():
        yield "a"
        yield "b"
    assert [ray.get(r) for r in f.remote()] == ["a", "b"]

    # a generator function called with an int num_returns: that many values
    @ray.remote(num_returns=2)
    def two():
        yield 1
        yield 2
    a, b = two.remote()
    assert ray.get([a, b]) == [1, 2]
    assert ray.get(count.options(num_returns=1).remote(1)) == 0
    with pytest.raises(ValueError, match="yielded 3 values"):
        ray.get(count.options(num_returns=2).remote(3)[0])


def test_async_iteration(cluster):
    async def main():
        out = []
        async for ref in count.remote(4):
            out.append(await ref)
        gen = count.remote(1)
        first = await gen.__anext__()
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()
        return out, await first
    assert asyncio.run(main()) == ([0, 1, 2, 3], 0)


def test_exception_mid_stream_is_the_next_item(cluster):
    @ray.remote
    def fails():
        yield 1
        raise ValueError("bad value")

    gen = fails.remote()
    assert ray.get(next(gen)) == 1
    ref = next(gen)                 # as in Ray: next() returns, get() raises
    with pytest.raises(ValueError, match="bad value"):
        ray.get(ref)
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(ValueError):
        ray.get(gen.completed())


def test_get_of_a_generator_and_passing_it_are_errors(cluster):
    gen = count.remote(1)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        ray.get(gen)

    @ray.remote
    def takes(g):
        return 1
    with pytest.raises(TypeError, match="cannot be passed"):
        takes.remote(gen)
    assert ray.get(next(gen)) == 0


def test_refs_from_a_stream_are_ordinary_refs(cluster):
    @ray.remote
    def double(x):
        return 2 * x
    refs = list(count.remote(3))
    assert ray.get([double.remote(r) for r in refs]) == [0, 2, 4]
    nested = ray.put(refs)
    assert ray.get(ray.get(nested)) == [0, 1, 2]


def test_non_generator_with_streaming_is_a_clear_error(cluster):
    @ray.remote(num_returns="streaming")
    def plain():
        return 1
    gen = plain.remote()
    with pytest.raises(TypeError, match="not a generator"):
        ray.get(next(gen))


# ---------------------------------------------------------------- wait
def test_wait_on_a_generator(cluster, tmp_path):
    gen = gated.remote(2, str(tmp_path))
    ready, not_ready = ray.wait([gen])        # its first item is there
    assert ready == [gen] and not_ready == []
    assert ray.get(next(gen)) == 0
    ready, not_ready = ray.wait([gen], timeout=0)
    assert ready == [] and not_ready == [gen]  # item 1 waits for gate 0
    open_gate(tmp_path, 0)
    ready, _ = ray.wait([gen], timeout=60)
    assert ready == [gen]
    assert ray.get(next(gen)) == 1
    open_gate(tmp_path, 1)
    ready, _ = ray.wait([gen], timeout=60)  # ended: ready, next() raises at once
    assert ready == [gen]
    with pytest.raises(StopIteration):
        next(gen)


def test_wait_mixes_refs_and_generators(cluster):
    """Ray's own example: a loop over wait() of generators and refs."""
    @ray.remote
    def regular():
        return "r"
    unready = [count.remote(3), regular.remote()]
    result = []
    while unready:
        ready, unready = ray.wait(unready)
        for r in ready:
            if isinstance(r, ray.ObjectRefGenerator):
                try:
                    result.append(ray.get(next(r)))
                except StopIteration:
                    pass
                else:
                    unready.append(r)
            else:
                result.append(ray.get(r))
    assert sorted(result, key=str) == [0, 1, 2, "r"]


def test_next_ready_and_is_finished(cluster, tmp_path):
    gen = gated.remote(1, str(tmp_path))
    wait_for(gen.next_ready, timeout=60)
    assert not gen.is_finished()
    assert ray.get(next(gen)) == 0
    assert not gen.next_ready()
    open_gate(tmp_path, 0)
    wait_for(gen.is_finished, timeout=60)


# ---------------------------------------------------------------- cancel, drop
def test_cancel_stops_a_running_generator(cluster, tmp_path):
    @ray.remote
    def forever(path):
        i = 0
        try:
            while True:
                yield i
                i += 1
                time.sleep(0.01)
        finally:
            pathlib.Path(path).write_text("closed")

    marker = tmp_path / "closed"
    gen = forever.remote(str(marker))
    assert ray.get(next(gen)) == 0
    ray.cancel(gen)
    values = []
    with pytest.raises(ray.exceptions.TaskCancelledError):
        for ref in gen:             # a few more items may come, then the error
            values.append(ray.get(ref))
    assert values == list(range(1, len(values) + 1))
    with pytest.raises(StopIteration):
        next(gen)
    wait_for(marker.exists, timeout=30, msg="the generator's finally block")


def test_dropping_the_generator_stops_the_task(cluster, tmp_path):
    @ray.remote
    def forever(path):
        try:
            i = 0
            while True:
                yield np.zeros(200_000)     # arena items, never consumed
                i += 1
        finally:
            pathlib.Path(path).write_text(str(i))

    marker = tmp_path / "stopped"
    before = store_used()
    gen = forever.remote(str(marker))
    next(gen)
    del gen
    wait_for(marker.exists, timeout=30, msg="the dropped generator stopping")
    # the items nobody took are freed
    wait_for(lambda: store_used() <= before, timeout=30, msg="unconsumed items freed")


def test_backpressure_bounds_the_items_ahead_of_the_consumer(cluster, tmp_path):
    log = tmp_path / "yielded"

    @ray.remote(_generator_backpressure_num_objects=3)
    def fast(path, n):
        for i in range(n):
            with open(path, "a") as f:
                f.write(f"{i}\n")
            yield i

    gen = fast.remote(str(log), 40)
    for consumed in range(1, 41):
        assert ray.get(next(gen)) == consumed - 1
        yielded = len(log.read_text().split())
        # the producer is fast: without backpressure it would be far ahead
        assert yielded <= consumed + 3, (yielded, consumed)
    with pytest.raises(StopIteration):
        next(gen)


class _Producer:
    @ray.method(_generator_backpressure_num_objects=2)
    def produce(self, path, n):
        for i in range(n):
            with open(path, "a") as f:
                f.write(f"{i}\n")
            yield i


class _AsyncProducer:
    @ray.method(_generator_backpressure_num_objects=2)
    async def produce(self, path, n):
        for i in range(n):
            with open(path, "a") as f:
                f.write(f"{i}\n")
            yield i


@pytest.mark.parametrize("cls", [ray.remote(_Producer),
                                 ray.remote(max_concurrency=2)(_Producer),
                                 ray.remote(_AsyncProducer)],
                         ids=["sync", "threaded", "async"])
def test_backpressure_option_on_a_method(cluster, tmp_path, cls):
    log = tmp_path / "yielded"
    p = cls.remote()
    gen = p.produce.remote(str(log), 20)
    for consumed in range(1, 21):
        assert ray.get(next(gen)) == consumed - 1
        assert len(log.read_text().split()) <= consumed + 2


# ---------------------------------------------------------------- actors
@ray.remote
class Sync:
    def f(self, n):
        for i in range(n):
            yield i


@ray.remote(max_concurrency=3)
class Threaded:
    def f(self, n):
        for i in range(n):
            yield i * 10


@ray.remote
class Async:
    async def f(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * 100

    def sync_gen(self, n):
        for i in range(n):
            yield -i


@pytest.mark.parametrize("cls, k", [(Sync, 1), (Threaded, 10), (Async, 100)])
def test_actor_methods_stream(cluster, cls, k):
    a = cls.remote()
    gen = a.f.remote(4)
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert [ray.get(r) for r in gen] == [i * k for i in range(4)]


def test_sync_generator_method_of_an_async_actor(cluster):
    a = Async.remote()
    assert [ray.get(r) for r in a.sync_gen.remote(3)] == [0, -1, -2]


def test_threaded_actor_streams_concurrently(cluster, tmp_path):
    @ray.remote(max_concurrency=2)
    class T:
        def g(self, gate_dir, n):
            for i in range(n):
                yield i
                wait_file(os.path.join(gate_dir, str(i)))

    t = T.remote()
    g1 = t.g.remote(str(tmp_path / "a"), 2)
    g2 = t.g.remote(str(tmp_path / "b"), 2)
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    assert ray.get(next(g1)) == 0 and ray.get(next(g2)) == 0   # both running
    for d in ("a", "b"):
        open_gate(tmp_path / d, 0)
        open_gate(tmp_path / d, 1)
    assert [ray.get(r) for r in g1] == [1] and [ray.get(r) for r in g2] == [1]


def test_cancel_an_async_actor_stream(cluster):
    @ray.remote
    class A:
        async def forever(self):
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.01)

        async def ping(self):
            return "pong"

    a = A.remote()
    gen = a.forever.remote()
    assert ray.get(next(gen)) == 0
    ray.cancel(gen)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        for ref in gen:
            ray.get(ref)
    assert ray.get(a.ping.remote()) == "pong"     # the actor lives on


def test_dynamic_generator(cluster):
    @ray.remote(num_returns="dynamic")
    def split(n):
        for i in range(n):
            yield np.full(50_000, i)         # large: arena objects

    ref = split.remote(3)
    assert isinstance(ref, ray.ObjectRef)
    dyn = ray.get(ref)
    assert isinstance(dyn, ray.DynamicObjectRefGenerator) and len(dyn) == 3
    assert [int(ray.get(r)[0]) for r in dyn] == [0, 1, 2]
    del dyn
    # the refs inside keep their objects alive through the outer value
    assert [int(ray.get(r)[-1]) for r in ray.get(ref)] == [0, 1, 2]

    @ray.remote
    class A:
        @ray.method(num_returns="dynamic")
        def f(self):
            yield "x"
            yield "y"
    assert [ray.get(r) for r in ray.get(A.remote().f.remote())] == ["x", "y"]


# ---------------------------------------------------------------- storage, memory
def test_large_items_go_to_the_arena_small_ones_inline(cluster):
    @ray.remote
    def mixed():
        yield b"x" * 10
        yield np.ones(1_000_000, dtype=np.uint8)
    small, large = list(mixed.remote())
    assert ray.get(small) == b"x" * 10
    arr = ray.get(large)
    assert arr.nbytes == 1_000_000 and not arr.flags.writeable   # a view of the arena
    objects = {o["object_id"]: o for o in
               core_worker.global_worker.call("memory")["objects"]}
    assert objects[small.hex()]["where"] == "inline"
    assert objects[large.hex()]["where"] == "arena"


def test_a_long_stream_consumed_item_by_item_keeps_memory_bounded(cluster):
    """2,000 items of 1 MiB: the store holds only the few not consumed yet (here
    bounded by backpressure), and the driver's memory does not grow with them."""
    @ray.remote(_generator_backpressure_num_objects=4)
    def chunks(n):
        for i in range(n):
            yield np.full(1 << 17, i, dtype=np.int64)      # 1 MiB

    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    peak_store = 0
    total = 0
    for i, ref in enumerate(chunks.remote(2000)):
        arr = ray.get(ref)
        total += int(arr[0])
        del arr, ref
        if i % 50 == 0:
            peak_store = max(peak_store, store_used())
    assert total == sum(range(2000))
    assert peak_store <= 12 * (1 << 20), peak_store
    assert proc.memory_info().rss - rss_before < 200 * (1 << 20)
    wait_for(lambda: store_used() == 0, timeout=30, msg="every item freed")


def test_consumed_items_are_freed_without_backpressure(cluster):
    @ray.remote
    def chunks(n):
        for i in range(n):
            yield np.full(1 << 17, i, dtype=np.int64)
    total = sum(int(ray.get(r)[0]) for r in chunks.remote(300))
    assert total == sum(range(300))
    wait_for(lambda: store_used() == 0, timeout=30, msg="every item freed")


# ---------------------------------------------------------------- faults, nesting
def test_a_retried_generator_resumes_its_stream(cluster, tmp_path):
    """The worker dies after 3 items; the retry yields all again, and the
    consumer sees each value once, in order."""
    flag = tmp_path / "crashed"

    @ray.remote(max_retries=1)
    def crashes_once(path):
        for i in range(6):
            if i == 3 and not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            yield i * 2

    assert [ray.get(r) for r in crashes_once.remote(str(flag))] == [0, 2, 4, 6, 8, 10]


def test_a_crash_without_retries_is_the_last_item(cluster):
    @ray.remote(max_retries=0)
    def dies():
        yield 1
        os._exit(3)

    gen = dies.remote()
    assert ray.get(next(gen)) == 1
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)
