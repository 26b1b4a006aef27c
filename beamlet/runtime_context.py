"""get_runtime_context(): who and where the caller is (as Ray's RuntimeContext)."""
from . import connection
from ._private.ids import ActorID, JobID, NodeID, PlacementGroupID, TaskID, WorkerID
from .actor import handle_for_current_actor
from .runtime_env import RuntimeEnv


class RuntimeContext:
    def __init__(self, core):
        self._core = core

    # ---- ids
    def get_job_id(self) -> str:
        return self._core.job_id.hex()

    def get_node_id(self) -> str:
        return self._core.node_id.hex()

    def get_worker_id(self) -> str:
        return self._core.worker_id.hex()

    def get_task_id(self):
        t = self._core.task
        if self._core.role == "driver" and t is self._core.driver_task:
            return None
        return t.task_id.hex()

    def get_actor_id(self):
        a = self._core.task.actor_id
        return a.hex() if a else None

    def get_task_name(self):
        return self._core.task.name or None

    def get_task_function_name(self):
        return self.get_task_name()

    def get_actor_name(self):
        """The name the current actor was created with (None: not an actor, or
        an actor without a name)."""
        hosted = self._core.task.actor
        return (hosted.name or None) if hosted is not None else None

    @property
    def job_id(self):
        return JobID(self._core.job_id)

    @property
    def node_id(self):
        return NodeID(self._core.node_id)

    @property
    def worker_id(self):
        return WorkerID(self._core.worker_id)

    @property
    def task_id(self):
        tid = self.get_task_id()
        return TaskID(bytes.fromhex(tid)) if tid else None

    @property
    def actor_id(self):
        a = self._core.task.actor_id
        return ActorID(a) if a else None

    @property
    def namespace(self):
        return connection.current_namespace()

    # ---- the runtime environment
    @property
    def runtime_env(self):
        """The runtime environment this code runs in (the job's in the driver,
        the task's or actor's in a worker), as workers get it: local paths are
        package URIs (gcs://_beamlet_pkg_<sha1>.zip)."""
        env, _ = connection.runtime_env()
        return RuntimeEnv(**(env or {}))

    def get_runtime_env_string(self) -> str:
        """The runtime environment as JSON text (Ray's name)."""
        return self.runtime_env.serialize()

    @property
    def gcs_address(self):
        h, p, _ = self._core.node_info["redis"]
        return f"{h}:{p}"

    # ---- the actor, resources, placement
    @property
    def current_actor(self):
        """A handle on the actor this code runs in (it does not keep the actor
        alive: the actor may store it, or pass it to others)."""
        hosted = self._core.task.actor
        if hosted is None:
            raise RuntimeError("current_actor is only available inside an actor "
                               "(its methods and constructor).")
        return handle_for_current_actor(hosted)

    def get_assigned_resources(self) -> dict:
        """The resources the current task holds (an actor's: what it holds for its
        lifetime; by default none), as {name: amount}."""
        self._check_worker("get_assigned_resources()")
        return dict(self._core.task.resources)

    def get_accelerator_ids(self) -> dict:
        """{"GPU": [ids as strings]} assigned to the current task or actor."""
        self._check_worker("get_accelerator_ids()")
        return {"GPU": [str(i) for i in self._core.task.gpu_ids]}

    def get_placement_group_id(self):
        """The id (hex) of the placement group the current task or actor runs in,
        or None."""
        sched = self._core.task.scheduling
        if sched and sched[0] == "PG":
            return sched[1].hex()
        return None

    @property
    def current_placement_group_id(self):
        pg = self.get_placement_group_id()
        return PlacementGroupID(bytes.fromhex(pg)) if pg else None

    def should_capture_child_tasks_in_placement_group(self) -> bool:
        sched = self._core.task.scheduling
        return bool(sched and sched[0] == "PG" and len(sched) > 3 and sched[3])

    def is_canceled(self) -> bool:
        """Whether cancel() was called on the running task or actor call: a task
        that caught the interruption, or a call of a sync or threaded actor
        (which cancel() does not interrupt, as in Ray), can ask and stop early.
        Async actors: RuntimeError, as in Ray (their calls get CancelledError)."""
        self._check_worker("is_canceled()")
        task = self._core.task
        hosted = task.actor
        if hosted is not None and hosted.is_async and task.actor_id is not None:
            raise RuntimeError(
                "is_canceled() is not supported in async actors (as in Ray): "
                "cancel() raises asyncio.CancelledError in the call's coroutine "
                "instead; catch it to clean up.")
        if not task.cancelled:
            self._core.conn.poll()   # a CANCEL may have come (sync actors read it here)
        return task.cancelled

    def _check_worker(self, what):
        if self._core.role != "worker":
            raise RuntimeError(f"{what} is only available inside a task or actor, "
                               f"not in the driver.")

    def get(self):
        return {"job_id": self.job_id, "node_id": self.node_id,
                "namespace": self.namespace, "task_id": self.task_id}


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(connection.core())

