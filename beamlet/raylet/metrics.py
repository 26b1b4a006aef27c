"""The node's metrics endpoint: the Prometheus text of the metrics its processes
record (beamlet.util.metrics) and of beamlet's own gauges for this node.

    workers, drivers ──METRICS (batched, protocol.py)──▶ MetricsExporter
                                                           │ MetricTable (pure,
    Prometheus ──GET /metrics, Authorization: Bearer──▶    │ _private/prometheus.py)
                                                           │ + gauges read, at the
                        LocalScheduler WorkerPool ◀────────┘ scrape, through the
                        ObjectStore ResourceSet                components' INTERFACE

A minimal HTTP/1.1 server on the raylet's loop: one request per connection,
GET (or HEAD) of /metrics, answered only to a request that carries the cluster
token as a bearer token (401 otherwise, with nothing else).  It listens on
loopback unless the node was given another host (docs/security.md).  Nothing
here runs on a task's path: a METRICS batch is one table update, and the gauges
are read when a scrape comes.

Owns: the listening socket and its connections, the table of the metrics
  reported by this node's processes (by connection; a closed connection's
  totals are kept).
Uses: LocalScheduler (its tasks, by state), WorkerPool (workers by state),
  ObjectStore (the store's stats), the node's ResourceSet (total, available).
Messages: METRICS from clients; the shell tells it when a client is gone.
"""
import asyncio
import collections


from .._private import prometheus, webauth
from .._private.prometheus import GAUGE, Family
from .common import log
from .scheduler import ray_state

# The components it uses (ObjectStore, ResourceSet, LocalScheduler, WorkerPool) are
# named in annotations only, as strings: the shell (raylet.py) wires them together, so
# their modules need not import each other (no import circle).

REQUEST_MAX = 16 * 1024     # bytes of request line + headers read at most
REQUEST_TIMEOUT_S = 10.0


class MetricsExporter:
    INTERFACE = ("wire", "start", "close", "port", "on_metrics", "client_lost")

    def __init__(self, node_id: bytes, token: str, host: str, port: int):
        self.node_hex = node_id.hex()
        self.token = token
        self.host = host
        self.want_port = port
        self.port = None
        self.table = prometheus.MetricTable()
        self.server = None
        self.serving = set()   # the connection handlers running now

    def wire(self, sched: "LocalScheduler", pool: "WorkerPool", store: "ObjectStore",
             resources: "ResourceSet") -> None:
        self.sched = sched
        self.pool = pool
        self.store = store
        self.resources = resources

    async def start(self) -> None:
        try:
            self.server = await asyncio.start_server(
                self.serve, self.host, self.want_port, limit=REQUEST_MAX)
        except OSError as e:
            raise RuntimeError(
                f"cannot listen for metrics on {self.host}:{self.want_port} "
                f"({e.strerror or e}); choose another port (init("
                f"_metrics_export_port=...), beamlet start --metrics-export-port; "
                f"0: any free port).") from None
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.serving):
            t.cancel()

    # ------------------------------------------------------------------ messages
    def on_metrics(self, conn, msg) -> None:
        try:
            for name in self.table.update(id(conn), msg[1]):
                log(f"metric {name!r} from pid {conn.pid} ignored: its name is invalid "
                    f"or it was defined before with another kind, tag keys or "
                    f"boundaries")
        except Exception as e:   # a malformed batch must not hurt the raylet
            log(f"malformed METRICS from pid {conn.pid}: {e!r}")

    def client_lost(self, conn) -> None:
        self.table.retire(id(conn))

    # ------------------------------------------------------------------ the text
    def text(self) -> str:
        return prometheus.render(self.node_families() + self.table.families())

    def node_families(self) -> list:
        """beamlet's own gauges of this node, read now."""
        node = {"node_id": self.node_hex}
        by_state = collections.Counter(
            (t.spec.name, ray_state(t)) for t in self.sched.all_tasks())
        tasks = Family("beamlet_tasks", GAUGE,
                       "Tasks of this node not yet ended (normal tasks, actor "
                       "creations and calls), by function and state (the state "
                       "API's names)")
        for (name, state), n in sorted(by_state.items()):
            tasks.add({**node, "name": name, "state": state}, n)
        workers = Family("beamlet_workers", GAUGE, "Worker processes of this node, "
                         "by state")
        for state, n in sorted(self.pool.state_counts().items()):
            workers.add({**node, "state": state}, n)
        st = self.store.stats()
        store = [
            Family("beamlet_object_store_capacity_bytes", GAUGE,
                   "Size of this node's shared-memory object store").add(
                node, st["arena_capacity"]),
            Family("beamlet_object_store_used_bytes", GAUGE,
                   "Bytes of the object store in use, by where the objects are "
                   "(arena: shared memory; inline: small objects kept in the "
                   "raylet; spilled: on disk)").add(
                {**node, "location": "arena"}, st["arena_used"]).add(
                {**node, "location": "inline"}, st["inline_bytes"]).add(
                {**node, "location": "spilled"}, st["spilled_bytes"]),
            Family("beamlet_object_store_objects", GAUGE,
                   "Objects this node's store holds").add(node, st["objects"]),
        ]
        total = self.resources.total
        avail = self.resources.snapshot()
        res = Family("beamlet_resources", GAUGE, "This node's logical resources, "
                     "by name and state (USED or AVAILABLE)")
        for name in sorted(total):
            free = avail.get(name, 0.0)
            res.add({**node, "resource": name, "state": "AVAILABLE"}, free)
            res.add({**node, "resource": name, "state": "USED"},
                    max(0.0, total[name] - free))
        return [tasks, workers, *store, res]

    # ------------------------------------------------------------------ HTTP
    async def serve(self, reader, writer) -> None:
        me = asyncio.current_task()
        self.serving.add(me)
        try:
            await self.answer(reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            self.serving.discard(me)
            writer.close()

    async def answer(self, reader, writer) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            status, body, ctype = "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
        elif not webauth.bearer_ok(headers.get("authorization"), self.token):
            status, ctype = "401 Unauthorized", "text/plain"
            body = (b"this endpoint needs the cluster token: send the header "
                    b"'Authorization: Bearer <token>'\n")
        elif path not in ("/metrics", "/"):
            status, body, ctype = "404 Not Found", b"GET /metrics\n", "text/plain"
        else:
            status, ctype = "200 OK", prometheus.CONTENT_TYPE
            body = self.text().encode()
        extra = "WWW-Authenticate: Bearer\r\n" if status.startswith("401") else ""
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
            + (body if method != "HEAD" else b""))
        await writer.drain()
