"""Running the real `beamlet` command against a private session root (shared by
the CLI, address and security tests)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

MiB = 2**20


def run(args, env, timeout=60, stdin=None):
    return subprocess.run([sys.executable, "-m", "beamlet.cli"] + args, env=env,
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def run_python(code, env, timeout=90):
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def cli_env():
    root = tempfile.mkdtemp(prefix="blcli", dir="/tmp")   # unix socket paths are short
    env = dict(os.environ, BEAMLET_SESSION_ROOT=root)
    for var in ("BEAMLET_ADDRESS", "RAY_ADDRESS"):
        env.pop(var, None)
    yield env
    run(["stop", "--grace-period", "2"], env)     # whatever a failing test left running
    shutil.rmtree(root, ignore_errors=True)


def start_head(env, *extra):
    """`beamlet start --head` on a free port; (address, stdout)."""
    p = run(["start", "--head", "--port", "0", "--num-cpus", "1",
             "--object-store-memory", str(100 * MiB), *extra], env)
    assert p.returncode == 0, p.stderr
    return re.search(r"address:\s+(\S+)", p.stdout).group(1), p.stdout


def session_infos(root):
    """cluster.json of every session under `root`."""
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "cluster.json")
        if name.startswith("session_2") and os.path.exists(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


def one_line_error(p):
    """The stderr of a failed command, checked to be one line and no traceback."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err
