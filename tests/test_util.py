"""beamlet.util.ActorPool and beamlet.util.queue.Queue on a real cluster."""
import time

import pytest

import beamlet as ray
from beamlet.util import ActorPool
from beamlet.util.queue import Empty, Full, Queue


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2)
    yield ray
    ray.shutdown()


@ray.remote
class Doubler:
    def double(self, v):
        return 2 * v

    def slow_double(self, v):
        time.sleep(v)
        return 2 * v

    @ray.method(num_returns=2)
    def both(self, v):
        return v, -v


# ------------------------------------------------------------------ ActorPool
def test_map_keeps_input_order(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(10))) == \
        [2 * v for v in range(10)]


def test_map_unordered_yields_as_finished(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    out = list(pool.map_unordered(lambda a, v: a.slow_double.remote(v), [1.0, 0.05]))
    assert out == [0.1, 2.0]          # the quick one first
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), range(6))) == \
        [0, 2, 4, 6, 8, 10]


def test_submit_get_next_with_more_jobs_than_actors(cluster):
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a, b])
    for v in range(5):
        pool.submit(lambda actor, v: actor.double.remote(v), v)
    assert not pool.has_free()        # 2 running, 3 waiting
    out = []
    while pool.has_next():
        out.append(pool.get_next())
    assert out == [0, 2, 4, 6, 8]
    assert pool.has_free()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_get_next_unordered_then_get_next_is_refused(cluster):
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.double.remote(v), 1)
    assert pool.get_next_unordered() == 2
    pool.submit(lambda a, v: a.double.remote(v), 2)
    assert pool.get_next() == 4


def test_get_next_timeout(cluster):
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.slow_double.remote(v), 2.0)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    assert pool.has_next()            # not skipped without ignore_if_timedout
    with pytest.raises(TimeoutError, match="skipped"):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()
    with pytest.raises(TimeoutError):
        pool.submit(lambda a, v: a.slow_double.remote(v), 2.0)
        pool.get_next_unordered(timeout=0.1)


def test_pop_idle_and_push(cluster):
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a])
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a)
    pool.push(b)
    popped = pool.pop_idle()
    assert popped in (a, b)
    pool.pop_idle()
    assert pool.pop_idle() is None and not pool.has_free()
    pool.submit(lambda actor, v: actor.double.remote(v), 21)   # waits for an actor
    assert not pool.has_next()
    pool.push(a)                       # takes the waiting job at once
    assert pool.has_next()
    assert pool.get_next() == 42


def test_num_returns_jobs(cluster):
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.both.remote(v), 3)
    assert pool.get_next() == [3, -3]


def test_map_ignores_earlier_untaken_results(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(lambda a, v: a.double.remote(v), 100)
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2])) == [2, 4]


# ------------------------------------------------------------------ Queue
def test_queue_fifo_and_sizes(cluster):
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    for i in range(3):
        q.put(i)
    assert q.full() and q.size() == 3
    assert [q.get() for _ in range(3)] == [0, 1, 2]
    assert q.empty()


def test_queue_nowait_raises_full_and_empty(cluster):
    q = Queue(maxsize=1)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    q.put_nowait("a")
    with pytest.raises(Full):
        q.put_nowait("b")
    with pytest.raises(Full):
        q.put("b", block=False)
    import queue as stdlib_queue
    with pytest.raises(stdlib_queue.Full):       # Ray's classes derive from these
        q.put_nowait("b")
    assert q.get_nowait() == "a"


def test_queue_timeouts(cluster):
    q = Queue(maxsize=1)
    t = time.time()
    with pytest.raises(Empty):
        q.get(timeout=0.3)
    assert time.time() - t >= 0.25
    q.put(1)
    with pytest.raises(Full):
        q.put(2, timeout=0.3)
    with pytest.raises(ValueError, match="timeout"):
        q.get(timeout=-1)


def test_queue_batches(cluster):
    q = Queue(maxsize=4)
    q.put_nowait_batch([1, 2, 3])
    with pytest.raises(Full):
        q.put_nowait_batch([4, 5])    # all or nothing
    assert q.qsize() == 3
    with pytest.raises(Empty):
        q.get_nowait_batch(4)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(1) == [3]
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)


@ray.remote
def producer(q, items):
    for i in items:
        q.put(i)
    return len(items)


@ray.remote
def consumer(q, n):
    return [q.get(timeout=30) for _ in range(n)]


@ray.remote
class Relay:
    """Takes items from one queue and puts them, doubled, on another."""

    def __init__(self, src, dst):
        self.src, self.dst = src, dst

    def run(self, n):
        for _ in range(n):
            self.dst.put(2 * self.src.get(timeout=30))
        return n


def test_queue_across_tasks_and_actors(cluster):
    src, dst = Queue(), Queue(maxsize=2)     # a small dst: the relay blocks on it
    relay = Relay.remote(src, dst)
    running = relay.run.remote(10)
    got = consumer.remote(dst, 10)
    assert ray.get(producer.remote(src, list(range(10)))) == 10
    assert ray.get(got, timeout=60) == [2 * i for i in range(10)]
    assert ray.get(running) == 10


def test_blocking_get_waits_for_a_later_put(cluster):
    q = Queue()
    waiting = consumer.remote(q, 1)
    time.sleep(0.3)
    ready, _ = ray.wait([waiting], timeout=0)
    assert not ready
    q.put("late")
    assert ray.get(waiting, timeout=30) == ["late"]


def test_queue_async_api(cluster):
    import asyncio
    q = Queue()

    async def main():
        await q.put_async(1)
        return await q.get_async(timeout=10)
    assert asyncio.run(main()) == 1


def test_queue_shutdown(cluster):
    q = Queue()
    q.put(1)
    q.shutdown()
    assert q.actor is None
