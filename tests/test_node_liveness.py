"""Node liveness on a real multi-node cluster (cluster_utils.Cluster): a stalled
raylet (SIGSTOP/SIGCONT for real), a raylet whose event loop is stuck, a node
declared dead that comes back (fenced: it rejoins as a new node), and peers
refusing a fenced node id.  Thresholds are set low through the Cluster's
_system_config (the defaults are 30 s)."""
import os
import signal
import socket
import struct
import time

import msgpack
import numpy as np
import pytest

import beamlet
from beamlet._private import protocol as P
from beamlet.cluster_utils import Cluster
from beamlet.exceptions import GetTimeoutError, ObjectLostError
from beamlet.gcs.client import GcsClient
from beamlet.raylet import peers

from conftest import read_frame, wait_for


def _gcs(c):
    h = c.head_node
    return GcsClient(h.redis_host, h.redis_port, h.password)


def _state(c, node_hex):
    g = _gcs(c)
    try:
        return g.node_state(bytes.fromhex(node_hex))
    finally:
        g.close()


def _alive_id_of(c, node):
    """The id the node's raylet (same process) runs under now, if ALIVE."""
    g = _gcs(c)
    try:
        for rec in g.nodes():
            if rec.get("state") == "ALIVE" and rec.get("pid") == str(node.raylet_proc.pid):
                return rec["node_id"]
    finally:
        g.close()
    return None


def _log(node):
    with open(os.path.join(node.session_dir, "logs", "raylet.err")) as f:
        return f.read()


@beamlet.remote
def where():
    return beamlet.get_runtime_context().get_node_id()


@beamlet.remote
def ran(path):
    """Appends a line per execution (to count re-runs)."""
    with open(path, "a") as f:
        f.write("x\n")
    return np.ones(300_000)


def test_stall_shorter_than_the_threshold_changes_nothing(tmp_path):
    """A raylet stopped for longer than the old 4 s threshold, shorter than the
    one set: it stays a member, its objects stay readable, nothing runs twice."""
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "_system_config": {"node_death_s": 12}})
    try:
        n2 = c.add_node(num_cpus=1, resources={"n2": 1})
        beamlet.init(address=c.address)
        log = tmp_path / "runs"
        ref = ran.options(resources={"n2": 1}).remote(str(log))
        beamlet.wait([ref], timeout=60, fetch_local=False)
        os.kill(n2.raylet_proc.pid, signal.SIGSTOP)
        try:
            time.sleep(6)
        finally:
            os.kill(n2.raylet_proc.pid, signal.SIGCONT)
        assert _state(c, n2.node_id.hex()) == "ALIVE"
        assert beamlet.get(ref, timeout=60).sum() == 300_000   # pulled from n2 now
        assert log.read_text() == "x\n"                         # it ran once
        assert beamlet.get(where.options(resources={"n2": 1}).remote(),
                           timeout=60) == n2.node_id.hex()
        assert "FENCED" not in _log(n2)
    finally:
        c.shutdown()


def test_a_message_to_a_peer_that_cannot_answer_yet_is_sent_again():
    """The first message to a node whose raylet is stopped (its kernel accepts
    the connection, nobody answers the handshake) is not dropped: the sender
    tries again until the node answers, so the task sent there runs and its
    result comes back (before, the FORWARD was logged and lost: a silent hang)."""
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "_system_config": {"peer_handshake_timeout_s": 1}})
    try:
        n2 = c.add_node(num_cpus=1, resources={"n2": 1})
        beamlet.init(address=c.address)
        os.kill(n2.raylet_proc.pid, signal.SIGSTOP)
        try:
            ref = where.options(resources={"n2": 1}).remote()   # no link to n2 yet
            wait_for(lambda: "trying again" in _log(c.head_node), timeout=30)
            # a get that gives up says where the task is: not "unknown"
            with pytest.raises(GetTimeoutError, match="is being sent to node "
                               f"{n2.node_id.hex()[:12]}, whose raylet has not "
                               "answered"):
                beamlet.get(ref, timeout=2)
        finally:
            os.kill(n2.raylet_proc.pid, signal.SIGCONT)
        assert beamlet.get(ref, timeout=60) == n2.node_id.hex()
        log = _log(c.head_node)
        assert f"cannot reach node {n2.node_id.hex()[:12]}" in log
        assert f"reached node {n2.node_id.hex()[:12]} after" in log
        assert _state(c, n2.node_id.hex()) == "ALIVE"
    finally:
        c.shutdown()


