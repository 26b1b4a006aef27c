"""The raylet process: the asyncio shell around the local scheduler, the object
store and the worker pool of one node.

    driver ──unix socket──┐
    worker ──unix socket──┤  Raylet (one asyncio loop)
    worker ──unix socket──┘    ├─ ObjectTable (object_store.py, pure)
                               ├─ ResourceSet / ReadyQueue (scheduler.py, pure)
                               ├─ WorkerPool (worker_pool.py)
                               └─ GCS: node record, heartbeats, write-behind of
                                  task states and object locations (thread)

Every message from a client is handled to completion on the loop; replies are
queued on the connection and written once per loop turn (coalesced).
"""
import argparse
import asyncio
import collections
import concurrent.futures
import gc
import json
import mmap
import os
import signal
import socket
import sys
import time
import traceback

from .. import exceptions
from .._private import config, ids, process, serialization
from .._private import protocol as P
from ..gcs import keys
from ..gcs.client import GcsClient, WriteBehind
from .cluster_scheduling import ClusterScheduler
from .object_manager import ObjectManager
from .object_store import ObjectTable, ObjState
from .placement_groups import PlacementGroup, PlacementGroups, PGState
from .scheduler import ReadyQueue, ResourceSet, Task, TaskState
from .worker_pool import WorkerPool, WState

TS = TaskState


def desc_is_error(desc) -> bool:
    return bool(desc[2] if desc[0] == P.INLINE else desc[3])


# At most this many workers start at once (each costs ~0.1 s of CPU to boot).
MAX_STARTING = 8


def node_gpu_ids(pool, ids):
    """GPU ids of a pool (a placement-group bundle numbers its GPUs from 0) as the
    node's ids."""
    m = getattr(pool, "gpu_map", None)
    return [m[i] for i in ids] if m else ids


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class Conn(asyncio.Protocol):
    """One client connection (a driver or a worker)."""

    def __init__(self, raylet):
        self.raylet = raylet
        self.transport = None
        self.reader = P.FrameReader()
        self.out = []
        self.flush_pending = False
        self.role = None
        self.pid = None
        self.job_id = b""
        self.worker = None
        self.refs = collections.Counter()   # oid -> refs this client holds
        self.pins = collections.Counter()   # oid -> arena views it holds
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        handle = self.raylet.handlers
        for msg in self.reader.feed(data):
            try:
                handle[msg[0]](self, msg)
            except Exception:
                log("error handling", P.NAMES[msg[0]], traceback.format_exc())

    def connection_lost(self, exc):
        self.closed = True
        self.raylet.client_lost(self)

    def send(self, msg):
        if self.closed:
            return
        self.out.append(msg)
        if not self.flush_pending:
            self.flush_pending = True
            self.raylet.loop.call_soon(self.flush)

    def flush(self):
        self.flush_pending = False
        if self.out and not self.closed:
            msgs, self.out = self.out, []
            self.transport.write(P.frames(msgs))


class Actor:
    __slots__ = ("actor_id", "creation_spec", "creation_oid", "worker", "state",
                 "queue", "inflight", "max_concurrency", "restarts_left",
                 "max_task_retries", "name", "namespace", "detached", "death_cause",
                 "resources", "gpu_ids", "job_id", "class_name", "num_restarts",
                 "keepalive", "pool", "held", "creation_task")

    def __init__(self, spec):
        opts = spec.actor_options or {}
        self.actor_id = spec.actor_id
        self.creation_spec = spec
        self.creation_oid = ids.return_id(spec.task_id, 1)
        self.worker = None
        self.state = "PENDING_CREATION"
        self.queue = collections.deque()     # actor tasks not yet sent
        self.inflight = {}                   # task_id -> Task sent to the worker
        self.max_concurrency = int(opts.get("max_concurrency") or 1)
        self.restarts_left = int(opts.get("max_restarts") or 0)
        self.max_task_retries = int(opts.get("max_task_retries") or 0)
        self.name = opts.get("name")
        self.namespace = opts.get("namespace")
        self.detached = opts.get("lifetime") == "detached"
        self.death_cause = None
        self.resources = opts.get("lifetime_resources") or {}
        self.gpu_ids = []
        self.job_id = spec.job_id
        self.class_name = spec.name
        self.num_restarts = 0
        self.keepalive = False
        self.pool = None          # ResourceSet its lifetime resources come from
        # the constructor's ref arguments, kept until the actor is dead so that a
        # restart can run the constructor again with them
        self.held = []
        self.creation_task = None            # the Task creating it now, if any


