"""Scheduling strategies, as Ray's `ray.util.scheduling_strategies`.

`to_wire()` gives the form the task spec carries (raylet/constraints.py reads it).
"""
from ..submission import pg_wire
from .placement_group import PlacementGroup


class PlacementGroupSchedulingStrategy:
    """Run the task or actor in a bundle of `placement_group` (-1: any bundle).

    placement_group=None means "in no group", even inside a task whose group
    captures its children.  With placement_group_capture_child_tasks=True the
    tasks and actors it submits without a strategy go into the same group."""

    def __init__(self, placement_group, placement_group_bundle_index=-1,
                 placement_group_capture_child_tasks=None):
        if placement_group is not None and not isinstance(placement_group,
                                                          PlacementGroup):
            raise TypeError(f"placement_group must be a PlacementGroup or None, got "
                            f"{type(placement_group).__name__}.")
        if placement_group_capture_child_tasks is not None and \
                not isinstance(placement_group_capture_child_tasks, bool):
            raise TypeError(f"placement_group_capture_child_tasks must be a bool, got "
                            f"{type(placement_group_capture_child_tasks).__name__}.")
        if not isinstance(placement_group_bundle_index, int) or \
                placement_group_bundle_index < -1:
            raise ValueError(f"placement_group_bundle_index must be an int >= -1, got "
                             f"{placement_group_bundle_index!r}.")
        if placement_group is not None and \
                placement_group_bundle_index >= placement_group.bundle_count:
            raise ValueError(
                f"placement_group_bundle_index {placement_group_bundle_index} is out of "
                f"range: the placement group has {placement_group.bundle_count} bundles.")
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def to_wire(self):
        if self.placement_group is None:
            return None
        return pg_wire(self.placement_group, self.placement_group_bundle_index,
                       self.placement_group_capture_child_tasks)


class NodeAffinitySchedulingStrategy:
    """Run on the node `node_id` (hex); with soft=True, elsewhere if it cannot."""

    def __init__(self, node_id, soft: bool, _spill_on_unavailable=False,
                 _fail_on_unavailable=False):
        if hasattr(node_id, "hex") and not isinstance(node_id, str):
            node_id = node_id.hex()
        try:
            raw = bytes.fromhex(node_id)
        except (TypeError, ValueError):
            raise ValueError(f"node_id must be a node id in hex (see beamlet.nodes()), "
                             f"got {node_id!r}.") from None
        self.node_id = node_id
        self.soft = bool(soft)
        self._raw = raw

    def to_wire(self):
        return ["NODE", self._raw, self.soft]
