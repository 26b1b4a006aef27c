"""Placement groups on a node (pure: no I/O).

A placement group reserves bundles of resources. Once every bundle is reserved the
group is CREATED and its `ready` object is sealed; tasks and actors scheduled into a
bundle take resources from that bundle's own ResourceSet, never from the node's.

    PENDING --reserve--> CREATED --remove--> REMOVED
    PENDING --remove--> REMOVED

On one node: PACK, SPREAD and STRICT_PACK reserve every bundle here (SPREAD is a
preference); STRICT_SPREAD needs one node per bundle, so a group of more than one
bundle is infeasible on a single node and stays PENDING (as in Ray) until nodes join.

Across nodes (beamlet/raylet/cluster_scheduling.py): the creating node places the
bundles (`pg.nodes`: bundle index -> node id); every node holding some of them keeps
a copy of the group in which only its own bundles have a ResourceSet (`resources`
is None for a bundle reserved on another node).
"""
import enum

from .scheduler import ResourceSet

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PGState(enum.Enum):
    PENDING = "PENDING"
    CREATED = "CREATED"
    REMOVED = "REMOVED"


class Bundle:
    __slots__ = ("index", "request", "resources", "gpu_map")

    def __init__(self, index, request):
        self.index = index
        self.request = request          # what the bundle reserves from the node
        self.resources = None           # its own ResourceSet once reserved
        self.gpu_map = []               # bundle-local GPU index -> node GPU id


class PlacementGroup:
    __slots__ = ("pg_id", "name", "strategy", "bundles", "state", "ready_oid",
                 "job_id", "detached", "warned", "nodes", "retry_at")

    def __init__(self, pg_id, bundles, strategy, name, ready_oid, job_id, detached):
        self.pg_id = pg_id
        self.name = name
        self.strategy = strategy
        self.bundles = [Bundle(i, {k: float(v) for k, v in b.items() if v})
                        for i, b in enumerate(bundles)]
        self.state = PGState.PENDING
        self.ready_oid = ready_oid
        self.job_id = job_id
        self.detached = detached
        self.warned = False
        self.nodes = None       # bundle index -> node id (hex) when placed by the cluster
        self.retry_at = 0.0     # cluster placement: next attempt after a failed one

    def total(self) -> dict:
        out = {}
        for b in self.bundles:
            for k, v in b.request.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def table(self) -> dict:
        return {"placement_group_id": self.pg_id.hex(), "name": self.name,
                "strategy": self.strategy, "state": self.state.value,
                "bundles": {b.index: dict(b.request) for b in self.bundles},
                "stats": {"scheduling_state": self.state.value}}


class PlacementGroups:
    """The groups this node knows (shared by the raylet's placement constraints
    and cluster placement, which change it only through these methods)."""
    # `waiting` (read only): truthy while some group may still be reserved
    INTERFACE = ("add", "get", "all", "discard", "feasible_here", "try_reserve",
                 "pending", "remove", "pool_for", "bundle_feasible", "waiting")

    def __init__(self, node: ResourceSet):
        self.node = node
        self.groups = {}        # pg_id -> PlacementGroup (removed ones included)
        self.waiting = {}       # pg_id -> PlacementGroup still PENDING

    def add(self, pg) -> None:
        self.groups[pg.pg_id] = pg
        if pg.state is PGState.PENDING:
            self.waiting[pg.pg_id] = pg

    def get(self, pg_id):
        return self.groups.get(pg_id)

    def all(self):
        """Every group (removed ones included), a live view."""
        return self.groups.values()

    def discard(self, pg_id):
        """Forget a group (a share another node's owner cancelled); returns it."""
        return self.groups.pop(pg_id, None)

    def feasible_here(self, pg) -> bool:
        if pg.strategy == "STRICT_SPREAD" and len(pg.bundles) > 1:
            return False
        return self.node.feasible(pg.total())

    def try_reserve(self, pg) -> bool:
        """Reserve every bundle on this node, all or nothing."""
        if pg.state is not PGState.PENDING or not self.feasible_here(pg) or \
                not self.node.fits(pg.total()):
            return False
        for b in pg.bundles:
            b.gpu_map = self.node.acquire(b.request)
            b.resources = ResourceSet(b.request)
        pg.state = PGState.CREATED
        return True

    def pending(self) -> list:
        """Groups still waiting for their bundles (cost: the pending ones only, not
        every group ever made)."""
        for pg_id in [k for k, g in self.waiting.items() if g.state is not PGState.PENDING]:
            del self.waiting[pg_id]
        return list(self.waiting.values())

    def remove(self, pg) -> None:
        if pg.state is PGState.CREATED:
            for b in pg.bundles:
                if b.resources is not None:     # (None: reserved on another node)
                    self.node.release(b.request, b.gpu_map)
                    b.resources = None
        pg.state = PGState.REMOVED

    def pool_for(self, scheduling, req):
        """(ResourceSet, bundle) a PG task should take `req` from; (None, None) if
        it must wait; raises LookupError if the group or bundle does not exist."""
        pg = self.groups.get(scheduling[1])
        if pg is None or pg.state is PGState.REMOVED:
            raise LookupError("the placement group was removed or does not exist")
        idx = scheduling[2]
        if idx is not None and idx >= len(pg.bundles):
            raise LookupError(f"bundle index {idx} is out of range: the group has "
                              f"{len(pg.bundles)} bundles")
        if pg.state is not PGState.CREATED:
            return None, None
        cands = pg.bundles if idx is None or idx < 0 else [pg.bundles[idx]]
        for b in cands:
            if b.resources is not None and b.resources.fits(req):
                return b.resources, b
        return None, None

    def bundle_feasible(self, scheduling, req) -> bool:
        pg = self.groups.get(scheduling[1])
        if pg is None:
            return False
        idx = scheduling[2]
        cands = pg.bundles if idx is None or idx < 0 else pg.bundles[idx:idx + 1]
        return any(all(v <= b.request.get(k, 0.0) + 1e-9 for k, v in req.items())
                   for b in cands)
