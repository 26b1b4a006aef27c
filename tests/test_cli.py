"""The `beamlet` command line: start --head / start --address / status / stop, each
run as a real subprocess against a private session root (never other clusters)."""
import json
import os
import re
import subprocess
import sys

import pytest

import beamlet


def run(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "beamlet.cli"] + args, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli_env():
    import shutil
    import tempfile
    root = tempfile.mkdtemp(prefix="blcli", dir="/tmp")   # unix socket paths are short
    env = dict(os.environ, BEAMLET_SESSION_ROOT=root)
    env.pop("BEAMLET_ADDRESS", None)
    yield env
    run(["stop"], env)     # whatever a failing test left running
    shutil.rmtree(root, ignore_errors=True)


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "beamlet.cli", "--help"],
                         capture_output=True, text=True).stdout
    for cmd in ("start", "stop", "status"):
        assert cmd in out


def test_start_status_join_stop(cli_env, monkeypatch):
    p = run(["start", "--head", "--port", "0", "--num-cpus", "1",
             "--object-store-memory", str(100 * 2**20), "--resources", '{"headres": 2}'],
            cli_env)
    assert p.returncode == 0, p.stderr
    address = re.search(r"address:\s+(\S+)", p.stdout).group(1)
    join = re.search(r"^\s+(beamlet start --address \S+ --redis-password \S+)$",
                     p.stdout, re.M).group(1)
    assert address.startswith("127.0.0.1:")          # loopback by default
    # the head outlives the command that started it
    st = run(["status"], cli_env)
    assert st.returncode == 0, st.stderr
    assert "Nodes: 1 alive, 0 dead" in st.stdout and "headres: 0/2" in st.stdout
    # join a worker node with the printed command
    p2 = run(join.split()[1:] + ["--num-cpus", "2", "--object-store-memory",
                                  str(100 * 2**20), "--resources", '{"w": 1}'], cli_env)
    assert p2.returncode == 0, p2.stderr
    st = run(["status"], cli_env)
    assert "Nodes: 2 alive, 0 dead" in st.stdout and "CPU: 0/3" in st.stdout
    # a driver joins by address and uses both nodes
    monkeypatch.setenv("BEAMLET_SESSION_ROOT", cli_env["BEAMLET_SESSION_ROOT"])
    from beamlet._private import config
    monkeypatch.setattr(config, "SESSION_ROOT", cli_env["BEAMLET_SESSION_ROOT"])
    beamlet.init(address=address)
    try:
        @beamlet.remote
        def f():
            return beamlet.get_runtime_context().get_node_id()
        ids = beamlet.get([f.options(resources={"w": 1}).remote(),
                           f.options(resources={"headres": 1}).remote()], timeout=60)
        assert ids[0] != ids[1]
    finally:
        beamlet.shutdown()
    # stop: every process listed in the session files ends, the directories go
    root = cli_env["BEAMLET_SESSION_ROOT"]
    pids = []
    for name in os.listdir(root):
        path = os.path.join(root, name, "cluster.json")
        if os.path.exists(path) and not os.path.islink(os.path.join(root, name)):
            pids += json.load(open(path))["pids"]
    assert len(pids) == 4                              # redis, monitor, 2 raylets
    s = run(["stop"], cli_env)
    assert s.returncode == 0 and s.stdout.count("stopped") == 2, s.stdout
    from beamlet._private.process import pid_alive
    assert not any(pid_alive(p) for p in pids)
    assert not [n for n in os.listdir(root) if n.startswith("session_2")]
    assert "no beamlet nodes" in run(["stop"], cli_env).stdout


def test_bad_input_is_explained(cli_env):
    p = run(["start"], cli_env)
    assert p.returncode != 0 and "--head" in (p.stderr + p.stdout)
    p = run(["start", "--head", "--resources", "{oops"], cli_env)
    assert p.returncode != 0 and "JSON" in (p.stderr + p.stdout)
    p = run(["status"], cli_env)
    assert p.returncode == 1 and "No running beamlet cluster" in p.stderr
