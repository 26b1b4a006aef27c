"""Bad input never hangs (issue 16, "also make these hold"): a forged ObjectRef, a
task returning 100,000 refs, a put larger than the store, and frames over the
size cap (or not messages at all) on the raylet's unix socket and its TCP peer
port, garbage, a wrong token and hundreds of idle connections there.  Each ends
in a clear error or a dropped connection, and the cluster goes on working."""
import os
import socket
import struct
import threading

import msgpack
import numpy as np
import pytest

import beamlet as ray
from beamlet import ObjectRef
from beamlet._private import protocol as P
from conftest import read_frame
from beamlet.cluster_utils import Cluster
from beamlet.gcs.client import GcsClient
from beamlet.worker import core_worker


MiB = 2**20


def core():
    return core_worker.global_worker


def in_thread(fn):
    """Run fn() in a daemon thread; (thread, box with "value" or "error")."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


@ray.remote
def many_refs(n):
    return [ray.put(i) for i in range(n)]


@ray.remote
def add(*xs):
    return sum(xs) if xs and not isinstance(xs[0], bytes) else len(xs)


@pytest.fixture(scope="module")
def small_store():
    ray.init(num_cpus=2, object_store_memory=512 * MiB)
    yield
    ray.shutdown()


def test_forged_object_ref_raises_at_once(small_store):
    t, box = in_thread(lambda: ray.get(ObjectRef(b"x" * 20)))
    t.join(30)
    assert not t.is_alive(), "get of a forged ObjectRef hangs"
    assert isinstance(box["error"], ray.exceptions.ObjectLostError)
    assert (b"x" * 20).hex() in str(box["error"])


@pytest.mark.parametrize("bad, error", [(b"x", ValueError), ("abc" * 7, TypeError),
                                        (5, TypeError), (bytearray(20), TypeError)])
def test_object_ref_of_something_not_an_id(small_store, bad, error):
    # (a str id reached the raylet as a msgpack str and the get hung)
    with pytest.raises(error, match="ObjectRef.. takes an object id"):
        ObjectRef(bad)


def test_task_returning_100000_refs(small_store):
    refs = ray.get(many_refs.remote(100_000), timeout=300)
    assert len(refs) == 100_000 and all(isinstance(r, ObjectRef) for r in refs[:10])
    assert ray.get(refs[:1000] + refs[-1000:]) == list(range(1000)) + \
        list(range(99_000, 100_000))
    assert ray.get(add.remote(*refs[:100])) == sum(range(100))


def test_put_larger_than_the_store(small_store):
    big = np.zeros(3 * 2**30, dtype=np.uint8)     # 3 GiB (pages never touched)
    t, box = in_thread(lambda: ray.put(big))
    t.join(60)
    assert not t.is_alive(), "a put larger than the store hangs"
    err = box["error"]
    assert isinstance(err, ray.exceptions.ObjectStoreFullError)
    assert "can never fit" in str(err) and str(512 * MiB) in str(err)
    assert "32212" in str(err)                   # its size, 3 GiB and a header
    del big
    assert ray.get(add.remote(1, 2)) == 3


def test_unix_socket_frames_over_the_cap_or_garbage_close_the_connection(small_store):
    path = core().conn.path
    for raw, words in (
            (struct.pack("<I", 2**31), ["2147483648 bytes", "BEAMLET_MAX_FRAME_BYTES"]),
            (struct.pack("<I", 5) + b"hello", ["not a beamlet message"]),
            (struct.pack("<I", 1) + msgpack.packb(7), ["not a beamlet message"])):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(path)
            s.sendall(raw)
            msg = read_frame(s)
            assert msg is not None and msg[0] == P.CLOSING, msg   # with the reason
            for w in words:
                assert w in msg[1], msg
            assert read_frame(s) is None                     # then closed
    # the raylet serves everyone else as before
    assert ray.get(add.remote(2, 3)) == 5


def test_a_client_frame_over_a_small_cap_gets_a_clear_error(monkeypatch):
    """A real client whose message is over the raylet's cap (set small here):
    its connection closes and its next call says why."""
    monkeypatch.setenv("BEAMLET_MAX_FRAME_BYTES", str(256 * 1024))
    if ray.is_initialized():
        ray.shutdown()      # (the module's cluster: these tests need their own)
    ray.init(num_cpus=1)
    try:
        assert ray.get(add.remote(1, 2)) == 3
        arg = b"a" * (90 * 1024)          # by value (under the inline threshold)
        with pytest.raises(ray.exceptions.RaySystemError) as ei:
            ray.get(add.remote(*[arg] * 5), timeout=60)   # a ~450 KiB SUBMIT
        assert "larger than the maximum of 262144 bytes" in str(ei.value)
        assert "BEAMLET_MAX_FRAME_BYTES" in str(ei.value)
    finally:
        ray.shutdown()


# ----------------------------------------------------------------- the TCP peer port
def _peer_address(c, node):
    gcs = GcsClient(c.head_node.redis_host, c.head_node.redis_port, c.head_node.password)
    try:
        rec = next(n for n in gcs.nodes() if n["node_id"] == node.node_id.hex())
    finally:
        gcs.r.close()
    return rec["address"], int(rec["peer_port"])


@ray.remote
def node_of():
    return ray.get_runtime_context().get_node_id()


def _closed_without_answer(s, after_challenge=True):
    if after_challenge:
        assert read_frame(s)[0] == 100      # PEER_CHALLENGE
    return read_frame(s) is None


def test_peer_port_drops_garbage_huge_prefixes_wrong_tokens_and_idle_crowds(monkeypatch):
    monkeypatch.setenv("BEAMLET_PEER_HANDSHAKE_TIMEOUT_S", "3")
    monkeypatch.setenv("BEAMLET_MAX_PENDING_PEER_HANDSHAKES", "16")
    monkeypatch.setenv("BEAMLET_UNKNOWN_OBJECT_WAIT_S", "2")
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        n2 = c.add_node(num_cpus=1, resources={"node2": 1})
        addr = _peer_address(c, n2)
        cases = [
            os.urandom(64),                                        # garbage
            struct.pack("<I", 2**31),                              # a 2 GiB prefix
            struct.pack("<I", 20) + os.urandom(20),                # not msgpack
            msgpack.packb([101, b"\0" * 32, "intruder", b"\1" * 32]),  # wrong proof
        ]
        cases[-1] = struct.pack("<I", len(cases[-1])) + cases[-1]
        for raw in cases:
            with socket.create_connection(addr, timeout=30) as s:
                assert read_frame(s)[0] == 100
                s.sendall(raw)
                assert read_frame(s) is None, raw[:8]
        # hundreds of connections that never answer: past 16 pending the oldest
        # are dropped at once, the rest when the handshake times out
        idle = [socket.create_connection(addr, timeout=30) for _ in range(300)]
        try:
            for s in idle[:100]:
                assert _closed_without_answer(s)
            # meanwhile the node serves the cluster (a real peer gets in)
            ray.init(address=c.address)
            assert ray.get(node_of.options(resources={"node2": 1}).remote(),
                           timeout=60) == n2.node_id.hex()
            for s in idle[-16:]:
                assert _closed_without_answer(s)
            # on a cluster of several nodes a forged ref is looked for in the
            # GCS for UNKNOWN_OBJECT_WAIT_S (2 s here), then it is lost
            t, box = in_thread(lambda: ray.get(ObjectRef(b"y" * 20)))
            t.join(60)
            assert not t.is_alive(), "get of a forged ObjectRef hangs on a cluster"
            assert isinstance(box["error"], ray.exceptions.ObjectLostError)
        finally:
            for s in idle:
                s.close()
            ray.shutdown()
    finally:
        c.shutdown()
