"""The driver API of issue 2 on real local clusters: init, remote, put/get/wait,
ObjectRef, runtime context and cluster information."""
import asyncio
import os
import pickle
import time

import pytest

import beamlet as ray


# ---------------------------------------------------------------- init
def test_init_twice_raises_and_ignore_reinit_error():
    info = ray.init(num_cpus=1)
    try:
        assert ray.is_initialized()
        assert os.path.isdir(info["session_dir"])
        with pytest.raises(RuntimeError, match="ignore_reinit_error"):
            ray.init(num_cpus=1)
        again = ray.init(num_cpus=1, ignore_reinit_error=True)
        assert again["session_dir"] == info["session_dir"]
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert not ray.is_initialized()
    assert not os.path.exists(info["session_dir"])
    ray.shutdown()  # a second shutdown is a no-op


def test_init_resources():
    ray.init(num_cpus=3, num_gpus=2, resources={"widget": 5})
    try:
        total = ray.cluster_resources()
        assert total["CPU"] == 3
        assert total["GPU"] == 2
        assert total["widget"] == 5
        avail = ray.available_resources()
        assert avail["CPU"] == 3 and avail["widget"] == 5
    finally:
        ray.shutdown()


def test_init_no_args():
    ray.init()
    try:
        assert ray.cluster_resources()["CPU"] == os.cpu_count()
        assert ray.get(_echo.remote(5)) == 5
        # the GCS is a password-protected Redis on a free port
        import redis
        from beamlet import api
        host, port, password = api._core().node_info["redis"]
        assert password and port != 6379
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host=host, port=port).ping()
        assert redis.Redis(host=host, port=port, password=password).ping()
    finally:
        ray.shutdown()


def test_init_bad_argument():
    with pytest.raises(TypeError, match="unexpected keyword"):
        ray.init(num_cpu=2)
    assert not ray.is_initialized()


def test_api_before_init_is_clear_when_auto_init_is_off(monkeypatch):
    # (with auto-init on, the first call starts a cluster: tests/test_autoinit.py)
    monkeypatch.setenv("RAY_ENABLE_AUTO_CONNECT", "0")
    assert not ray.is_initialized()
    with pytest.raises(Exception, match="init"):
        ray.put(1)
    with pytest.raises(Exception, match="init"):
        _echo.remote(1)
    assert not ray.is_initialized()


def test_get_after_shutdown_is_clear():
    ray.init(num_cpus=1)
    ref = ray.put(1)
    ray.shutdown()
    with pytest.raises(Exception, match="init"):
        ray.get(ref)
    del ref


# ---------------------------------------------------------------- remote
@ray.remote
def _echo(x):
    return x


@ray.remote(num_cpus=1, max_retries=0)
def _with_options(x):
    return x * 2


@ray.remote(num_returns=3)
def _three():
    return 1, 2, 3


@ray.remote
def _two_args(a, b):
    return a - b


@ray.remote
def _kw(a, b=10, *, c=100):
    return a + b + c


# Tests with their own cluster come before the first use of the module-scoped
# shared_cluster (it stays up until the module ends).
@ray.remote
def _leaf(x):
    return x * 10


@ray.remote
def _mid(x):
    return sum(ray.get([_leaf.remote(x), _leaf.remote(x + 1)]))


@ray.remote
def _top():
    return sum(ray.get([_mid.remote(i) for i in range(3)]))


def test_nested_get_no_deadlock_on_one_cpu(ray_start_1cpu):
    # every level blocks in get() on one CPU: the blocked worker must lend it back
    assert ray.get(_top.remote(), timeout=60) == 10 * (0 + 1 + 1 + 2 + 2 + 3)


def test_parallelism_is_real():
    ray.init(num_cpus=10)
    try:
        @ray.remote
        def sleeper():
            time.sleep(1)
            return os.getpid()
        ray.get([_echo.remote(i) for i in range(10)])  # workers are up
        t0 = time.time()
        pids = ray.get([sleeper.remote() for _ in range(10)])
        elapsed = time.time() - t0
        assert elapsed < 4.0, f"ten 1 s sleeps on 10 CPUs took {elapsed:.1f} s"
        assert len(set(pids)) == 10
    finally:
        ray.shutdown()


@ray.remote
def _sleep_then(t, v):
    time.sleep(t)
    return v


