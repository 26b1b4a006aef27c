"""Actors on a real cluster: creation, ordering, handles passed around, options,
named/detached actors, threaded and async actors, freeing.

Failure cases (kill, crashes, restarts, exit_actor) are in test_actor_failures.py.
"""
import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import beamlet as ray
from conftest import alive, wait_for


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self, k=1):
        self.n += k
        return self.n

    def get(self):
        return self.n

    def pid(self):
        return os.getpid()

    def fail(self):
        raise ValueError("bad call")

    @ray.method(num_returns=2)
    def pair(self):
        return self.n, -self.n


@ray.remote
class Log:
    """Records calls in the order they arrive."""

    def __init__(self):
        self.seen = []

    def add(self, x):
        self.seen.append(x)

    def items(self):
        return self.seen


@pytest.fixture
def shared_cluster():
    """A 2-CPU cluster reused by consecutive tests of this module (tests that
    need their own configuration shut it down and start their own)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2)
    yield ray


@pytest.fixture(scope="module", autouse=True)
def _shutdown_at_end():
    yield
    ray.shutdown()


@pytest.fixture
def ray_start():
    ray.shutdown()
    ray.init(num_cpus=2)
    yield ray
    ray.shutdown()


def _own_cluster(**kw):
    ray.shutdown()
    ray.init(**kw)


# ------------------------------------------------------------------ basics
def test_create_call_and_state(shared_cluster):
    c = Counter.remote(10)
    assert ray.get(c.inc.remote()) == 11
    assert ray.get(c.inc.remote(5)) == 16
    assert ray.get(c.get.remote()) == 16


def test_remote_returns_handle_at_once(shared_cluster):
    @ray.remote
    class Slow:
        def __init__(self):
            time.sleep(1.0)

        def ping(self):
            return "pong"

    t = time.time()
    s = Slow.remote()
    assert time.time() - t < 0.9    # the constructor runs remotely
    assert ray.get(s.ping.remote()) == "pong"


def test_ordering_10000_calls_from_one_caller(shared_cluster):
    log = Log.remote()
    for i in range(10_000):
        log.add.remote(i)
    assert ray.get(log.items.remote()) == list(range(10_000))


def test_ordering_kept_when_an_early_call_waits_for_an_argument(shared_cluster):
    @ray.remote
    def later(x):
        time.sleep(0.5)
        return x

    log = Log.remote()
    log.add.remote(later.remote("first"))     # its argument is not ready yet
    for i in range(20):
        log.add.remote(i)
    assert ray.get(log.items.remote()) == ["first"] + list(range(20))


def test_method_num_returns(shared_cluster):
    c = Counter.remote(3)
    a, b = c.pair.remote()
    assert ray.get([a, b]) == [3, -3]
    x, y, z = c.get.options(num_returns=1).remote(), *c.pair.options(num_returns=2).remote()
    assert ray.get([x, y, z]) == [3, 3, -3]


def test_method_exception_raises_and_actor_lives_on(shared_cluster):
    c = Counter.remote()
    c.inc.remote()
    with pytest.raises(ValueError, match="bad call") as e:
        ray.get(c.fail.remote())
    assert isinstance(e.value, ray.TaskError)
    assert "Counter.fail" in str(e.value)
    assert ray.get(c.inc.remote()) == 2        # state survived the error


def test_unknown_method_and_direct_calls_are_clear_errors(shared_cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no method 'nope'"):
        c.nope.remote()
    with pytest.raises(TypeError, match="remote"):
        Counter()
    with pytest.raises(TypeError, match="remote"):
        c.inc()


def test_bad_constructor_arguments_fail_at_call_site(shared_cluster):
    with pytest.raises(TypeError, match="Counter.remote"):
        Counter.remote(1, 2, 3)


# ------------------------------------------------------------------ refs and handles
@ray.remote
def plus_one(x):
    return x + 1


def test_results_flow_to_tasks_and_other_actors(shared_cluster):
    a = Counter.remote(1)
    b = Counter.remote(100)
    r = a.inc.remote()                       # 2
    assert ray.get(plus_one.remote(r)) == 3
    assert ray.get(b.inc.remote(r)) == 102    # an actor result into another actor
    assert ray.get(a.inc.remote(plus_one.remote(r))) == 5


@ray.remote
def call_through(handle, k):
    return ray.get(handle.inc.remote(k))


@ray.remote
def nested_call(handle):
    # a task that starts another task that calls the actor
    return ray.get(call_through.remote(handle, 10))


def test_handles_passed_into_tasks_and_nested_tasks(shared_cluster):
    c = Counter.remote()
    assert ray.get(call_through.remote(c, 1)) == 1
    assert ray.get(nested_call.remote(c)) == 11
    assert ray.get(c.get.remote()) == 11


@ray.remote
class Caller:
    """An actor that calls another actor through a handle it was given."""

    def __init__(self, other):
        self.other = other

    def poke(self, k):
        return ray.get(self.other.inc.remote(k))

    def poke_given(self, handles):
        return [ray.get(h.inc.remote(1)) for h in handles]


def test_actors_calling_actors(shared_cluster):
    c = Counter.remote()
    caller = Caller.remote(c)
    assert ray.get(caller.poke.remote(5)) == 5
    assert ray.get(caller.poke_given.remote([c, c])) == [6, 7]
    assert ray.get(c.get.remote()) == 7


def test_actor_creates_actor(shared_cluster):
    @ray.remote
    class Parent:
        def __init__(self):
            self.child = Counter.remote(40)

        def child_inc(self):
            return ray.get(self.child.inc.remote(2))

    p = Parent.remote()
    assert ray.get(p.child_inc.remote()) == 42


def test_handle_equality_and_repr(shared_cluster):
    c = Counter.remote()

    @ray.remote
    def give_back(h):
        return h

    c2 = ray.get(give_back.remote(c))
    assert c2 == c and hash(c2) == hash(c)
    assert "Counter" in repr(c)
    assert ray.get(c2.inc.remote()) == 1


# ------------------------------------------------------------------ options
def test_default_actor_holds_no_cpu_while_alive(ray_start):
    c = Counter.remote()
    ray.get(c.get.remote())
    assert ray.available_resources().get("CPU") == 2.0


def test_num_cpus_is_held_while_alive_and_returned_when_freed(ray_start):
    c = Counter.options(num_cpus=1).remote()
    pid = ray.get(c.pid.remote())
    assert ray.available_resources().get("CPU") == 1.0
    del c
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0,
             msg="the actor's CPU to come back")
    wait_for(lambda: not alive(pid), msg="the actor's worker to exit")


def test_num_gpus_and_custom_resources():
    _own_cluster(num_cpus=2, num_gpus=2, resources={"slot": 1})
    try:
        @ray.remote(num_gpus=1)
        class G:
            def ids(self):
                return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

        g = G.remote()
        ids, cvd = ray.get(g.ids.remote())
        assert len(ids) == 1 and cvd == str(ids[0])
        assert ray.available_resources().get("GPU") == 1.0

        s1 = Counter.options(resources={"slot": 1}).remote()
        assert ray.get(s1.inc.remote()) == 1
        s2 = Counter.options(resources={"slot": 1}).remote()
        ref = s2.inc.remote()
        ready, _ = ray.wait([ref], timeout=1.0)
        assert not ready           # waits for the slot
        ray.kill(s1)
        assert ray.get(ref, timeout=30) == 1
    finally:
        ray.shutdown()


def test_bad_options_are_clear_errors(shared_cluster):
    with pytest.raises(ValueError, match="Invalid option"):
        Counter.options(num_cpu=1)
    with pytest.raises(ValueError, match="max_concurrency"):
        Counter.options(max_concurrency=0).remote()
    with pytest.raises(TypeError, match="max_restarts"):     # (as Ray: wrong type)
        Counter.options(max_restarts="3").remote()
    with pytest.raises(ValueError, match="lifetime"):
        Counter.options(lifetime="forever").remote()
    with pytest.raises(ValueError, match="needs a name"):
        Counter.options(get_if_exists=True).remote()
    with pytest.raises(ValueError, match="name"):
        Counter.options(name="").remote()


# ------------------------------------------------------------------ named actors
def test_named_actor_lookup_and_duplicate_name(ray_start):
    c = Counter.options(name="counter").remote(7)
    same = ray.get_actor("counter")
    assert ray.get(same.inc.remote()) == 8
    with pytest.raises(ValueError, match="already exists in namespace"):
        Counter.options(name="counter").remote()
    again = Counter.options(name="counter", get_if_exists=True).remote()
    assert again == c
    with pytest.raises(ValueError, match="no live actor"):
        ray.get_actor("nobody")


def test_names_are_unique_per_namespace(ray_start):
    a = Counter.options(name="x", namespace="ns1").remote(1)
    b = Counter.options(name="x", namespace="ns2").remote(2)
    assert ray.get(ray.get_actor("x", namespace="ns1").get.remote()) == 1
    assert ray.get(ray.get_actor("x", namespace="ns2").get.remote()) == 2
    with pytest.raises(ValueError):
        ray.get_actor("x")          # not in this driver's (anonymous) namespace
    del a, b


def test_named_actor_survives_its_handles(ray_start):
    c = Counter.options(name="keeper").remote()
    pid = ray.get(c.pid.remote())
    ray.get(c.inc.remote())
    del c
    time.sleep(0.5)
    h = ray.get_actor("keeper")
    assert ray.get(h.get.remote()) == 1
    assert ray.get(h.pid.remote()) == pid


def test_name_is_free_again_after_kill(ray_start):
    c = Counter.options(name="reuse").remote()
    ray.get(c.get.remote())
    ray.kill(c)
    wait_for(lambda: _lookup_fails("reuse"), msg="the name to be released")
    d = Counter.options(name="reuse").remote(5)
    assert ray.get(ray.get_actor("reuse").get.remote()) == 5
    del d


def _lookup_fails(name):
    try:
        ray.get_actor(name)
        return False
    except ValueError:
        return True


@ray.remote
def lookup_in_task(name):
    return ray.get(ray.get_actor(name).inc.remote())


def test_init_namespace_applies_in_tasks_and_actors():
    _own_cluster(num_cpus=2, namespace="team")
    try:
        assert ray.get_runtime_context().namespace == "team"
        c = Counter.options(name="shared").remote()
        assert ray.get(lookup_in_task.remote("shared")) == 1
        assert ray.get(ray.get_actor("shared", namespace="team").get.remote()) == 1

        @ray.remote
        def make_named():
            # created inside a task: lands in the job's namespace too
            h = Counter.options(name="from_task", lifetime="detached").remote(9)
            return ray.get(h.get.remote())
        assert ray.get(make_named.remote()) == 9
        assert ray.get(ray.get_actor("from_task").get.remote()) == 9
        del c
    finally:
        ray.shutdown()


# ------------------------------------------------------------------ detached actors
HEAD_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from beamlet.node import Node
    node = Node(head=True, num_cpus=2, object_store_memory=128 * 2**20,
                owner_pid=os.getpid()).start()
    def stop(*_):
        node.stop()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    print(node.address, flush=True)
    while True:
        time.sleep(1)
""")

