"""Addresses that mean what they say (issue 15): a driver connects to the cluster
at the address it was given — host and port — through a node of that cluster on
its own machine, or fails with an error naming the address; BEAMLET_ADDRESS and
RAY_ADDRESS are honoured and announced.  The head is a real `beamlet start`."""
import os
import socket
import tempfile

import pytest

import beamlet
from beamlet._private import config, netaddr
from beamlet.gcs import redis_server

from clitools import cli_env, run, run_python, start_head  # noqa: F401


@pytest.fixture
def head(cli_env):
    address, _ = start_head(cli_env)
    return address, cli_env


def _node_count(address, root):
    beamlet.init(address=address, _temp_dir=root)
    try:
        @beamlet.remote
        def one():
            return 1
        assert beamlet.get(one.remote(), timeout=60) == 1
        return len(beamlet.nodes())
    finally:
        beamlet.shutdown()


def test_host_and_port_must_both_match(head, monkeypatch):
    address, env = head
    root = env["BEAMLET_SESSION_ROOT"]
    port = int(address.rsplit(":", 1)[1])
    # the same cluster by any name of this machine
    assert _node_count(f"localhost:{port}", root) == 1
    assert _node_count(f"127.0.0.1:{port}", root) == 1
    name = socket.gethostname()
    if netaddr.is_this_machine(name):
        assert _node_count(f"{name}:{port}", root) == 1
    # another host with the same port is not this cluster (it used to be)
    monkeypatch.setattr(config, "GCS_CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(ConnectionError) as ei:
        beamlet.init(address=f"10.9.9.9:{port}", _temp_dir=root)
    assert f"10.9.9.9:{port}" in str(ei.value)
    assert not beamlet.is_initialized()
    # this host, another port: nothing there
    free = redis_server.free_port()
    with pytest.raises(ConnectionError) as ei:
        beamlet.init(address=f"127.0.0.1:{free}", _temp_dir=root)
    assert f"no beamlet cluster at 127.0.0.1:{free}" in str(ei.value)
    for bad in ("127.0.0.1", "127.0.0.1:x", "127.0.0.1:0", ":6379", "ray://h:10001"):
        with pytest.raises(ValueError):
            beamlet.init(address=bad, _temp_dir=root)
    with pytest.raises(ValueError) as ei:
        beamlet.init(address="no-such-host.invalid:6379", _temp_dir=root)
    assert "cannot be resolved" in str(ei.value)


def test_gcs_here_but_no_node_of_it_for_this_root(head):
    """A head runs here, but its sessions are under another root: the error says a
    Redis answers there and why it cannot be used."""
    address, _ = head
    with tempfile.TemporaryDirectory(prefix="blother", dir="/tmp") as other:
        with pytest.raises(ConnectionError) as ei:
            beamlet.init(address=address, _temp_dir=other)
    msg = str(ei.value)
    assert address in msg and "BEAMLET_SESSION_ROOT" in msg


DRIVER = """
import beamlet
info = beamlet.init({args})
print("SESSION", info["session_dir"])
print("NODES", len(beamlet.nodes()))
beamlet.shutdown()
"""


def test_ray_address_and_beamlet_address(head):
    address, env = head
    root = env["BEAMLET_SESSION_ROOT"]
    head_session = [n for n in os.listdir(root) if n.startswith("session_2")][0]
    # RAY_ADDRESS is honoured by init() (address None or "auto") and announced
    for args in ("", "address='auto'"):
        p = run_python(DRIVER.format(args=args), dict(env, RAY_ADDRESS=address))
        assert p.returncode == 0, p.stderr
        assert head_session in p.stdout and "NODES 1" in p.stdout
        assert (f"Using address {address} set in the environment variable RAY_ADDRESS"
                in p.stderr), p.stderr
    # BEAMLET_ADDRESS comes first
    p = run_python(DRIVER.format(args=""),
                   dict(env, BEAMLET_ADDRESS=address, RAY_ADDRESS="10.9.9.9:1",
                        BEAMLET_GCS_CONNECT_TIMEOUT_S="1"))
    assert p.returncode == 0, p.stderr
    assert "environment variable BEAMLET_ADDRESS" in p.stderr
    # an explicit address wins over the environment; "local" starts a new cluster
    p = run_python(DRIVER.format(args=f"address={address!r}"),
                   dict(env, RAY_ADDRESS="10.9.9.9:1"))
    assert p.returncode == 0 and head_session in p.stdout, p.stderr
    assert "RAY_ADDRESS" not in p.stderr
    p = run_python(DRIVER.format(args="address='local', num_cpus=1, "
                                 "object_store_memory=100 * 2**20"),
                   dict(env, RAY_ADDRESS=address))
    assert p.returncode == 0, p.stderr
    assert head_session not in p.stdout and "SESSION" in p.stdout
    # a bad RAY_ADDRESS fails naming it
    p = run_python(DRIVER.format(args=""), dict(env, RAY_ADDRESS="127.0.0.1:notaport"))
    assert p.returncode != 0 and "127.0.0.1:notaport" in p.stderr
    # the CLI honours them too
    st = run(["status"], dict(env, RAY_ADDRESS=address))
    assert st.returncode == 0 and f"cluster at {address}" in st.stdout, st.stderr
    free = redis_server.free_port()
    st = run(["status"], dict(env, RAY_ADDRESS=f"127.0.0.1:{free}"))
    assert st.returncode == 1 and f"127.0.0.1:{free}" in st.stderr
