"""Placement constraints on this node: placement groups and node affinity.

Owns: the decisions about constrained tasks here (may this task ever run on
  this node, which bundle's resources it takes now), the single-node
  reservation of placement groups, and the placement group calls.  The groups
  themselves are the pure PlacementGroups (placement_groups.py), shared with
  cluster placement, which reserves groups whose bundles span nodes.
Uses: LocalScheduler (failing tasks, taking a task out of the queue, the
  tasks of a removed group, scheduling again); ObjectStore (a group's ready
  object); Actors (those of a removed group die); ClusterScheduler (bundles on
  other nodes: pg_forward / reserve_pending / pg_feasible / pg_removed /
  pg_remove_unknown, the cluster's totals); NodeTable (whether other nodes
  exist); GcsWriter (the group's record, warnings).
Messages: the calls "pg_create", "pg_remove", "pg_table"; PEER_PG_REMOVE
  (via cluster_scheduling.py).
"""
import json


from .. import exceptions
from .._private import ids, serialization
from .._private.pending import Reason, reason
from ..gcs import keys
from .common import error_bytes, scheduled_resources
from .object_store import ObjState
from .placement_groups import PlacementGroup, PGState

# The components it uses (Actors, ClusterScheduler, GcsWriter, NodeTable, ObjectStore,
# PlacementGroups, ResourceSet, LocalScheduler) are named in annotations only, as
# strings: the shell (raylet.py) wires them together, so their modules need not import
# each other (no import circle).