DRIVER1 = textwrap.dedent("""
    import sys, beamlet as ray
    ray.init(address=sys.argv[1], namespace="jobs")

    @ray.remote
    class Store:
        def __init__(self):
            self.d = {}
        def set(self, k, v):
            self.d[k] = v
        def get(self, k):
            return self.d.get(k)
        def pid(self):
            import os
            return os.getpid()

    s = Store.options(name="store", lifetime="detached").remote()
    ray.get(s.set.remote("answer", 42))
    t = Store.options(name="temp").remote()      # named but not detached
    ray.get(t.set.remote("x", 1))
    print(ray.get(s.pid.remote()), ray.get(t.pid.remote()), flush=True)
""")

DRIVER2 = textwrap.dedent("""
    import sys, time, beamlet as ray
    ray.init(address=sys.argv[1], namespace="jobs")
    s = ray.get_actor("store")
    print(ray.get(s.get.remote("answer")), flush=True)
    try:
        ray.get_actor("temp")
        print("temp alive", flush=True)
    except ValueError:
        print("temp gone", flush=True)
    ray.kill(s)
""")


def test_detached_actor_outlives_its_driver_and_is_found_by_another(tmp_path):
    ray.shutdown()
    head = subprocess.Popen([sys.executable, "-c", HEAD_SCRIPT], stdout=subprocess.PIPE,
                            text=True)
    try:
        address = head.stdout.readline().strip()
        assert address, "the head process did not start"
        out1 = subprocess.run([sys.executable, "-c", DRIVER1, address],
                              capture_output=True, text=True, timeout=60)
        assert out1.returncode == 0, out1.stderr
        store_pid, temp_pid = map(int, out1.stdout.split()[-2:])
        # the first driver is gone: its non-detached actor dies with it
        wait_for(lambda: not alive(temp_pid), msg="the job's named actor to die")
        assert alive(store_pid)
        out2 = subprocess.run([sys.executable, "-c", DRIVER2, address],
                              capture_output=True, text=True, timeout=60)
        assert out2.returncode == 0, out2.stderr
        assert out2.stdout.split() == ["42", "temp", "gone"]
        wait_for(lambda: not alive(store_pid), msg="the killed detached actor to exit")
    finally:
        head.terminate()
        head.wait(15)


