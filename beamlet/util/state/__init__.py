"""The state API (Ray's ray.util.state): what the cluster runs, waits for and
holds, on every node.  `beamlet list|get|summary` is its command line; the
records are in common.py, where each kind comes from in api.py."""
from .api import (get_actor, get_job, get_log, get_node, get_objects,
                  get_placement_group, get_task, get_worker, list_actors, list_jobs,
                  list_logs, list_nodes,
                  list_objects, list_placement_groups, list_tasks, list_workers,
                  summarize_actors, summarize_objects, summarize_tasks)
from .common import (ActorState, JobState, NodeState, ObjectState,
                     PlacementGroupState, TaskState, WorkerState)
from .exception import RayStateApiException

__all__ = [
    "list_tasks", "list_actors", "list_objects", "list_nodes", "list_workers",
    "list_placement_groups", "list_jobs", "get_task", "get_actor", "get_node",
    "get_worker", "get_placement_group", "get_job", "get_objects",
    "summarize_tasks", "summarize_actors", "summarize_objects", "list_logs",
    "get_log", "TaskState",
    "ActorState", "ObjectState", "NodeState", "WorkerState", "PlacementGroupState",
    "JobState", "RayStateApiException",
]
