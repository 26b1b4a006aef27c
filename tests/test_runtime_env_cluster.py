"""runtime_env on clusters of their own: the job's environment (init), setup
failures reported at get(), and the user's own modules shipped to another node."""
import os

import pytest

import beamlet as ray
from beamlet import connection
from beamlet.cluster_utils import Cluster
from beamlet.exceptions import RuntimeEnvSetupError

from conftest import wait_for
from test_runtime_env import EnvActor, _tree, call, environ, where


# ---------------------------------------------------------------- the job's environment
def test_init_runtime_env_is_every_task_and_actors_default(tmp_path):
    wd = _tree(tmp_path / "wd", {"jobmod.py": "def f():\n    return 'job'\n"})
    other = _tree(tmp_path / "other", {"othermod.py": "def f():\n    return 'other'\n"})
    ray.init(num_cpus=2, runtime_env={"working_dir": wd, "env_vars": {"BL_JOB": "1"}})
    try:
        assert ray.get(call.remote("jobmod")) == "job"
        assert ray.get(environ.remote("BL_JOB")) == {"BL_JOB": "1"}
        # options merge: env_vars added, working_dir kept
        got = ray.get(environ.options(runtime_env={"env_vars": {"BL_T": "t"}}).remote(
            "BL_JOB", "BL_T"))
        assert got == {"BL_JOB": "1", "BL_T": "t"}
        assert ray.get(call.options(runtime_env={"env_vars": {"BL_T": "t"}}).remote(
            "jobmod")) == "job"
        # a working_dir given replaces the job's
        assert ray.get(call.options(runtime_env={"working_dir": other}).remote(
            "othermod")) == "other"
        a = EnvActor.remote()
        assert ray.get(a.read.remote("BL_JOB"))[0] == "1"
        ctx = ray.get_runtime_context().runtime_env
        assert ctx.env_vars() == {"BL_JOB": "1"}
        assert ctx.working_dir().startswith("gcs://_beamlet_pkg_")
    finally:
        ray.shutdown()


def test_setup_failure_is_a_runtime_env_setup_error_at_get(tmp_path):
    """The package vanishes from the GCS before the node's first worker for its
    environment starts: the task fails with why, it does not hang."""
    flag = tmp_path / "release"
    started = tmp_path / "started"
    wd = _tree(tmp_path / "wd", {"f.txt": "unique-" + str(os.getpid())})

    @ray.remote
    def blocker():
        open(str(started), "w").close()
        while not os.path.exists(str(flag)):
            import time
            time.sleep(0.02)

    ray.init(num_cpus=1)
    try:
        b = blocker.remote()
        wait_for(started.exists, timeout=30, msg="the blocker to start")
        ref = where.options(runtime_env={"working_dir": wd}).remote()   # queued
        r = connection.gcs().r
        for k in list(r.scan_iter("beamlet:pkg:*")):
            r.delete(k)
        flag.touch()
        ray.get(b, timeout=30)
        with pytest.raises(RuntimeEnvSetupError, match="not in the GCS"):
            ray.get(ref, timeout=60)
    finally:
        ray.shutdown()


def test_setup_timeout_seconds_bounds_the_setup(tmp_path):
    """Another process of the node holds the package's lock (it is fetching it)
    past the environment's setup_timeout_seconds: the task fails saying so."""
    import fcntl
    from beamlet.runtime_env import packaging, setup
    wd = _tree(tmp_path / "wd", {"t.txt": "timeout-" + str(os.getpid())})
    digest = packaging.digest(packaging.zip_entries(packaging.walk(wd)))
    info = ray.init(num_cpus=1)
    try:
        lock = setup.package_dir(info["session_dir"], digest) + ".lock"
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        with open(lock, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            ref = where.options(runtime_env={
                "working_dir": wd, "config": {"setup_timeout_seconds": 1}}).remote()
            with pytest.raises(RuntimeEnvSetupError, match="setup_timeout_seconds"):
                ray.get(ref, timeout=60)
    finally:
        ray.shutdown()


@ray.remote
class UsesMylib:
    def use(self):
        from mylib_travel import f
        return f(), ray.get_runtime_context().get_node_id()


# ---------------------------------------------------------------- other nodes
def test_users_own_modules_travel_to_another_node(tmp_path):
    """`from mylib import f` in a task on a node where mylib is on no path: it
    fails without a runtime_env, and works with a working_dir or py_modules."""
    lib = _tree(tmp_path / "code", {"mylib_travel/__init__.py":
                                    "def f():\n    return 'remote mylib'\n",
                                    "helper_travel.py": "X = 41\n"})

    @ray.remote(resources={"node2": 1})
    def use_mylib():
        from mylib_travel import f
        import helper_travel
        return f(), helper_travel.X + 1, ray.get_runtime_context().get_node_id()

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1, resources={"node2": 1})
        ray.init(address=cluster.address)
        head = ray.get_runtime_context().get_node_id()
        with pytest.raises(ModuleNotFoundError):
            ray.get(use_mylib.remote(), timeout=60)
        got = ray.get(use_mylib.options(runtime_env={"working_dir": lib}).remote(),
                      timeout=60)
        assert got[:2] == ("remote mylib", 42) and got[2] != head
        got = ray.get(use_mylib.options(runtime_env={"py_modules": [
            os.path.join(lib, "mylib_travel"), os.path.join(lib, "helper_travel.py")]}
        ).remote(), timeout=60)
        assert got[:2] == ("remote mylib", 42) and got[2] != head
        # an actor created there, in the same way
        a = UsesMylib.options(resources={"node2": 1},
                              runtime_env={"working_dir": lib}).remote()
        got = ray.get(a.use.remote(), timeout=60)
        assert got[0] == "remote mylib" and got[1] != head
    finally:
        cluster.shutdown()