def test_stalled_node_declared_dead_is_fenced_and_rejoins(tmp_path, capfd):
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "_system_config": {"node_death_s": 3}})
    try:
        n2 = c.add_node(num_cpus=1, resources={"n2": 1})
        old = n2.node_id.hex()
        beamlet.init(address=c.address)

        @beamlet.remote(resources={"n2": 1})
        def put_there():
            return [beamlet.put(np.zeros(300_000))]
        log = tmp_path / "runs"
        rebuilt = ran.options(resources={"n2": 1}).remote(str(log))
        beamlet.wait([rebuilt], timeout=60, fetch_local=False)     # stays on n2
        inner = beamlet.get(put_there.remote(), timeout=60)[0]     # a put on n2
        os.kill(n2.raylet_proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _state(c, old) == "DEAD", 30, msg="n2 declared dead")
            # work that needs what only the dead node had: the infeasible warning
            pending = where.options(resources={"n2": 1}).remote()
            seen = []

            def warned():
                seen.append(capfd.readouterr().err)
                return "cannot be scheduled" in "".join(seen)
            wait_for(warned, 30, msg="the infeasible warning")
        finally:
            os.kill(n2.raylet_proc.pid, signal.SIGCONT)
        # it learns it was declared dead, and rejoins under a new id (same process)
        new = wait_for(lambda: _alive_id_of(c, n2), 60, msg="n2 rejoined")
        assert new != old and _state(c, old) == "DEAD"
        assert "FENCED" in _log(n2) and "rejoins the cluster as a new node" in _log(n2)
        # the waiting task runs on the node that came back
        assert beamlet.get(pending, timeout=60) == new
        # an object that lived there: rebuilt from lineage (its task ran again)...
        assert beamlet.get(rebuilt, timeout=60).sum() == 300_000
        assert log.read_text() == "x\nx\n"
        # ... or, a put, lost with an error that names the node
        with pytest.raises(ObjectLostError, match=old[:12]):
            beamlet.get(inner, timeout=60)
    finally:
        c.shutdown()


def _peer_session(addr, token, node_hex):
    """Authenticate to a raylet's peer port as `node_hex`; the socket after AUTH_OK."""
    s = socket.create_connection(addr, timeout=10)
    challenge = read_frame(s)
    body = msgpack.packb([P.PEER_AUTH, peers.proof(token, challenge[2]), node_hex,
                          b"\1" * 32])
    s.sendall(struct.pack("<I", len(body)) + body)
    assert read_frame(s)[0] == P.PEER_AUTH_OK     # the token is right
    return s


def test_peers_refuse_a_fenced_node_id():
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "_system_config": {"node_death_s": 3,
                                          "fenced_node_rejoins": False}})
    try:
        n2 = c.add_node(num_cpus=1)
        old = n2.node_id.hex()
        g = _gcs(c)
        head = next(r for r in g.nodes() if r["node_id"] == c.head_node.node_id.hex())
        g.close()
        addr = (head["address"], int(head["peer_port"]))
        token = c.head_node.password.encode()
        os.kill(n2.raylet_proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _state(c, old) == "DEAD", 30, msg="n2 declared dead")
        finally:
            os.kill(n2.raylet_proc.pid, signal.SIGCONT)
        # with rejoining off, the fenced raylet exits (a clear line in its log)
        n2.raylet_proc.wait(30)
        assert "the raylet exits" in _log(n2)
        # a connection that says it is the dead node is closed at once
        head_log = os.path.join(c.head_node.session_dir, "logs", "raylet.err")
        with _peer_session(addr, token, old) as s:
            assert read_frame(s) is None
        assert "it was declared dead" in open(head_log).read()
        # while a live id (here: made up) is served: a PULL of nothing answers
        with _peer_session(addr, token, "ab" * 16) as s:
            body = msgpack.packb([P.PEER_PULL, b"\0" * 24, True, False])
            s.sendall(struct.pack("<I", len(body)) + body)
            assert read_frame(s)[0] == P.PEER_MISSING
        c.remove_node(n2)
    finally:
        c.shutdown()


def test_busy_loop_keeps_beating_a_stuck_one_is_fenced():
    """Heartbeats come from a thread: a loop held for longer than the death
    threshold (but shorter than LOOP_STALL_S) keeps its node alive; a loop stuck
    for good stops the beats, the node is declared dead and fenced from the
    heartbeat thread (the loop never turns again), and it rejoins."""
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "_system_config": {"node_death_s": 3, "loop_stall_s": 6,
                                          "testing_hooks": 1}})
    try:
        n2 = c.add_node(num_cpus=1, resources={"n2": 1})
        old = n2.node_id.hex()
        beamlet.init(address=c.address)

        @beamlet.remote(resources={"n2": 1})
        def block_my_raylet(seconds):
            from beamlet import connection
            return connection.core().call("testing_block_loop", seconds)
        assert beamlet.get(block_my_raylet.remote(4.5), timeout=60) is True
        assert _state(c, old) == "ALIVE"
        # never returns: the loop is stuck (no retry: it would block the next one)
        stuck = block_my_raylet.options(max_retries=0).remote(600)
        wait_for(lambda: _state(c, old) == "DEAD", 60, msg="n2 declared dead")
        new = wait_for(lambda: _alive_id_of(c, n2), 60, msg="n2 rejoined")
        assert new != old
        text = _log(n2)
        assert "heartbeats stop" in text and "FENCED" in text
        assert beamlet.get(where.options(resources={"n2": 1}).remote(),
                           timeout=60) == new
        del stuck
    finally:
        c.shutdown()
