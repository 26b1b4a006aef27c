"""The raylet's observability: the live rows of the state API (`beamlet list`,
beamlet.util.state), the pending reason of everything that waits, and the
diagnosis of a get()/wait() that makes no progress: what it waits for, as a
chain ending in its root cause, followed across nodes.

    driver/CLI ──CALL "state" / "explain"──▶ Introspection ──PEER_STATE──▶ peers
                                                  │ reads, through their INTERFACE
            LocalScheduler  Actors  ObjectStore  WorkerPool  Constraints  ...

Nothing here runs on the paths a task takes: it reads the other components
when a query comes.  Each component answers for what it owns (the scheduler
why its queued task waits, the actors why a call waits, the constraints why a
placement group is not made, ...; beamlet/_private/pending.py is the
vocabulary); this module puts the answers together: who holds the resources a
task waits for, which task makes the argument it waits for, what a blocked
worker waits on, and where a chain closes on itself (a deadlock).

Owns: nothing that changes the work: the queries and their answers.
Uses: LocalScheduler (tasks, their reasons, running tasks' resources); Actors
  (actors, the reasons of calls, running calls, lifetime resources);
  ObjectStore (objects, what a connection is blocked on); WorkerPool
  (workers); Constraints and the PlacementGroups (groups, their reasons);
  ClusterScheduler (calls for actors on other nodes); ObjectManager (tasks
  sent to other nodes, arguments being fetched, where an object is, the peer
  query); NodeTable (the other nodes); the node's ResourceSet; and two
  callbacks of the shell: its driver connections and its clients' refs.
  And this node's log files (the session's logs directory), which it lists
  and reads for `beamlet logs`.
Messages: the calls "state", "explain", "logs" and "log_read" (protocol.py);
  PEER_STATE from a peer (the object manager hands it over: `on_peer_state`).
"""
import asyncio
import collections
import os
import re
import time


from .._private import ids
from .._private import protocol as P
from .._private.pending import Reason, describe, is_progress, reason
from .._private.state_rows import select
from .object_store import ObjState
from .placement_groups import PGState
from .scheduler import TaskState as TS, ray_state, task_row

# The components it uses (Actors, ClusterScheduler, Constraints, NodeTable,
# ObjectManager, ObjectStore, PlacementGroups, ResourceSet, LocalScheduler,
# WorkerPool) are named in annotations only, as strings: the shell (raylet.py) wires
# them together, so their modules need not import each other (no import circle).

PEER_TIMEOUT_S = 10.0
MAX_DEPTH = 24          # steps of a chain (a longer one is cut, saying so)
LIVE_KINDS = ("tasks", "actors", "objects", "workers", "placement_groups")
_WALL = time.time() - time.monotonic()
_LABELS = ("task", "actor creation", "actor call")
LOG_READ_MAX = 4 << 20   # bytes of a log file one "log_read" answers with
_WORKER_LOG = re.compile(r"^worker-([0-9a-f]{32})-(\d+)\.(out|err)(\.1)?$")


