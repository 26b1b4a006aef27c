"""get_runtime_context(): who and where the caller is."""
from ._private.ids import ActorID, JobID, NodeID, TaskID, WorkerID


class RuntimeContext:
    def __init__(self, core, namespace):
        self._core = core
        self._namespace = namespace

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
        if self._namespace is None:
            from .actor import current_namespace
            self._namespace = current_namespace()
        return self._namespace

    def get_assigned_resources(self):
        import os
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        return {"GPU": len(cvd.split(","))} if cvd else {}

    @property
    def gcs_address(self):
        h, p, _ = self._core.node_info["redis"]
        return f"{h}:{p}"

    def get(self):
        return {"job_id": self.job_id, "node_id": self.node_id,
                "namespace": self.namespace, "task_id": self.task_id}


def get_runtime_context() -> RuntimeContext:
    from . import api
    return RuntimeContext(api._core(), api._state.namespace)
