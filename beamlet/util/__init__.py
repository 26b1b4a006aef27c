"""Utilities on top of the core API, as Ray's `ray.util`."""
import importlib

from . import accelerators, scheduling_strategies
from .._private.serialization import deregister_serializer, register_serializer
from .actor_pool import ActorPool
from .placement_group import (PlacementGroup, get_current_placement_group,
                              get_placement_group, placement_group,
                              placement_group_table, remove_placement_group)
from .check_serialize import inspect_serializability
from .named_actors import list_named_actors

# Submodules loaded when first used (`beamlet.util.queue` imports asyncio, which
# workers that never touch a queue should not pay for).
_LAZY_SUBMODULES = ("queue",)


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