# ------------------------------------------------------------------ concurrency
def test_threaded_actor_runs_calls_concurrently(shared_cluster):
    @ray.remote(max_concurrency=4)
    class Threaded:
        def __init__(self):
            self.barrier = threading.Barrier(4)

        def meet(self):
            # only returns if 4 calls are inside at the same time
            self.barrier.wait(timeout=20)
            return threading.get_ident()

    t = Threaded.remote()
    idents = ray.get([t.meet.remote() for _ in range(4)])
    assert len(set(idents)) == 4


def test_max_concurrency_one_serializes(shared_cluster):
    @ray.remote
    class Serial:
        def __init__(self):
            self.inside = 0
            self.most = 0

        def work(self):
            self.inside += 1
            self.most = max(self.most, self.inside)
            time.sleep(0.01)
            self.inside -= 1

        def most_inside(self):
            return self.most

    s = Serial.remote()
    ray.get([s.work.remote() for _ in range(20)])
    assert ray.get(s.most_inside.remote()) == 1


@ray.remote
class AsyncActor:
    def __init__(self):
        self.event = asyncio.Event()

    async def sleep(self, s):
        await asyncio.sleep(s)
        return s

    async def wait_event(self):
        await self.event.wait()
        return "released"

    async def release(self):
        self.event.set()

    def sync_method(self):
        return "sync"


