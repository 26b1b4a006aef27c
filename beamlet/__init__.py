"""beamlet: a distributed execution engine with Ray Core's programming model.

`import beamlet as ray` runs typical Ray programs.  This module only re-exports
the public API (docs/api.md lists it).
"""
from . import actor, cloudpickle, exceptions, job_config, runtime_context, runtime_env
from . import util
from .actor import exit_actor, get_actor, kill, method
from .api import (available_resources, cancel, cluster_resources, get, get_gpu_ids,
                  init, is_initialized, nodes, put, remote, shutdown, timeline, wait)
from .exceptions import (ActorDiedError, GetTimeoutError, ObjectLostError,
                         ObjectStoreFullError, RayActorError, RayTaskError, TaskError,
                         TaskCancelledError, WorkerCrashedError)
from .generator import DynamicObjectRefGenerator, ObjectRefGenerator
from .object_ref import ObjectID, ObjectRef
from .runtime_context import get_runtime_context

__version__ = "0.1.0"

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "method", "get", "put", "wait",
    "cancel", "kill", "get_actor", "exit_actor", "nodes", "cluster_resources",
    "available_resources", "get_gpu_ids", "get_runtime_context", "timeline",
    "ObjectRef", "ObjectID", "ObjectRefGenerator", "DynamicObjectRefGenerator",
    "exceptions", "TaskError", "RayTaskError",
    "GetTimeoutError", "TaskCancelledError", "WorkerCrashedError", "ActorDiedError",
    "RayActorError", "ObjectLostError", "ObjectStoreFullError", "util", "actor",
    "cloudpickle", "job_config", "runtime_env", "runtime_context",
]