class Constraints:
    INTERFACE = ("wire", "check", "pool_for", "reserve_pending", "record",
                 "call_pg_create", "call_pg_remove", "call_pg_table",
                 # the state API and pending reasons (read only; introspection.py)
                 "pg_reason", "group_reason")

    def __init__(self, node_id: bytes, resources: "ResourceSet", pgs: "PlacementGroups"):
        self.node_id = node_id
        self.node_hex = node_id.hex()
        self.resources = resources
        self.pgs = pgs

    def wire(self, sched: "LocalScheduler", store: "ObjectStore", actors: "Actors",
             cs: "ClusterScheduler", node_table: "NodeTable", gcs: "GcsWriter") -> None:
        self.sched = sched
        self.store = store
        self.actors = actors
        self.cs = cs
        self.node_table = node_table
        self.put_gcs = gcs.put

    # ------------------------------------------------------------------ tasks
    def check(self, t):
        """An error if a task's placement constraint can never be met here."""
        sched, req = t.spec.scheduling, t.spec.resources
        if sched[0] == "PG":
            pg = self.pgs.get(sched[1])
            if pg is None or pg.state is PGState.REMOVED:
                return exceptions.TaskUnschedulableError(
                    f"{t.spec.name} cannot run: its placement group "
                    f"{sched[1].hex()} was removed or does not exist.")
            if sched[2] is not None and sched[2] >= len(pg.bundles):
                return exceptions.TaskUnschedulableError(
                    f"{t.spec.name} asks for bundle {sched[2]} but its placement group "
                    f"has {len(pg.bundles)} bundles.")
            if not self.pgs.bundle_feasible(sched, req):
                which = "any bundle" if sched[2] is None or sched[2] < 0 else \
                    f"bundle {sched[2]} ({pg.bundles[sched[2]].request})"
                return exceptions.TaskUnschedulableError(
                    f"{t.spec.name} requires {req}, more than {which} of its placement "
                    f"group reserves; tasks in a bundle use only its resources.")
            return None
        node, soft = sched[1], sched[2]
        if node != self.node_id and not soft:
            return exceptions.TaskUnschedulableError(
                f"{t.spec.name} must run on node {node.hex()} (NodeAffinity, soft=False) "
                f"but that node is not part of this cluster or is dead.")
        return None

    def pool_for(self, t):
        """The ResourceSet a placement-constrained task takes its resources from now,
        or None if it must wait."""
        sched, req = t.spec.scheduling, t.spec.resources
        if sched[0] == "NODE":
            return self.resources if self.resources.fits(req) else None
        if self.node_table.nodes and self.cs.pg_forward(t):
            return None     # its bundle is on another node: sent there
        try:
            pool, _bundle = self.pgs.pool_for(sched, req)
        except LookupError as e:
            self.sched.dequeue(t)
            self.sched.fail_task(t, exceptions.TaskUnschedulableError(
                f"{t.spec.name}: {e}."))
            self.sched.request_schedule()
            return None
        return pool

    def pg_reason(self, t):
        """Why task `t` of a placement group waits (pending.py's vocabulary)."""
        sched, req = t.spec.scheduling, t.spec.resources
        pg = self.pgs.get(sched[1])
        if pg is None or pg.state is PGState.REMOVED:
            return reason(Reason.UNKNOWN, message=f"its placement group "
                          f"{sched[1].hex()} was removed or does not exist")
        if pg.state is PGState.PENDING:
            return reason(Reason.WAITING_FOR_PLACEMENT_GROUP,
                          placement_group_id=pg.pg_id.hex(), name=pg.name or "",
                          state=pg.state.value, cause=self.group_reason(pg))
        idx = sched[2]
        bundles = [b for b in pg.bundles if b.resources is not None and
                   (idx is None or idx < 0 or b.index == idx)]
        if not bundles:     # its bundle is on another node: sent there
            return reason(Reason.FORWARDED, node_id=(pg.nodes or ["?"])[idx or 0])
        b = bundles[0]
        return reason(Reason.WAITING_FOR_RESOURCES, required=dict(req),
                      node_id=self.node_hex, available=b.resources.snapshot(),
                      total=dict(b.resources.total), bundle=b.index,
                      placement_group_id=pg.pg_id.hex())

    def group_reason(self, pg):
        """Why group `pg` is not created yet; None if it is."""
        if pg.state is not PGState.PENDING:
            return None
        multi = bool(self.node_table.nodes)
        if not self.pgs.feasible_here(pg) and not (multi and self.cs.pg_feasible(pg)):
            return reason(Reason.PLACEMENT_GROUP_INFEASIBLE,
                          bundles=[b.request for b in pg.bundles], strategy=pg.strategy,
                          cluster_total=scheduled_resources(self.cs.cluster_total()),
                          nodes=1 + len(self.node_table.nodes))
        return reason(Reason.PLACEMENT_GROUP_WAITING, required=pg.total(),
                      node_id=self.node_hex,
                      available=scheduled_resources(self.resources.snapshot()),
                      total=scheduled_resources(self.resources.total))

    # ------------------------------------------------------------------ groups
    def reserve_pending(self):
        """Reserve the groups waiting for their bundles (the scheduler asks when
        some wait)."""
        if self.node_table.nodes:
            self.cs.reserve_pending()   # bundles may go to other nodes
            return
        for pg in self.pgs.pending():
            if self.pgs.try_reserve(pg):
                for b in pg.bundles:
                    b.resources.gpu_map = b.gpu_map
                o = self.store.get(pg.ready_oid)
                if o is not None and o.state is ObjState.PENDING:
                    self.store.seal_inline(o, serialization.serialize(True).to_bytes(),
                                           False, ())
                self.record(pg)

    def record(self, pg):
        """Write the group's GCS record."""
        self.put_gcs("hset", keys.placement_group(pg.pg_id), mapping={
            "name": pg.name or "", "strategy": pg.strategy, "state": pg.state.value,
            "bundles": json.dumps([b.request for b in pg.bundles]),
            "node": self.node_hex,
            "bundle_nodes": json.dumps(pg.nodes or [self.node_hex] * len(pg.bundles))})

    def call_pg_create(self, conn, pg_id, bundles, strategy, name, detached):
        ready_oid = ids.return_id(pg_id, 1)
        pg = PlacementGroup(pg_id, bundles, strategy, name, ready_oid, conn.job_id,
                            detached)
        self.pgs.add(pg)
        o = self.store.get_or_create(ready_oid)
        o.refcount += 1
        conn.refs[ready_oid] += 1
        self.record(pg)
        if not self.pgs.feasible_here(pg) and not (self.node_table.nodes and
                                                   self.cs.pg_feasible(pg)):
            msg = (f"Placement group {name or pg_id.hex()} ({strategy}, bundles "
                   f"{[b.request for b in pg.bundles]}) cannot be created: the cluster "
                   f"has {self.cs.cluster_total()} in total on "
                   f"{1 + len(self.node_table.nodes)} node(s). It stays pending until "
                   f"enough nodes with these resources join.")
            self.put_gcs("publish", keys.errors_channel(conn.job_id), msg)
        self.sched.request_schedule()
        return True

    def call_pg_remove(self, conn, pg_id):
        """The "pg_remove" call (also PEER_PG_REMOVE, with conn None)."""
        pg = self.pgs.get(pg_id)
        if pg is None:
            return self.cs.pg_remove_unknown(pg_id)   # created on another node
        if pg.state is PGState.REMOVED:
            return False
        why = f"its placement group {pg.name or pg_id.hex()} was removed"
        self.actors.kill_in_placement_group(pg_id, why)
        self.sched.fail_placement_group_tasks(pg_id, why)
        self.pgs.remove(pg)
        self.cs.pg_removed(pg)      # its bundles on other nodes
        o = self.store.get(pg.ready_oid)
        if o is not None and o.state is ObjState.PENDING:
            self.store.seal_inline(o, error_bytes(exceptions.TaskUnschedulableError(
                f"Placement group {pg.name or pg_id.hex()} was removed before it was "
                f"created.")), True, ())
        self.record(pg)
        self.sched.request_schedule()
        return True

    def call_pg_table(self, conn):
        out = {}
        for pg in self.pgs.all():
            t = out[pg.pg_id.hex()] = pg.table()
            # which node holds each bundle (as Ray's "bundles_to_node_id")
            t["bundles_to_node_id"] = {
                i: (pg.nodes[i] if pg.nodes else self.node_hex)
                for i in range(len(pg.bundles))} if pg.state is PGState.CREATED else {}
        return out
