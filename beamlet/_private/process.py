"""Starting and stopping the processes of a session.

Every process beamlet starts is tied to its parent: it gets SIGTERM when the
parent dies (Linux PR_SET_PDEATHSIG), and beamlet's own processes also watch
their owner's pid, so that a driver killed with SIGKILL leaves no orphans.
"""
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
_libc = None


def set_pdeathsig(sig=signal.SIGTERM) -> None:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except Exception:
        pass


def spawn(args, die_with_parent=True, env=None, stdout=None, stderr=None, **kw):
    preexec = set_pdeathsig if die_with_parent else None
    # own session: a Ctrl-C meant for the driver must not hit beamlet's processes
    return subprocess.Popen(args, preexec_fn=preexec, env=env, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr, close_fds=True,
                            start_new_session=True, **kw)


def spawn_python(module: str, argv, **kw):
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # the beamlet package must be importable by the child as it is by us
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
    return spawn([sys.executable, "-m", module] + list(argv), env=env, **kw)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def describe_exit(code) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def terminate(procs, timeout=2.0) -> None:
    """SIGTERM then SIGKILL, each Popen in `procs`, in the given order."""
    import time
    for p in procs:
        if p is not None and p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    deadline = time.monotonic() + timeout
    for p in procs:
        if p is None:
            continue
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                p.kill()
                p.wait(1)
            except Exception:
                pass


def cancel_file(session_dir: str, worker_id_hex: str) -> str:
    """Where a raylet writes the id of the task it is about to interrupt (SIGINT)
    in a worker: the worker interrupts only that task, never the one after it."""
    return os.path.join(session_dir, "sockets", f"cancel-{worker_id_hex}")
