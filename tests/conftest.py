"""Test fixtures: every test that needs a cluster starts a real one (Redis, raylet,
workers) and tears it down; nothing is mocked."""
import time

import psutil
import pytest

import beamlet


def _children():
    return {p.pid for p in psutil.Process().children(recursive=True)}


def alive(pid):
    """Whether process `pid` still runs (a zombie does not). A process may exit
    between any two looks at it, so a vanished one is simply not alive."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def ray_start():
    """A fresh local cluster with 2 CPUs for one test."""
    beamlet.init(num_cpus=2)
    yield beamlet
    beamlet.shutdown()


@pytest.fixture
def ray_start_4cpu():
    beamlet.init(num_cpus=4)
    yield beamlet
    beamlet.shutdown()


@pytest.fixture
def ray_start_1cpu():
    beamlet.init(num_cpus=1)
    yield beamlet
    beamlet.shutdown()


@pytest.fixture(scope="module")
def shared_cluster():
    """One cluster for a whole module (tests that do not disturb it)."""
    beamlet.init(num_cpus=2)
    yield beamlet
    beamlet.shutdown()


@pytest.fixture(autouse=True)
def no_leftovers():
    """After each test, no process this test started may still run."""
    before = _children()
    yield
    if beamlet.is_initialized():
        return  # a module-scoped cluster is still up on purpose
    deadline = time.time() + 5
    while True:
        left = _children() - before
        left = {p for p in left if alive(p)}
        if not left or time.time() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left running: {left}"


def wait_for(cond, timeout=10.0, interval=0.02, msg="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {msg}")


def read_frame(s):
    """One frame of the raylets' peer protocol read from socket `s` (msgpack
    decoded), or None once the peer closed the connection."""
    import struct
    import msgpack
    hdr = b""
    while len(hdr) < 4:
        chunk = s.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    (n,) = struct.unpack("<I", hdr)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return msgpack.unpackb(body, raw=False)
