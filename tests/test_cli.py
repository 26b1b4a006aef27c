"""The `beamlet` command line: start --head / start --address / status / stop, each
run as a real subprocess against a private session root (never other clusters)."""
import json
import os
import re
import signal
import subprocess
import sys

import psutil
import pytest

import beamlet
from beamlet.cli import build_parser
from beamlet.gcs import redis_server

from conftest import alive, wait_for
from clitools import MiB, cli_env, one_line_error, run, session_infos, start_head  # noqa: F401


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "beamlet.cli", "--help"],
                         capture_output=True, text=True).stdout
    for cmd in ("start", "stop", "status"):
        assert cmd in out


def test_start_status_join_stop(cli_env):
    p = run(["start", "--head", "--port", "0", "--num-cpus", "1",
             "--object-store-memory", str(100 * MiB), "--resources", '{"headres": 2}'],
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
    # a driver joins by address (its clusters are under the CLI's session root)
    # and uses both nodes
    beamlet.init(address=address, _temp_dir=cli_env["BEAMLET_SESSION_ROOT"])
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
    assert len(pids) == 5            # redis, monitor, job manager, 2 raylets
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
    assert "No running beamlet cluster" in one_line_error(p)
    for bad, flag in ((["--num-cpus", "-1"], "--num-cpus"),
                      (["--object-store-memory", "100"], "--object-store-memory"),
                      (["--resources", '{"CPU": 2}'], "--num-cpus"),
                      (["--port", "70000"], "--port")):
        err = one_line_error(run(["start", "--head", *bad], cli_env))
        assert flag in err and "init(" not in err and "object_store_memory=" not in err
    err = one_line_error(run(["start", "--address", "nocolon"], cli_env))
    assert "--address" in err and "HOST:PORT" in err
    err = one_line_error(run(["status", "--address", "1.2.3.4:notaport"], cli_env))
    assert "HOST:PORT" in err
    free = redis_server.free_port()
    err = one_line_error(run(["start", "--address", f"127.0.0.1:{free}",
                              "--redis-password", "x"], cli_env))
    assert f"127.0.0.1:{free}" in err and "Connection refused" in err
    assert not session_infos(cli_env["BEAMLET_SESSION_ROOT"])   # nothing started


def _our_processes(root):
    """Processes whose command line names the session root (a cluster of it)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if any(root in a for a in (p.info["cmdline"] or [])):
            out.append(p.pid)
    return out


@pytest.fixture
def other_redis():
    """A developer's own Redis (no password) on a free port."""
    import redis
    port = redis_server.free_port()
    proc = subprocess.Popen([redis_server.find_redis_server(), "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers():
        try:
            return redis.Redis(port=port, socket_connect_timeout=1).ping()
        except redis.RedisError:
            assert proc.poll() is None, "the other redis-server exited"
            return False
    try:
        wait_for(answers, msg="the other redis-server to answer")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_busy_port_is_refused_and_nothing_starts(cli_env, other_redis):
    root = cli_env["BEAMLET_SESSION_ROOT"]
    err = one_line_error(run(["start", "--head", "--port", str(other_redis)], cli_env))
    assert f"port {other_redis}" in err and "already in use" in err and "--port" in err
    assert "redis-server" in err            # who holds it, when we may see it
    assert not [n for n in os.listdir(root) if n.startswith("session_")]
    assert not _our_processes(root)
    # the other Redis is untouched (still answers, still without a password)
    import redis
    assert redis.Redis(port=other_redis).ping()


def test_redis_start_never_takes_another_server_for_its_own(tmp_path, other_redis):
    """Below the port check (a race: the port taken between check and start):
    readiness means *our* redis-server answers with our password."""
    (tmp_path / "logs").mkdir()
    with pytest.raises(RuntimeError) as ei:
        redis_server.start(str(tmp_path), "tok", port=other_redis)
    assert str(other_redis) in str(ei.value)


def test_node_ip_not_on_this_machine(cli_env):
    err = one_line_error(run(["start", "--head", "--node-ip-address", "10.254.254.254"],
                             cli_env))
    assert "--node-ip-address 10.254.254.254 is not an address of this machine" in err
    assert "127.0.0.1" in err                 # it lists the ones it has
    err = one_line_error(run(["start", "--head", "--node-ip-address", "0.0.0.0"],
                             cli_env))
    assert "wildcard" in err
    assert not session_infos(cli_env["BEAMLET_SESSION_ROOT"])


def test_status_and_memory_with_the_gcs_gone(cli_env):
    start_head(cli_env)
    info, = session_infos(cli_env["BEAMLET_SESSION_ROOT"])
    redis_pid = info["pids"][2]
    assert "redis" in psutil.Process(redis_pid).name()
    # the monitor first: it would restart a Redis that died
    os.kill(info["pids"][1], signal.SIGKILL)
    os.kill(redis_pid, signal.SIGKILL)
    wait_for(lambda: not alive(redis_pid), msg="redis gone")
    for cmd in ("status", "memory"):
        err = one_line_error(run([cmd], cli_env))
        assert f"the GCS at 127.0.0.1:{info['redis_port']} does not answer" in err, err
        assert "init(" not in err
        v = run([cmd, "-v"], cli_env)
        assert v.returncode == 1 and "Traceback" in v.stderr
    s = run(["stop"], cli_env)
    assert s.returncode == 0 and "stopped head node" in s.stdout


def test_wrong_token_and_dead_raylet(cli_env):
    address, _ = start_head(cli_env)
    err = one_line_error(run(["status", "--redis-password", "wrong"], cli_env))
    assert "rejected the cluster token" in err and "--redis-password" in err
    err = one_line_error(run(["memory", "--address", address, "--redis-password",
                              "wrong"], cli_env))
    assert "rejected the cluster token" in err
    # joining with a wrong token: refused before any process starts
    before = len(session_infos(cli_env["BEAMLET_SESSION_ROOT"]))
    err = one_line_error(run(["start", "--address", address, "--redis-password", "bad",
                              "--num-cpus", "1"], cli_env))
    assert "rejected the cluster token" in err and "--redis-password" in err
    assert len(session_infos(cli_env["BEAMLET_SESSION_ROOT"])) == before
    # the raylet killed: memory says so in one line
    info, = session_infos(cli_env["BEAMLET_SESSION_ROOT"])
    os.kill(info["raylet_pid"], signal.SIGKILL)
    err = one_line_error(run(["memory", "--address", address], cli_env))
    assert "no longer running" in err and "beamlet stop" in err


def test_version_and_help_for_every_option():
    p = subprocess.run([sys.executable, "-m", "beamlet.cli", "--version"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == f"beamlet {beamlet.__version__}"
    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    assert {"start", "stop", "status", "memory"} <= set(subs)
    for name, sp in subs.items():
        for action in sp._actions:
            assert action.help and action.help.strip(), (name, action.option_strings)
        out = subprocess.run([sys.executable, "-m", "beamlet.cli", name, "--help"],
                             capture_output=True, text=True).stdout
        for action in sp._actions:
            for opt in action.option_strings:
                assert opt in out, (name, opt)
    stop_help = {a.dest: a.help for a in subs["stop"]._actions}
    assert "default: 5" in stop_help["grace_period"]
    # memory takes the same connection options as status
    def opts(sp):
        return {o for a in sp._actions for o in a.option_strings}
    assert {"--address", "--redis-password", "--redis-password-file"} <= \
        opts(subs["status"]) & opts(subs["memory"])


def test_join_with_a_token_file(cli_env, tmp_path):
    address, out = start_head(cli_env)
    token = re.search(r"--redis-password (\S+)", out).group(1)
    f = tmp_path / "token"
    f.write_text(token + "\n")
    f.chmod(0o644)
    err = one_line_error(run(["start", "--address", address, "--redis-password-file",
                              str(f)], cli_env))
    assert "chmod 600" in err
    f.chmod(0o600)
    p = run(["start", "--address", address, "--redis-password-file", str(f),
             "--num-cpus", "1", "--object-store-memory", str(100 * MiB)], cli_env)
    assert p.returncode == 0, p.stderr
    # and from stdin
    p = run(["status", "--redis-password-file", "-"], cli_env, stdin=token + "\n")
    assert p.returncode == 0 and "Nodes: 2 alive" in p.stdout, p.stderr