class Raylet:
    def __init__(self, args):
        self.args = args
        self.node_id = bytes.fromhex(args.node_id) if args.node_id else ids.random_id(16)
        self.session_dir = args.session_dir
        self.socket_path = args.socket
        self.loop = None
        self.resources = ResourceSet(json.loads(args.resources))
        self.ready = ReadyQueue()
        self.infeasible = []
        self.tasks = {}          # task_id -> Task (not yet finished)
        self.actors = {}         # actor_id -> Actor
        self.creation_to_actor = {}   # creation oid -> Actor
        self.clients = set()
        self.drivers = {}        # job_id -> Conn
        self.getters = []
        self.task_events = {}        # task_id -> Task whose state the GCS lacks
        self.finished_task_ids = collections.deque()
        self.pending_creates = []   # (deadline, conn, req, oid, size)
        self.spill_thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="spill")
        self.spilling_bytes = 0      # bytes of objects being written out now
        self.pending_restores = {}   # spilled Obj waiting for arena space -> deadline
        self.functions = {}      # fn key -> blob cache (served to workers)
        self.fn_time = {}        # fn key -> how long its last task ran (send_ahead)
        self.sent_ahead = 0      # tasks sent ahead so far (reported by "status")
        self.job_sys_paths = {}  # job id -> its driver's sys.path (json)
        self.output_tasks = set()  # tasks forwarding workers' stdout/stderr
        self.arena_size = args.object_store_memory
        self.store = ObjectTable(self.arena_size)
        self.spill_dir = os.path.join(self.session_dir, "spill")
        self.gcs = GcsClient(args.redis_host, args.redis_port, args.redis_password)
        self.wb = WriteBehind(self.gcs.r, config.GCS_FLUSH_S)
        self.pool = WorkerPool(self.socket_path, self.session_dir, self.node_id)
        self.pgs = PlacementGroups(self.resources)
        self.schedule_pending = False
        self.stopping = False
        self.handlers = {
            P.HELLO: self.on_hello, P.SUBMIT: self.on_submit, P.PUT: self.on_put,
            P.CREATE: self.on_create, P.SEAL: self.on_seal, P.GET: self.on_get,
            P.WAIT: self.on_wait, P.REF_ADD: self.on_ref_add,
            P.REF_DEL: self.on_ref_del, P.UNPIN: self.on_unpin, P.DONE: self.on_done,
            P.CALL: self.on_call, P.RETURNED: self.on_returned,
        }
        self.calls = {
            "resources": self.call_resources, "fetch_function": self.call_fetch_function,
            "kill_actor": self.call_kill_actor, "cancel": self.call_cancel,
            "job_sys_path": self.call_job_sys_path,
            "memory": self.call_memory, "actor_state": self.call_actor_state,
            "status": self.call_status, "pg_create": self.call_pg_create,
            "pg_remove": self.call_pg_remove, "pg_table": self.call_pg_table, "ping": lambda conn: "pong",
        }
        self._lost_error_cache = {}
        # cross-node work (forwarding, pulls, remote refs): object_manager.py
        self.om = ObjectManager(self)
        # cross-node scheduling (remote actors, strategies, placement groups)
        self.cs = ClusterScheduler(self)

    # ------------------------------------------------------------------ startup
    def setup_arena(self):
        self.arena_fd = os.memfd_create("beamlet-object-store", os.MFD_CLOEXEC)
        os.ftruncate(self.arena_fd, self.arena_size)
        self.arena = mmap.mmap(self.arena_fd, self.arena_size)
        self.arena_view = memoryview(self.arena)
        self.arena_path = f"/proc/{os.getpid()}/fd/{self.arena_fd}"

    async def main(self):
        self.loop = asyncio.get_running_loop()
        self.setup_arena()
        os.makedirs(self.spill_dir, exist_ok=True)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        server = await self.loop.create_unix_server(lambda: Conn(self), self.socket_path)
        self.stopped = self.loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop, f"signal {sig}")
        if self.args.owner_pid:
            self.watch_owner(self.args.owner_pid)
        self.gcs.register_node(self.node_id, {
            "address": self.args.node_ip, "socket": self.socket_path,
            "hostname": socket.gethostname(), "pid": os.getpid(), "state": "ALIVE",
            "resources_total": self.resources.total,
            "resources_available": self.resources.available,
            "object_store_memory": self.arena_size, "started_at": time.time(),
            "session_dir": self.session_dir, "is_head": int(self.args.head)})
        await self.om.start()
        for _ in range(self.args.prestart):
            self.start_worker()
        ticker = self.loop.create_task(self.tick())
        # tell the starter we are ready
        print("RAYLET_READY", flush=True)
        try:
            await self.stopped
        finally:
            ticker.cancel()
            server.close()
            self.om.close()
            self.shutdown()
            # every coroutine we started ends with us: cancel and await them
            pending = [ticker, *self.output_tasks]
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
        try:
            self.gcs.r.hset(keys.node(self.node_id), "state", "DEAD")
            self.gcs.r.hset(keys.node(self.node_id), "death_reason", "stopped")
        except Exception:
            pass
        self.pool.kill_all()
        self.wb.close()
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        self.spill_thread.shutdown(wait=True, cancel_futures=True)
        try:
            import shutil
            shutil.rmtree(self.spill_dir, ignore_errors=True)
        except Exception:
            pass

    async def tick(self):
        """Heartbeats, reaping idle workers, expiring creates, infeasible warnings."""
        hb_key = keys.node(self.node_id)
        while True:
            await asyncio.sleep(config.HEARTBEAT_S)
            now = time.time()
            self.wb.put("zadd", keys.HEARTBEATS, {self.node_id.hex(): now})
            self.om.spawn(self.om.tick())
            self.cs.tick()
            self.wb.put("hset", hb_key, mapping={
                "resources_available": json.dumps(self.resources.snapshot()),
                "demand": json.dumps(self.ready.demand() + [
                    {"resources": t.spec.resources, "count": 1, "infeasible": True}
                    for t in self.infeasible]),
                "object_store_used": self.store.allocator.used})
            self.flush_task_events()
            self.check_workers()
            self.expire_creates()
            self.warn_infeasible()

    # ------------------------------------------------------------------ workers
    def start_worker(self):
        logdir = os.path.join(self.session_dir, "logs")
        w = self.pool.start_worker(stdout=asyncio.subprocess.PIPE,
                                   stderr=asyncio.subprocess.PIPE)
        w.log_name = f"pid={w.pid}"
        for stream, is_err in ((w.proc.stdout, False), (w.proc.stderr, True)):
            # keep a strong reference: the loop holds tasks weakly, and so does the
            # pipe's StreamReaderProtocol its reader, so an unreferenced reading
            # task is garbage-collected mid-read and the worker's output is lost
            t = self.loop.create_task(self.forward_output(w, stream, is_err))
            self.output_tasks.add(t)
            t.add_done_callback(self.output_tasks.discard)
        return w

    async def forward_output(self, w, stream, is_err):
        """Read a worker's stdout/stderr and publish each line to its job's driver."""
        reader = asyncio.StreamReader()
        await self.loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream)
        while True:
            try:
                line = await reader.readline()
            except Exception:
                break
            if not line:
                break
            text = line.decode(errors="replace").rstrip("\n")
            if not text.startswith("("):
                text = f"(pid={w.pid}) {text}"
            job = w.job_id
            if job:
                self.wb.put("publish", keys.logs_channel(job),
                            ("E" if is_err else "O") + text)
            else:
                log("worker output:", text)

    def check_workers(self):
        now = time.monotonic()
        for w in list(self.pool.workers.values()):
            if w.state is WState.STARTING and w.proc.poll() is not None:
                self.pool.remove(w)
                self.pool.start_failures += 1
                log(f"worker {w.pid} failed to start: {process.describe_exit(w.proc.returncode)}")
                if self.pool.start_failures >= 5:
                    self.fail_queued(exceptions.RaySystemError(
                        "beamlet workers fail to start; see the logs in "
                        f"{self.session_dir}/logs"))
                else:
                    self.request_schedule()
        ncpu = int(self.resources.total.get("CPU", 1))
        idle = [w for w in self.pool.workers.values() if w.state is WState.IDLE]
        excess = len(idle) - max(ncpu, 1)
        for w in sorted(idle, key=lambda w: w.idle_since):
            if excess <= 0:
                break
            if now - w.idle_since > config.IDLE_WORKER_S:
                w.conn.send([P.EXIT, "idle"])
                self.pool.remove(w)
                excess -= 1

    def worker_lost(self, w, conn):
        """A worker's connection closed: it exited or crashed."""
        if w.state is WState.DEAD:
            # removed on purpose (actor killed or freed): just reap the process
            if w.proc is not None and w.proc.poll() is None:
                self.loop.call_later(0.5, w.proc.poll)
            return
        prev_state = w.state
        self.pool.remove(w)
        ahead, w.next, w.revoking = w.next, None, None
        if ahead is not None:
            # sent ahead, never started (the DONE before it would have come
            # first): it goes back to the queue without using a retry, behind
            # the crashed task (pushed to the front below)
            self.give_back(ahead)
        code = w.proc.poll() if w.proc else None
        if code is None and w.proc:
            try:
                code = w.proc.wait(0.5)
            except Exception:
                code = None
        how = process.describe_exit(code)
        if w.actor is not None:
            self.drop_creation(w.actor, w)   # it died inside the constructor
            self.actor_died(w.actor, f"The actor's worker process (pid={w.pid}) {how}.",
                            restart=True)
        elif w.task is not None:
            t = w.task
            w.task = None
            self.release_task_resources(t, w)
            if t.cancelled:
                self.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
            elif t.retries_left != 0:
                t.retries_left -= 1
                t.move(TS.WAITING_FOR_RESOURCES)
                self.ready.push(t, front=True)
            else:
                self.fail_task(t, exceptions.WorkerCrashedError(
                    f"The worker running {t.spec.name} (pid={w.pid}) {how} while "
                    f"running it, and the task has no retries left "
                    f"(max_retries={t.spec.max_retries})."))
        elif prev_state is WState.BLOCKED and w.lent is not None:
            pass
        self.request_schedule()

    # ------------------------------------------------------------------ clients
    def on_hello(self, conn, msg):
        _, version, role, worker_id, pid, job_id = msg
        if version != P.VERSION:
            conn.send([P.REPLY, 0, {"error": f"protocol version {version} != {P.VERSION}"}])
            return
        conn.role, conn.pid, conn.job_id = role, pid, job_id
        self.clients.add(conn)
        if role == "worker":
            w = self.pool.workers.get(worker_id)
            if w is None:
                conn.send([P.EXIT, "unknown worker"])
                return
            conn.worker = w
            self.pool.connected(w, conn)
        elif role == "driver" and job_id:
            self.drivers[job_id] = conn
        conn.send([P.REPLY, 0, {
            "node_id": self.node_id, "arena_path": self.arena_path,
            "arena_size": self.arena_size, "session_dir": self.session_dir,
            "redis": [self.args.redis_host, self.args.redis_port,
                      self.args.redis_password],
            "node_ip": self.args.node_ip, "raylet_pid": os.getpid(),
            "inline_threshold": config.INLINE_THRESHOLD,
        }])
        if role == "worker":
            self.request_schedule()

    def client_lost(self, conn):
        self.clients.discard(conn)
        if conn.worker is not None:
            self.worker_lost(conn.worker, conn)
        for oid, n in list(conn.pins.items()):
            o = self.store.pinned(oid)
            if o is not None:
                o.pins -= n
                if o.pins <= 0:
                    self.unpinned(o)
        conn.pins.clear()
        for oid, n in list(conn.refs.items()):
            for _ in range(n):
                self.decref(oid)
        conn.refs.clear()
        self.getters = [g for g in self.getters if g.conn is not conn]
        if conn.role == "driver" and self.drivers.get(conn.job_id) is conn:
            del self.drivers[conn.job_id]
            self.job_finished(conn.job_id)

    def job_finished(self, job_id):
        """The driver left: its non-detached actors die with it."""
        for a in list(self.actors.values()):
            if a.job_id == job_id and not a.detached and a.state != "DEAD":
                self.kill_actor(a, "The actor's job (driver) exited.", no_restart=True)
        self.cs.job_finished(job_id)

    # ------------------------------------------------------------------ refs
    def incref(self, oid):
        o = self.store.objects.get(oid)
        if o is not None:
            o.refcount += 1

    def decref(self, oid):
        o = self.store.objects.get(oid)
        if o is None:
            return
        o.refcount -= 1
        if o.refcount <= 0:
            self.free(o)

    def free(self, o):
        st = o.state
        if st is ObjState.PENDING or st is ObjState.CREATING:
            if self.om.proxies and o.oid in self.om.proxies and st is ObjState.PENDING:
                self.om.drop_proxy(o)   # a remote object nobody here needs now
            return  # freed when its value arrives (seal sees refcount 0)
        del self.store.objects[o.oid]
        if st is ObjState.SPILLED:
            self.store.spilled_bytes -= o.size
            if not o.restoring:   # else restore_done removes the file
                try:
                    os.unlink(o.spill_path)
                except OSError:
                    pass
        elif o.pins > 0:
            # still mapped somewhere: the range is released at the last UNPIN
            o.free_when_unpinned = True
            self.store.freed_pinned[o.oid] = o
        else:
            self.store.release_memory(o)
            self.memory_freed()
        o.state = ObjState.FREED
        if o.size >= config.INLINE_THRESHOLD:
            # this node no longer holds it (other nodes' copies stay listed)
            self.wb.put("hdel", keys.obj(o.oid), self.node_id.hex())
        if (self.om.watch and o.oid in self.om.watch) or (
                self.om.remote_refs and o.oid in self.om.remote_refs):
            self.om.freed(o)   # e.g. the copy we fetched is gone: unpin the origin's
        for c in o.contained:
            self.decref(c)
        if self.cs.owned_oids and o.oid in self.cs.owned_oids:
            self.cs.creation_freed(o.oid)   # an actor we own on another node
        a = self.creation_to_actor.get(o.oid)
        if a is not None:
            del self.creation_to_actor[o.oid]
            if a.state != "DEAD":
                self.kill_actor(a, "All handles to the actor went out of scope.",
                                no_restart=True, graceful=True)

    def on_ref_add(self, conn, msg):
        objects = self.store.objects
        refs = conn.refs
        for oid in msg[1]:
            o = objects.get(oid)
            if o is not None:
                o.refcount += 1
                refs[oid] += 1

    def on_ref_del(self, conn, msg):
        refs = conn.refs
        for oid in msg[1]:
            n = refs.get(oid, 0)
            if n <= 0:
                continue
            if n == 1:
                del refs[oid]
            else:
                refs[oid] = n - 1
            self.decref(oid)

    def on_unpin(self, conn, msg):
        for oid in msg[1]:
            n = conn.pins.get(oid, 0)
            if n <= 0:
                continue
            if n == 1:
                del conn.pins[oid]
            else:
                conn.pins[oid] = n - 1
            o = self.store.pinned(oid)
            if o is None:
                continue
            o.pins -= 1
            if o.pins <= 0:
                self.unpinned(o)

    def unpinned(self, o):
        o.pins = 0
        if o.free_when_unpinned:
            o.free_when_unpinned = False
            self.store.freed_pinned.pop(o.oid, None)
            self.store.release_memory(o)
            self.memory_freed()

    def pin_descriptor(self, conn, o):
        """Descriptor of a sealed object for `conn`, counting the pin if in the arena."""
        if o.state is ObjState.SPILLED:
            err = self.restore(o)
            if err:
                return [P.INLINE, self.error_bytes(err), True]
        o.last_access = time.monotonic()
        if o.data is None:
            o.pins += 1
            conn.pins[o.oid] += 1
        return o.descriptor()

    # ------------------------------------------------------------------ objects
    def seal_waiters(self, waiters):
        for w in waiters:
            w()

    def on_put(self, conn, msg):
        _, oid, data, contained = msg
        o = self.store.get_or_create(oid)
        o.refcount += 1
        conn.refs[oid] += 1
        self.seal_object_inline(o, data, False, contained)

    def seal_object_inline(self, o, data, is_error, contained):
        for c in contained or ():
            self.incref(c)
        waiters = self.store.seal_inline(o, data, is_error, contained)
        if o.refcount <= 0:
            self.free(o)
        self.seal_waiters(waiters)

    def on_create(self, conn, msg):
        _, req, oid, size = msg
        o = self.store.get_or_create(oid)
        if ids.is_put_object(oid) and o.state is ObjState.PENDING:
            o.refcount += 1
            conn.refs[oid] += 1
        self.try_create(conn, req, o, size, time.monotonic() + config.CREATE_WAIT_S)

    def try_create(self, conn, req, o, size, deadline):
        cap = self.store.allocator.capacity
        if size > cap:
            conn.send([P.REPLY, req, [None,
                f"An object of {size} bytes can never fit in this node's object store "
                f"of {cap} bytes. Start beamlet with a larger object_store_memory "
                f"(init(object_store_memory=...)) or split the object."]])
            return
        off = self.store.reserve(o, size)
        if off is None:
            # wait for space: spill least recently used objects (in the spill
            # thread) or wait for processes to release what they map
            self.pending_creates.append((deadline, conn, req, o, size))
            self.make_room()
            return
        self.wb.put("hset", keys.obj(o.oid), self.node_id.hex(), size)
        conn.send([P.REPLY, req, [off]])

    def memory_freed(self):
        if self.pending_restores:
            pend, self.pending_restores = self.pending_restores, {}
            for o, deadline in pend.items():
                if o.state is ObjState.SPILLED:
                    self.request_restore(o, deadline)
        if self.pending_creates:
            pend, self.pending_creates = self.pending_creates, []
            for deadline, conn, req, o, size in pend:
                if not conn.closed:
                    self.try_create(conn, req, o, size, deadline)

    # Spilling for creates runs in a thread, so that writing hundreds of MB to
    # disk never stalls the event loop (every client's messages).  An object
    # being spilled is pinned by the raylet itself: it stays readable, and
    # cannot be freed or moved until the write is done.
    def make_room(self):
        """Start spilling LRU objects until the bytes being spilled cover what
        the waiting creates need (fragmentation may call for another round)."""
        need = sum(p[4] for p in self.pending_creates if not p[1].closed)
        need += sum(o.size for o in self.pending_restores)   # (dict keys)
        need -= self.spilling_bytes + self.store.allocator.largest_hole()
        if need <= 0:
            return
        for v in self.store.spill_candidates():
            if need <= 0:
                break
            self.start_spill(v)
            need -= v.size

    def start_spill(self, o):
        o.pins += 1
        self.spilling_bytes += o.size
        path = os.path.join(self.spill_dir, o.oid.hex())
        fut = self.spill_thread.submit(self.write_spill_file, path, o.offset, o.size)
        fut.add_done_callback(lambda f: self.loop.call_soon_threadsafe(
            self.spill_done, o, path, f))

    def write_spill_file(self, path, offset, size):
        """(spill thread) Write one object's bytes to `path`."""
        try:
            with open(path, "wb") as f:
                f.write(self.arena_view[offset:offset + size])
        except OSError:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise

    def spill_done(self, o, path, fut):
        self.spilling_bytes -= o.size
        o.pins -= 1
        err = fut.exception()
        if o.state is ObjState.FREED or o.pins > 0 or err is not None:
            # freed meanwhile, got by a process meanwhile (it stays in memory),
            # or the write failed: the file is not needed
            try:
                os.unlink(path)
            except OSError:
                pass
            if o.pins <= 0:
                self.unpinned(o)   # releases the range if it was freed
            if err is not None:
                msg = (f"The object store is full and spilling to {self.spill_dir} "
                       f"failed ({err}); free disk space there, or release references "
                       f"to large objects.")
                log("spill failed:", msg)
                for _, conn, req, _, size in self.pending_creates:
                    conn.send([P.REPLY, req, [None, f"An object of {size} bytes does "
                               f"not fit in the object store. {msg}"]])
                self.pending_creates = []
                return
        else:
            self.store.release_memory(o)
            o.move(ObjState.SPILLED)
            o.spill_path = path
            self.store.spilled_bytes += o.size
        self.memory_freed()

    def expire_creates(self):
        now = time.monotonic()
        keep = []
        for item in self.pending_creates:
            deadline, conn, req, o, size = item
            if now < deadline or self.spilling_bytes:   # spilling: progress is made
                keep.append(item)
                continue
            st = self.store.stats()
            conn.send([P.REPLY, req, [None,
                f"The object store is full: an object of {size} bytes does not fit "
                f"({st['arena_used']} of {st['arena_capacity']} bytes used, largest "
                f"free block {self.store.allocator.largest_hole()} bytes) and every "
                f"object in it is in use (mapped by a process), so none can be "
                f"spilled. Release references to large objects (del the arrays you "
                f"got) or give the store more memory (object_store_memory)."]])
        self.pending_creates = keep
        for o, deadline in list(self.pending_restores.items()):
            if now >= deadline and not self.spilling_bytes:
                # give up: the waiters take the synchronous path, which
                # reports the full store
                del self.pending_restores[o]
                w, o.waiters = o.waiters, []
                self.seal_waiters(w)

    def on_seal(self, conn, msg):
        _, oid, contained, is_error = msg
        o = self.store.objects.get(oid)
        if o is None:
            return
        for c in contained or ():
            self.incref(c)
        waiters = self.store.seal_arena(o, is_error, contained)
        if o.refcount <= 0:
            self.free(o)
        self.seal_waiters(waiters)

    def spill(self, o):
        """Move a sealed arena object to a file.  Returns an error message or None."""
        path = os.path.join(self.spill_dir, o.oid.hex())
        try:
            with open(path, "wb") as f:
                f.write(self.arena_view[o.offset:o.offset + o.size])
        except OSError as e:
            try:
                os.unlink(path)
            except OSError:
                pass
            return (f"The object store is full and spilling to {self.spill_dir} failed "
                    f"({e}); free disk space or release references to objects.")
        self.store.release_memory(o)
        o.move(ObjState.SPILLED)
        o.spill_path = path
        self.store.spilled_bytes += o.size
        return None

    def request_restore(self, o, deadline=None, prefetch=False):
        """Read a spilled object back into the arena in the spill thread; its
        waiters run once it is SEALED again.  (A descriptor needed at once
        still restores synchronously: see restore().)  `prefetch`: only if
        there is free room now (task arguments: restoring those of a long queue
        eagerly would spill each other out).  Returns whether it is restoring
        or waiting to."""
        if o.restoring or o in self.pending_restores:
            return True
        off = self.store.allocator.alloc(o.size)
        if off is None and prefetch:
            return False
        if off is None:
            # wait for room, as a CREATE does (spilling others, or processes
            # releasing what they map); expire_creates ends the wait
            self.pending_restores[o] = deadline or (time.monotonic() +
                                                    config.CREATE_WAIT_S)
            self.make_room()
            return True
        o.restoring = True
        path = o.spill_path
        fut = self.spill_thread.submit(self.read_spill_file, path, off, o.size)
        fut.add_done_callback(lambda f: self.loop.call_soon_threadsafe(
            self.restore_done, o, path, off, f))
        return True

    def read_spill_file(self, path, off, size):
        """(spill thread) Read a spilled object's bytes into the arena."""
        with open(path, "rb") as f:
            view = self.arena_view[off:off + size]
            got = f.readinto(view)
            view.release()
        if got != size:
            raise OSError(f"spill file {path} is truncated ({got} of {size} bytes)")

    def restore_done(self, o, path, off, fut):
        o.restoring = False
        err = fut.exception()
        if o.state is not ObjState.SPILLED or err is not None:
            # freed meanwhile (or the read failed): give the range back
            self.store.allocator.free(off, o.size)
            if o.state is ObjState.FREED:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            elif o.state is ObjState.SPILLED:
                log("restore failed:", err)
            w, o.waiters = o.waiters, []
            self.seal_waiters(w)    # a getter then reports the error
            self.memory_freed()
            return
        try:
            os.unlink(path)
        except OSError:
            pass
        o.spill_path = None
        o.offset = off
        o.move(ObjState.SEALED)
        o.last_access = time.monotonic()
        self.store.spilled_bytes -= o.size
        w, o.waiters = o.waiters, []
        self.seal_waiters(w)

    def restore(self, o):
        """Bring a spilled object back into the arena.  Returns an error or None."""
        size = o.size
        off = self.store.allocator.alloc(size)
        while off is None:
            victims = self.store.spill_candidates()
            if not victims:
                st = self.store.stats()
                return exceptions.ObjectStoreFullError(
                    f"Cannot restore spilled object {o.oid.hex()} ({size} bytes): the "
                    f"object store ({st['arena_used']} of {st['arena_capacity']} bytes "
                    f"used) is full of objects in use (mapped by processes, e.g. arrays "
                    f"got from it that are still alive), so none can be spilled. "
                    f"Release them (del the arrays) or give the store more memory "
                    f"(object_store_memory).")
            err = self.spill(victims[0])
            if err:
                return exceptions.ObjectStoreFullError(err)
            off = self.store.allocator.alloc(size)
        with open(o.spill_path, "rb") as f:
            f.readinto(self.arena_view[off:off + size])
        os.unlink(o.spill_path)
        o.spill_path = None
        o.offset = off
        o.move(ObjState.SEALED)
        self.store.spilled_bytes -= size
        return None

    def error_bytes(self, err) -> bytes:
        return serialization.serialize(err).to_bytes()

    def lost_descriptor(self, oid):
        err = exceptions.ObjectLostError(
            f"Object {oid.hex()} is lost: no node holds it and it cannot be rebuilt "
            f"(its references were all released, or it was never created here).")
        return [P.INLINE, self.error_bytes(err), True]

    # ------------------------------------------------------------------ get / wait
    class Getter:
        __slots__ = ("conn", "req", "oids", "missing", "timer", "done", "kind",
                     "num_returns", "worker", "fetch")

    def on_get(self, conn, msg):
        _, req, oids, timeout = msg
        self.start_getter(conn, req, oids, timeout, "get", len(oids))

    def on_wait(self, conn, msg):
        _, req, oids, num_returns, timeout = msg[:5]
        self.start_getter(conn, req, oids, timeout, "wait", num_returns,
                          len(msg) < 6 or msg[5])

    def start_getter(self, conn, req, oids, timeout, kind, num_returns, fetch=True):
        objects = self.store.objects
        missing = 0
        g = Raylet.Getter()
        g.conn, g.req, g.oids, g.kind, g.num_returns = conn, req, oids, kind, num_returns
        g.done = False
        g.timer = None
        g.worker = None
        g.fetch = fetch
        ready = 0
        om = self.om
        # a get of a spilled object waits for its restore (done off the loop);
        # for wait() a spilled object is ready
        restore = kind == "get" and timeout != 0
        for oid in oids:
            o = objects.get(oid)
            if o is None or o.state is ObjState.SEALED or (
                    o.state is ObjState.SPILLED and not restore):
                if o is None and om.multi and timeout != 0:
                    # an id this node never knew: another node may have it (the
                    # GCS says where); the client holds the ref: count it
                    om.locate(oid).refcount += 1
                    conn.refs[oid] += 1
                    continue
                ready += 1
            elif not fetch and oid in om.remote_ready:
                ready += 1      # wait(fetch_local=False): sealed on another node
        if ready >= num_returns or timeout == 0:
            self.finish_getter(g)
            return
        # not ready: wait for the objects
        g.missing = num_returns - ready
        seen = set()
        for oid in oids:
            o = objects.get(oid)
            if o is not None and (o.state is ObjState.PENDING or
                                  o.state is ObjState.CREATING or
                                  o.state is ObjState.SPILLED) and oid not in seen:
                seen.add(oid)
                cb = lambda g=g: self.getter_progress(g)
                if not fetch:
                    cb = om.nofetch_callback(cb)
                o.waiters.append(cb)
                if o.state is ObjState.SPILLED:
                    self.request_restore(o)
                elif om.multi and o.state is ObjState.PENDING:
                    om.wanted(o, fetch, cb)     # pull it if it is on another node
        if timeout is not None and timeout >= 0:
            g.timer = self.loop.call_later(timeout, self.finish_getter, g)
        w = conn.worker
        if w is not None and w.state is WState.BUSY and w.task is not None:
            # lend the CPU back while this worker waits, so nested tasks can run
            g.worker = w
            w.state = WState.BLOCKED
            if w.next is not None:
                self.revoke(w)   # others may run it (it may be what w waits for)
            t = w.task
            w.lent = {k: v for k, v in t.spec.resources.items() if k == "CPU"}
            if w.lent:
                self.resources.release(w.lent, [])
            self.request_schedule()

    def getter_progress(self, g):
        if g.done:
            return
        g.missing -= 1
        if g.missing <= 0:
            self.finish_getter(g)

    def finish_getter(self, g):
        if g.done:
            return
        g.done = True
        if g.timer is not None:
            g.timer.cancel()
        conn = g.conn
        w = g.worker
        if w is not None and w.state is WState.BLOCKED:
            w.state = WState.BUSY
            if w.lent:
                # take the CPU back (may oversubscribe for a moment, as Ray does)
                for k, v in w.lent.items():
                    self.resources.available[k] = self.resources.available.get(k, 0) - v
                w.lent = None
        if conn.closed:
            return
        objects = self.store.objects
        if g.kind == "get":
            out = []
            for oid in g.oids:
                o = objects.get(oid)
                if o is None:
                    out.append(self.lost_descriptor(oid))
                elif o.state is ObjState.SEALED or o.state is ObjState.SPILLED:
                    out.append(self.pin_descriptor(conn, o))
                else:
                    out.append(None)
            conn.send([P.REPLY, g.req, out])
        else:
            # every ready index, not just num_returns: the client remembers them
            ready = []
            elsewhere = () if g.fetch else self.om.remote_ready
            for i, oid in enumerate(g.oids):
                o = objects.get(oid)
                if o is None or o.state is ObjState.SEALED or o.state is ObjState.SPILLED \
                        or oid in elsewhere:
                    ready.append(i)
            conn.send([P.REPLY, g.req, ready])

    # ------------------------------------------------------------------ tasks
    def on_submit(self, conn, msg):
        wire = msg[1]
        spec = P.TaskSpec.from_wire(wire)
        t = Task(spec)
        objects = self.store.objects
        for oid in spec.return_ids():
            o = self.store.get_or_create(oid, t)
            o.refcount += 1
            conn.refs[oid] += 1
        for a in spec.args:
            if a[0] == P.ARG_VALUE:
                for oid in a[2]:   # refs nested in a by-value argument
                    o = objects.get(oid)
                    if o is not None:
                        o.refcount += 1
                        t.held.append(oid)
                continue
            oid = a[1]
            o = objects.get(oid)
            if o is None:
                if not self.om.multi:
                    continue
                o = self.om.locate(oid)   # another node may have it (GCS)
            if True:
                o.refcount += 1
                t.held.append(oid)
                if o.state is ObjState.PENDING or o.state is ObjState.CREATING:
                    t.missing += 1
                    o.waiters.append(lambda t=t: self.arg_ready(t))
                    if self.om.proxies and oid in self.om.proxies:
                        self.om.want(oid)     # on another node: pull it
                elif o.state is ObjState.SPILLED and self.request_restore(o, prefetch=True):
                    # being restored off the loop (there was free room); without
                    # room it is restored when the task is dispatched
                    t.missing += 1
                    o.waiters.append(lambda t=t: self.arg_ready(t))
        if spec.kind == P.ACTOR_TASK:
            a = self.actors.get(spec.actor_id)
            if a is None and self.cs.actor_call(t):
                return      # the actor lives on another node
            if a is None or a.state == "DEAD":
                cause = a.death_cause if a else "The actor does not exist on this node."
                t.move(TS.WAITING_FOR_RESOURCES)
                self.fail_task(t, exceptions.ActorDiedError(
                    f"Cannot call {spec.name}: the actor is dead. {cause}"))
                return
            self.incref(a.creation_oid)
            t.held.append(a.creation_oid)
            self.tasks[spec.task_id] = t
            a.queue.append(t)
            self.pump_actor(a)
            return
        self.tasks[spec.task_id] = t
        if spec.kind == P.ACTOR_CREATION_TASK:
            a = Actor(spec)
            a.creation_task = t
            for oid in t.held:
                self.incref(oid)
                a.held.append(oid)
            self.actors[spec.actor_id] = a
            self.creation_to_actor[a.creation_oid] = a
            if a.name or a.detached:
                a.keepalive = True
                o = objects.get(a.creation_oid)
                o.refcount += 1
            self.record_actor(a)
        self.task_event(t)
        if t.missing == 0:
            self.make_ready(t)

    def task_event(self, t):
        """Note a task's state for the GCS; flushed in batches by flush_task_events."""
        self.task_events[t.spec.task_id] = t

    def flush_task_events(self):
        """One HSET per flush for all tasks that changed (not one per task), and
        trim the table to the most recent TASKS_KEPT finished tasks."""
        if not self.task_events:
            return
        events, self.task_events = self.task_events, {}
        fields = {}
        done = self.finished_task_ids
        for tid, t in events.items():
            st = t.state
            fields[tid.hex()] = f"{st.value} {t.spec.name} {t.spec.job_id.hex()} " \
                                f"{t.history[-1][0]:.3f}"
            if st in (TS.FINISHED, TS.FAILED, TS.CANCELLED):
                done.append(tid.hex())
        key = keys.tasks(self.node_id)
        self.wb.put("hset", key, mapping=fields)
        if len(done) > keys.TASKS_KEPT:
            drop = [done.popleft() for _ in range(len(done) - keys.TASKS_KEPT)]
            self.wb.put("hdel", key, *drop)

    def arg_ready(self, t):
        t.missing -= 1
        if t.missing == 0 and t.state is TS.WAITING_FOR_ARGS:
            if t.spec.kind == P.ACTOR_TASK:
                # actor calls wait in their actor's queue, in order, not here
                a = self.actors.get(t.spec.actor_id)
                if a is not None:
                    self.pump_actor(a)
                else:
                    self.cs.arg_ready(t)    # a call to an actor on another node
                return
            self.make_ready(t)

    def failed_arg(self, t):
        """The serialized error of the first argument that is an error, if any."""
        objects = self.store.objects
        for a in t.spec.args:
            if a[0] == P.ARG_REF:
                o = objects.get(a[1])
                if o is None:
                    return self.lost_descriptor(a[1])[1]
                if o.is_error and o.data is not None:
                    return o.data
        return None

    def make_ready(self, t):
        if t.cancelled:
            t.move(TS.CANCELLED)
            self.finish_with_error(t, self.error_bytes(
                exceptions.TaskCancelledError(t.spec.name)))
            return
        t.move(TS.WAITING_FOR_RESOURCES)
        err = self.failed_arg(t)
        if err is not None:
            self.finish_with_error(t, err)
            return
        sched = t.spec.scheduling
        if (sched or t.spec.kind == P.ACTOR_CREATION_TASK) and \
                (self.om.nodes or sched and sched[0] == "NODE") and self.cs.route(t):
            return   # runs on another node (strategy, or resources only it has)
        if sched and sched[0] in ("PG", "NODE"):
            err = self.check_constraint(t)
            if err is not None:
                self.fail_task(t, err)
                return
            if sched[0] == "PG":
                self.ready.push(t)
                self.request_schedule()
                return
        if not self.resources.feasible(t.spec.resources):
            if self.om.forward(t):
                return   # another node has what it needs
            self.om.defer_infeasible_warning(t)
            self.infeasible.append(t)
            self.warn_infeasible()
            return
        self.ready.push(t)
        self.request_schedule()

    def warn_infeasible(self):
        for t in self.infeasible:
            if t.warned_infeasible:
                continue
            t.warned_infeasible = True
            msg = (f"Task {t.spec.name} (id {t.spec.task_id.hex()}) cannot be scheduled: "
                   f"it requires {t.spec.resources} but the cluster has "
                   f"{self.cs.cluster_total()} in total. It stays pending until a node "
                   f"with these resources joins the cluster.")
            self.wb.put("publish", keys.errors_channel(t.spec.job_id), msg)
            log("infeasible:", msg)

    def request_schedule(self):
        if not self.schedule_pending:
            self.schedule_pending = True
            self.loop.call_soon(self.schedule)

    def schedule(self):
        self.schedule_pending = False
        res = self.resources
        want = 0
        if self.pgs.waiting:
            self.reserve_placement_groups()
        for shape, q in self.ready.heads():
            while q:
                t = q[0]
                req = t.spec.resources
                if shape[1] is None:
                    pool = res if res.fits(req) else None
                else:
                    pool = self.constrained_pool(t)
                if pool is None:
                    break
                w = self.pool.pop_idle()
                if w is None:
                    # start workers for what could run now: as many as the free
                    # resources allow for this shape (all of them if it needs no CPU)
                    cpu = req.get("CPU", 0)
                    fit = int(pool.available.get("CPU", 0) / cpu + 1e-9) if cpu else len(q)
                    want += max(1, min(len(q), fit))
                    break
                q.popleft()
                self.ready.count -= 1
                self.dispatch(t, w, pool)
            if q and shape[1] is None:
                self.send_ahead(q)
        if want:
            need = min(want, MAX_STARTING) - self.pool.starting
            for _ in range(max(0, need)):
                self.start_worker()

    def arg_descriptors(self, conn, spec):
        objects = self.store.objects
        out = []
        for a in spec.args:
            if a[0] == P.ARG_REF:
                o = objects.get(a[1])
                out.append(self.pin_descriptor(conn, o) if o is not None
                           else self.lost_descriptor(a[1]))
        return out

    def dispatch(self, t, w, pool):
        spec = t.spec
        t.pool = pool
        t.gpu_ids = pool.acquire(spec.resources)
        t.move(TS.RUNNING)
        t.started = time.monotonic()
        t.worker = w
        w.state = WState.BUSY
        w.task = t
        w.job_id = spec.job_id
        if spec.kind == P.ACTOR_CREATION_TASK:
            a = self.actors.get(spec.actor_id)
            if a is not None:
                a.worker = w
                w.actor = a
        w.conn.send([P.EXECUTE, spec.to_wire(), self.arg_descriptors(w.conn, spec),
                     node_gpu_ids(pool, t.gpu_ids)])

    def release_task_resources(self, t, w):
        if w is not None and w.state is WState.BLOCKED and w.lent:
            # the CPU was lent back already
            req = {k: v for k, v in t.spec.resources.items() if k not in w.lent}
            w.lent = None
        else:
            req = t.spec.resources
        (t.pool or self.resources).release(req, t.gpu_ids)
        t.gpu_ids = []

    def on_done(self, conn, msg):
        _, task_id, results, flag = msg
        w = conn.worker
        if w is None:
            return
        a = w.actor
        if a is not None and task_id in a.inflight:
            t = a.inflight.pop(task_id)
            if flag == "exit":
                self.fail_task(t, exceptions.ActorDiedError(
                    f"The actor {a.class_name} exited: exit_actor() was called in "
                    f"{t.spec.name}."))
                self.kill_actor(a, "The actor called exit_actor().", no_restart=True,
                                graceful=True)
                return
            self.complete_task(t, results)
            self.pump_actor(a)
            return
        t = w.task
        if t is None or t.spec.task_id != task_id:
            return
        w.task = None
        creation = t.spec.kind == P.ACTOR_CREATION_TASK and a is not None
        failed = any(desc_is_error(r[1]) for r in results)
        if creation and not failed and a.resources:
            # explicit resources: the actor keeps what its creation took (same
            # GPU ids, same placement-group bundle) for its whole life
            a.pool, a.gpu_ids = t.pool, t.gpu_ids
            t.gpu_ids = []
        else:
            self.release_task_resources(t, w)
        if creation:
            a.creation_task = None
            if failed:
                w.actor = None
                a.worker = None
                self.complete_task(t, results)
                cause = "The actor's constructor raised an exception."
                try:
                    err = serialization.deserialize(results[0][1][1])
                    cause += "\n" + str(err)
                except Exception:
                    pass
                self.actor_died(a, cause, restart=False)
                # the worker holds a half-built instance: do not reuse it
                w.conn.send([P.EXIT, "actor constructor failed"])
                self.pool.remove(w)
            else:
                w.state = WState.ACTOR
                a.state = "ALIVE"
                self.complete_task(t, results)
                self.record_actor(a)
                self.pump_actor(a)
            self.request_schedule()
            return
        if t.spec.kind == P.NORMAL_TASK:
            self.fn_time[t.spec.function_key] = time.monotonic() - t.started
        if flag == "retry" and t.retries_left != 0 and not t.cancelled:
            t.retries_left -= 1
            t.move(TS.WAITING_FOR_RESOURCES)
            self.start_next(w)
            self.ready.push(t, front=True)
            self.request_schedule()
            return
        self.start_next(w)
        self.complete_task(t, results)
        self.request_schedule()

    # Pipelining of normal tasks.  A worker runs one task at a time; waiting for
    # its DONE before sending the next costs each worker a raylet round trip per
    # task.  So a busy worker whose running function is short (PIPELINE_TASK_S)
    # is sent its next task of the same resource shape ahead (w.next).  That task
    # holds no resources until the worker starts it, which the raylet knows from
    # the DONE before it (start_next).  It is asked back (REVOKE; the worker
    # answers RETURNED, returned or already started) when the worker blocks in
    # get/wait (others may run it: it may be what the worker waits for) and when
    # it is cancelled; a crash puts it back in the queue without using a retry.
    def send_ahead(self, q):
        """Give busy workers the next tasks of ready queue `q` (whose head could
        not be dispatched now)."""
        t = q[0]
        req = t.spec.resources
        if t.spec.kind != P.NORMAL_TASK or "GPU" in req:
            return   # GPU ids are handed out per task: only when it starts
        limit = config.PIPELINE_TASK_S
        fn_time = self.fn_time
        for w in self.pool.workers.values():
            cur = w.task
            if (w.next is None and w.state is WState.BUSY and w.revoking is None
                    and cur is not None and cur.spec.kind == P.NORMAL_TASK
                    and cur.spec.resources == req
                    and fn_time.get(cur.spec.function_key, limit) < limit):
                q.popleft()
                self.ready.count -= 1
                w.next = t
                t.worker = w      # state stays WAITING_FOR_RESOURCES until it starts
                self.sent_ahead += 1
                w.conn.send([P.EXECUTE, t.spec.to_wire(),
                             self.arg_descriptors(w.conn, t.spec), []])
                if not q:
                    return
                t = q[0]
                if t.spec.kind != P.NORMAL_TASK:
                    return

    def start_next(self, w):
        """`w` finished its task: it is running the task sent ahead to it now, if
        any (which takes its resources now), or else it is idle."""
        t = w.next
        if t is None:
            self.pool.make_idle(w)
            return
        w.next = None
        w.task = t
        w.job_id = t.spec.job_id
        t.pool = self.resources
        # the finished task's resources were just released, so these fit, unless
        # a blocked worker took its CPU back meanwhile: then the node is
        # oversubscribed for a moment, as in finish_getter
        t.gpu_ids = self.resources.acquire(t.spec.resources)
        t.move(TS.RUNNING)
        t.started = time.monotonic()

    def revoke(self, w):
        """Ask `w` to give back the task sent ahead to it (answer: on_returned)."""
        if w.next is not None and w.revoking is None:
            w.revoking = w.next
            w.conn.send([P.REVOKE, w.next.spec.task_id])

    def on_returned(self, conn, msg):
        _, task_id, returned = msg
        w = conn.worker
        t = w.revoking if w is not None else None
        if t is None or t.spec.task_id != task_id:
            return
        w.revoking = None
        if not returned:
            # it had started: it runs to its DONE, as any running task
            if t.cancelled and w.task is t and t.state is TS.RUNNING:
                self.interrupt(t, t.force_cancel)
            return
        # it will never run there: the arena arguments sent with it are not
        # mapped by the worker, so unpin them as its UNPIN would have
        objects = self.store.objects
        self.on_unpin(conn, [P.UNPIN, [
            a[1] for a in t.spec.args if a[0] == P.ARG_REF
            and objects.get(a[1]) is not None and objects[a[1]].data is None]])
        if w.next is t:
            w.next = None
        elif w.task is t:
            # the DONE before it came first and made it the running task
            self.release_task_resources(t, w)
            t.move(TS.WAITING_FOR_RESOURCES)
            self.pool.make_idle(w)
        else:
            return
        self.give_back(t)
        self.request_schedule()

    def give_back(self, t):
        """A task sent ahead that did not start goes back to the front of its
        queue (or ends, if it was cancelled)."""
        t.worker = None
        if t.cancelled:
            t.move(TS.CANCELLED)
            self.fail_task(t, exceptions.TaskCancelledError(t.spec.name))
        else:
            self.ready.push(t, front=True)

    def complete_task(self, t, results):
        t.move(TS.FAILED if any(desc_is_error(r[1]) for r in results) else TS.FINISHED)
        objects = self.store.objects
        for oid, desc in results:
            o = objects.get(oid)
            if o is None:
                if desc[0] == P.ARENA:
                    # nobody wants it any more: give the space back
                    self.store.allocator.free(desc[1], desc[2])
                continue
            if desc[0] == P.INLINE:
                if o.state is ObjState.PENDING:
                    self.seal_object_inline(o, desc[1], desc[2], desc[3] if len(desc) > 3 else ())
            else:
                if o.state is ObjState.CREATING:
                    contained = desc[4] if len(desc) > 4 else ()
                    for c in contained:
                        self.incref(c)
                    waiters = self.store.seal_arena(o, desc[3], contained)
                    if o.refcount <= 0:
                        self.free(o)
                    self.seal_waiters(waiters)
        self.task_ended(t)

    def task_ended(self, t):
        self.tasks.pop(t.spec.task_id, None)
        self.task_event(t)
        held, t.held = t.held, []
        for oid in held:
            self.decref(oid)
        if self.om.from_peer and t.spec.task_id in self.om.from_peer:
            self.om.task_ended(t)   # a peer's task: send it the results

    def fail_task(self, t, err):
        self.finish_with_error(t, self.error_bytes(err))

    def finish_with_error(self, t, data):
        if t.state not in (TS.FAILED, TS.CANCELLED):
            t.move(TS.FAILED)
        objects = self.store.objects
        for oid in t.spec.return_ids():
            o = objects.get(oid)
            if o is not None and o.state is ObjState.PENDING:
                self.seal_object_inline(o, data, True, ())
        self.task_ended(t)
        if t.spec.kind == P.ACTOR_CREATION_TASK:
            a = self.actors.get(t.spec.actor_id)
            if a is not None and a.state != "DEAD" and a.creation_task is t:
                a.creation_task = None
                cause = "The actor's creation failed."
                try:
                    cause += " " + str(serialization.deserialize(data))
                except Exception:
                    pass
                self.actor_died(a, cause, restart=False)

    def fail_queued(self, err):
        for shape, q in self.ready.heads():
            while q:
                t = q.popleft()
                self.ready.count -= 1
                self.fail_task(t, err)

    # ------------------------------------------------------------------ actors
    def drop_creation(self, a, w):
        """`w` is going away while it runs `a`'s constructor: give back the
        creation task's resources and end that task (a restart makes a new one)."""
        t = w.task if w is not None else None
        if t is None or t.spec.kind != P.ACTOR_CREATION_TASK:
            return
        w.task = None
        a.creation_task = None
        self.release_task_resources(t, w)
        if t.state not in (TS.FAILED, TS.CANCELLED, TS.FINISHED):
            t.move(TS.FAILED)
        self.task_ended(t)

    def pump_actor(self, a):
        """Send queued calls to the actor's worker, in order, while deps are ready."""
        if a.state != "ALIVE" or a.worker is None:
            return
        conn = a.worker.conn
        # A sequential or threaded actor's worker runs calls in arrival order,
        # max_concurrency at a time, so sending a window of calls ahead is safe and
        # saves a round trip per call (calls already sent can no longer be
        # cancelled, as in Ray).  An async actor's worker starts every call it
        # gets at once: there the raylet's count is the concurrency limit.
        window = a.max_concurrency
        if not (a.creation_spec.actor_options or {}).get("is_async"):
            window = max(window, config.ACTOR_PIPELINE_DEPTH)
        while a.queue and len(a.inflight) < window:
            t = a.queue[0]
            if t.missing:
                t.state = TS.WAITING_FOR_ARGS
                # re-pump when its args arrive
                break
            a.queue.popleft()
            if t.cancelled:
                t.move(TS.CANCELLED) if t.state is TS.WAITING_FOR_ARGS else None
                self.finish_with_error(t, self.error_bytes(
                    exceptions.TaskCancelledError(t.spec.name)))
                continue
            if t.state is TS.WAITING_FOR_ARGS:
                t.move(TS.WAITING_FOR_RESOURCES)
            err = self.failed_arg(t)
            if err is not None:
                self.finish_with_error(t, err)
                continue
            t.move(TS.RUNNING)
            a.inflight[t.spec.task_id] = t
            conn.send([P.EXECUTE, t.spec.to_wire(), self.arg_descriptors(conn, t.spec),
                       node_gpu_ids(a.pool, a.gpu_ids)])

    def record_actor(self, a):
        w = a.worker
        self.wb.put("hset", keys.actor(a.actor_id), mapping={
            "class": a.class_name, "name": a.name or "", "namespace": a.namespace or "",
            "state": a.state, "node": self.node_id.hex(),
            "pid": w.pid if w else 0, "detached": int(a.detached),
            "restarts": a.num_restarts, "death_cause": a.death_cause or "",
            "job": a.job_id.hex()})

    def actor_died(self, a, cause, restart=True):
        w = a.worker
        a.worker = None
        if w is not None:
            w.actor = None
        inflight = list(a.inflight.values())
        a.inflight.clear()
        if a.resources and a.state == "ALIVE" and a.pool is not None:
            a.pool.release(a.resources, a.gpu_ids)
            a.pool = None
            a.gpu_ids = []
            self.request_schedule()     # queued work may fit now
        if restart and a.restarts_left != 0 and a.state != "DEAD":
            a.restarts_left -= 1
            a.num_restarts += 1
            a.state = "RESTARTING"
            retry = []
            for t in inflight:
                # a call's retries_left starts at the handle's max_task_retries
                if t.retries_left != 0 and not t.cancelled:
                    if t.retries_left > 0:
                        t.retries_left -= 1
                    retry.append(t)
                else:
                    self.fail_task(t, exceptions.ActorDiedError(
                        f"The actor {a.class_name} died while running {t.spec.name}: "
                        f"{cause} It is restarting; the call was not retried "
                        f"(max_task_retries={t.spec.max_retries})."))
            for t in reversed(retry):
                # resent first, in their original order, once the actor is back
                t.move(TS.WAITING_FOR_RESOURCES)
                a.queue.appendleft(t)
            spec = a.creation_spec
            nt = Task(spec)      # holds nothing: the actor keeps the args (a.held)
            nt.state = TS.WAITING_FOR_RESOURCES
            a.creation_task = nt
            self.tasks[spec.task_id] = nt
            self.record_actor(a)
            self.ready.push(nt, front=True)
            self.request_schedule()
            return
        a.state = "DEAD"
        a.death_cause = cause
        self.record_actor(a)
        err = exceptions.ActorDiedError(f"The actor {a.class_name} is dead: {cause}")
        for t in inflight + list(a.queue):
            self.fail_task(t, err)
        a.queue.clear()
        o = self.store.objects.get(a.creation_oid)
        if o is not None and o.state is ObjState.PENDING:
            # never created: the creation object will not come from a constructor
            self.seal_object_inline(o, self.error_bytes(err), True, ())
        held, a.held = a.held, []
        for oid in held:
            self.decref(oid)
        if a.name:
            try:
                k = keys.actor_names(a.namespace or "")
                if self.gcs.r.hget(k, a.name) == a.actor_id.hex().encode():
                    self.gcs.r.hdel(k, a.name)
            except Exception:
                pass
        if a.keepalive:
            a.keepalive = False
            self.decref(a.creation_oid)

    def kill_actor(self, a, cause, no_restart=True, graceful=False):
        w = a.worker
        if no_restart:
            a.restarts_left = 0
        if w is None:
            if a.state != "DEAD":
                # not created yet (or restarting): drop its creation task
                t, a.creation_task = a.creation_task, None
                if t is not None:
                    t.cancelled = True   # if its args arrive later, it ends there
                    queued = self.ready.remove(t)
                    if t in self.infeasible:
                        self.infeasible.remove(t)
                        queued = True
                    if queued or t.state is TS.WAITING_FOR_ARGS:
                        self.fail_task(t, exceptions.ActorDiedError(cause))
                self.actor_died(a, cause, restart=not no_restart)
            return
        constructing = w.task is not None
        self.drop_creation(a, w)
        if graceful and not constructing and not a.inflight and not a.queue:
            w.conn.send([P.EXIT, "actor out of scope"])
        else:
            self.pool.signal(w, signal.SIGKILL)
        # the connection loss finishes the job (worker_lost -> actor_died)
        a.death_cause = cause
        if no_restart:
            self.actor_died(a, cause, restart=False)
            self.pool.remove(w)

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
        self.wb.put("hset", keys.placement_group(pg.pg_id), mapping={
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
            self.wb.put("publish", keys.errors_channel(conn.job_id), msg)
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

    # ------------------------------------------------------------------ calls
    def on_call(self, conn, msg):
        _, req, method, args = msg
        try:
            result = self.calls[method](conn, *args)
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        if req:
            conn.send([P.REPLY, req, result])

    def call_resources(self, conn):
        return {"total": self.resources.total, "available": self.resources.snapshot()}

    def call_fetch_function(self, conn, key):
        blob = self.functions.get(key)
        if blob is None:
            blob = self.gcs.fetch_function(key)
            if blob is not None:
                self.functions[key] = blob
        return blob

    def call_job_sys_path(self, conn, job_id):
        """The driver's sys.path (json) of a job, for its workers."""
        cache = self.job_sys_paths
        if job_id not in cache:
            raw = self.gcs.r.hget(keys.job(job_id), "sys_path")
            cache[job_id] = raw.decode() if raw else "[]"
        return cache[job_id]

    def call_actor_state(self, conn, actor_id):
        a = self.actors.get(actor_id)
        if a is None:
            return None
        return {"state": a.state, "death_cause": a.death_cause,
                "pid": a.worker.pid if a.worker else None,
                "num_restarts": a.num_restarts}

    def call_kill_actor(self, conn, actor_id, no_restart):
        a = self.actors.get(actor_id)
        if a is None:
            return self.cs.kill_remote(actor_id, no_restart)   # on another node
        if a.state == "DEAD":
            return False
        if no_restart:
            self.kill_actor(a, "The actor was killed by beamlet.kill().", no_restart=True)
        else:
            self.pool.signal(a.worker, signal.SIGKILL) if a.worker else None
        return True

    def call_cancel(self, conn, oid, force, recursive):
        t = self.tasks.get(ids.task_of(oid))
        if t is None:
            return False
        t.cancelled = True
        err = exceptions.TaskCancelledError(t.spec.name)
        w = t.worker
        if t.state is TS.WAITING_FOR_RESOURCES and w is not None and w.next is t:
            # sent ahead to a busy worker: ask it back (on_returned ends it, or
            # interrupts it if it had started meanwhile)
            t.force_cancel = force
            self.revoke(w)
        elif t.state is TS.WAITING_FOR_RESOURCES and self.ready.remove(t):
            t.move(TS.CANCELLED)
            self.fail_task(t, err)
        elif t.state is TS.WAITING_FOR_ARGS:
            if t.spec.kind == P.ACTOR_TASK:
                return True
            t.move(TS.CANCELLED)
            self.fail_task(t, err)
        elif t.state is TS.RUNNING and t.worker is not None:
            if t.spec.kind == P.ACTOR_TASK:
                return False
            self.interrupt(t, force)
        elif t.state is TS.FORWARDED and t.spec.kind == P.NORMAL_TASK:
            self.om.cancel(t, force)    # it runs on another node: cancel it there
        return True

    def interrupt(self, t, force):
        """cancel() of a running normal task: SIGINT (or SIGKILL) its worker."""
        if force:
            self.pool.signal(t.worker, signal.SIGKILL)
        else:
            # name the task first: the signal may reach the worker before it
            # starts the task, or after it finished it (see worker/main.py)
            path = process.cancel_file(self.session_dir, t.worker.worker_id.hex())
            with open(path, "w") as f:
                f.write(t.spec.task_id.hex())
            self.pool.signal(t.worker, signal.SIGINT)

    def call_status(self, conn):
        return {"resources": self.call_resources(conn),
                "demand": self.ready.demand(),
                "infeasible": [{"task": t.spec.name, "resources": t.spec.resources}
                               for t in self.infeasible],
                "workers": {s.value: self.pool.count(s) for s in WState},
                "tasks_sent_ahead": self.sent_ahead,
                "store": self.store.stats()}

    def call_memory(self, conn):
        """Every object of this node with where it is and who keeps it alive
        (what `beamlet memory` prints)."""
        holders = collections.defaultdict(list)
        for c in self.clients:
            for oid, n in c.refs.items():
                holders[oid].append(f"{c.role} pid={c.pid}" + (f" x{n}" if n > 1 else ""))
        for t in self.tasks.values():
            for oid in t.held:
                holders[oid].append(f"task {t.spec.name} ({t.state.value})")
        for o in self.store.objects.values():
            for c in o.contained:
                holders[c].append(f"inside object {o.oid.hex()}")
        pinners = collections.defaultdict(list)
        for c in self.clients:
            for oid in c.pins:
                pinners[oid].append(c.pid)
        out = []
        objs = list(self.store.objects.values()) + list(self.store.freed_pinned.values())
        for o in objs:
            out.append({
                "object_id": o.oid.hex(), "size": o.size, "state": o.state.value,
                "where": ("inline" if o.data is not None else
                          "spilled" if o.state is ObjState.SPILLED else
                          "arena" if o.in_arena else "-"),
                "refcount": o.refcount, "pins": o.pins,
                "pinned_by": pinners.get(o.oid, []),
                "holders": holders.get(o.oid, []),
                "spill_path": o.spill_path})
        return {"objects": out, "stats": self.store.stats(),
                "node_id": self.node_id.hex()}

def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="beamlet-raylet",
                                 description="beamlet's per-node raylet (started by beamlet)")
    ap.add_argument("--node-id", default="")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--redis-host", default="127.0.0.1")
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--redis-password", required=True)
    ap.add_argument("--node-ip", default="127.0.0.1")
    ap.add_argument("--resources", default='{"CPU": 1}')
    ap.add_argument("--object-store-memory", type=int, required=True)
    ap.add_argument("--prestart", type=int, default=0)
    ap.add_argument("--owner-pid", type=int, default=0)
    ap.add_argument("--head", action="store_true")
    ap.add_argument("--peer-port", type=int, default=0,
                    help="TCP port for peer raylets (0: any free port)")
    return ap.parse_args(argv)


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
