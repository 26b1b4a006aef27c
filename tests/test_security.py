"""Secrets off command lines and out of environments, private session files
(issue 16 §3).  Every process of a real cluster — redis-server, monitor,
raylets, workers — is read through /proc as another local user would."""
import json
import os
import stat
import subprocess
import sys

import psutil
import pytest

import beamlet

from clitools import MiB, cli_env, run, session_infos, start_head  # noqa: F401


def _cluster_processes(infos):
    """Every live process of the sessions: the ones cluster.json lists and all
    their descendants (workers)."""
    pids = set()
    for info in infos:
        for pid in info["pids"]:
            try:
                p = psutil.Process(pid)
                pids.add(pid)
                pids.update(c.pid for c in p.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return pids


def _assert_token_nowhere(token, pids):
    assert pids
    seen = 0
    for pid in pids:
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    data = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue          # exited meanwhile
            assert token.encode() not in data, (pid, what, data[:300])
            seen += 1
    assert seen >= 2 * len(pids) - 2


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _assert_private(info):
    sd = info["session_dir"]
    for d in (sd, os.path.join(sd, "logs"), os.path.join(sd, "sockets")):
        assert _mode(d) == 0o700, d
    assert _mode(info["raylet_socket"]) == 0o600
    assert _mode(os.path.join(sd, "cluster.json")) == 0o600
    for name in os.listdir(os.path.join(sd, "logs")):
        assert not _mode(os.path.join(sd, "logs", name)) & 0o002


def _as_nobody(action) -> int:
    """The errno another local user (nobody) gets doing action(), 0 if it works.
    A forked child that only makes system calls (no exec: nobody may not be able
    to run this interpreter)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            action()
        except OSError as e:
            code = e.errno or 255
        except BaseException:
            code = 254
        os.write(w, bytes([code]))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = f.read(1)
    os.waitpid(child, 0)
    return got[0]


@beamlet.remote
def pid():
    return os.getpid()


@beamlet.remote
class Holder:
    def where(self):
        return os.getpid()


def test_init_cluster_keeps_its_token_secret(tmp_path):
    spill = tmp_path / "spill"
    info = beamlet.init(num_cpus=2, object_store_memory=100 * MiB,
                        object_spilling_directory=str(spill))
    try:
        a = Holder.remote()
        worker_pids = set(beamlet.get([pid.remote() for _ in range(4)]))
        worker_pids.add(beamlet.get(a.where.remote()))
        with open(os.path.join(info["session_dir"], "cluster.json")) as f:
            cj = json.load(f)
        token = cj["password"]
        pids = _cluster_processes([cj])
        assert worker_pids <= pids and len(pids) >= 4   # redis, monitor, raylet, workers
        _assert_token_nowhere(token, pids)
        _assert_private(cj)
        node_spill = cj["spill_dir"]
        assert node_spill.startswith(str(spill)) and _mode(node_spill) == 0o700
        if os.geteuid() == 0:
            # another local user can neither read the token nor reach the raylet
            import errno
            import socket
            cfile = os.path.join(info["session_dir"], "cluster.json")
            assert _as_nobody(lambda: open(cfile).close()) == errno.EACCES
            assert _as_nobody(lambda: socket.socket(socket.AF_UNIX).connect(
                cj["raylet_socket"])) == errno.EACCES
            # the socket's own mode holds too, were the directories opened up
            # (and with a mode that lets others in, they would get in: the check
            # above can fail)
            dirs = [os.path.dirname(info["session_dir"]), info["session_dir"],
                    os.path.dirname(cj["raylet_socket"])]
            modes = [_mode(d) for d in dirs]
            connect = lambda: socket.socket(socket.AF_UNIX).connect(cj["raylet_socket"])  # noqa: E731
            try:
                for d in dirs:
                    os.chmod(d, 0o711)
                assert _as_nobody(connect) == errno.EACCES
                os.chmod(cj["raylet_socket"], 0o777)
                assert _as_nobody(connect) == 0
            finally:
                os.chmod(cj["raylet_socket"], 0o600)
                for d, m in zip(dirs, modes):
                    os.chmod(d, m)
    finally:
        beamlet.shutdown()


def test_cli_cluster_keeps_its_token_secret(cli_env, tmp_path):
    address, out = start_head(cli_env)
    head, = session_infos(cli_env["BEAMLET_SESSION_ROOT"])
    token = head["password"]
    f = tmp_path / "token"
    f.write_text(token)
    f.chmod(0o600)
    p = run(["start", "--address", address, "--redis-password-file", str(f),
             "--num-cpus", "1", "--object-store-memory", str(100 * MiB)], cli_env)
    assert p.returncode == 0, p.stderr
    infos = session_infos(cli_env["BEAMLET_SESSION_ROOT"])
    assert len(infos) == 2
    # a driver makes both raylets start workers
    code = ("import beamlet, os\n"
            f"beamlet.init(address={address!r})\n"
            "@beamlet.remote(num_cpus=1)\n"
            "def f(): return os.getpid()\n"
            "print(len(set(beamlet.get([f.remote() for _ in range(8)]))))\n")
    d = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True,
                       text=True, timeout=90)
    assert d.returncode == 0, d.stderr
    pids = _cluster_processes(infos)
    assert len(pids) >= 5     # redis, monitor, 2 raylets, workers
    _assert_token_nowhere(token, pids)
    for info in infos:
        _assert_private(info)
    assert _mode(cli_env["BEAMLET_SESSION_ROOT"]) & 0o022 == 0


def test_session_root_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory owned by another user")
    root = tmp_path / "shared"
    root.mkdir()
    os.chown(root, 65534, 65534)
    with pytest.raises(ValueError) as ei:
        beamlet.init(num_cpus=1, _temp_dir=str(root))
    assert "belongs to another user" in str(ei.value)
    os.chown(root, 0, 0)
    root.chmod(0o777)         # writable by anyone, not sticky
    with pytest.raises(ValueError) as ei:
        beamlet.init(num_cpus=1, _temp_dir=str(root))
    assert "writable by other users" in str(ei.value)
    assert not beamlet.is_initialized() and not os.listdir(root)
