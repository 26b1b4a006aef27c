"""The fast paths made for the microbenchmark (bench/microbench.py) keep the
semantics: actor call pipelining keeps order, wait() answered from remembered
readiness is still right, a reused arena mapping still gives the right value and
lets the object go."""
import asyncio

import numpy as np

import beamlet as ray
from conftest import wait_for


def test_pipelined_actor_calls_run_in_order(shared_cluster):
    @ray.remote
    class Log:
        def __init__(self):
            self.seen = []

        def add(self, i):
            self.seen.append(i)
            return len(self.seen)

        def get(self):
            return self.seen

    a = Log.remote()
    assert ray.get([a.add.remote(i) for i in range(500)]) == list(range(1, 501))
    assert ray.get(a.get.remote()) == list(range(500))


def test_async_actor_method_with_ref_argument(shared_cluster):
    @ray.remote
    class A:
        async def double(self, x):
            await asyncio.sleep(0)
            return 2 * x

    a = A.remote()
    x = ray.put(21)
    assert ray.get([a.double.remote(x) for _ in range(20)]) == [42] * 20


def test_wait_loop_sees_every_ref_once_in_order(shared_cluster):
    @ray.remote
    def f(i):
        return i

    refs = [f.remote(i) for i in range(300)]
    not_ready, got = list(refs), []
    while not_ready:
        ready, not_ready = ray.wait(not_ready)
        assert len(ready) == 1
        got.append(ray.get(ready[0]))
    assert sorted(got) == list(range(300))
    # once known ready, a wait over them is answered with the first num_returns,
    # in input order
    ready, rest = ray.wait(refs, num_returns=5)
    assert ready == refs[:5] and rest == refs[5:]
    ready, rest = ray.wait(refs, num_returns=300, timeout=5)
    assert ready == refs and rest == []


def test_wait_still_checks_its_input(shared_cluster):
    import pytest
    r = ray.put(1)
    with pytest.raises(ValueError, match="unique"):
        ray.wait([r, r])
    with pytest.raises(TypeError, match="int"):
        ray.wait([r, 3])


def test_repeated_get_of_large_object_then_free(shared_cluster):
    arr = np.arange(2_000_000, dtype=np.int64)      # 16 MB: in the arena
    ref = ray.put(arr)
    for _ in range(50):
        got = ray.get(ref)
        assert got[12345] == 12345 and got.shape == arr.shape
    assert not got.flags.writeable
    del got
    oid = ref.hex()
    del ref

    from beamlet.worker import core_worker

    def gone():   # the raylet's object table no longer has it
        objs = core_worker.global_worker.call("memory")["objects"]
        return all(o["object_id"] != oid for o in objs)
    wait_for(gone, timeout=10, msg="the large object to be freed")
