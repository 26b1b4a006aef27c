"""Setting a runtime environment up in the process that runs in it: a worker the
raylet started for an environment (`--runtime-env KEY`), or a submitted job's
driver (the job manager prepares it).

    worker start ──"runtime_env" call──▶ raylet (the stored environment, cached)
        │  each package not yet on this node:
        │    lock <session>/runtime_resources/<sha1>.lock (one process fetches)
        │    GET beamlet:pkg:<sha1> from the GCS, unpack to <sha1>.tmp-<pid>,
        │    rename to <sha1>   (atomic: a directory there is complete)
        ▼
    cwd = the working_dir's copy, sys.path[0] = it, then the py_modules; PYTHONPATH
    likewise (for the processes a task starts); env_vars were set by the raylet
    when it started the process.

A package is unpacked once per node (per session directory) and kept for the
node's life.  Anything that fails becomes a RuntimeEnvSetupError that the worker
raises for each task it is given, so the caller sees why at get().
"""
import contextlib
import fcntl
import json
import os
import shutil
import sys
import time

from .. import connection
from ..exceptions import RuntimeEnvSetupError
from . import packaging, resolve

RESOURCES_DIR = "runtime_resources"


def package_dir(session_dir: str, digest: str) -> str:
    return os.path.join(session_dir, RESOURCES_DIR, digest)


@contextlib.contextmanager
def _locked(path: str, deadline: float, what: str):
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _timeout(what) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)    # (releases the lock)


def _timeout(what):
    return RuntimeEnvSetupError(
        f"setting up the runtime environment did not finish within its "
        f"setup_timeout_seconds (runtime_env['config']): {what} was still being "
        f"fetched or unpacked on this node.")


def ensure_package(uri: str, session_dir: str, fetch, deadline: float) -> str:
    """The directory of package `uri` on this node, fetched (`fetch(digest) ->
    bytes | None`) and unpacked first if no process of the node did before."""
    digest = packaging.digest_of_uri(uri)
    if digest is None:
        raise RuntimeEnvSetupError(f"{uri!r} is not a beamlet package URI.")
    dest = package_dir(session_dir, digest)
    if os.path.isdir(dest):
        return dest
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    with _locked(dest + ".lock", deadline, uri):
        if os.path.isdir(dest):    # another process unpacked it meanwhile
            return dest
        blob = fetch(digest)
        if blob is None:
            raise RuntimeEnvSetupError(
                f"the package {uri} of this runtime environment is not in the GCS "
                f"(it was deleted, or the head node restarted since it was uploaded).")
        if time.monotonic() > deadline:
            raise _timeout(uri)
        tmp = f"{dest}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            packaging.unpack(blob, tmp)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def prepare(env: dict, session_dir: str, fetch):
    """(working directory or None, [py_modules directories]) of `env` on this
    node, each package fetched and unpacked if needed."""
    deadline = time.monotonic() + resolve.setup_timeout(env)
    wd = env.get("working_dir")
    cwd = ensure_package(wd, session_dir, fetch, deadline) if wd else None
    mods = [ensure_package(u, session_dir, fetch, deadline)
            for u in env.get("py_modules") or []]
    return cwd, mods


def python_path(cwd, mods, existing: str = "") -> str:
    """PYTHONPATH for the processes of an environment: working dir, modules,
    then what was there."""
    parts = ([cwd] if cwd else []) + list(mods) + ([existing] if existing else [])
    return os.pathsep.join(parts)


def enter(cwd, mods) -> None:
    """Make this process run in a prepared environment, as Ray's workers do: its
    cwd and sys.path[0] the working directory, the modules importable (here and
    in the processes it starts)."""
    if cwd:
        os.chdir(cwd)
    for p in reversed(([cwd] if cwd else []) + list(mods)):
        if p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    if cwd or mods:
        os.environ["PYTHONPATH"] = python_path(cwd, mods, os.environ.get("PYTHONPATH", ""))


def fetch_from_gcs(digest: str):
    """A package's zip from this process's cluster's GCS (None: not there)."""
    return connection.gcs().get_package(digest)


def setup_worker(core, key: str, session_dir: str):
    """Set this worker up for environment `key`; returns None, or the
    RuntimeEnvSetupError every task it is given then fails with."""
    try:
        text = core.call("runtime_env", key)
        if not text:
            raise RuntimeEnvSetupError(
                f"the runtime environment {key} is not in the GCS (it was stored by "
                f"the submitter before the task was sent: the GCS lost it?).")
        env = json.loads(text)
        cwd, mods = prepare(env, session_dir, fetch_from_gcs)
        enter(cwd, mods)
        connection.set_runtime_env(env, key)
        return None
    except RuntimeEnvSetupError as e:
        return e
    except Exception as e:
        return RuntimeEnvSetupError(f"setting up the runtime environment failed: "
                                    f"{type(e).__name__}: {e}")
