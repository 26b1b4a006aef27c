"""A raylet owned by a driver ends when the driver dies, also while it is still
starting: one waiting for an unreachable GCS (it would wait up to
GCS_RECONNECT_TIMEOUT_S) stops as soon as its owner is gone.  A real raylet
process, its owner a real process that exits."""
import os
import socket
import subprocess
import sys

from beamlet._private import config


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port      # nothing listens there: the GCS is unreachable


def test_starting_raylet_ends_with_its_owner(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    for sub in ("sockets", "logs"):
        (tmp_path / sub).mkdir(mode=0o700)
    r, w = os.pipe()
    os.write(w, b"not-a-real-token\n")
    os.close(w)
    p = subprocess.Popen(
        [sys.executable, "-m", "beamlet.raylet.raylet", "--session-dir", str(tmp_path),
         "--socket", str(tmp_path / "sockets" / "raylet"), "--node-id", "ab" * 16,
         "--redis-host", "127.0.0.1", "--redis-port", str(free_port()),
         "--node-ip", "127.0.0.1", "--resources", '{"CPU": 1.0}',
         "--object-store-memory", str(64 << 20), "--prestart", "0",
         "--owner-pid", str(owner.pid), "--redis-password-fd", str(r)],
        pass_fds=(r,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(r)
    owner.wait()
    try:
        p.wait(config.GCS_RECONNECT_TIMEOUT_S / 2)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError("the raylet kept waiting for the GCS after its owner died")
    assert "owner process" in p.stderr.read()