class Introspection:
    INTERFACE = ("wire", "call_state", "call_explain", "call_logs", "call_log_read",
                 "on_peer_state", "local_state", "demand_reasons")

    def __init__(self, node_id: bytes, node_ip: str, logs_dir: str):
        self.node_id = node_id
        self.me = node_id.hex()
        self.ip = node_ip
        self.logs_dir = logs_dir

    def wire(self, sched: "LocalScheduler", actors: "Actors", store: "ObjectStore",
             pool: "WorkerPool", constraints: "Constraints", pgs: "PlacementGroups",
             cs: "ClusterScheduler", om: "ObjectManager", node_table: "NodeTable",
             resources: "ResourceSet", drivers, client_refs) -> None:
        self.sched = sched
        self.actors = actors
        self.store = store
        self.pool = pool
        self.constraints = constraints
        self.pgs = pgs
        self.cs = cs
        self.om = om
        self.node_table = node_table
        self.resources = resources
        self.drivers = drivers          # () -> [{"pid", "job_id"}]: driver connections
        self.client_refs = client_refs  # () -> [(role, pid, refs, pins)] of clients

    # ------------------------------------------------------------------ calls
    def call_state(self, conn, kind, filters=(), limit=None, detail=False):
        """The "state" call: live rows of `kind` of every node (a coroutine when
        other nodes must be asked; the shell replies when it is done)."""
        if kind not in LIVE_KINDS:
            raise ValueError(f"unknown kind {kind!r}: the raylets report {LIVE_KINDS}")
        local = self.local_state(kind, filters, limit, detail)
        peers = list(self.node_table.nodes)
        if not peers:
            return {**local, "errors": []}
        return self._gather(peers, {"op": "state", "kind": kind, "filters": filters,
                                    "limit": limit, "detail": detail}, local)

    async def _gather(self, peers, query, local):
        answers = await asyncio.gather(
            *[self.om.query(n, query, PEER_TIMEOUT_S) for n in peers],
            return_exceptions=True)
        rows, total, errors = list(local["rows"]), local["total"], []
        for n, a in zip(peers, answers):
            if isinstance(a, BaseException):
                errors.append(f"node {n[:12]} did not answer: {a!r}")
                continue
            rows.extend(a["rows"])
            total += a["total"]
        return {"rows": rows, "total": total, "errors": errors}

    def local_state(self, kind, filters=(), limit=None, detail=False) -> dict:
        """This node's live rows of `kind` that match `filters` (the newest
        `limit` of them) and how many matched."""
        filters = [tuple(f) for f in filters or ()]
        self._holders = None
        rows = getattr(self, f"{kind}_rows")(detail)
        out, n = select(rows, filters, limit)
        return {"rows": out, "total": n}

    def on_peer_state(self, query):
        """A peer's PEER_STATE query (object_manager.py hands it over)."""
        op = query.get("op")
        if op == "state":
            return self.local_state(query["kind"], query.get("filters"),
                                    query.get("limit"), query.get("detail", False))
        if op == "explain_task":
            return self._explain_peer_task(bytes.fromhex(query["task_id"]),
                                           query.get("path") or [])
        if op == "explain_object":
            return self._explain_peer_object(bytes.fromhex(query["object_id"]),
                                             query.get("path") or [])
        if op == "logs":
            return self.local_logs()
        if op == "log_read":
            return self.read_log(query["name"], query["offset"], query["max_bytes"])
        return {"error": f"unknown query {op!r}"}

    # ------------------------------------------------------------------ logs
    def call_logs(self, conn):
        """The "logs" call: node hex -> the log files of that node, every node."""
        mine = {self.me: self.local_logs()}
        peers = list(self.node_table.nodes)
        if not peers:
            return mine
        return self._gather_logs(peers, mine)

    async def _gather_logs(self, peers, out):
        answers = await asyncio.gather(
            *[self.om.query(n, {"op": "logs"}, PEER_TIMEOUT_S) for n in peers],
            return_exceptions=True)
        for n, a in zip(peers, answers):
            out[n] = a if isinstance(a, list) else {"error": repr(a)}
        return out

    def local_logs(self) -> list:
        """This node's log files: name, size, mtime (and pid, worker_id for a
        worker's)."""
        self.pool.flush_logs()
        out = []
        try:
            names = sorted(os.listdir(self.logs_dir))
        except OSError:
            return out
        for name in names:
            try:
                st = os.stat(os.path.join(self.logs_dir, name))
            except OSError:
                continue
            d = {"name": name, "size": st.st_size, "mtime": st.st_mtime}
            m = _WORKER_LOG.match(name)
            if m:
                d["worker_id"], d["pid"] = m.group(1), int(m.group(2))
            out.append(d)
        return out

    def call_log_read(self, conn, node, name, offset, max_bytes):
        """The "log_read" call: bytes [offset, offset + max_bytes) of log file
        `name` of `node` (offset < 0: from the end)."""
        if not node or node == self.me:
            return self.read_log(name, offset, max_bytes)
        return self.om.query(node, {"op": "log_read", "name": name, "offset": offset,
                                    "max_bytes": max_bytes}, PEER_TIMEOUT_S)

    def read_log(self, name, offset, max_bytes) -> dict:
        if not isinstance(name, str) or os.path.basename(name) != name or \
                name.startswith("."):
            return {"error": f"{name!r} is not the name of a log file"}
        path = os.path.join(self.logs_dir, name)
        self.pool.flush_logs()
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = max(0, size + offset) if offset < 0 else min(offset, size)
                f.seek(start)
                data = f.read(max(0, min(int(max_bytes), LOG_READ_MAX)))
        except OSError as e:
            return {"error": f"{name}: {e.strerror or e}"}
        return {"data": data, "size": size, "offset": start}

    # ------------------------------------------------------------------ tasks
    def _all_tasks(self) -> dict:
        """task id -> Task of every task this node knows that has not ended."""
        out = {}
        for t in self.sched.all_tasks():
            out[t.spec.task_id] = t
        for t, _node in self.om.forwarded_tasks():
            out.setdefault(t.spec.task_id, t)
        for t in self.cs.waiting_calls():
            out.setdefault(t.spec.task_id, t)
        return out

    def _find_task(self, task_id):
        t = self.sched.task(task_id)
        if t is not None:
            return t
        for t, _node in self.om.forwarded_tasks():
            if t.spec.task_id == task_id:
                return t
        for t in self.cs.waiting_calls():
            if t.spec.task_id == task_id:
                return t
        return None

    def _worker_of(self, t):
        """The Worker that runs `t` (actor calls: their actor's), or None."""
        if t.worker is not None:
            return t.worker
        if t.spec.actor_id is not None:
            a = self.actors.actor(t.spec.actor_id)
            if a is not None:
                return a.worker
        return None

    def tasks_rows(self, detail):
        rows = []
        for t in self._all_tasks().values():
            w = self._worker_of(t) if t.spec.kind == P.ACTOR_TASK else None
            rows.append(task_row(t, self.me, w, self.reason(t, causes=3), detail))
        return rows

    def reason(self, t, causes=0):
        """Why `t` is not running (None if it runs), with who holds what it
        waits for; with `causes` > 0, also why what it waits for waits (that
        many levels: the argument's task, the actor's creation)."""
        if t.spec.kind == P.ACTOR_TASK:
            r = self.actors.call_reason(t)
        elif t.state is TS.RUNNING:
            return None
        else:
            r = self.sched.pending_reason(t)
        r = self._enrich(r)
        if r is not None and causes > 0:
            nxt = self._waits_for(t, r)
            if nxt is not None and nxt is not t:
                cause = self.reason(nxt, causes - 1)
                if cause is not None:
                    r["cause"] = cause
                    r["text"] = describe(r)
        return r

    def _waits_for(self, t, r):
        """The task `t` waits on, by its reason: the maker of its argument, its
        actor's creation; None if none (or not on this node)."""
        code = r["code"]
        if code == Reason.WAITING_FOR_ARGS and r.get("task_id"):
            return self._find_task(bytes.fromhex(r["task_id"]))
        if code in (Reason.WAITING_FOR_ACTOR_CREATION, Reason.WAITING_FOR_ACTOR_RESTART):
            a = self.actors.actor(t.spec.actor_id)
            return a.creation_task if a is not None else None
        return None

    # who holds resources: (ResourceSet, holder dict), computed once per query
    def _holder_list(self):
        if self._holders is None:
            hs = self.sched.resource_holders() + self.actors.resource_holders()
            for pg in self.pgs.all():
                if pg.state is not PGState.CREATED:
                    continue
                res = collections.Counter()
                for b in pg.bundles:
                    if b.resources is not None:
                        res.update(b.request)
                if res:
                    hs.append((self.resources, {
                        "kind": "placement_group", "name": pg.name or pg.pg_id.hex()[:12],
                        "id": pg.pg_id.hex(), "resources": dict(res)}))
            self._holders = hs
        return self._holders

    def _pool_of(self, r):
        """The ResourceSet a WAITING_FOR_RESOURCES reason is about."""
        if r.get("bundle") is None:
            return self.resources
        pg = self.pgs.get(bytes.fromhex(r["placement_group_id"]))
        if pg is None or r["bundle"] >= len(pg.bundles):
            return None
        return pg.bundles[r["bundle"]].resources

    def _enrich(self, r):
        if r is None:
            return None
        code = r["code"]
        if code == Reason.WAITING_FOR_RESOURCES or code == Reason.PLACEMENT_GROUP_WAITING:
            pool = self._pool_of(r)
            short = {k for k, v in (r.get("required") or {}).items()
                     if v > (r.get("available") or {}).get(k, 0.0) + 1e-9}
            r["held_by"] = [h for p, h in self._holder_list() if p is pool and
                            short & set(h["resources"])]
            r["text"] = describe(r)
        elif code == Reason.WAITING_FOR_ARGS:
            oid = bytes.fromhex(r["object_id"])
            maker = self._find_task(ids.task_of(oid))
            if maker is not None:
                r["task_id"] = maker.spec.task_id.hex()
                r["task_name"] = maker.spec.name
            elif ids.is_put_object(oid):
                r["task_name"] = "put()"
            r["text"] = describe(r)
        elif code == Reason.WAITING_FOR_PLACEMENT_GROUP and r.get("cause"):
            r["cause"] = self._enrich(r["cause"])
            r["text"] = describe(r)
        return r

    # ------------------------------------------------------------------ actors
    def actors_rows(self, detail):
        rows = []
        for a in self.actors.all_actors():
            opts = a.creation_spec.actor_options or {}
            ct = a.creation_task
            state = a.state
            r = None
            if state in ("PENDING_CREATION", "RESTARTING") and ct is not None:
                r = self.reason(ct, causes=3) if ct.state is not TS.RUNNING else None
                if state == "PENDING_CREATION" and ct.state is TS.WAITING_FOR_ARGS:
                    state = "DEPENDENCIES_UNREADY"
            sched = a.creation_spec.scheduling
            row = {
                "actor_id": a.actor_id.hex(), "class_name": a.class_name, "state": state,
                "job_id": a.job_id.hex(), "name": a.name or "", "node_id": self.me,
                "pid": a.worker.pid if a.worker is not None else None,
                "ray_namespace": a.namespace, "pending_reason": r,
                "worker_id": a.worker.worker_id.hex() if a.worker is not None else None,
            }
            if detail:
                row.update({
                    "required_resources": dict(a.resources or a.creation_spec.resources),
                    "death_cause": {"message": a.death_cause} if a.death_cause else None,
                    "is_detached": a.detached,
                    "placement_group_id": sched[1].hex() if sched and sched[0] == "PG"
                    else None,
                    "repr_name": "", "num_restarts": a.num_restarts,
                    "call_site": opts.get("call_site"),
                    "max_concurrency": a.max_concurrency,
                    "num_pending_calls": len(a.queue) + len(a.inflight)})
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ objects
    def objects_rows(self, detail):
        holders = collections.defaultdict(list)   # oid -> [(role, pid)]
        for role, pid, refs, _pins in self.client_refs():
            for oid in refs:
                holders[oid].append((role, pid))
        task_held = {oid for oid, _who in self.sched.held_refs()}
        contained = set()
        objs = self.store.all_objects()
        for o in objs:
            contained.update(o.contained)
        rows = []
        for o in objs:
            oid = o.oid
            hs = holders.get(oid, ())
            ref = ("PINNED_IN_MEMORY" if o.pins else "LOCAL_REFERENCE" if hs else
                   "USED_BY_PENDING_TASK" if oid in task_held else
                   "CAPTURED_IN_OBJECT" if oid in contained else "UNKNOWN_STATUS")
            maker = self.sched.task(ids.task_of(oid)) if not ids.is_put_object(oid) \
                else None
            status = ray_state(maker) if maker is not None else (
                "FINISHED" if o.state in (ObjState.SEALED, ObjState.SPILLED) and
                not ids.is_put_object(oid) else "NIL")
            role, pid = hs[0] if hs else ("worker", None)
            row = {"object_id": oid.hex(), "object_size": o.size, "task_status": status,
                   "reference_type": ref, "call_site": "disabled",
                   "type": "DRIVER" if role == "driver" else "WORKER", "pid": pid,
                   "ip": self.ip, "node_id": self.me, "state": o.state.value}
            if detail:
                row.update({
                    "where": ("inline" if o.data is not None else
                              "spilled" if o.state is ObjState.SPILLED else
                              "arena" if o.in_arena else "-"),
                    "refcount": o.refcount, "pins": o.pins,
                    "holders": [f"{r} pid={p}" for r, p in hs]})
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ workers
    def workers_rows(self, detail):
        rows = []

        def row(wid, alive, wtype, pid, exit_type=None, exit_detail=None, started=None,
                ended=None, **extra):
            r = {"worker_id": wid, "is_alive": alive, "worker_type": wtype,
                 "exit_type": exit_type, "node_id": self.me, "ip": self.ip, "pid": pid,
                 **extra}
            if detail:
                r.update({"exit_detail": exit_detail,
                          "worker_launch_time_ms": started, "start_time_ms": started,
                          "end_time_ms": ended})
            rows.append(r)

        def current(w):
            t = w.task
            return {"state": w.state.value,
                    "task_id": t.spec.task_id.hex() if t is not None else None,
                    "actor_id": w.actor.actor_id.hex() if w.actor is not None else None,
                    "job_id": w.job_id.hex() if w.job_id else None}
        for w in self.pool.all():
            row(w.worker_id.hex(), True, "WORKER", w.pid,
                started=int((w.started_at + _WALL) * 1000), **current(w))
        for w, how, when in self.pool.ended():
            row(w.worker_id.hex(), False, "WORKER", w.pid,
                exit_type="INTENDED_SYSTEM_EXIT" if how is None else "SYSTEM_ERROR",
                exit_detail=how or "ended by its raylet (idle, killed or its actor "
                "ended)", started=int((w.started_at + _WALL) * 1000),
                ended=int(when * 1000), state="DEAD", task_id=None, actor_id=None,
                job_id=w.job_id.hex() if w.job_id else None)
        for d in self.drivers():
            row(None, True, "DRIVER", d["pid"], state="DRIVER", task_id=None,
                actor_id=None, job_id=d["job_id"])
        return rows

    # ------------------------------------------------------------------ placement groups
    def placement_groups_rows(self, detail):
        rows = []
        for pg in self.pgs.all():
            r = self._enrich(self.constraints.group_reason(pg))
            row = {"placement_group_id": pg.pg_id.hex(), "name": pg.name or "",
                   "creator_job_id": pg.job_id.hex() if pg.job_id else None,
                   "state": pg.state.value, "pending_reason": r,
                   "strategy": pg.strategy}
            if detail:
                row.update({
                    "bundles": [{"bundle_id": b.index, "unit_resources": dict(b.request),
                                 "node_id": (pg.nodes[b.index] if pg.nodes else self.me)
                                 if pg.state is PGState.CREATED else None}
                                for b in pg.bundles],
                    "is_detached": bool(pg.detached),
                    "stats": {"scheduling_state": pg.state.value}})
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ demand
    def demand_reasons(self, demand: list) -> list:
        """The heartbeat's demand entries (LocalScheduler.heartbeat_demand), each
        with the reason of the first task of its kind waiting here ("reason": the
        task and its reason's text): `beamlet status` shows it.  Costs one reason per queue (a
        resource shape), not one per task."""
        self._holders = None
        texts = {}
        for t in self.sched.queue_heads():
            key = repr(sorted(t.spec.resources.items()))
            if key not in texts:
                r = self.reason(t, causes=1)
                if r is not None:
                    texts[key] = f"{self._label(t)} {r['text']}"
        for d in demand:
            text = texts.get(repr(sorted(d["resources"].items())))
            if text:
                d["reason"] = text
        return demand

    # ------------------------------------------------------------------ explain
    def call_explain(self, conn, oids):
        """The "explain" call: what a get/wait on `oids` waits for (a coroutine:
        a chain may lead to other nodes)."""
        return self.explain(oids)

    async def explain(self, oids) -> dict:
        self._holders = None
        pending = [oid for oid in oids if not self._ready(oid)]
        if not pending:
            return {"stuck": False, "text": "every object is ready", "steps": []}
        steps = await self._object_chain(pending[0], [], 0)
        steps = self._close_cycle(steps)
        root = steps[-1]["reason"] if steps else reason(Reason.UNKNOWN)
        stuck = not self._progress(root)
        more = f" (and {len(pending) - 1} more not ready)" if len(pending) > 1 else ""
        text = "; ".join(f"{s['label']} {s['reason']['text']}" for s in steps)
        return {"stuck": stuck, "text": text + more, "steps": steps}

    def _ready(self, oid) -> bool:
        o = self.store.get(oid)
        return o is not None and o.state in (ObjState.SEALED, ObjState.SPILLED)

    @staticmethod
    def _progress(r) -> bool:
        """Whether a chain's root is work that goes on (not stuck)."""
        if is_progress(r):
            return True
        if r["code"] in (Reason.WAITING_FOR_RESOURCES, Reason.PLACEMENT_GROUP_WAITING):
            # running tasks (or actors being constructed) free resources when done
            return any(h["kind"] == "task" or h.get("creating")
                       for h in r.get("held_by") or ())
        return False

    def _label(self, t) -> str:
        spec = t.spec
        name = f"{spec.name}.__init__" if spec.kind == P.ACTOR_CREATION_TASK else spec.name
        return f"{name} ({_LABELS[spec.kind]})"

    def _step(self, t, r, **extra) -> dict:
        return {"label": self._label(t), "task_id": t.spec.task_id.hex(),
                "actor_id": t.spec.actor_id.hex() if t.spec.actor_id else None,
                "node_id": self.me, "reason": r, **extra}

    async def _object_chain(self, oid, path, depth) -> list:
        """The steps of what object `oid` (not ready here) waits for."""
        if self._ready(oid):
            return []
        t = None if ids.is_put_object(oid) else self._find_task(ids.task_of(oid))
        if t is not None:
            return await self._task_chain(t, path, depth)
        node = self.om.source_of(oid)
        if node is not None:
            return await self._remote(node, {"op": "explain_object",
                                             "object_id": oid.hex(), "path": path})
        what = "it was made by put() on another node" if ids.is_put_object(oid) else \
            "no task of this node makes it"
        return [{"label": f"ObjectRef({oid.hex()[:16]}..)", "task_id": None,
                 "actor_id": None, "node_id": self.me,
                 "reason": reason(Reason.UNKNOWN, message=f"is not here and {what} "
                                  f"(its owner may have left the cluster)")}]

    async def _remote(self, node, query) -> list:
        try:
            ans = await self.om.query(node, query, PEER_TIMEOUT_S)
        except Exception as e:
            return [{"label": f"node {node[:12]}", "task_id": None, "actor_id": None,
                     "node_id": node, "reason": reason(
                         Reason.UNKNOWN, message=f"did not answer ({e!r}): the rest of "
                         f"the chain is on it")}]
        return ans.get("steps") or []

    async def _explain_peer_task(self, task_id, path):
        self._holders = None
        t = self._find_task(task_id)
        if t is None:
            return {"steps": [{"label": f"task {task_id.hex()[:16]}", "task_id":
                               task_id.hex(), "actor_id": None, "node_id": self.me,
                               "reason": reason(Reason.UNKNOWN, message="is not known "
                                                f"on node {self.me[:12]}")}]}
        return {"steps": await self._task_chain(t, path, len(path))}

    async def _explain_peer_object(self, oid, path):
        self._holders = None
        return {"steps": await self._object_chain(oid, path, len(path))}

    async def _task_chain(self, t, path, depth) -> list:
        tid = t.spec.task_id.hex()
        if tid in path:
            return [{"cycle_to": tid}]
        if depth >= MAX_DEPTH:
            return [self._step(t, reason(Reason.UNKNOWN, message="... (the chain is "
                                         "longer: cut here)"))]
        path = path + [tid]
        kind = t.spec.kind
        node = self.om.forwarded_to(t.spec.task_id)
        if t.state is TS.FORWARDED and node is not None:
            failing = self.om.unreachable_for(node)
            if failing is not None:
                # still in the outbox: the node's link does not open (yet)
                return [self._step(t, reason(Reason.FORWARDED, node_id=node,
                                             unreachable_s=round(failing, 1)))]
            return await self._remote(node, {"op": "explain_task", "task_id": tid,
                                             "path": path[:-1]})
        r = self.reason(t)
        if r is None:
            # it runs: progress, unless its worker waits in get/wait itself
            w = self._worker_of(t)
            waits = self.store.waiting_on(w.conn) if w is not None and w.conn else []
            if not waits:
                return [self._step(t, reason(Reason.RUNNING,
                                             pid=w.pid if w is not None else None))]
            call, missing = waits[0]
            step = self._step(t, reason(Reason.BLOCKED_IN_GET, pid=w.pid, call=call,
                                        object_id=missing[0].hex()))
            return [step] + await self._object_chain(missing[0], path, depth + 1)
        step = self._step(t, r)
        code = r["code"]
        rest = []
        if code == Reason.WAITING_FOR_ARGS:
            rest = await self._object_chain(bytes.fromhex(r["object_id"]), path,
                                            depth + 1)
        elif code in (Reason.QUEUED_BEHIND_ACTOR_CALLS, Reason.WAITING_FOR_ACTOR_CREATION,
                      Reason.WAITING_FOR_ACTOR_RESTART) and kind == P.ACTOR_TASK:
            a = self.actors.actor(t.spec.actor_id)
            if a is not None:
                nxt = self.actors.running_calls(a) if code == \
                    Reason.QUEUED_BEHIND_ACTOR_CALLS else [a.creation_task]
                nxt = [x for x in nxt if x is not None]
                if nxt:
                    rest = await self._task_chain(nxt[0], path, depth + 1)
        elif code == Reason.FORWARDED and r.get("node_id"):
            rest = await self._remote(r["node_id"], {"op": "explain_task", "task_id": tid,
                                                     "path": path[:-1]})
            if rest:
                return rest     # the node that runs it describes it
        return [step] + rest

    def _close_cycle(self, steps) -> list:
        """A chain that came back to one of its own tasks is a deadlock: its
        last step says so, naming the cycle."""
        if not steps or "cycle_to" not in steps[-1]:
            return steps
        back = steps.pop()["cycle_to"]
        start = next((i for i, s in enumerate(steps) if s.get("task_id") == back), 0)
        cycle = steps[start:]
        actors = {s.get("actor_id") for s in cycle}
        if len(actors) == 1 and None not in actors:
            waiting = next((s for s in cycle if s["reason"]["code"] ==
                            Reason.BLOCKED_IN_GET), cycle[0])
            called = next((s for s in cycle if s is not waiting), cycle[-1])
            a = self.actors.actor(bytes.fromhex(cycle[0]["actor_id"]))
            r = reason(Reason.ACTOR_SELF_CALL,
                       class_name=cycle[0]["label"].split(".")[0],
                       waiting=waiting["label"].split(" (")[0],
                       called=called["label"].split(" (")[0],
                       max_concurrency=a.max_concurrency if a is not None else 1)
        else:
            r = reason(Reason.DEADLOCK, cycle=[s["label"] for s in cycle] +
                       [cycle[0]["label"]])
        steps.append({"label": "this", "task_id": None, "actor_id": None,
                      "node_id": self.me, "reason": r})
        return steps

