"""Utilities on top of the core API, as Ray's `ray.util`."""
from .placement_group import (PlacementGroup, get_current_placement_group,
                              get_placement_group, placement_group,
                              placement_group_table, remove_placement_group)
from . import scheduling_strategies
from . import queue
from .actor_pool import ActorPool
from .check_serialize import inspect_serializability
from .named_actors import list_named_actors
