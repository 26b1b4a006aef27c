"""beamlet.util.multiprocessing.Pool as a drop-in for multiprocessing.Pool, on a
real cluster (its processes are actors)."""
import multiprocessing
import os
import threading
import time

import pytest

import beamlet as ray
from beamlet.util.multiprocessing import Pool, TimeoutError
from beamlet.util.multiprocessing.pool import DEPTH
from conftest import wait_for


@pytest.fixture
def pool(shared_cluster):
    p = Pool(processes=2)
    yield p
    p.terminate()
    p.join()


def square(x):
    return x * x


def add(a, b):
    return a + b


def pid_of(_):
    return os.getpid()


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"three is bad ({x})")
    return x


def slow(x):
    time.sleep(x)
    return x


def test_timeout_error_is_multiprocessings():
    assert TimeoutError is multiprocessing.TimeoutError


def test_pool_starts_a_cluster_when_none_is_running():
    # (first in this file: the module's shared cluster is not up yet)
    assert not ray.is_initialized()
    try:
        with Pool(processes=1) as p:
            assert ray.is_initialized()
            assert ray.cluster_resources()["CPU"] == 1
            assert p.map(square, [2, 3]) == [4, 9]
    finally:
        ray.shutdown()


def test_map_starmap_apply(pool):
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
    assert pool.map(square, iter(range(5))) == [0, 1, 4, 9, 16]      # any iterable
    assert pool.map(square, []) == []
    assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.apply(add, (2, 3)) == 5
    assert pool.apply(add, (), {"a": 1, "b": 9}) == 10
    assert pool.apply(add, (1,), kwargs={"b": 2}) == 3              # Ray's name
    assert pool.map(lambda x: x + 1, [1, 2]) == [2, 3]               # cloudpickle


def test_work_is_spread_over_the_pools_processes(pool):
    pids = set(pool.map(slow_pid, [0.3] * 4, chunksize=1))
    assert len(pids) == 2 and os.getpid() not in pids


def slow_pid(t):
    time.sleep(t)
    return os.getpid()


def test_imap_in_order_and_unordered(pool):
    assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
    assert list(pool.imap(square, range(10), chunksize=4)) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(square, range(10), chunksize=3)) == \
        sorted(x * x for x in range(10))
    # unordered: the quick item comes back before the slow one
    assert list(pool.imap_unordered(slow, [1.0, 0.01])) == [0.01, 1.0]


def test_imap_reads_its_input_lazily(pool):
    taken = []

    def endless():
        for i in range(10 ** 9):
            taken.append(i)
            yield i
    it = pool.imap(square, endless())
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    # the pool reads ahead of its consumer by a window of items (sent, not yet
    # consumed): 2 chunks in flight per process, as many again done and waiting
    window = 2 * DEPTH * 2
    wait_for(lambda: len(taken) == 5 + window, msg="the read-ahead to stop at the window")
    assert [next(it) for _ in range(100)] == [x * x for x in range(5, 105)]
    wait_for(lambda: len(taken) == 105 + window, msg="the read-ahead to follow")


def test_close_runs_an_unconsumed_imap_to_its_end(shared_cluster):
    p = Pool(2)
    it = p.imap(square, range(40))
    p.close()
    p.join()                                     # does not wait for the consumer
    assert list(it) == [x * x for x in range(40)]


def test_imap_next_timeout(pool):
    it = pool.imap(slow, [1.5])
    with pytest.raises(TimeoutError):
        it.next(timeout=0.05)
    assert it.next(timeout=30) == 1.5
    with pytest.raises(StopIteration):
        next(it)


def test_exceptions_propagate_as_in_multiprocessing(pool):
    with pytest.raises(ValueError, match="three is bad") as info:
        pool.map(fail_on_three, range(6))
    assert type(info.value) is ValueError
    # the remote traceback rides along as __cause__, as multiprocessing does it
    assert "fail_on_three" in str(info.value.__cause__)
    with pytest.raises(ValueError):
        pool.apply(fail_on_three, (3,))
    it = pool.imap(fail_on_three, range(6))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError):
        next(it)
    assert list(it) == [4, 5]         # the iterator goes on after the failed item


def test_async_result_api_and_callbacks(pool):
    got, errors = [], []
    done = threading.Event()
    r = pool.map_async(slow, [0.5, 0.1], callback=lambda v: (got.append(v), done.set()))
    assert not r.ready()
    with pytest.raises(ValueError, match="not ready"):
        r.successful()
    with pytest.raises(TimeoutError):
        r.get(timeout=0.01)
    r.wait()
    assert r.ready() and r.successful() and r.get() == [0.5, 0.1]
    assert done.wait(5) and got == [[0.5, 0.1]]

    failing = pool.apply_async(fail_on_three, (3,), error_callback=errors.append)
    failing.wait(30)
    assert failing.ready() and not failing.successful()
    with pytest.raises(ValueError):
        failing.get()
    assert len(errors) == 1 and isinstance(errors[0], ValueError)

    single = []
    assert pool.apply_async(add, (1, 1), callback=single.append).get(30) == 2
    assert single == [2]
    assert pool.starmap_async(add, [(1, 1), (2, 2)]).get(30) == [2, 4]


def test_initializer_runs_in_every_process(shared_cluster):
    with Pool(2, initializer=set_tag, initargs=("tagged",)) as p:
        assert p.map(read_tag, range(6), chunksize=1) == ["tagged"] * 6


def set_tag(v):
    global TAG
    TAG = v


def read_tag(_):
    return globals().get("TAG")


def test_failing_initializer_fails_pool_creation(shared_cluster):
    with pytest.raises(Exception, match="no init for you"):
        Pool(1, initializer=bad_init)


def bad_init():
    raise RuntimeError("no init for you")


def test_maxtasksperchild_replaces_processes(shared_cluster):
    with Pool(1, maxtasksperchild=1) as p:
        pids = p.map(pid_of, range(4), chunksize=1)
    assert len(set(pids)) == 4
    with Pool(1) as p:
        assert len(set(p.map(pid_of, range(4), chunksize=1))) == 1


def test_a_dead_process_fails_its_items_and_is_replaced(shared_cluster):
    with Pool(1) as p:
        first = p.apply(pid_of, (0,))
        with pytest.raises(ray.exceptions.ActorDiedError):
            p.apply(os._exit, (3,))
        second = p.apply(pid_of, (0,))
        assert second != first


def test_close_join_terminate(shared_cluster):
    p = Pool(2)
    r = p.map_async(slow, [0.3, 0.3])
    with pytest.raises(ValueError, match="still running"):
        p.join()
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply_async(square, (1,))
    p.join()                     # waits for the outstanding work
    assert r.ready() and r.get() == [0.3, 0.3]

    p = Pool(2)
    pending = p.map_async(slow, [30, 30])
    it = p.imap(slow, [30])
    p.terminate()                # outstanding results fail instead of hanging
    p.join()
    with pytest.raises(RuntimeError, match="terminated"):
        pending.get(timeout=10)
    with pytest.raises(RuntimeError, match="terminated"):
        it.next(timeout=10)


def test_context_manager_terminates(shared_cluster):
    with Pool(1) as p:
        assert p.map(square, [3]) == [9]
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [3])


def test_bad_arguments(shared_cluster):
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0)
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(64)
    with pytest.raises(TypeError, match="callable"):
        Pool(1, initializer=5)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Pool(1, maxtasksperchild=0)
    with Pool(1) as p:
        with pytest.raises(ValueError, match="Chunksize"):
            p.imap(square, [1], chunksize=0)
        with pytest.raises(ValueError, match="Chunksize"):
            p.map(square, [1], chunksize=-1)
