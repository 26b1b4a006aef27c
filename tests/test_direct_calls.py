"""Direct actor calls (issue 12): once the raylet grants it, a caller on the
actor's node sends its calls straight to the actor's worker and gets the results
back the same way.  Order per caller across the switch from the raylet path and
back, results kept by the caller and shared when their refs leave the process,
large results and results holding refs, freeing, failures (kill, crash with
retries, exit_actor), cancel, threaded and async actors, callers that are
workers, the socket's permissions and its token.  Real clusters throughout."""
import gc
import os
import socket
import stat
import time

import numpy as np
import pytest

import beamlet as ray
from beamlet import api
from beamlet._private import protocol as P
from beamlet._private import serialization

from conftest import wait_for

MiB = 2**20


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, object_store_memory=256 * MiB)
    yield ray
    ray.shutdown()


def core():
    return api._core()


def channel(handle):
    return core().direct.channels.get(handle._actor_id)


def go_direct(handle):
    """Calls until this process's channel to the actor is direct."""
    def direct():
        ray.get(handle.__ray_ready__.remote())
        ch = channel(handle)
        return ch is not None and ch.state == "direct"
    wait_for(direct, timeout=30, msg="the channel to go direct")


def arena_used():
    return core().call("status")["store"]["arena_used"]


def objects():
    return {o["object_id"] for o in core().call("memory")["objects"]}


@ray.remote
class Log:
    def __init__(self):
        self.seen = []

    def add(self, x):
        self.seen.append(x)
        return len(self.seen)

    def get(self):
        return list(self.seen)

    def big(self, n):
        return np.full(n, 7, dtype=np.uint8)

    def nested(self, v):
        return [ray.put(v)]

    def echo(self, x):
        return x

    def fail(self):
        raise KeyError("nope")

    def pid(self):
        return os.getpid()


@ray.remote
def plus_one(x):
    return x + 1


# ----------------------------------------------------------------- order, values
def test_calls_go_direct_and_keep_their_order(cluster):
    a = Log.remote()
    # submitted before the actor exists: through the raylet; later ones direct
    first = [a.add.remote(i) for i in range(300)]
    go_direct(a)
    later = [a.add.remote(i) for i in range(300, 1300)]
    assert ray.get(first + later) == list(range(1, 1301))
    assert ray.get(a.get.remote()) == list(range(1300))
    assert channel(a).state == "direct"


def test_direct_results_are_kept_by_the_caller_until_shared(cluster):
    a = Log.remote()
    go_direct(a)
    r = a.echo.remote(41)
    assert ray.get(r) == 41
    # the raylet never heard of it ...
    assert r.hex() not in objects()
    # ... until its ref leaves the process: a task gets the value
    assert ray.get(plus_one.remote(r)) == 42
    assert r.hex() in objects()
    oid = r.hex()
    del r
    gc.collect()
    wait_for(lambda: oid not in objects(), msg="the shared result to be freed")


def test_pending_results_passed_on_before_they_exist(cluster, tmp_path):
    a, b = Log.remote(), Log.remote()
    go_direct(a)
    go_direct(b)

    @ray.remote
    class Slow:
        def later(self, path):
            while not os.path.exists(path):
                time.sleep(0.01)
            return 5
    s = Slow.remote()
    go_direct(s)
    gate = str(tmp_path / "gate")
    r = s.later.remote(gate)            # no answer yet
    t = plus_one.remote(r)              # its ref goes to a task (OWN, then FULFIL)
    u = b.echo.remote([r])              # and, nested, to another actor
    open(gate, "w").close()
    assert ray.get(t) == 6
    assert ray.get(ray.get(u)[0]) == 5
    assert ray.get(r) == 5


def test_ref_arguments_inline_or_through_the_raylet_in_order(cluster):
    a = Log.remote()
    go_direct(a)
    small = ray.put(3)                                  # here: inlined, direct
    big = ray.put(np.zeros(MiB, dtype=np.uint8))        # arena: via the raylet
    task = plus_one.remote(1)                           # another's result
    refs, expect = [], []
    for i in range(30):
        refs.append(a.add.remote(i))
        expect.append(i)
        for every, arg, value in ((3, small, 3), (6, big, "big"), (9, task, 2)):
            if i % 10 == every:
                refs.append(a.add.remote(arg))
                expect.append(value)
    assert ray.get(refs) == list(range(1, len(refs) + 1))
    seen = ray.get(a.get.remote())
    assert [("big" if isinstance(v, np.ndarray) else v) for v in seen] == expect
    go_direct(a)      # and back to the direct path after the raylet ones


