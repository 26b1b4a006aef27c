"""Names Ray programs import (issue 10 §4): ray.util after a bare `import ray`,
ray.cloudpickle, register_serializer, Ray's exception names and classes,
RuntimeEnv, JobConfig, ray.util.accelerators, ray.method's parameters."""
import json
import os
import subprocess
import sys
import threading

import pytest

import beamlet as ray
from conftest import wait_for
from beamlet import exceptions
from beamlet.gcs import keys
from beamlet.job_config import JobConfig
from beamlet.runtime_env import RuntimeEnv, RuntimeEnvConfig

# Ray's public exception names (docs.ray.io, ray-core/api/exceptions), with the
# base each must have
RAY_EXCEPTIONS = {
    "RayError": Exception, "RayTaskError": "RayError", "RayActorError": "RayError",
    "TaskCancelledError": "RayError", "TaskUnschedulableError": "RayError",
    "ActorDiedError": "RayActorError", "ActorUnschedulableError": "RayError",
    "ActorUnavailableError": "RayActorError", "AsyncioActorExit": "RayError",
    "LocalRayletDiedError": "RayError", "WorkerCrashedError": "RayError",
    "TaskPlacementGroupRemoved": "RayError", "ActorPlacementGroupRemoved": "RayError",
    "ObjectStoreFullError": "RayError", "OutOfDiskError": "RayError",
    "OutOfMemoryError": "RayError", "ObjectLostError": "RayError",
    "ObjectFetchTimedOutError": "ObjectLostError", "GetTimeoutError": TimeoutError,
    "OwnerDiedError": "ObjectLostError", "PendingCallsLimitExceeded": "RayError",
    "PlasmaObjectNotAvailable": "RayError",
    "ObjectReconstructionFailedError": "ObjectLostError",
    "ObjectReconstructionFailedMaxAttemptsExceededError": "ObjectLostError",
    "ObjectReconstructionFailedLineageEvictedError": "ObjectLostError",
    "RayChannelError": "RaySystemError", "RayChannelTimeoutError": TimeoutError,
    "RayCgraphCapacityExceeded": "RaySystemError", "RuntimeEnvSetupError": "RayError",
    "CrossLanguageError": "RayError", "RaySystemError": "RayError",
    "NodeDiedError": "RayError", "UnserializableException": "RayError",
    "AuthenticationError": "RayError", "ObjectFreedError": "ObjectLostError",
    "ReferenceCountingAssertionError": AssertionError,
}


@pytest.mark.parametrize("name", sorted(RAY_EXCEPTIONS))
def test_rays_exception_names_are_real_classes(name):
    cls = getattr(exceptions, name)
    assert isinstance(cls, type) and issubclass(cls, BaseException)
    base = RAY_EXCEPTIONS[name]
    base = getattr(exceptions, base) if isinstance(base, str) else base
    assert issubclass(cls, base), f"{name} should derive from {base.__name__}"
    assert issubclass(cls, exceptions.RayError)
    if name != "RayTaskError":  # (made by beamlet from a task's exception)
        cls("message")          # can be made (and raised) like any exception


def test_bare_import_reaches_util_and_friends():
    code = ("import beamlet as ray\n"
            "print(ray.util.ActorPool.__name__, ray.util.placement_group.__name__,\n"
            "      ray.util.queue.Queue.__name__, ray.util.accelerators.NVIDIA_A100,\n"
            "      ray.cloudpickle.loads(ray.cloudpickle.dumps(lambda x: x + 1))(1),\n"
            "      ray.exceptions.OwnerDiedError.__name__,\n"
            "      ray.runtime_env.RuntimeEnv.__name__, ray.job_config.JobConfig.__name__)\n"
            "import beamlet.cloudpickle, beamlet.util.accelerators\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ActorPool", "placement_group", "Queue", "A100", "2",
                                  "OwnerDiedError", "RuntimeEnv", "JobConfig"]


def test_import_of_beamlet_stays_light():
    # workers import beamlet: it must not pull asyncio (util.queue) or redis in
    code = "import sys, beamlet; print('asyncio' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


# ---------------------------------------------------------------- serializers
class Holder:
    """Unpicklable as is (it holds a lock)."""

    def __init__(self, v):
        self.v = v
        self.lock = threading.Lock()


@ray.remote
def read_v(h):
    return h.v


@ray.remote
def make_holder(v, register):
    if register:
        ray.util.register_serializer(Holder, serializer=lambda h: h.v,
                                     deserializer=Holder)
    return Holder(v)


