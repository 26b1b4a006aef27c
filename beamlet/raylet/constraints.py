"""Placement constraints in the raylet: placement groups and node affinity
(see placement_groups.py for the pure state)."""
import json
import signal

from .. import exceptions
from .._private import ids, serialization
from ..gcs import keys
from .object_store import ObjState
from .placement_groups import PlacementGroup, PGState




class ConstraintsMixin:
    """Part of Raylet (see raylet.py); methods use the Raylet's state."""

    # ------------------------------------------------------------------ placement
    def check_constraint(self, t):
        """An error if a task's placement constraint can never be met here."""
        sched, req = t.spec.scheduling, t.spec.resources
        if sched[0] == "PG":
            pg = self.pgs.groups.get(sched[1])
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

    def constrained_pool(self, t):
        """The ResourceSet a placement-constrained task takes its resources from now,
        or None if it must wait."""
        sched, req = t.spec.scheduling, t.spec.resources
        if sched[0] == "NODE":
            return self.resources if self.resources.fits(req) else None
        if self.om.nodes and self.cs.pg_forward(t):
            return None     # its bundle is on another node: sent there
        try:
            pool, _bundle = self.pgs.pool_for(sched, req)
        except LookupError as e:
            self.ready.remove(t)
            self.fail_task(t, exceptions.TaskUnschedulableError(f"{t.spec.name}: {e}."))
            self.request_schedule()
            return None
        return pool

    def reserve_placement_groups(self):
        if self.om.nodes:
            self.cs.reserve_pending()   # bundles may go to other nodes
            return
        for pg in self.pgs.pending():
            if self.pgs.try_reserve(pg):
                for b in pg.bundles:
                    b.resources.gpu_map = b.gpu_map
                o = self.store.objects.get(pg.ready_oid)
                if o is not None and o.state is ObjState.PENDING:
                    self.seal_object_inline(o, serialization.serialize(True).to_bytes(),
                                            False, ())
                self.record_placement_group(pg)

    def record_placement_group(self, pg):
        self.gcsw.put("hset", keys.placement_group(pg.pg_id), mapping={
            "name": pg.name or "", "strategy": pg.strategy, "state": pg.state.value,
            "bundles": json.dumps([b.request for b in pg.bundles]),
            "node": self.node_id.hex(),
            "bundle_nodes": json.dumps(pg.nodes or [self.node_id.hex()] * len(pg.bundles))})

    def call_pg_create(self, conn, pg_id, bundles, strategy, name, detached):
        ready_oid = ids.return_id(pg_id, 1)
        pg = PlacementGroup(pg_id, bundles, strategy, name, ready_oid, conn.job_id,
                            detached)
        self.pgs.add(pg)
        o = self.store.get_or_create(ready_oid)
        o.refcount += 1
        conn.refs[ready_oid] += 1
        self.record_placement_group(pg)
        if not self.pgs.feasible_here(pg) and not (self.om.nodes and
                                                   self.cs.pg_feasible(pg)):
            msg = (f"Placement group {name or pg_id.hex()} ({strategy}, bundles "
                   f"{[b.request for b in pg.bundles]}) cannot be created: the cluster "
                   f"has {self.cs.cluster_total()} in total on "
                   f"{1 + len(self.om.nodes)} node(s). It stays pending until "
                   f"enough nodes with these resources join.")
            self.gcsw.put("publish", keys.errors_channel(conn.job_id), msg)
        self.request_schedule()
        return True

    def call_pg_remove(self, conn, pg_id):
        pg = self.pgs.groups.get(pg_id)
        if pg is None:
            return self.cs.pg_remove_unknown(pg_id)   # created on another node
        if pg.state is PGState.REMOVED:
            return False
        in_pg = lambda spec: bool(spec.scheduling) and spec.scheduling[0] == "PG" and \
            spec.scheduling[1] == pg_id
        why = f"its placement group {pg.name or pg_id.hex()} was removed"
        for a in list(self.actors.values()):
            if in_pg(a.creation_spec) and a.state != "DEAD":
                self.kill_actor(a, f"The actor was killed because {why}.", no_restart=True)
        for shape, q in self.ready.heads():
            if shape[1] is not None and shape[1][0] == "PG" and shape[1][1] == pg_id:
                while q:
                    t = q.popleft()
                    self.ready.count -= 1
                    self.fail_task(t, exceptions.TaskUnschedulableError(
                        f"{t.spec.name} cannot run: {why}."))
        for w in list(self.pool.workers.values()):
            t = w.task
            if t is not None and w.actor is None and in_pg(t.spec):
                t.retries_left = 0
                t.cancelled = True
                self.pool.signal(w, signal.SIGKILL)
        self.pgs.remove(pg)
        self.cs.pg_removed(pg)      # its bundles on other nodes
        o = self.store.objects.get(pg.ready_oid)
        if o is not None and o.state is ObjState.PENDING:
            self.seal_object_inline(o, self.error_bytes(exceptions.TaskUnschedulableError(
                f"Placement group {pg.name or pg_id.hex()} was removed before it was "
                f"created.")), True, ())
        self.record_placement_group(pg)
        self.request_schedule()
        return True

    def call_pg_table(self, conn):
        out = {}
        for pg in self.pgs.groups.values():
            t = out[pg.pg_id.hex()] = pg.table()
            # which node holds each bundle (as Ray's "bundles_to_node_id")
            t["bundles_to_node_id"] = {
                i: (pg.nodes[i] if pg.nodes else self.node_id.hex())
                for i in range(len(pg.bundles))} if pg.state is PGState.CREATED else {}
        return out
