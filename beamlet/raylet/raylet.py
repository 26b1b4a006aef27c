"""The raylet process: the asyncio shell that creates the node's components, wires
them together, and owns the client connections, the message handler table and
the loop.

    driver ──unix socket──┐                      ┌─ ObjectStore      objects.py
    worker ──unix socket──┤  Raylet (this shell) ├─ LocalScheduler   tasks.py
    worker ──unix socket──┘    Conn per client,  ├─ Actors           actors.py
                               handler table,    ├─ Constraints      constraints.py
    peer raylets ──tcp─────────────────────────▶ ├─ ObjectManager    object_manager.py
                               tick (heartbeat)  ├─ ClusterScheduler cluster_scheduling.py
                                                 ├─ Streams          streams.py
                                                 ├─ NodeTable        node_table.py
                                                 ├─ WorkerPool       worker_pool.py
                                                 ├─ MemoryMonitor    memory_monitor.py
                                                 ├─ GcsWriter        gcs_writer.py
                                                 └─ Introspection    introspection.py

Each component owns its state and declares the methods others may call
(INTERFACE); the shell hands each one the components it uses (`wire`) and
routes every client message to the component it belongs to (`handlers`), in
arrival order, each handled to completion on the loop.  Replies are queued on
the connection and written once per loop turn (coalesced).  The drawing of
the components and their calls: docs/architecture.md.

Owns: the client connections (Conn: a driver's or worker's socket, and the
  refs and pins it holds), the drivers by job, the function, sys.path and
  runtime environment caches served to workers, the calls answered later (those
  that ask other nodes), startup and shutdown.
Uses: every component, through its INTERFACE.
Messages: HELLO and CALL (the calls table: some calls are answered here,
  the others go to their component); every other message goes to the
  component in `handlers`.
"""
import argparse
import asyncio
import collections
import gc
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback

from .._private import config, ids, process
from .._private import protocol as P
from ..gcs import keys
from ..gcs.client import GcsClient
from .actors import Actors
from .cluster_scheduling import ClusterScheduler
from .common import log
from .constraints import Constraints
from .gcs_writer import GcsWriter
from .memory_monitor import MemoryMonitor
from .introspection import Introspection
from .metrics import MetricsExporter
from .node_table import NodeTable
from .object_manager import ObjectManager
from .objects import ObjectStore
from .placement_groups import PlacementGroups
from .scheduler import ResourceSet
from .streams import Streams
from .tasks import LocalScheduler
from .worker_pool import WorkerPool

# a fenced node whose loop does not run the fence within this long is fenced
# from the heartbeat thread
FENCE_LOOP_WAIT_S = 5.0


class Conn(asyncio.Protocol):
    """One client connection (a driver or a worker)."""

    def __init__(self, handlers, loop, on_lost):
        self.handlers = handlers
        self.loop = loop
        self.on_lost = on_lost
        self.transport = None
        self.reader = P.FrameReader()
        self.out = []
        self.flush_pending = False
        self.role = None
        self.client_id = None    # the process's worker id (HELLO)
        self.pid = None
        self.job_id = b""
        self.worker = None
        self.refs = collections.Counter()   # oid -> refs this client holds
        self.pins = collections.Counter()   # oid -> arena views it holds
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        handle = self.handlers
        reader = self.reader
        for msg in reader.feed(data):
            try:
                handle[msg[0]](self, msg)
            except Exception:
                log("error handling", P.NAMES[msg[0]] if 0 <= msg[0] < len(P.NAMES)
                    else msg[0], traceback.format_exc())
        if reader.error is not None and not self.closed:
            # a frame over the cap (or garbage): nothing is buffered for it; the
            # client hears why before the connection closes
            why = f"{reader.error}; the raylet closed this connection"
            log(f"client pid={self.pid} ({self.role}):", why)
            if self.out:
                self.flush()
            self.transport.write(P.frame([P.CLOSING, why]))
            self.transport.close()

    def connection_lost(self, exc):
        self.closed = True
        self.on_lost(self)

    def send(self, msg):
        if self.closed:
            return
        self.out.append(msg)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self):
        self.flush_pending = False
        if self.out and not self.closed:
            msgs, self.out = self.out, []
            self.transport.write(P.frames(msgs))