def test_errors_of_direct_calls(cluster):
    a = Log.remote()
    go_direct(a)
    with pytest.raises(KeyError, match="nope"):
        ray.get(a.fail.remote())
    r = a.fail.remote()
    with pytest.raises(KeyError):          # an error passed on stays an error
        ray.get(plus_one.remote(r))


def test_get_timeout_and_wait_on_direct_results(cluster, tmp_path):
    @ray.remote
    class Gate:
        def until(self, path):
            while not os.path.exists(path):
                time.sleep(0.01)
            return "open"

        def now(self):
            return "now"
    g = Gate.options(max_concurrency=2).remote()
    go_direct(g)
    path = str(tmp_path / "g")
    slow, fast = g.until.remote(path), g.now.remote()
    with pytest.raises(ray.GetTimeoutError):
        ray.get(slow, timeout=0.2)
    ready, rest = ray.wait([slow, fast], num_returns=1, timeout=10)
    assert ready == [fast] and rest == [slow]
    open(path, "w").close()
    ready, rest = ray.wait([slow, fast], num_returns=2, timeout=10)
    assert len(ready) == 2 and ray.get(slow) == "open"


# ----------------------------------------------------------------- objects
def test_large_results_live_in_the_arena_and_are_freed(cluster):
    a = Log.remote()
    go_direct(a)
    before = arena_used()
    rs = [a.big.remote(2 * MiB) for _ in range(5)]
    for r in rs:
        v = ray.get(r)
        assert v.shape == (2 * MiB,) and int(v[-1]) == 7 and not v.flags.writeable
    assert arena_used() >= before + 10 * MiB
    del rs, v, r
    gc.collect()
    wait_for(lambda: arena_used() <= before, msg="the arena results to be freed")
    # dropped before their answer came: freed as well
    for _ in range(5):
        a.big.remote(2 * MiB)
    ray.get(a.get.remote())
    gc.collect()
    wait_for(lambda: arena_used() <= before, msg="unheld arena results freed")


def test_results_holding_refs(cluster):
    a = Log.remote()
    go_direct(a)
    outer = a.nested.remote("inner value")
    (inner,) = ray.get(outer)
    assert ray.get(inner) == "inner value"
    oids = {outer.hex(), inner.hex()}
    assert oids <= objects()        # registered: the raylet keeps the inner one alive
    del outer, inner
    gc.collect()
    wait_for(lambda: not (oids & objects()), msg="the nested result to be freed")


def test_many_dropped_results_leave_nothing(cluster):
    a = Log.remote()
    go_direct(a)
    before = objects()
    for i in range(2000):
        a.echo.remote(i)
    assert ray.get(a.echo.remote("last")) == "last"
    gc.collect()
    wait_for(lambda: len(objects() - before) <= 2, msg="no leftover objects")


# ----------------------------------------------------------------- callers, kinds
@ray.remote
def call_from_task(h, n):
    return ray.get([h.add.remote(i) for i in range(n)])


@ray.remote
class Caller:
    def __init__(self, h):
        self.h = h

    def run(self, n):
        return ray.get([self.h.add.remote(i) for i in range(n)])


def test_workers_and_actors_call_directly(cluster):
    a = Log.remote()
    assert ray.get(call_from_task.remote(a, 200)) == list(range(1, 201))
    c = Caller.remote(a)
    ray.get(c.run.remote(10))
    assert ray.get(c.run.remote(300)) == list(range(211, 511))


def test_threaded_and_async_actors(cluster):
    @ray.remote(max_concurrency=4)
    class Threaded:
        def sq(self, x):
            time.sleep(0.001)
            return x * x

    @ray.remote
    class Async:
        async def sq(self, x):
            import asyncio
            await asyncio.sleep(0.001)
            return x * x
    for cls in (Threaded, Async):
        h = cls.remote()
        go_direct(h)
        assert ray.get([h.sq.remote(i) for i in range(200)]) == [i * i for i in range(200)]


