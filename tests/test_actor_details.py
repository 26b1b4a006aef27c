"""Actor and task details users hit (issue 10 §4), each as Ray documents it:
__ray_ready__, the runtime context inside actors and tasks, concurrency groups
(threaded and async), sys.exit() in actors, custom exceptions keeping their
attributes, is_canceled()."""
import asyncio
import os
import sys
import threading
import time

import pytest

import beamlet as ray
from conftest import alive, wait_for


class CodedError(Exception):
    """A custom exception with attributes of its own."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code
        self.details = {"retry": False}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, resources={"slot": 1})
    yield
    ray.shutdown()


# ---------------------------------------------------------------- __ray_ready__
def test_ray_ready_returns_once_the_actor_exists(cluster, tmp_path):
    marker = tmp_path / "constructed"

    @ray.remote
    class Slow:
        def __init__(self, path):
            time.sleep(0.5)
            open(path, "w").close()

        def ping(self):
            return "pong"

    a = Slow.remote(str(marker))
    assert ray.get(a.__ray_ready__.remote(), timeout=60) is True
    assert marker.exists()              # the constructor had finished
    assert ray.get(a.ping.remote()) == "pong"


def test_ray_ready_of_an_actor_whose_constructor_failed(cluster):
    @ray.remote
    class Broken:
        def __init__(self):
            raise CodedError("no", 3)

    a = Broken.remote()
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(a.__ray_ready__.remote(), timeout=60)


def test_ray_ready_of_an_async_actor(cluster):
    @ray.remote
    class Async:
        async def f(self):
            return 1

    a = Async.remote()
    assert ray.get(a.__ray_ready__.remote(), timeout=60) is True
    assert ray.get(a.f.remote()) == 1


def test_ray_terminate_ends_the_actor_after_queued_calls(cluster):
    @ray.remote
    class Worker:
        def slow(self):
            time.sleep(0.3)
            return "done"
    w = Worker.remote()
    before = w.slow.remote()
    end = w.__ray_terminate__.remote()
    assert ray.get(before, timeout=60) == "done"
    with pytest.raises(ray.ActorDiedError):
        ray.get(end, timeout=60)
    with pytest.raises(ray.ActorDiedError):
        ray.get(w.slow.remote(), timeout=60)


# ---------------------------------------------------------------- runtime context
@ray.remote
class Introspect:
    def __init__(self):
        self.me = ray.get_runtime_context().current_actor   # kept: must not pin us

    def handle(self):
        return ray.get_runtime_context().current_actor

    def same_as_stored(self):
        return self.me == ray.get_runtime_context().current_actor

    def resources(self):
        return ray.get_runtime_context().get_assigned_resources()

    def name(self):
        return ray.get_runtime_context().get_actor_name()

    def pid(self):
        return os.getpid()

    def value(self):
        return 42


def test_current_actor_is_a_handle_on_itself(cluster):
    a = Introspect.remote()
    h = ray.get(a.handle.remote())
    assert h == a
    assert ray.get(h.value.remote()) == 42       # usable by others
    assert ray.get(a.same_as_stored.remote())


def test_current_actor_does_not_keep_the_actor_alive(cluster):
    a = Introspect.remote()
    pid = ray.get(a.pid.remote())
    del a           # the actor holds current_actor in self.me: it still goes
    wait_for(lambda: not alive(pid), timeout=30,
             msg="the unreferenced actor to exit")


def test_current_actor_outside_an_actor_is_an_error(cluster):
    @ray.remote
    def in_task():
        try:
            ray.get_runtime_context().current_actor
        except RuntimeError as e:
            return str(e)
    assert "only available inside an actor" in ray.get(in_task.remote())
    with pytest.raises(RuntimeError, match="inside an actor"):
        ray.get_runtime_context().current_actor


def test_assigned_resources(cluster):
    @ray.remote(num_cpus=1, resources={"slot": 0.5})
    def task():
        return ray.get_runtime_context().get_assigned_resources()

    @ray.remote
    def default_task():
        return ray.get_runtime_context().get_assigned_resources()

    assert ray.get(task.remote(), timeout=60) == {"CPU": 1.0, "slot": 0.5}
    assert ray.get(default_task.remote()) == {"CPU": 1.0}
    # an actor holds nothing for its lifetime by default; with num_cpus, that
    assert ray.get(Introspect.remote().resources.remote()) == {}
    assert ray.get(Introspect.options(num_cpus=1).remote().resources.remote()) == \
        {"CPU": 1.0}
    with pytest.raises(RuntimeError, match="not in the driver"):
        ray.get_runtime_context().get_assigned_resources()


def test_actor_name_in_context(cluster):
    a = Introspect.options(name="looked_at").remote()
    assert ray.get(a.name.remote()) == "looked_at"
    assert ray.get(Introspect.remote().name.remote()) is None


# ---------------------------------------------------------------- concurrency groups
def _group_actor(is_async):
    """An actor whose calls record how many of each group run at once.  A call
    waits (up to 20 s) until `expect` calls of its group are in, so a group whose
    limit is reached shows it, and one allowed more than its limit shows that."""
    if not is_async:
        @ray.remote(concurrency_groups={"io": 2, "compute": 3, "stats": 1})
        class Groups:
            def __init__(self):
                self.cond = threading.Condition()
                self.active, self.peak = {}, {}

            def _run(self, group, expect):
                with self.cond:
                    self.active[group] = self.active.get(group, 0) + 1
                    self.peak[group] = max(self.peak.get(group, 0), self.active[group])
                    self.cond.notify_all()
                    self.cond.wait_for(lambda: self.active[group] >= expect, 20)
                time.sleep(0.05)    # room for a call beyond the limit to show up
                with self.cond:
                    self.active[group] -= 1
                return threading.current_thread().name

            @ray.method(concurrency_group="io")
            def io(self, expect):
                return self._run("io", expect)

            @ray.method(concurrency_group="compute")
            def compute(self, expect):
                return self._run("compute", expect)

            def default(self, expect):
                return self._run("default", expect)

            @ray.method(concurrency_group="stats")
            def peaks(self):
                return dict(self.peak)
        return Groups

    @ray.remote(concurrency_groups={"io": 2, "compute": 3, "stats": 1})
    class AsyncGroups:
        def __init__(self):
            self.active, self.peak = {}, {}

        async def _run(self, group, expect):
            self.active[group] = self.active.get(group, 0) + 1
            self.peak[group] = max(self.peak.get(group, 0), self.active[group])
            deadline = time.monotonic() + 20
            while self.active[group] < expect and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            self.active[group] -= 1
            return "loop"

        @ray.method(concurrency_group="io")
        async def io(self, expect):
            return await self._run("io", expect)

        @ray.method(concurrency_group="compute")
        async def compute(self, expect):
            return await self._run("compute", expect)

        async def default(self, expect):
            return await self._run("default", expect)

        @ray.method(concurrency_group="stats")
        async def peaks(self):
            return dict(self.peak)
    return AsyncGroups


@pytest.mark.parametrize("is_async", [False, True], ids=["threaded", "async"])
def test_each_group_is_bounded_by_its_own_limit(cluster, is_async):
    cls = _group_actor(is_async)
    # the default group of an async actor allows 1000: bound it to 4 here
    a = cls.options(max_concurrency=4).remote() if is_async else cls.remote()
    default_limit = 4 if is_async else 1
    refs = [a.io.remote(2) for _ in range(6)] + \
           [a.compute.remote(3) for _ in range(6)] + \
           [a.default.remote(default_limit) for _ in range(4)]
    ray.get(refs, timeout=120)
    assert ray.get(a.peaks.remote()) == {"io": 2, "compute": 3, "default": default_limit}


def test_threaded_groups_run_in_their_own_threads(cluster):
    a = _group_actor(False).remote()
    assert ray.get(a.io.remote(1)).startswith("actor-io")
    assert ray.get(a.compute.remote(1)).startswith("actor-compute")
    assert ray.get(a.default.remote(1)).startswith("actor-default")
    # a call put in another group at run time runs there
    assert ray.get(a.default.options(concurrency_group="io").remote(1)) \
        .startswith("actor-io")


def test_group_set_at_call_time_is_bounded_by_that_group(cluster):
    a = _group_actor(True).options(max_concurrency=8).remote()
    # 6 calls of a default-group method sent to "io" run 2 at a time (the default
    # group would allow 8); the actor records them under the method's name
    ray.get([a.default.options(concurrency_group="io").remote(2) for _ in range(6)],
            timeout=120)
    assert ray.get(a.peaks.remote()) == {"default": 2}


def test_groups_do_not_wait_for_each_other(cluster):
    @ray.remote(concurrency_groups={"waiters": 1, "wakers": 1})
    class Signal:
        def __init__(self):
            self.event = threading.Event()

        @ray.method(concurrency_group="waiters")
        def wait(self):
            return self.event.wait(30)

        @ray.method(concurrency_group="wakers")
        def set(self):
            self.event.set()
    s = Signal.remote()
    waiting = s.wait.remote()
    ray.get(s.set.remote(), timeout=60)
    assert ray.get(waiting, timeout=60) is True


def test_unknown_group_at_call_time_fails_that_call(cluster):
    a = _group_actor(False).remote()
    with pytest.raises(ValueError, match="no concurrency group 'nope'"):
        ray.get(a.io.options(concurrency_group="nope").remote(1), timeout=60)
    assert ray.get(a.io.remote(1)).startswith("actor-io")   # the actor lives on


# ---------------------------------------------------------------- sys.exit
@ray.remote
class Exiter:
    def pid(self):
        return os.getpid()

    def exit(self, code=None):
        sys.exit(code)


def test_sys_exit_ends_the_actor(cluster):
    a = Exiter.options(max_restarts=2).remote()
    pid = ray.get(a.pid.remote())
    with pytest.raises(ray.exceptions.RayActorError) as ei:
        ray.get(a.exit.remote(), timeout=60)
    assert isinstance(ei.value, ray.ActorDiedError)
    assert not isinstance(ei.value, SystemExit)
    # an intended exit (status 0): not restarted, later calls fail too
    with pytest.raises(ray.ActorDiedError):
        ray.get(a.pid.remote(), timeout=60)
    wait_for(lambda: not alive(pid), timeout=30,
             msg="the actor's process to exit")


def test_sys_exit_with_an_error_status_is_a_crash(cluster):
    a = Exiter.remote()
    with pytest.raises(ray.ActorDiedError, match="exited with code 4"):
        ray.get(a.exit.remote(4), timeout=60)
    # with restarts left, it is restarted like any crashed actor
    b = Exiter.options(max_restarts=1).remote()
    first = ray.get(b.pid.remote())
    with pytest.raises(ray.ActorDiedError):
        ray.get(b.exit.remote(4), timeout=60)
    second = ray.get(b.pid.remote(), timeout=60)
    assert second != first


def test_sys_exit_in_an_async_actor(cluster):
    @ray.remote
    class AsyncExiter:
        async def exit(self):
            sys.exit()

        async def ping(self):
            return 1
    a = AsyncExiter.remote()
    assert ray.get(a.ping.remote()) == 1
    with pytest.raises(ray.ActorDiedError):
        ray.get(a.exit.remote(), timeout=60)
    with pytest.raises(ray.ActorDiedError):
        ray.get(a.ping.remote(), timeout=60)


# ---------------------------------------------------------------- exceptions
def test_custom_exception_keeps_its_attributes(cluster):
    @ray.remote
    def fails():
        raise CodedError("bad input", 7)

    with pytest.raises(CodedError) as ei:
        ray.get(fails.remote())
    e = ei.value
    assert isinstance(e, ray.TaskError) and isinstance(e, ray.RayTaskError)
    assert e.code == 7 and e.details == {"retry": False}
    assert "bad input" in str(e) and "fails" in str(e)
    assert e.cause.code == 7

    @ray.remote
    class Raiser:
        def go(self):
            raise CodedError("from an actor", 9)
    with pytest.raises(CodedError) as ei:
        ray.get(Raiser.remote().go.remote())
    assert ei.value.code == 9


def test_exception_with_an_unpicklable_attribute_keeps_the_others(cluster):
    @ray.remote
    def fails():
        e = CodedError("holds a lock", 5)
        e.lock = threading.Lock()
        raise e

    with pytest.raises(CodedError) as ei:
        ray.get(fails.remote())
    assert ei.value.code == 5 and not hasattr(ei.value, "lock")
    assert "holds a lock" in str(ei.value)


# ---------------------------------------------------------------- is_canceled
def test_is_canceled_inside_a_cancelled_task(cluster, tmp_path):
    started, seen = tmp_path / "started", tmp_path / "seen"

    @ray.remote(max_retries=0)
    def catches_cancel(started, seen):
        open(started, "w").close()
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            pass
        with open(seen, "w") as f:
            f.write(str(ray.get_runtime_context().is_canceled()))

    @ray.remote
    def plain():
        return ray.get_runtime_context().is_canceled()

    assert ray.get(plain.remote()) is False
    ref = catches_cancel.remote(str(started), str(seen))
    wait_for(started.exists, timeout=60, msg="the task to start")
    ray.cancel(ref)
    # (the file exists a moment before its text is written)
    wait_for(lambda: seen.exists() and seen.read_text(), timeout=60,
             msg="the task to see its cancellation")
    assert seen.read_text() == "True"
