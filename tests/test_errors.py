"""Errors raised in tasks, serialization errors, retry_exceptions and cancel(),
on real local clusters."""
import threading
import time

import pytest

import beamlet as ray
from beamlet import exceptions


class CustomError(Exception):
    pass


class NeedsTwoArgs(Exception):
    """An exception whose __init__ signature breaks naive re-creation."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")
        self.a, self.b = a, b


class Unpicklable:
    """Refuses to be pickled, like a lock or a socket."""

    def __reduce__(self):
        raise TypeError("Unpicklable objects cannot be pickled")


@ray.remote
def fail_value(msg):
    raise ValueError(msg)


@ray.remote
def passthrough(x):
    return x


@ray.remote
def add(a, b):
    return a + b


# Tests with their own cluster run before the module's shared cluster starts.
@ray.remote
def sleeper(t):
    time.sleep(t)
    return "done"


def test_cancel_queued_and_running(ray_start_1cpu):
    running = sleeper.remote(30)
    queued = sleeper.remote(30)
    from conftest import wait_for
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, msg="task running")
    ray.cancel(queued)
    with pytest.raises(ray.TaskCancelledError):
        ray.get(queued, timeout=10)
    t0 = time.time()
    ray.cancel(running)
    with pytest.raises(ray.TaskCancelledError):
        ray.get(running, timeout=10)
    assert time.time() - t0 < 10
    # the worker survived the interrupt and the cluster goes on
    assert ray.get(passthrough.remote(1), timeout=20) == 1
    ray.cancel(ray.put(1))  # cancelling a finished object is a no-op


def test_cancel_right_after_submit_and_after_finish(ray_start_1cpu):
    ray.get(passthrough.remote(0))   # the worker is up and idle
    for _ in range(5):
        # the interrupt may reach the worker before it starts the task
        ref = sleeper.remote(30)
        ray.cancel(ref)
        with pytest.raises(ray.TaskCancelledError):
            ray.get(ref, timeout=15)
    for _ in range(5):
        # a cancel of a task that just finished must not hit the next task
        done = passthrough.remote(1)
        nxt = sleeper.remote(0.5)
        ray.cancel(done)
        assert ray.get(nxt, timeout=15) == "done"


def test_cancel_force(ray_start_1cpu):
    ref = sleeper.remote(30)
    from conftest import wait_for
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, msg="task running")
    ray.cancel(ref, force=True)
    with pytest.raises(ray.TaskCancelledError):
        ray.get(ref, timeout=10)
    assert ray.get(passthrough.remote(1), timeout=20) == 1


def test_task_error_is_instance_of_cause(shared_cluster):
    ref = fail_value.remote("boom")
    with pytest.raises(ValueError) as ei:
        ray.get(ref)
    err = ei.value
    assert isinstance(err, ray.TaskError)
    assert isinstance(err, ray.RayTaskError)
    assert isinstance(err, ValueError)
    text = str(err)
    assert "fail_value" in text                 # the function's name
    assert "Traceback" in text                  # the remote traceback ...
    assert 'raise ValueError(msg)' in text      # ... with the failing line
    assert "boom" in text
    assert isinstance(err.cause, ValueError) and str(err.cause) == "boom"
    # except ray.TaskError works too
    with pytest.raises(ray.TaskError):
        ray.get(ref)


def test_custom_exception_classes(shared_cluster):
    @ray.remote
    def raise_custom():
        raise CustomError("custom!")

    @ray.remote
    def raise_two():
        raise NeedsTwoArgs(1, 2)

    with pytest.raises(CustomError, match="custom!"):
        ray.get(raise_custom.remote())
    with pytest.raises(NeedsTwoArgs) as ei:
        ray.get(raise_two.remote())
    assert ei.value.cause.a == 1 and "1-2" in str(ei.value)


def test_exception_that_cannot_be_pickled(shared_cluster):
    @ray.remote
    def raise_unpicklable():
        e = RuntimeError("holds a lock")
        e.lock = threading.Lock()
        raise e
    with pytest.raises(ray.TaskError) as ei:
        ray.get(raise_unpicklable.remote())
    text = str(ei.value)
    assert "raise_unpicklable" in text and "holds a lock" in text
    assert ray.get(passthrough.remote(1)) == 1


class NoSubclasses(Exception):
    def __init_subclass__(cls, **kwargs):
        raise RuntimeError("this class cannot be subclassed")


def test_exception_class_that_cannot_be_subclassed(shared_cluster):
    # no dual TaskError subclass can be made: get() raises a plain TaskError
    @ray.remote
    def raise_nosub():
        raise NoSubclasses("refuses subclasses")
    with pytest.raises(ray.TaskError, match="refuses subclasses") as ei:
        ray.get(raise_nosub.remote())
    assert isinstance(ei.value.cause, NoSubclasses)

    @ray.remote
    def raise_os_error():
        raise FileNotFoundError(2, "no such file", "/nonexistent")
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        ray.get(raise_os_error.remote())


def test_dependent_tasks_fail_with_same_error(shared_cluster):
    bad = fail_value.remote("root cause")
    child = add.remote(bad, 1)
    grandchild = add.remote(child, 1)
    for ref in (child, grandchild):
        with pytest.raises(ValueError) as ei:
            ray.get(ref)
        assert "root cause" in str(ei.value)
        assert "fail_value" in str(ei.value)
    # a nested task's error, raised inside another task, keeps its cause
    @ray.remote
    def outer():
        return ray.get(fail_value.remote("inner"))
    with pytest.raises(ValueError, match="inner"):
        ray.get(outer.remote())


def test_get_of_error_in_list(shared_cluster):
    refs = [passthrough.remote(1), fail_value.remote("second"), passthrough.remote(3)]
    with pytest.raises(ValueError, match="second"):
        ray.get(refs)
    ready, _ = ray.wait(refs, num_returns=3, timeout=30)
    assert len(ready) == 3   # failed tasks count as ready


def test_unpicklable_argument(shared_cluster):
    with pytest.raises(TypeError) as ei:
        passthrough.remote(Unpicklable())
    assert "Unpicklable" in str(ei.value)
    with pytest.raises(TypeError, match="lock"):
        passthrough.remote(threading.Lock())
    with pytest.raises(TypeError, match="lock"):
        ray.put({"x": threading.Lock()})
    assert ray.get(passthrough.remote(2)) == 2


def test_unpicklable_return_value(shared_cluster):
    @ray.remote
    def make_lock():
        return threading.Lock()
    with pytest.raises(ray.TaskError) as ei:
        ray.get(make_lock.remote())
    text = str(ei.value)
    assert "make_lock" in text and "lock" in text.lower()
    assert isinstance(ei.value, TypeError)
    # the worker and the cluster keep working
    assert ray.get([passthrough.remote(i) for i in range(4)]) == [0, 1, 2, 3]


def test_unpicklable_closure(shared_cluster):
    lock = threading.Lock()
    with pytest.raises(TypeError, match="lock"):
        @ray.remote
        def uses_lock():
            with lock:
                return 1
        uses_lock.remote()
    assert ray.get(passthrough.remote(5)) == 5


def test_num_returns_mismatch(shared_cluster):
    @ray.remote(num_returns=2)
    def one():
        return 1
    a, b = one.remote()
    with pytest.raises(ValueError, match="num_returns=2"):
        ray.get(a)


def test_retry_exceptions(shared_cluster, tmp_path):
    counter = tmp_path / "attempts"
    counter.write_text("")

    @ray.remote(max_retries=2, retry_exceptions=True)
    def flaky(path):
        with open(path, "a") as f:
            f.write("x")
        if len(open(path).read()) < 3:
            raise CustomError("not yet")
        return "ok"
    assert ray.get(flaky.remote(str(counter))) == "ok"
    assert counter.read_text() == "xxx"

    counter.write_text("")

    @ray.remote(max_retries=5, retry_exceptions=[KeyError])
    def only_key_errors(path):
        with open(path, "a") as f:
            f.write("x")
        raise CustomError("not retried")
    with pytest.raises(CustomError):
        ray.get(only_key_errors.remote(str(counter)))
    assert counter.read_text() == "x"

    counter.write_text("")

    @ray.remote(max_retries=1, retry_exceptions=[CustomError])
    def listed(path):
        with open(path, "a") as f:
            f.write("x")
        raise CustomError("retried once")
    with pytest.raises(CustomError):
        ray.get(listed.remote(str(counter)))
    assert counter.read_text() == "xx"

    counter.write_text("")

    @ray.remote
    def default_no_retry(path):
        with open(path, "a") as f:
            f.write("x")
        raise CustomError("app errors are not retried by default")
    with pytest.raises(CustomError):
        ray.get(default_no_retry.remote(str(counter)))
    assert counter.read_text() == "x"


def test_keyboard_interrupt_in_task_is_an_error(shared_cluster):
    @ray.remote(max_retries=0)
    def interrupted():
        raise KeyboardInterrupt
    # a TaskError, but not a KeyboardInterrupt: that would look like a Ctrl-C
    # of the driver; and not a cancellation either
    with pytest.raises(ray.TaskError, match="KeyboardInterrupt") as ei:
        ray.get(interrupted.remote(), timeout=20)
    assert not isinstance(ei.value, (KeyboardInterrupt, ray.TaskCancelledError))
    assert ray.get(passthrough.remote(1), timeout=20) == 1


def test_sys_exit_in_task(shared_cluster):
    # as in Ray: sys.exit() ends the worker process; with no retries left the
    # task fails as a crashed worker, naming the exit status
    @ray.remote(max_retries=0)
    def exits():
        raise SystemExit(3)
    with pytest.raises(ray.WorkerCrashedError, match="code 3") as ei:
        ray.get(exits.remote(), timeout=20)
    assert not isinstance(ei.value, SystemExit)
    assert ray.get(passthrough.remote(1), timeout=20) == 1


def test_errors_module_exports():
    assert exceptions.RayTaskError is ray.TaskError
    assert issubclass(ray.GetTimeoutError, TimeoutError)