def test_wait_semantics(ray_start_4cpu):
    fast, slow = _sleep_then.remote(0, "fast"), _sleep_then.remote(3, "slow")
    ready, not_ready = ray.wait([slow, fast], num_returns=1, timeout=10)
    assert ready == [fast] and not_ready == [slow]
    # timeout: returns what is ready
    t0 = time.time()
    ready, not_ready = ray.wait([slow, fast], num_returns=2, timeout=0.2)
    assert time.time() - t0 < 2.0
    assert ready == [fast] and not_ready == [slow]
    # all ready: input order is kept
    refs = [ray.put(i) for i in range(5)]
    ready, not_ready = ray.wait(refs, num_returns=3)
    assert ready == refs[:3] and not_ready == refs[3:]
    ready, not_ready = ray.wait(refs, num_returns=5)
    assert ready == refs and not_ready == []
    # ready ones come back in input order, not completion order
    a, b, c = (_sleep_then.remote(0.6, 1), _sleep_then.remote(0.3, 2),
               _sleep_then.remote(0, 3))
    ready, not_ready = ray.wait([a, b, c], num_returns=3, timeout=20)
    assert ready == [a, b, c] and not_ready == []
    with pytest.raises(ValueError):
        ray.wait(refs, num_returns=6)
    with pytest.raises(TypeError):
        ray.wait(refs[0])
    assert ray.get(slow) == "slow"


def test_remote_with_and_without_options(shared_cluster):
    assert ray.get(_echo.remote("x")) == "x"
    assert ray.get(_with_options.remote(4)) == 8


def test_remote_returns_at_once(shared_cluster):
    @ray.remote
    def slow():
        time.sleep(2)
        return 1
    t0 = time.time()
    ref = slow.remote()
    assert time.time() - t0 < 1.0
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 1


def test_options(shared_cluster):
    a, b = _echo.options(num_returns=2).remote((1, 2))
    assert ray.get([a, b]) == [1, 2]
    assert ray.get(_echo.options(num_cpus=0.5, name="named").remote(3)) == 3
    with pytest.raises(ValueError, match="Invalid option"):
        _echo.options(bogus=1)


def test_num_returns(shared_cluster):
    refs = _three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert ray.get(refs) == [1, 2, 3]


def test_direct_call_raises_type_error():
    with pytest.raises(TypeError, match=r"\.remote"):
        _echo(1)


def test_wrong_arg_count_raises_at_submission(shared_cluster):
    with pytest.raises(TypeError):
        _two_args.remote(1)
    with pytest.raises(TypeError):
        _two_args.remote(1, 2, 3)
    with pytest.raises(TypeError):
        _kw.remote(1, d=3)
    assert ray.get(_two_args.remote(5, 3)) == 2


def test_args_by_value_ref_and_kwargs(shared_cluster):
    r = ray.put(7)
    assert ray.get(_two_args.remote(10, 3)) == 7
    assert ray.get(_two_args.remote(r, 3)) == 4
    assert ray.get(_two_args.remote(a=r, b=ray.put(2))) == 5
    assert ray.get(_kw.remote(1, c=r)) == 18
    assert ray.get(_kw.remote(r, b=r, c=r)) == 21
    # refs made by tasks, and large values (through the arena)
    big = b"z" * (2 << 20)
    assert ray.get(_echo.remote(_echo.remote(big))) == big


def test_nested_refs_arrive_as_refs(shared_cluster):
    @ray.remote
    def inspect_args(lst, dct):
        assert isinstance(lst[0], ray.ObjectRef)
        assert isinstance(dct["k"], ray.ObjectRef)
        return ray.get(lst[0]) + ray.get(dct["k"])
    a, b = ray.put(1), _echo.remote(2)
    assert ray.get(inspect_args.remote([a], {"k": b})) == 3


def test_chain_and_tree(shared_cluster):
    @ray.remote
    def f(x):
        return x + 1
    assert ray.get(f.remote(f.remote(f.remote(0)))) == 3
    ref = ray.put(0)
    for _ in range(30):
        ref = f.remote(ref)
    assert ray.get(ref) == 30

    @ray.remote
    def add(a, b):
        return a + b
    refs = [ray.put(i) for i in range(64)]
    while len(refs) > 1:
        refs = [add.remote(refs[i], refs[i + 1]) for i in range(0, len(refs), 2)]
    assert ray.get(refs[0]) == sum(range(64))


