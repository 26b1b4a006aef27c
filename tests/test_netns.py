"""A real multi-host cluster: Linux network namespaces joined by a veth pair stand
for two hosts (10.77.<k>.1 runs the head, 10.77.<k>.2 a worker node and the driver).
Each "host" has its own session root, so nothing is shared through /tmp; the nodes
talk over their own addresses only.  Needs root and `ip netns`: skips otherwise."""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

NS_HEAD, NS_WORKER = f"blh{os.getpid()}", f"blw{os.getpid()}"
# per process too: the suite runs in parallel processes (pytest -n), each probes
PROBE = f"blprobe{os.getpid()}"


def _netns_unavailable():
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip"):
        return "the `ip` tool (iproute2) is not installed"
    p = subprocess.run(["ip", "netns", "add", PROBE], capture_output=True, text=True)
    if p.returncode != 0:
        return f"`ip netns add` fails here: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", PROBE], capture_output=True)
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


def popen_in(ns, root, cli_args, extra_env=None):
    env = dict(os.environ, BEAMLET_SESSION_ROOT=root, **(extra_env or {}))
    env.pop("BEAMLET_ADDRESS", None)
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                             "beamlet.cli"] + cli_args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until(check, timeout=90, what="condition"):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


JOB_SCRIPT = textwrap.dedent("""
    import beamlet
    from deploymod import where
    beamlet.init()

    @beamlet.remote(resources={"workerres": 1})
    def on_worker():
        from deploymod import where       # shipped by the job's working_dir
        return where(), beamlet.get_runtime_context().get_node_id()

    print("JOB", where(), *beamlet.get(on_worker.remote(), timeout=120), flush=True)
""")


def test_the_deployment_commands_across_hosts(hosts, tmp_path):
    """The commands docker-compose.yml runs — `beamlet start --head --block` and
    `beamlet start --address ... --block` on fixed ports (6379, 8076), the token
    from a file and from the environment — on two hosts; then a job submitted
    from the worker host runs on the head and ships its code to the worker."""
    import secrets
    token = secrets.token_hex(16)
    tokfile = tmp_path / "beamlet-token"
    tokfile.write_text(token + "\n")
    tokfile.chmod(0o600)
    head_ip, worker_ip = hosts["head_ip"], hosts["worker_ip"]
    roots = hosts["roots"]
    store = ["--object-store-memory", str(200 * 2**20), "--num-cpus", "1"]
    head = popen_in(NS_HEAD, roots[0], [
        "start", "--head", "--block", "--node-ip-address", head_ip, "--port", "6379",
        "--node-manager-port", "8076", "--redis-password-file", str(tokfile), *store])
    worker = None
    try:
        # (the compose file's healthcheck)
        wait_until(lambda: run_in(NS_HEAD, roots[0], ["status"]).returncode == 0,
                   what="the head to answer `beamlet status`")
        worker = popen_in(NS_WORKER, roots[1], [
            "start", "--address", f"{head_ip}:6379", "--block",
            "--node-ip-address", worker_ip, "--node-manager-port", "8076",
            "--resources", '{"workerres": 1}', *store],
            extra_env={"BEAMLET_REDIS_PASSWORD": token})
        wait_until(lambda: "Nodes: 2 alive" in run_in(NS_HEAD, roots[0], ["status"]).stdout,
                   what="the worker node to join")
        # both raylets listen for peers on the port given
        ports = run_in(NS_HEAD, roots[0], None, python=(
            "from beamlet.gcs.client import GcsClient; import sys\n"
            f"g = GcsClient({head_ip!r}, 6379, {token!r})\n"
            "print('PORTS', sorted(n.get('peer_port') for n in g.nodes()))"))
        assert "PORTS ['8076', '8076']" in ports.stdout, ports.stdout + ports.stderr
        # a job from the worker host (a client elsewhere than the head)
        wd = tmp_path / "proj"
        wd.mkdir()
        (wd / "deploymod.py").write_text("def where():\n    return 'deploymod-ok'\n")
        (wd / "script.py").write_text(JOB_SCRIPT)
        job = run_in(NS_WORKER, roots[1], [
            "job", "submit", "--address", f"{head_ip}:6379", "--redis-password-file",
            str(tokfile), "--working-dir", str(wd), "--", "python", "script.py"],
            timeout=180)
        assert job.returncode == 0, job.stdout + job.stderr + raylet_logs(roots)
        m = re.search(r"JOB deploymod-ok deploymod-ok (\w+)", job.stdout)
        assert m, job.stdout
        listed = run_in(NS_HEAD, roots[0], ["status"])
        assert m.group(1) in listed.stdout          # it ran on a node of the cluster
        head_node = re.search(r"^\s+(\w+) ALIVE head", listed.stdout, re.M).group(1)
        assert m.group(1) != head_node              # ... the worker's
    finally:
        for p in (worker, head):                    # as `docker compose down` does
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=60) if p is not None else ("", "")
                for p in (worker, head)]
    assert worker.returncode == 0 and head.returncode == 0, outs
    # the head printed how to join without the token (it came from a file)
    assert token not in outs[1][0] and "--redis-password-file" in outs[1][0]
    for root in roots:                              # --block stopped the nodes
        assert not glob.glob(os.path.join(root, "session_2*")), os.listdir(root)