# ----------------------------------------------------------------- failures
def test_kill_fails_pending_direct_calls(cluster, tmp_path):
    @ray.remote
    class Sleeper:
        def nap(self, path, s):
            open(path, "w").close()
            time.sleep(s)
            return s
    s = Sleeper.remote()
    go_direct(s)
    started = str(tmp_path / "started")
    refs = [s.nap.remote(started, 0.5) for _ in range(5)]
    wait_for(lambda: os.path.exists(started), msg="the first call to start")
    ray.kill(s)
    for r in refs:
        with pytest.raises(ray.ActorDiedError):
            ray.get(r, timeout=30)
    with pytest.raises(ray.ActorDiedError):
        ray.get(s.nap.remote(started, 0), timeout=30)


def test_crash_retries_direct_calls_and_reconnects(cluster, tmp_path):
    @ray.remote(max_restarts=1, max_task_retries=2)
    class Fragile:
        def work(self, path, x):
            if x == 3 and not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return x

        def pid(self):
            return os.getpid()
    f = Fragile.remote()
    go_direct(f)
    pid = ray.get(f.pid.remote())
    flag = str(tmp_path / "crashed")
    assert ray.get([f.work.remote(flag, i) for i in range(8)], timeout=60) == list(range(8))
    assert ray.get(f.pid.remote()) != pid
    go_direct(f)        # a new grant for the restarted worker


def test_exit_actor_in_a_direct_call(cluster):
    @ray.remote
    class Quitter:
        def bye(self):
            ray.actor.exit_actor()

        def hi(self):
            return "hi"
    q = Quitter.remote()
    go_direct(q)
    with pytest.raises(ray.ActorDiedError, match="exit_actor"):
        ray.get(q.bye.remote(), timeout=30)
    with pytest.raises(ray.ActorDiedError):
        ray.get(q.hi.remote(), timeout=30)


def test_cancel_queued_and_running_direct_calls(cluster, tmp_path):
    @ray.remote
    class Busy:
        def spin(self, started, path, saw):
            open(started, "w").close()
            while not os.path.exists(path):
                if ray.get_runtime_context().is_canceled():
                    open(saw, "w").close()
                    return "saw cancel"
                time.sleep(0.01)
            return "done"

        def quick(self):
            return "quick"
    b = Busy.remote()
    go_direct(b)
    started = str(tmp_path / "started")
    saw = str(tmp_path / "saw")
    running = b.spin.remote(started, str(tmp_path / "never"), saw)
    queued = b.quick.remote()
    wait_for(lambda: os.path.exists(started), msg="the first call to start")
    ray.cancel(queued)
    with pytest.raises(ray.TaskCancelledError):
        ray.get(queued, timeout=30)
    ray.cancel(running)
    # a running call is flagged (is_canceled()); its result is the cancel, as
    # for a call through the raylet (tests/test_cancel.py)
    with pytest.raises(ray.TaskCancelledError):
        ray.get(running, timeout=30)
    assert os.path.exists(saw)
    assert ray.get(b.quick.remote(), timeout=30) == "quick"


# ----------------------------------------------------------------- the socket
def test_the_socket_is_private_and_needs_the_token(cluster, tmp_path):
    a = Log.remote()
    go_direct(a)
    path = channel(a).link.sock.getpeername()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # a wrong token: the worker never runs what follows
    marker = str(tmp_path / "ran")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    spec = P.TaskSpec(os.urandom(16), core().job_id, P.ACTOR_TASK, b"", "Log.add",
                      [[P.ARG_VALUE, serialization.serialize(
                          marker).to_bytes(), []]], [], 1, {}, actor_id=a._actor_id,
                      method="add", caller=core().worker_id)
    s.sendall(P.frames([[P.D_HELLO, P.VERSION, core().worker_id, b"x" * 16],
                        [P.D_CALL, spec.to_wire()]]))
    s.settimeout(0.5)
    with pytest.raises(socket.timeout):
        s.recv(100)
    s.close()
    assert marker not in ray.get(a.get.remote())
    # garbage instead of a hello: the worker hangs up
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"\xff" * 4096)
    s.settimeout(10)
    assert s.recv(100) == b""
    s.close()


def test_a_task_waiting_for_a_direct_result_lends_its_cpu():
    # (last: a one-CPU cluster of its own, after the module's)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1)
    try:
        @ray.remote(num_cpus=0)
        class Spawner:
            def run(self):
                return ray.get(plus_one.remote(1))   # needs the only CPU

        @ray.remote
        def outer(h):
            ray.get(h.__ray_ready__.remote())
            ray.get(h.__ray_ready__.remote())
            return ray.get(h.run.remote())            # (waits holding the CPU)
        s = Spawner.remote()
        assert ray.get(outer.remote(s), timeout=60) == 2
    finally:
        ray.shutdown()