class Raylet:
    def __init__(self, args):
        self.args = args
        self.node_id = bytes.fromhex(args.node_id) if args.node_id else ids.random_id(16)
        self.session_dir = args.session_dir
        self.socket_path = args.socket
        self.loop = None
        self.clients = set()
        self.by_client_id = {}   # worker id of a driver or worker -> its Conn
        self.drivers = {}        # job_id -> Conn
        self.functions = {}      # fn key -> blob cache (served to workers)
        self.job_sys_paths = {}  # job id -> its driver's sys.path (json)
        self.runtime_envs = {}   # runtime env key -> its JSON text (from the GCS)
        self.stopping = False
        self.gcs = GcsClient(args.redis_host, args.redis_port, args.redis_password)

        # --- the components (each file's docstring says what it owns and uses)
        node = self.node_id
        # pure state shared by those that hand out this node's resources
        self.resources = ResourceSet(json.loads(args.resources))
        self.pgs = PlacementGroups(self.resources)
        self.gcsw = GcsWriter(self.gcs, node, config.GCS_FLUSH_S)
        cpus = max(int(self.resources.total.get("CPU", 1)), 1)
        self.pool = WorkerPool(self.socket_path, self.session_dir, node, keep_idle=cpus,
                               soft_limit=config.WORKER_SOFT_LIMIT or max(8, 2 * cpus))
        self.store = ObjectStore(node, self.session_dir, args.object_store_memory,
                                 spill_dir=args.spill_dir)
        # kills the newest retriable task's worker when the node runs low on memory
        self.memory = MemoryMonitor(node)
        self.sched = LocalScheduler(self.resources, self.session_dir)
        self.actors = Actors(node)
        self.constraints = Constraints(node, self.resources, self.pgs)
        self.node_table = NodeTable(node, (args.redis_host, args.redis_port,
                                           args.redis_password))
        self.fencing = threading.Lock()   # held by the one fence() that runs
        # cross-node work (forwarding, pulls, remote refs): object_manager.py
        self.om = ObjectManager(node, args.redis_password.encode(), args.node_ip,
                                getattr(args, "peer_port", 0) or 0)
        # cross-node scheduling (remote actors, strategies, placement groups)
        self.cs = ClusterScheduler(node)
        # the values generator tasks yield, handed to their consumers
        self.streams = Streams()
        # the state API, pending reasons, stuck diagnoses
        self.intro = Introspection(node, args.node_ip,
                                   os.path.join(self.session_dir, "logs"))
        # the node's metrics endpoint (Prometheus text)
        self.metrics = MetricsExporter(node, args.redis_password, args.metrics_export_host,
                                       args.metrics_export_port)

        # --- who calls whom
        store, sched, actors, cons, om, cs, gcsw = (
            self.store, self.sched, self.actors, self.constraints, self.om, self.cs,
            self.gcsw)
        self.pool.wire(gcs=gcsw, on_start_failed=sched.workers_fail_to_start,
                       env_of=self.runtime_env_of)
        self.memory.wire(pool=self.pool, gcs=gcsw)
        store.wire(gcs=gcsw, node_table=self.node_table, om=om, sched=sched,
                   actors=actors, cs=cs, client=self.by_client_id.get)
        sched.wire(store=store, pool=self.pool, actors=actors, constraints=cons, om=om,
                   cs=cs, node_table=self.node_table, gcs=gcsw, pgs=self.pgs,
                   streams=self.streams)
        self.streams.wire(store=store, sched=sched, om=om)
        actors.wire(store=store, sched=sched, pool=self.pool, cs=cs, gcs=gcsw,
                    gcs_client=self.gcs)
        cons.wire(sched=sched, store=store, actors=actors, cs=cs,
                  node_table=self.node_table, gcs=gcsw)
        self.node_table.wire(on_death=om.node_died, on_fenced=self.fence)
        self.metrics.wire(sched=sched, pool=self.pool, store=store,
                          resources=self.resources)
        om.wire(node_table=self.node_table, store=store, sched=sched, cs=cs,
                resources=self.resources, gcs=gcsw, gcs_client=self.gcs,
                streams=self.streams, on_state=self.intro.on_peer_state)
        self.intro.wire(sched=sched, actors=actors, store=store, pool=self.pool,
                        constraints=cons, pgs=self.pgs, cs=cs, om=om,
                        node_table=self.node_table, resources=self.resources,
                        drivers=self.driver_list, client_refs=self.client_refs)
        cs.wire(node_table=self.node_table, om=om, sched=sched, actors=actors,
                constraints=cons, store=store, resources=self.resources, pgs=self.pgs,
                gcs=gcsw, gcs_client=self.gcs)

        # --- the messages of clients, and the calls (protocol.py), by component
        self.handlers = {
            P.HELLO: self.on_hello, P.SUBMIT: sched.on_submit, P.PUT: store.on_put,
            P.CREATE: store.on_create, P.SEAL: store.on_seal, P.GET: store.on_get,
            P.WAIT: store.on_wait, P.REF_ADD: store.on_ref_add,
            P.REF_DEL: store.on_ref_del, P.UNPIN: store.on_unpin, P.DONE: sched.on_done,
            P.CALL: self.on_call, P.RETURNED: sched.on_returned,
            # direct actor calls (worker/direct.py)
            P.DIRECT_ASK: actors.on_direct_ask, P.DIRECT_READY: actors.on_direct_ready,
            P.ACTOR_EXIT: actors.on_actor_exit, P.RESUBMIT: sched.on_resubmit,
            P.OWN: store.on_own, P.FULFIL: store.on_fulfil,
            P.REGISTER: store.on_register, P.BLOCK: sched.on_block,
            P.UNBLOCK: sched.on_unblock,
            P.ITEM: self.streams.on_item, P.GEN_NEXT: self.streams.on_gen_next,
            P.GEN_DROP: self.streams.on_gen_drop,
            P.METRICS: self.metrics.on_metrics,
        }
        self.calls = {
            "resources": self.call_resources, "fetch_function": self.call_fetch_function,
            "kill_actor": actors.call_kill_actor, "cancel": sched.call_cancel,
            "job_sys_path": self.call_job_sys_path,
            "runtime_env": self.call_runtime_env,
            "memory": self.call_memory, "actor_state": actors.call_actor_state,
            "status": self.call_status, "pg_create": cons.call_pg_create,
            "pg_remove": cons.call_pg_remove, "pg_table": cons.call_pg_table,
            "ping": lambda conn: "pong",
            "testing_block_loop": self.call_testing_block_loop,
            "state": self.intro.call_state, "explain": self.intro.call_explain,
            "logs": self.intro.call_logs, "log_read": self.intro.call_log_read,
        }
        self.call_tasks = set()  # calls answered later (they ask other nodes)

    # ------------------------------------------------------------------ startup
    async def main(self):
        self.loop = asyncio.get_running_loop()
        self.pool.start(self.loop)
        self.memory.start(self.loop)
        self.sched.start(self.loop)
        self.store.start(self.loop)
        self.streams.start(self.loop)
        self.stopped = self.loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop, f"signal {sig}")
        if self.args.owner_pid:
            self.watch_owner(self.args.owner_pid)
        await self.metrics.start()
        peer_port = await self.om.start()
        # the view of the other nodes first: ALIVE in the GCS means ready.  It
        # waits for the GCS (up to GCS_RECONNECT_TIMEOUT_S): a stop meanwhile (the
        # owner died, a signal) ends the raylet at once, not after that wait
        view = self.loop.create_task(self.node_table.start(self.loop))
        await asyncio.wait({view, self.stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not view.done():
            view.cancel()
            await asyncio.gather(view, return_exceptions=True)
            self.metrics.close()
            self.om.close()
            self.memory.close()
            self.shutdown()
            return
        view.result()
        # the record is complete when it is announced (peer port included): every
        # raylet counts this node from its first heartbeat on
        self.gcsw.register_node({
            "address": self.args.node_ip, "socket": self.socket_path,
            "hostname": socket.gethostname(), "pid": os.getpid(), "state": "ALIVE",
            "resources_total": self.resources.total,
            "resources_available": self.resources.snapshot(), "demand": [],
            "peer_port": peer_port,
            "object_store_memory": self.store.arena_size, "started_at": time.time(),
            "session_dir": self.session_dir, "is_head": int(self.args.head),
            "metrics_export_port": self.metrics.port})
        self.gcsw.start_heartbeats(self.loop, self.fenced_elsewhere)
        # the socket last: a process that can connect finds the node registered
        # (its record in the GCS, its view of the others)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        server = await self.loop.create_unix_server(
            lambda: Conn(self.handlers, self.loop, self.client_lost), self.socket_path)
        os.chmod(self.socket_path, 0o600)   # only the cluster's user may connect
        for _ in range(self.args.prestart):
            self.pool.start_worker()
        ticker = self.loop.create_task(self.tick())
        # tell the starter we are ready
        print("RAYLET_READY", flush=True)
        try:
            await self.stopped
        finally:
            ticker.cancel()
            server.close()
            self.metrics.close()
            self.om.close()
            self.memory.close()
            self.gcsw.node_stopped()
            self.pool.kill_all()
            # what the workers wrote before they ended may still be in their
            # pipes: read it (bounded), so that it reaches the drivers (published
            # by the write-behind's last flush, in shutdown) and the log files
            await self.pool.drain_output(config.WORKER_OUTPUT_DRAIN_S)
            self.shutdown()
            # every coroutine we started ends with us: cancel and await them
            pending = [ticker, *self.pool.output_tasks(), *self.call_tasks]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def watch_owner(self, pid):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            if not process.pid_alive(pid):
                self.stop("owner already dead")
            return

        def gone():
            self.loop.remove_reader(fd)
            os.close(fd)
            self.stop(f"owner process {pid} exited")
        self.loop.add_reader(fd, gone)

    def stop(self, why=""):
        if not self.stopping:
            self.stopping = True
            log("raylet stopping:", why)
            if not self.stopped.done():
                self.stopped.set_result(None)

    def shutdown(self):
        """The end (after the workers were killed and their output read)."""
        self.node_table.close()
        self.gcsw.close()
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        self.store.close()

    async def tick(self):
        """Load reports, reaping idle workers, expiring creates, infeasible
        warnings (the heartbeat itself is a thread: gcs_writer.py)."""
        while True:
            await asyncio.sleep(config.HEARTBEAT_S)
            self.om.tick()
            self.cs.tick()
            self.actors.tick()
            self.gcsw.report_load(self.resources.snapshot(),
                                  self.intro.demand_reasons(self.sched.heartbeat_demand()),
                                  self.store.used())
            self.gcsw.flush_task_events()
            self.pool.check()
            self.store.expire_creates()
            self.sched.warn_infeasible()

    # ------------------------------------------------------------------ fencing
    def fenced_elsewhere(self, why):
        """(the heartbeat thread) This node was declared dead: fence it on the
        loop; if the loop does not get to it (it is stuck: the reason this node
        went silent, perhaps), fence it from here."""
        try:
            self.loop.call_soon_threadsafe(self.fence, why)
        except RuntimeError:
            return      # the loop is closed: the raylet is ending anyway
        time.sleep(FENCE_LOOP_WAIT_S)
        self.fence(why)

    def fence(self, why):
        """This node came back after the cluster declared it dead: its tasks and
        actors were placed again elsewhere and its objects counted lost, so none
        of its state may be used any more.  Kill its workers, drop its objects
        and, unless FENCED_NODE_REJOINS is off, start again in this process as a
        new node (a new node id: peers refuse the old one); else exit."""
        if self.stopping or not self.fencing.acquire(blocking=False):
            return
        rejoin = config.FENCED_NODE_REJOINS
        log(f"FENCED: {why}. Node {self.node_id.hex()} kills its workers and drops "
            f"its objects; " + ("it rejoins the cluster as a new node." if rejoin else
                                "the raylet exits (FENCED_NODE_REJOINS is off)."))
        self.gcsw.discard()
        self.node_table.close()
        process.kill_children()
        try:
            self.store.close()
            os.unlink(self.socket_path)
        except Exception:
            pass
        if rejoin:
            argv = rejoin_argv(sys.orig_argv, ids.random_id(16).hex(),
                               process.inheritable_secret(self.args.redis_password))
            os.execv(sys.executable, argv)
        os._exit(3)

    # ------------------------------------------------------------------ clients
    def on_hello(self, conn, msg):
        _, version, role, worker_id, pid, job_id = msg
        if version != P.VERSION:
            conn.send([P.REPLY, 0, {"error": f"protocol version {version} != {P.VERSION}"}])
            return
        conn.role, conn.pid, conn.job_id = role, pid, job_id
        conn.client_id = worker_id
        self.clients.add(conn)
        self.by_client_id[worker_id] = conn
        if role == "worker":
            w = self.pool.get(worker_id)
            if w is None:
                conn.send([P.EXIT, "unknown worker"])
                return
            conn.worker = w
            self.pool.connected(w, conn)
        elif role == "driver" and job_id:
            self.drivers[job_id] = conn
        conn.send([P.REPLY, 0, {
            "node_id": self.node_id, "arena_path": self.store.arena_path,
            "arena_size": self.store.arena_size, "session_dir": self.session_dir,
            "redis": [self.args.redis_host, self.args.redis_port,
                      self.args.redis_password],
            "node_ip": self.args.node_ip, "raylet_pid": os.getpid(),
            "inline_threshold": config.INLINE_THRESHOLD,
        }])
        if role == "worker":
            self.sched.request_schedule()

    def client_lost(self, conn):
        self.clients.discard(conn)
        if self.by_client_id.get(conn.client_id) is conn:
            del self.by_client_id[conn.client_id]
        w = conn.worker
        how = None
        if w is not None:
            how = self.pool.lost(w)
            if how is not None:     # (None: removed on purpose, reaped)
                self.sched.worker_lost(w, how)
        self.store.release_holder(conn)
        self.streams.holder_lost(conn)      # the generators it consumed
        self.metrics.client_lost(conn)
        if w is not None:
            # what the process owned dies with it (as in Ray): the objects it
            # put, the actors it created
            self.store.owner_died(w, how)
            self.actors.owner_died(w)
        if conn.role == "driver" and self.drivers.get(conn.job_id) is conn:
            del self.drivers[conn.job_id]
            # the job's record says it ended (the state API's list_jobs)
            self.gcsw.put("hset", keys.job(conn.job_id), mapping={
                "state": "SUCCEEDED", "end_time": time.time()})
            # the driver left: its tasks stop and its non-detached actors die
            # with it, on every node (detached actors stay)
            self.actors.job_finished(conn.job_id)
            self.cs.job_finished(conn.job_id)
            self.sched.job_finished(conn.job_id)

    # ------------------------------------------------------------------ calls
    def on_call(self, conn, msg):
        _, req, method, args = msg
        try:
            result = self.calls[method](conn, *args)
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        if asyncio.iscoroutine(result):
            # it waits for other nodes or the GCS: reply when it is done (owned here,
            # cancelled at shutdown)
            t = self.loop.create_task(self.call_later(conn, req, result))
            self.call_tasks.add(t)
            t.add_done_callback(self.call_tasks.discard)
            return
        if req:
            conn.send([P.REPLY, req, result])

    async def call_later(self, conn, req, coro):
        try:
            result = await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log("call failed:", traceback.format_exc())
            result = {"error": f"{type(e).__name__}: {e}"}
        if req:
            conn.send([P.REPLY, req, result])

    def off_loop(self, fn, *args):
        """`fn(*args)` in a thread (a GCS read: the loop never waits on Redis)."""
        return self.loop.run_in_executor(None, fn, *args)

    def driver_list(self) -> list:
        """The drivers connected here (the state API's workers of type DRIVER)."""
        return [{"pid": c.pid, "job_id": c.job_id.hex() if c.job_id else None}
                for c in self.clients if c.role == "driver"]

    def client_refs(self) -> list:
        """(role, pid, refs, pins) of every client connection (read only)."""
        return [(c.role, c.pid, c.refs, c.pins) for c in self.clients]

    def call_resources(self, conn):
        return {"total": self.resources.total, "available": self.resources.snapshot()}

    def call_fetch_function(self, conn, key):
        blob = self.functions.get(key)
        if blob is not None:
            return blob

        async def fetch():
            blob = await self.off_loop(self.gcs.fetch_function, key)
            if blob is not None:
                self.functions[key] = blob
            return blob
        return fetch()

    def call_job_sys_path(self, conn, job_id):
        """The driver's sys.path (json) of a job, for its workers."""
        cache = self.job_sys_paths
        if job_id in cache:
            return cache[job_id]

        async def read():
            raw = await self.off_loop(self.gcs.r.hget, keys.job(job_id), "sys_path")
            cache[job_id] = raw.decode() if raw else "[]"
            return cache[job_id]
        return read()

    def call_runtime_env(self, conn, key):
        """A runtime environment (JSON text, None if the GCS has none by that
        key), for a worker started for it."""
        text = self.runtime_envs.get(key)
        if text is None:
            text = self.gcs.get_runtime_env(key)
            if text is not None:
                self.runtime_envs[key] = text   # immutable: named by its content
        return text

    def runtime_env_of(self, key):
        """The runtime environment `key` as a dict (None if unknown): the worker
        pool reads its env_vars when it starts a worker for it."""
        text = self.call_runtime_env(None, key)
        return json.loads(text) if text else None

    def call_status(self, conn):
        return {"resources": self.call_resources(conn),
                "demand": self.sched.demand(),
                "infeasible": self.sched.infeasible_report(),
                "workers": self.pool.state_counts(),
                "workers_peak": self.pool.peak_count(),
                "tasks_sent_ahead": self.sched.sent_ahead_count(),
                "store": self.store.stats(), "memory": self.memory.report()}

    def call_testing_block_loop(self, conn, seconds):
        """Fault injection (BEAMLET_TESTING_HOOKS=1 only): hold the event loop for
        `seconds`, as a deadlocked or swamped loop would."""
        if not config.TESTING_HOOKS:
            raise PermissionError("testing hooks are off (BEAMLET_TESTING_HOOKS=1 "
                                  "turns them on)")
        time.sleep(float(seconds))
        return True

    def call_memory(self, conn):
        """Every object of this node with where it is and who keeps it alive
        (what `beamlet memory` prints)."""
        holders = collections.defaultdict(list)
        for c in self.clients:
            for oid, n in c.refs.items():
                holders[oid].append(f"{c.role} pid={c.pid}" + (f" x{n}" if n > 1 else ""))
        for oid, who in self.sched.held_refs():
            holders[oid].append(who)
        pinners = collections.defaultdict(list)
        for c in self.clients:
            for oid in c.pins:
                pinners[oid].append(c.pid)
        return self.store.memory_report(holders, pinners)

def rejoin_argv(argv, node_hex, secret_fd) -> list:
    """This raylet's command line with a new node id and the fd of a new pipe
    holding the cluster token (the old one was read and closed)."""
    argv = list(argv)
    for flag, value in (("--node-id", node_hex), (process.SECRET_FD_FLAG,
                                                   str(secret_fd))):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="beamlet-raylet",
                                 description="beamlet's per-node raylet (started by beamlet)")
    ap.add_argument("--node-id", default="")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--redis-host", default="127.0.0.1")
    ap.add_argument("--redis-port", type=int, required=True)
    # the cluster token comes through an inherited pipe, never argv (world-readable)
    ap.add_argument(process.SECRET_FD_FLAG, dest="redis_password_fd", type=int,
                    required=True, help="fd of a pipe holding the cluster token")
    ap.add_argument("--node-ip", default="127.0.0.1")
    ap.add_argument("--resources", default='{"CPU": 1}')
    ap.add_argument("--object-store-memory", type=int, required=True)
    ap.add_argument("--prestart", type=int, default=0)
    ap.add_argument("--owner-pid", type=int, default=0)
    ap.add_argument("--head", action="store_true")
    ap.add_argument("--peer-port", type=int, default=0,
                    help="TCP port for peer raylets (0: any free port)")
    ap.add_argument("--metrics-export-port", type=int, default=0,
                    help="TCP port of the node's metrics endpoint (0: any free port)")
    ap.add_argument("--metrics-export-host", default="127.0.0.1",
                    help="address the metrics endpoint listens on (default loopback)")
    ap.add_argument("--spill-dir", default="",
                    help="where to spill objects (default: the session's spill/)")
    args = ap.parse_args(argv)
    args.redis_password = process.read_secret(args.redis_password_fd)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.owner_pid:
        # owned by a driver (init()): die with our parent; `beamlet start` nodes
        # (owner 0) must outlive the CLI that started them
        process.set_pdeathsig()
    r = Raylet(args)
    # Every task allocates a few objects (Task, Obj, message lists) that live
    # until it ends, so with a default gen-0 threshold of 700 a burst of tasks
    # runs a collection every few hundred of them, each traversing all the
    # pending ones (measured: 1:1 actor calls ran 1.5x faster with the settings
    # below, see docs/performance.md).
    # Collect rarely instead (cycles are still collected); the modules and
    # objects made so far are never garbage: keep them out of every collection.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    asyncio.run(r.main())


if __name__ == "__main__":
    main()
