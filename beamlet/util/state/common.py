"""The records the state API returns, with Ray's names and fields
(ray.util.state.common): dataclasses that also read as dicts (`row["state"]`,
`row.get("pid")`, `row.asdict()`), as Ray's do.

Each field is a base column (always filled) or a detail column (filled with
`detail=True`, `--detail`, or by a get_* call; None otherwise).  beamlet adds a
few fields Ray does not have, the first of them `pending_reason`: why a task,
actor or placement group is not running yet (a dict: code, text, details; the
codes are in beamlet/_private/pending.py and docs/observability.md).
"""
import dataclasses
from dataclasses import dataclass
from typing import List, Optional


def col(detail=False):
    return dataclasses.field(default=None, metadata={"detail": detail})


class StateSchema:
    """What every state record has: dict-like access and its columns."""

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        setattr(self, key, value)

    def get(self, key, default=None):
        return getattr(self, key, default)

    def __contains__(self, key):
        return key in self.columns()

    def keys(self):
        return self.list_columns()

    def asdict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def list_columns(cls, detail: bool = True) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)
                if detail or not f.metadata.get("detail")]

    @classmethod
    def columns(cls) -> set:
        return set(cls.list_columns())

    @classmethod
    def base_columns(cls) -> set:
        return set(cls.list_columns(detail=False))

    @classmethod
    def detail_columns(cls) -> set:
        return cls.columns()

    @classmethod
    def filterable_columns(cls) -> set:
        return cls.columns()

    @classmethod
    def from_row(cls, row: dict, detail: bool):
        keep = cls.columns() if detail else cls.base_columns()
        return cls(**{k: row.get(k) for k in keep})


@dataclass
class TaskState(StateSchema):
    task_id: str = col()
    attempt_number: int = col()
    name: str = col()
    state: str = col()
    job_id: str = col()
    actor_id: Optional[str] = col()
    type: str = col()
    func_or_class_name: str = col()
    parent_task_id: Optional[str] = col()
    node_id: Optional[str] = col()
    worker_id: Optional[str] = col()
    worker_pid: Optional[int] = col()
    error_type: Optional[str] = col()
    pending_reason: Optional[dict] = col()
    language: Optional[str] = col(True)
    required_resources: Optional[dict] = col(True)
    runtime_env_info: Optional[dict] = col(True)
    placement_group_id: Optional[str] = col(True)
    events: Optional[list] = col(True)
    profiling_data: Optional[dict] = col(True)
    creation_time_ms: Optional[int] = col(True)
    start_time_ms: Optional[int] = col(True)
    end_time_ms: Optional[int] = col(True)
    task_log_info: Optional[dict] = col(True)
    error_message: Optional[str] = col(True)
    is_debugger_paused: Optional[bool] = col(True)
    call_site: Optional[str] = col(True)


@dataclass
class ActorState(StateSchema):
    actor_id: str = col()
    class_name: str = col()
    state: str = col()
    job_id: str = col()
    name: Optional[str] = col()
    node_id: Optional[str] = col()
    pid: Optional[int] = col()
    ray_namespace: Optional[str] = col()
    pending_reason: Optional[dict] = col()
    serialized_runtime_env: Optional[str] = col(True)
    required_resources: Optional[dict] = col(True)
    death_cause: Optional[dict] = col(True)
    is_detached: Optional[bool] = col(True)
    placement_group_id: Optional[str] = col(True)
    repr_name: Optional[str] = col(True)
    num_restarts: Optional[int] = col(True)
    num_restarts_due_to_lineage_reconstruction: Optional[int] = col(True)
    call_site: Optional[str] = col(True)
    worker_id: Optional[str] = col(True)
    max_concurrency: Optional[int] = col(True)
    num_pending_calls: Optional[int] = col(True)


@dataclass
class ObjectState(StateSchema):
    object_id: str = col()
    object_size: int = col()
    task_status: str = col()
    reference_type: str = col()
    call_site: str = col()
    type: str = col()
    pid: Optional[int] = col()
    ip: str = col()
    node_id: str = col()
    state: str = col()
    where: Optional[str] = col(True)
    refcount: Optional[int] = col(True)
    pins: Optional[int] = col(True)
    holders: Optional[list] = col(True)


@dataclass
class NodeState(StateSchema):
    node_id: str = col()
    node_ip: str = col()
    is_head_node: bool = col()
    state: str = col()
    state_message: Optional[str] = col()
    node_name: str = col()
    resources_total: dict = col()
    labels: dict = col()
    start_time_ms: Optional[int] = col(True)
    end_time_ms: Optional[int] = col(True)
    resources_available: Optional[dict] = col(True)
    object_store_memory: Optional[int] = col(True)
    object_store_used: Optional[int] = col(True)
    hostname: Optional[str] = col(True)
    raylet_pid: Optional[int] = col(True)
    session_dir: Optional[str] = col(True)
    demand: Optional[list] = col(True)


@dataclass
class WorkerState(StateSchema):
    worker_id: Optional[str] = col()
    is_alive: bool = col()
    worker_type: str = col()
    exit_type: Optional[str] = col()
    node_id: str = col()
    ip: str = col()
    pid: int = col()
    state: Optional[str] = col()
    task_id: Optional[str] = col()
    actor_id: Optional[str] = col()
    job_id: Optional[str] = col()
    exit_detail: Optional[str] = col(True)
    worker_launch_time_ms: Optional[int] = col(True)
    worker_launched_time_ms: Optional[int] = col(True)
    start_time_ms: Optional[int] = col(True)
    end_time_ms: Optional[int] = col(True)


@dataclass
class PlacementGroupState(StateSchema):
    placement_group_id: str = col()
    name: str = col()
    creator_job_id: Optional[str] = col()
    state: str = col()
    strategy: Optional[str] = col()
    pending_reason: Optional[dict] = col()
    bundles: Optional[list] = col(True)
    is_detached: Optional[bool] = col(True)
    stats: Optional[dict] = col(True)


@dataclass
class JobState(StateSchema):
    job_id: str = col()
    submission_id: Optional[str] = col()
    type: str = col()
    status: str = col()
    entrypoint: str = col()
    message: Optional[str] = col()
    error_type: Optional[str] = col()
    driver_info: Optional[dict] = col()
    start_time: Optional[int] = col(True)
    end_time: Optional[int] = col(True)
    metadata: Optional[dict] = col(True)
    runtime_env: Optional[dict] = col(True)
    driver_node_id: Optional[str] = col(True)
    driver_exit_code: Optional[int] = col(True)
    namespace: Optional[str] = col(True)


SCHEMAS = {"tasks": TaskState, "actors": ActorState, "objects": ObjectState,
           "nodes": NodeState, "workers": WorkerState,
           "placement_groups": PlacementGroupState, "jobs": JobState}
# the id column of each kind (get_<kind>(id))
ID_COLUMNS = {"tasks": "task_id", "actors": "actor_id", "objects": "object_id",
              "nodes": "node_id", "workers": "worker_id",
              "placement_groups": "placement_group_id", "jobs": "job_id"}
