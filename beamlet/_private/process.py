"""Starting and stopping the processes of a session.

Every process beamlet starts is tied to its parent: it gets SIGTERM when the
parent dies (Linux PR_SET_PDEATHSIG), and beamlet's own processes also watch
their owner's pid, so that a driver killed with SIGKILL leaves no orphans.

Secrets (the cluster token) reach a child through an inherited pipe that holds
them (`secret=`), never its argv (world-readable in /proc/<pid>/cmdline) or its
environment (inherited by every worker it starts).
"""
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading

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


class _Keeper:
    """A thread that lives as long as the process and starts its children.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
    process: a cluster started by init() in a short-lived thread would die with
    that thread.  Children that must die with us are therefore forked from the
    main thread or from this keeper thread."""

    def __init__(self):
        self.q = queue.SimpleQueue()
        threading.Thread(target=self.run, name="beamlet-spawner", daemon=True).start()

    def run(self):
        while True:
            fn, box, done = self.q.get()
            try:
                box.append((True, fn()))
            except BaseException as e:
                box.append((False, e))
            done.set()

    def call(self, fn):
        box, done = [], threading.Event()
        self.q.put((fn, box, done))
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value


_keeper = None
_keeper_lock = threading.Lock()


def _in_long_lived_thread(fn):
    global _keeper
    if threading.current_thread() is threading.main_thread():
        return fn()
    with _keeper_lock:
        if _keeper is None:
            _keeper = _Keeper()
    return _keeper.call(fn)


def spawn(args, die_with_parent=True, env=None, stdout=None, stderr=None,
          stdin=subprocess.DEVNULL, **kw):
    if die_with_parent:
        return _in_long_lived_thread(
            lambda: _spawn(args, True, env, stdout, stderr, stdin, **kw))
    return _spawn(args, False, env, stdout, stderr, stdin, **kw)


def _spawn(args, die_with_parent, env, stdout, stderr, stdin, **kw):
    preexec = set_pdeathsig if die_with_parent else None
    # own session: a Ctrl-C meant for the driver must not hit beamlet's processes
    return subprocess.Popen(args, preexec_fn=preexec, env=env, stdin=stdin,
                            stdout=stdout, stderr=stderr, close_fds=True,
                            start_new_session=True, **kw)


def prefilled_pipe(data: bytes) -> int:
    """The read end of a pipe that already holds `data` and then EOF: a child
    given it reads the data without the parent having to write while it runs.
    The caller closes it once the child is started."""
    if len(data) > 4096:   # PIPE_BUF: the write below must not block
        raise ValueError("prefilled_pipe() is for short secrets")
    r, w = os.pipe()
    try:
        os.write(w, data)
    finally:
        os.close(w)
    return r


# the flag a child started with spawn_python(secret=...) reads its secret from
SECRET_FD_FLAG = "--redis-password-fd"


def read_secret(fd: int) -> str:
    """The secret a parent handed over with spawn_python(secret=...)."""
    with os.fdopen(fd, "rb") as f:
        return f.read().decode().strip()


def inheritable_secret(secret: str) -> int:
    """The fd of a pipe holding `secret` that survives an exec of this process
    (a raylet that starts again as a new node hands itself the token so)."""
    fd = prefilled_pipe(secret.encode())
    os.set_inheritable(fd, True)
    return fd


def kill_children(timeout=2.0) -> None:
    """SIGKILL every child process of this one, and reap them."""
    import psutil
    kids = psutil.Process().children()
    for k in kids:
        try:
            k.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(kids, timeout)


def spawn_python(module: str, argv, secret=None, extra_env=None, **kw):
    """Start `python -m module argv...` with beamlet importable.  `secret`
    (the cluster token) travels in an inherited pipe whose fd number follows
    SECRET_FD_FLAG; `extra_env` is added to the inherited environment."""
    env = dict(os.environ)
    env.update(extra_env or {})
    env.setdefault("PYTHONUNBUFFERED", "1")
    # the beamlet package must be importable by the child as it is by us
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
    args = [sys.executable, "-m", module] + list(argv)
    if secret is None:
        return spawn(args, env=env, **kw)
    fd = prefilled_pipe(secret.encode())
    try:
        return spawn(args + [SECRET_FD_FLAG, str(fd)], env=env,
                     pass_fds=tuple(kw.pop("pass_fds", ())) + (fd,), **kw)
    finally:
        os.close(fd)


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
