"""Placement groups, as Ray's `ray.util.placement_group`: reserve bundles of
resources, then schedule tasks and actors into them."""
from .. import api, connection
from .._private import ids
from .._private.ids import PlacementGroupID
from ..object_ref import ObjectRef
from ..worker import core_worker

VALID_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroup:
    def __init__(self, pg_id: bytes, bundles, ready_ref=None, name="", strategy="PACK"):
        self.id = PlacementGroupID(pg_id)
        self.bundle_specs = [dict(b) for b in bundles]
        self._ready_ref = ready_ref
        self.name = name
        self.strategy = strategy

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """A ref that becomes ready once every bundle is reserved."""
        if self._ready_ref is None:
            self._ready_ref = ObjectRef(ids.return_id(self.id.binary(), 1))
        return self._ready_ref

    def wait(self, timeout_seconds=30) -> bool:
        """True once the group is created, False if `timeout_seconds` pass first."""
        ready, _ = api.wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self):
        return (PlacementGroup, (self.id.binary(), self.bundle_specs, None, self.name,
                                 self.strategy))

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"PlacementGroup({self.id.hex()}, {self.strategy}, {self.bundle_specs})"


def placement_group(bundles, strategy="PACK", name="", lifetime=None,
                    _soft_target_node_id=None, bundle_label_selector=None):
    """Reserve `bundles` (a list of resource dicts) with a strategy: PACK, SPREAD,
    STRICT_PACK or STRICT_SPREAD.  Returns at once; use .ready() or .wait()."""
    core = connection.core()
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise ValueError("placement_group() needs a non-empty list of bundles (dicts "
                         "of resources), e.g. [{'CPU': 1}, {'CPU': 1}].")
    for i, b in enumerate(bundles):
        if not isinstance(b, dict) or not b:
            raise ValueError(f"bundle {i} must be a non-empty dict of resources, got {b!r}.")
        for k, v in b.items():
            if not isinstance(k, str) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"bundle {i}: resource {k!r} must map to a non-negative "
                                 f"number, got {v!r}.")
        if not any(b.values()):
            raise ValueError(f"bundle {i} reserves nothing ({b!r}); give it at least one "
                             f"positive resource.")
    if strategy not in VALID_STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy!r}; use one of "
                         f"{VALID_STRATEGIES}.")
    if lifetime not in (None, "detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}.")
    pg_id = ids.random_id(16)
    core.call("pg_create", pg_id, [dict(b) for b in bundles], strategy, name or "",
              lifetime == "detached")
    ref = ObjectRef(ids.return_id(pg_id, 1), _registered=True)
    return PlacementGroup(pg_id, bundles, ref, name or "", strategy)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's resources; its actors are killed, its tasks fail."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group() expects a PlacementGroup, got "
                        f"{type(placement_group).__name__}.")
    connection.core().call("pg_remove", placement_group.id.binary())


def placement_group_table(placement_group: PlacementGroup = None) -> dict:
    """Every placement group (or one) with its state, strategy and bundles."""
    table = connection.core().call("pg_table")
    if placement_group is not None:
        return table.get(placement_group.id.hex(), {})
    return table


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    for pid, info in placement_group_table().items():
        if info["name"] == placement_group_name and info["state"] != "REMOVED":
            bundles = [info["bundles"][k] for k in sorted(info["bundles"], key=int)]
            return PlacementGroup(bytes.fromhex(pid), bundles, None, info["name"],
                                  info["strategy"])
    raise ValueError(f"Failed to look up placement group with name "
                     f"{placement_group_name!r}.")


def get_current_placement_group():
    """The placement group the current task or actor was scheduled into, or None
    (always None in a driver: drivers belong to no group)."""
    core = core_worker.global_worker
    if core is None or core.closed or core.role != "worker":
        return None
    sched = core.task.scheduling
    if not sched or sched[0] != "PG":
        return None
    pg_id = sched[1]
    info = core.call("pg_table").get(pg_id.hex()) or {}
    bundles = [info["bundles"][k] for k in sorted(info.get("bundles", {}), key=int)]
    return PlacementGroup(pg_id, bundles, None, info.get("name", ""),
                          info.get("strategy", "PACK"))