def test_async_actor_calls_interleave(shared_cluster):
    a = AsyncActor.remote()
    ray.get(a.sleep.remote(0))        # created
    t = time.time()
    assert ray.get([a.sleep.remote(1) for _ in range(10)]) == [1] * 10
    assert time.time() - t < 6        # serially it would take 10 s
    # a waiting call does not block later ones
    waiting = a.wait_event.remote()
    ray.get(a.release.remote())
    assert ray.get(waiting, timeout=20) == "released"
    assert ray.get(a.sync_method.remote()) == "sync"


def test_async_actor_max_concurrency_limits(shared_cluster):
    @ray.remote(max_concurrency=2)
    class Limited:
        def __init__(self):
            self.inside = 0
            self.most = 0

        async def work(self):
            self.inside += 1
            self.most = max(self.most, self.inside)
            await asyncio.sleep(0.05)
            self.inside -= 1
            return self.most

    lim = Limited.remote()
    assert max(ray.get([lim.work.remote() for _ in range(10)])) == 2


def test_async_method_exception(shared_cluster):
    @ray.remote
    class Bad:
        async def boom(self):
            await asyncio.sleep(0)
            raise KeyError("async boom")

        async def ok(self):
            return 1

    b = Bad.remote()
    with pytest.raises(KeyError):
        ray.get(b.boom.remote())
    assert ray.get(b.ok.remote()) == 1


def test_await_refs_inside_async_actor(shared_cluster):
    @ray.remote
    class Awaiter:
        async def double(self, refs):
            return 2 * await refs[0]

    a = Awaiter.remote()
    assert ray.get(a.double.remote([plus_one.remote(1)])) == 4


# ------------------------------------------------------------------ freeing
def test_actor_freed_when_last_handle_goes(ray_start):
    c = Counter.remote()
    pid = ray.get(c.pid.remote())
    c2 = c                                    # two handles in this process
    del c
    time.sleep(0.3)
    assert alive(pid)
    del c2
    wait_for(lambda: not alive(pid), msg="the actor's worker to exit")


def test_actor_kept_alive_by_handle_in_a_task(ray_start):
    @ray.remote
    def hold(h, s):
        time.sleep(s)
        return ray.get(h.inc.remote())

    c = Counter.remote()
    pid = ray.get(c.pid.remote())
    ref = hold.remote(c, 1.0)
    del c                                     # the task still holds a handle
    assert ray.get(ref) == 1
    wait_for(lambda: not alive(pid), msg="the actor's worker to exit")


def test_pending_calls_finish_before_an_unreferenced_actor_goes(ray_start):
    @ray.remote
    class Slow:
        def work(self, i):
            time.sleep(0.05)
            return i

    s = Slow.remote()
    refs = [s.work.remote(i) for i in range(10)]
    del s
    assert ray.get(refs) == list(range(10))


def test_detached_actor_survives_its_handles(ray_start):
    c = Counter.options(lifetime="detached", name="det").remote()
    pid = ray.get(c.pid.remote())
    del c
    time.sleep(0.5)
    assert alive(pid)
    ray.kill(ray.get_actor("det"))
    wait_for(lambda: not alive(pid), msg="the killed actor's worker to exit")


def test_many_actors_created_and_freed(ray_start):
    for _ in range(3):
        actors = [Counter.remote(i) for i in range(8)]
        assert ray.get([a.inc.remote() for a in actors]) == list(range(1, 9))
        del actors
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0, msg="CPUs back")
