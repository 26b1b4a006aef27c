"""A real multi-host cluster: Linux network namespaces joined by a veth pair stand
for two hosts (10.77.<k>.1 runs the head, 10.77.<k>.2 a worker node and the driver).
Each "host" has its own session root, so nothing is shared through /tmp; the nodes
talk over their own addresses only.  Needs root and `ip netns`: skips otherwise."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

NS_HEAD, NS_WORKER = f"blh{os.getpid()}", f"blw{os.getpid()}"


def _netns_unavailable():
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip"):
        return "the `ip` tool (iproute2) is not installed"
    p = subprocess.run(["ip", "netns", "add", "blprobe"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"`ip netns add` fails here: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "blprobe"], capture_output=True)
    return None


_why = _netns_unavailable()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"network namespaces: {_why}")


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture
def hosts():
    k = os.getpid() % 200 + 20
    head_ip, worker_ip = f"10.77.{k}.1", f"10.77.{k}.2"
    veth_h, veth_w = f"vbh{os.getpid() % 100000}", f"vbw{os.getpid() % 100000}"
    roots = [tempfile.mkdtemp(prefix="blnsh", dir="/tmp"),
             tempfile.mkdtemp(prefix="blnsw", dir="/tmp")]
    try:
        sh("ip", "netns", "add", NS_HEAD)
        sh("ip", "netns", "add", NS_WORKER)
        sh("ip", "link", "add", veth_h, "type", "veth", "peer", "name", veth_w)
        sh("ip", "link", "set", veth_h, "netns", NS_HEAD)
        sh("ip", "link", "set", veth_w, "netns", NS_WORKER)
        for ns, dev, ip in ((NS_HEAD, veth_h, head_ip), (NS_WORKER, veth_w, worker_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield {"head_ip": head_ip, "worker_ip": worker_ip, "roots": roots}
    finally:
        for ns, root in ((NS_WORKER, roots[1]), (NS_HEAD, roots[0])):
            run_in(ns, root, ["stop"])
            shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", NS_HEAD], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS_WORKER], capture_output=True)


def raylet_logs(roots, lines=40):
    """The end of every raylet's log under the session roots (for a failure)."""
    out = []
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "session_*", "logs", "raylet.err"))):
            with open(path, errors="replace") as f:
                out.append(f"--- {path}\n" + "".join(f.readlines()[-lines:]))
    return "\n".join(out)


def run_in(ns, root, cli_args, timeout=90, python=None):
    env = dict(os.environ, BEAMLET_SESSION_ROOT=root)
    env.pop("BEAMLET_ADDRESS", None)
    cmd = [sys.executable] + (["-c", python] if python else ["-m", "beamlet.cli"] + cli_args)
    return subprocess.run(["ip", "netns", "exec", ns] + cmd, env=env,
                          capture_output=True, text=True, timeout=timeout)


DRIVER = textwrap.dedent("""
    import sys, numpy as np, beamlet
    beamlet.init(address=sys.argv[1] if len(sys.argv) > 1 else "{address}")
    @beamlet.remote
    def where(a=None):
        import socket
        return beamlet.get_runtime_context().get_node_id(), (None if a is None else int(a.sum()))
    @beamlet.remote(resources={{"headres": 1}})
    def make():
        return np.ones(30_000_000, dtype=np.uint8)
    alive = [n for n in beamlet.nodes() if n["Alive"]]
    print("NODES", len(alive))
    big = make.remote()                               # made on the head host
    here = beamlet.get(where.remote(big), timeout=120)   # runs on the worker host
    there = beamlet.get(where.options(resources={{"headres": 1}}).remote(
        beamlet.put(np.ones(20_000_000, dtype=np.uint8))), timeout=120)
    print("RESULT", here[0], here[1], there[0], there[1])
    beamlet.shutdown()
""")


@pytest.mark.parametrize("heartbeat_s", [None, "3"], ids=["default", "slow-refresh"])
def test_head_and_worker_in_separate_namespaces(hosts, heartbeat_s, monkeypatch):
    # slow-refresh: the head re-reads the node table only every 3 s, so it gets the
    # worker node's forwarded task before it knows that node, and must still find
    # it to send the result back (this once lost the result: a 120 s hang)
    if heartbeat_s:
        monkeypatch.setenv("BEAMLET_HEARTBEAT_S", heartbeat_s)
        monkeypatch.setenv("BEAMLET_NODE_DEATH_S", "30")
    p = run_in(NS_HEAD, hosts["roots"][0],
               ["start", "--head", "--port", "0", "--node-ip-address", hosts["head_ip"],
                "--num-cpus", "1", "--resources", '{"headres": 1}',
                "--object-store-memory", str(200 * 2**20)])
    assert p.returncode == 0, p.stderr
    address = re.search(r"address:\s+(\S+)", p.stdout).group(1)
    assert address.startswith(hosts["head_ip"] + ":")
    join = re.search(r"beamlet start --address (\S+) --redis-password (\S+)", p.stdout)
    p = run_in(NS_WORKER, hosts["roots"][1],
               ["start", "--address", join.group(1), "--redis-password", join.group(2),
                "--num-cpus", "1", "--object-store-memory", str(200 * 2**20)])
    assert p.returncode == 0, p.stderr + p.stdout
    # the driver runs on the worker host: it joins through that host's raylet
    d = run_in(NS_WORKER, hosts["roots"][1], None,
               python=DRIVER.format(address=address), timeout=180)
    assert d.returncode == 0, d.stderr[-3000:] + raylet_logs(hosts["roots"])
    assert "NODES 2" in d.stdout
    m = re.search(r"RESULT (\w+) (\d+) (\w+) (\d+)", d.stdout)
    assert m, d.stdout
    worker_node, s1, head_node, s2 = m.groups()
    assert worker_node != head_node
    assert int(s1) == 30_000_000 and int(s2) == 20_000_000
    st = run_in(NS_WORKER, hosts["roots"][1], ["status"])
    assert "Nodes: 2 alive" in st.stdout, st.stdout + st.stderr
