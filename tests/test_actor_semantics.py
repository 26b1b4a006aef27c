"""Actor semantics that live in the raylet and the worker (issue 10 §4):
retry_exceptions on actor methods (retried up to max_task_retries), each
concurrent call of an async actor with its own runtime context (task id, put
ids), sys.exit() ending an actor with calls queued behind it."""
import asyncio
import os
import sys

import pytest

import beamlet as ray


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2)
    yield
    ray.shutdown()


class Flaky(Exception):
    pass


@ray.remote(max_task_retries=2)
class Retrying:
    def __init__(self):
        self.calls = {}

    def _count(self, key):
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.calls[key]

    @ray.method(retry_exceptions=[Flaky])
    def succeeds_third_time(self):
        n = self._count("third")
        if n < 3:
            raise Flaky(f"attempt {n}")
        return n

    @ray.method(retry_exceptions=[Flaky])
    def always_fails(self):
        raise Flaky(f"attempt {self._count('always')}")

    @ray.method(retry_exceptions=[Flaky])
    def other_error(self):
        raise KeyError(f"attempt {self._count('other')}")

    def not_retried(self):
        raise Flaky(f"attempt {self._count('plain')}")

    def count(self, key):
        return self.calls.get(key, 0)


def test_retry_exceptions_on_an_actor_method(cluster):
    a = Retrying.remote()
    assert ray.get(a.succeeds_third_time.remote()) == 3
    # max_task_retries=2: three attempts, then the error
    with pytest.raises(Flaky, match="attempt 3"):
        ray.get(a.always_fails.remote())
    assert ray.get(a.count.remote("always")) == 3
    # an exception not listed, or a method without the option: no retry
    with pytest.raises(KeyError):
        ray.get(a.other_error.remote())
    with pytest.raises(Flaky):
        ray.get(a.not_retried.remote())
    assert ray.get([a.count.remote("other"), a.count.remote("plain")]) == [1, 1]


def test_retry_exceptions_in_options_and_max_task_retries(cluster):
    a = Retrying.remote()
    # .options(retry_exceptions=...) on a method without it
    with pytest.raises(Flaky, match="attempt 3"):
        ray.get(a.not_retried.options(retry_exceptions=True).remote())
    # max_task_retries=0 in the call: retry_exceptions alone retries nothing
    with pytest.raises(Flaky, match="attempt 1"):
        ray.get(a.always_fails.options(max_task_retries=0).remote())


def test_retry_exceptions_on_an_async_actor(cluster):
    @ray.remote(max_task_retries=1)
    class A:
        def __init__(self):
            self.n = 0

        @ray.method(retry_exceptions=True)
        async def f(self):
            self.n += 1
            if self.n == 1:
                raise ValueError("first")
            return self.n

    assert ray.get(A.remote().f.remote()) == 2


def test_concurrent_async_calls_have_their_own_context(cluster):
    @ray.remote
    class A:
        async def call(self, i):
            ctx = ray.get_runtime_context()
            before = ctx.get_task_id()
            refs = []
            for k in range(5):
                await asyncio.sleep(0.01)        # the other calls run meanwhile
                refs.append(ray.put((i, k)))
            return before, ctx.get_task_id(), refs

    a = A.remote()
    got = ray.get([a.call.remote(i) for i in range(6)])
    task_ids = [before for before, _, _ in got]
    assert len(set(task_ids)) == 6
    ids = set()
    for i, (before, after, refs) in enumerate(got):
        assert before == after                    # the same call all along
        for ref in refs:
            assert ref.hex().startswith(before)   # put ids: derived from its task id
            ids.add(ref.hex())
        assert ray.get(refs) == [(i, k) for k in range(5)]
    assert len(ids) == 30                         # no two puts collide


@ray.remote
class Exits:
    def pid(self):
        return os.getpid()

    def exit(self):
        sys.exit(0)

    def record(self, path):
        with open(path, "a") as f:
            f.write("ran\n")


def test_sys_exit_fails_the_calls_queued_behind_it(cluster, tmp_path):
    a = Exits.remote()
    ray.get(a.pid.remote())
    log = tmp_path / "log"
    ref = a.exit.remote()
    later = [a.record.remote(str(log)) for _ in range(5)]   # sent ahead behind it
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(ref, timeout=60)
    for r in later:
        with pytest.raises(ray.exceptions.ActorDiedError):
            ray.get(r, timeout=60)
    assert not log.exists()