def test_tasks_never_run_in_driver(shared_cluster):
    @ray.remote
    def pid():
        return os.getpid()
    pids = ray.get([pid.remote() for _ in range(10)])
    assert os.getpid() not in pids


# ---------------------------------------------------------------- put / get / wait
def test_put_get(shared_cluster):
    assert ray.get(ray.put({"a": [1, 2]})) == {"a": [1, 2]}
    refs = [ray.put(i) for i in range(5)]
    assert ray.get(refs) == list(range(5))
    assert ray.get(tuple(refs)) == list(range(5))
    assert ray.get([]) == []
    big = bytes(5 << 20)
    assert ray.get(ray.put(big)) == big
    with pytest.raises(TypeError):
        ray.get(1)
    with pytest.raises(TypeError):
        ray.get([ray.put(1), 2])


def test_get_timeout(shared_cluster):
    @ray.remote
    def slow():
        time.sleep(3)
        return 1
    ref = slow.remote()
    t0 = time.time()
    with pytest.raises(ray.GetTimeoutError):
        ray.get(ref, timeout=0.3)
    assert time.time() - t0 < 2.5
    with pytest.raises(TimeoutError):   # GetTimeoutError is a TimeoutError
        ray.get([ray.put(1), ref], timeout=0)
    assert ray.get(ref, timeout=30) == 1


# ---------------------------------------------------------------- ObjectRef
def test_object_ref_protocols(shared_cluster):
    a, b = ray.put(1), ray.put(2)
    assert a == a and a != b
    assert len({a, b, a}) == 2
    d = {a: "a"}
    assert d[a] == "a"
    assert sorted([b, a]) in ([a, b], [b, a])
    h = a.hex()
    assert isinstance(h, str) and len(h) > 0 and int(h, 16) >= 0
    assert h in repr(a)
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a and hash(copy) == hash(a)
    assert ray.get(copy) == 1


class _Holder:
    def __init__(self, ref):
        self.ref = ref


def test_object_ref_pickles_inside_objects(shared_cluster):
    @ray.remote
    def unwrap(holder):
        return ray.get(holder.ref) + 1
    inner = ray.put(41)
    holder_ref = ray.put(_Holder(inner))
    del inner   # the holder in the store keeps the inner object alive
    assert ray.get(unwrap.remote(holder_ref)) == 42
    assert ray.get(unwrap.remote(_Holder(ray.put(1)))) == 2
    got = ray.get(holder_ref)
    assert isinstance(got.ref, ray.ObjectRef) and ray.get(got.ref) == 41


def test_await_ref(shared_cluster):
    async def main():
        x = await _echo.remote(3)
        ys = await asyncio.gather(_echo.remote(1), _sleep_then.remote(0.1, 2))
        return x, ys
    assert asyncio.run(main()) == (3, [1, 2])


# ---------------------------------------------------------------- context & cluster
def test_runtime_context(shared_cluster):
    ctx = ray.get_runtime_context()
    job, node = ctx.get_job_id(), ctx.get_node_id()
    assert job and node and ctx.get_worker_id()
    assert ctx.get_task_id() is None   # the driver runs no task

    @ray.remote
    def inside():
        c = ray.get_runtime_context()
        return c.get_job_id(), c.get_node_id(), c.get_task_id(), c.get_worker_id()
    j, n, t, w = ray.get(inside.remote())
    assert (j, n) == (job, node)
    assert t and w and w != ctx.get_worker_id()
    j2, n2, t2, w2 = ray.get(inside.remote())
    assert t2 != t


def test_nodes_and_resources(shared_cluster):
    ns = ray.nodes()
    assert len(ns) == 1
    n = ns[0]
    assert n["Alive"] and n["NodeID"] == ray.get_runtime_context().get_node_id()
    assert n["Resources"]["CPU"] == 2
    total = ray.cluster_resources()
    assert total["CPU"] == 2 and total.get("object_store_memory", 0) > 0

    @ray.remote(num_cpus=2)
    def hold():
        time.sleep(2)
        return 1
    ref = hold.remote()
    from conftest import wait_for
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, msg="CPUs in use")
    assert ray.get(ref) == 1
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 2, msg="CPUs back")