def test_register_serializer_in_driver_and_worker(ray_start):
    with pytest.raises(ray.exceptions.SerializationError):
        read_v.remote(Holder(1))
    ray.util.register_serializer(Holder, serializer=lambda h: h.v,
                                 deserializer=lambda v: Holder(v))
    try:
        assert ray.get(read_v.remote(Holder(3))) == 3          # driver -> worker
        got = ray.get(ray.put(Holder(4)))
        assert isinstance(got, Holder) and got.v == 4
        # a worker serializes its results with what it registered itself
        with pytest.raises(ray.exceptions.SerializationError):
            ray.get(make_holder.remote(5, False))
        got = ray.get(make_holder.remote(6, True))
        assert isinstance(got, Holder) and got.v == 6
    finally:
        ray.util.deregister_serializer(Holder)
    with pytest.raises(ray.exceptions.SerializationError):
        read_v.remote(Holder(7))
    ray.util.deregister_serializer(Holder)      # again: no effect, no error
    with pytest.raises(TypeError):
        ray.util.register_serializer(Holder(1), serializer=str, deserializer=str)


# ---------------------------------------------------------------- runtime_env, JobConfig
def test_runtime_env_class():
    env = RuntimeEnv(env_vars={"A": "1"}, working_dir=".",
                     config=RuntimeEnvConfig(setup_timeout_seconds=30))
    assert isinstance(env, dict) and env["env_vars"] == {"A": "1"}
    assert env.env_vars() == {"A": "1"} and env.working_dir() == "."
    assert RuntimeEnv.deserialize(env.serialize()) == env
    with pytest.raises(TypeError, match="env_vars"):
        RuntimeEnv(env_vars={"A": 1})
    with pytest.raises(ValueError, match="pip.*conda"):
        RuntimeEnv(pip=["x"], conda="env")
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        RuntimeEnvConfig(setup_timeout_seconds=0)
    ray.remote(runtime_env=env)(read_v.__wrapped__)       # accepted as an option


def test_job_config_applies_namespace_lifetime_and_metadata():
    cfg = JobConfig(ray_namespace="jobns", metadata={"team": "x"},
                    default_actor_lifetime="detached")
    cfg.set_metadata("run", "7")
    assert JobConfig.from_json(json.dumps(cfg._to_dict())).metadata == cfg.metadata
    with pytest.raises(ValueError, match="default_actor_lifetime"):
        JobConfig(default_actor_lifetime="forever")
    ray.init(num_cpus=1, job_config=cfg)
    try:
        assert ray.get_runtime_context().namespace == "jobns"

        @ray.remote
        class A:
            def ns(self):
                return ray.get_runtime_context().namespace
        a = A.remote()
        assert ray.get(a.ns.remote()) == "jobns"
        gcs = ray.api._state.gcs
        b = A.options(lifetime="non_detached").remote()
        ray.get(b.ns.remote())
        # (the raylet records its actors in the GCS within GCS_FLUSH_S)
        wait_for(lambda: gcs.actor_info(a._actor_id).get("detached") == "1",
                 msg="the actor recorded as detached (the job's default)")
        wait_for(lambda: gcs.actor_info(b._actor_id).get("detached") == "0",
                 msg="the actor given lifetime='non_detached' recorded so")
        job = ray.get_runtime_context().job_id.binary()
        record = gcs.r.hget(keys.job(job), "metadata")
        assert json.loads(record) == {"team": "x", "run": "7"}
        ray.kill(a)
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- ray.method
def test_method_takes_rays_parameters(ray_start, tmp_path):
    marker = tmp_path / "crashed-once"

    @ray.remote(max_restarts=1)
    class M:
        @ray.method(num_returns=2, concurrency_group=None, enable_task_events=False,
                    retry_exceptions=False, _generator_backpressure_num_objects=1,
                    tensor_transport="object_store")
        def pair(self):
            return 1, 2

        @ray.method(max_task_retries=1)
        def crash_once(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "retried"

        @ray.method
        def plain(self):
            return "plain"

    m = M.remote()
    a, b = m.pair.remote()
    assert ray.get([a, b]) == [1, 2]
    assert ray.get(m.plain.remote()) == "plain"
    # the method's max_task_retries (the handle's default is 0): resent after
    # the restart
    assert ray.get(m.crash_once.remote(str(marker)), timeout=60) == "retried"
