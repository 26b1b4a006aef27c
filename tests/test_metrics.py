"""beamlet.util.metrics (Ray's ray.util.metrics) and each node's Prometheus
endpoint: the API's checks, values recorded in drivers, tasks and actors reaching
the node's endpoint (scraped over HTTP and parsed), beamlet's own gauges, the
token, and one endpoint per node of a multi-node cluster."""
import json
import re
import socket
import urllib.error
import urllib.request

import pytest

import beamlet as ray
from beamlet import connection
from beamlet._private import prometheus
from beamlet.cluster_utils import Cluster
from beamlet.gcs import keys
from beamlet.util.metrics import Counter, Gauge, Histogram

from conftest import wait_for

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """The Prometheus text format, parsed here (not by beamlet's code):
    {(name, frozenset(labels)): value} and {name: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset((k, v.replace('\\"', '"').replace("\\\\", "\\"))
                           for k, v in LABEL.findall(m.group(3) or ""))
        value = m.group(4)
        samples[(m.group(1), labels)] = float("inf") if value == "+Inf" else float(value)
    return samples, types


def _token():
    return connection.gcs().password


def _port(node_id):
    return int(connection.gcs().r.hget(keys.node(bytes.fromhex(node_id)),
                                       "metrics_export_port"))


def scrape(port, token, path="/metrics", headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {
        "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def value(samples, name, **labels):
    want = frozenset(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    return sum(found) if found else None


# ------------------------------------------------------------------ the API (no cluster)
def test_constructor_and_record_checks_as_in_ray():
    with pytest.raises(ValueError, match="Empty name"):
        Counter("")
    with pytest.raises(TypeError, match="tag_keys"):
        Counter("c_bad_keys", tag_keys="route")
    with pytest.raises(ValueError, match="label name"):
        Gauge("g_bad_key", tag_keys=("not-a-label",))
    with pytest.raises(ValueError, match="needs boundaries"):
        Histogram("h_no_bounds")
    with pytest.raises(ValueError, match="index 1"):
        Histogram("h_bad_bounds", boundaries=[1, 0])
    with pytest.raises(ValueError, match="increase"):
        Histogram("h_unsorted", boundaries=[5, 2])
    c = Counter("c_checks", description="d", tag_keys=("a", "b"))
    assert c.set_default_tags({"a": "1"}) is c      # returns itself, as Ray's
    assert c.info == {"name": "c_checks", "description": "d", "tag_keys": ("a", "b"),
                      "default_tags": {"a": "1"}}
    with pytest.raises(ValueError, match="missing value for tag key"):
        c.inc()
    with pytest.raises(ValueError, match="unrecognized tag key"):
        c.inc(tags={"b": "x", "zzz": "y"})
    with pytest.raises(ValueError, match=">0"):
        c.inc(0, tags={"b": "x"})
    with pytest.raises(TypeError, match="must be a str"):
        c.inc(tags={"b": 3})
    with pytest.raises(ValueError, match="unrecognized tag key"):
        c.set_default_tags({"nope": "x"})
    with pytest.raises(TypeError, match="number"):
        Gauge("g_checks").set("3")
    h = Histogram("h_checks", boundaries=[1, 2])
    assert h.info["boundaries"] == [1.0, 2.0]
    # another kind (or tag keys) under a name this process already has
    with pytest.raises(ValueError, match="already exists"):
        Gauge("c_checks", tag_keys=("a", "b"))
    # an invalid name is warned about and discarded, as Ray does
    with pytest.warns(UserWarning, match="Invalid metric name"):
        bad = Counter("9starts-with-a-digit")
    bad.inc()     # records nothing, raises nothing


def test_the_table_sums_processes_keeps_gone_ones_and_renders_text():
    t = prometheus.MetricTable()
    d = ["counter", "requests \"served\"", ["route"], []]
    t.update("p1", [["reqs", *d, [[["/a"], 2.0]]]])
    t.update("p2", [["reqs", *d, [[["/a"], 3.0], [["/b\n"], 1.0]]]])
    t.update("p1", [["reqs", *d, [[["/a"], 4.0]]]])        # cumulative: 4, not 2 + 4
    t.retire("p2")                                          # its totals stay
    t.update("p1", [["g", "gauge", "", [], [], [[[], [10.0, 5.0]]]]])
    t.update("p2", [["g", "gauge", "", [], [], [[[], [9.0, 7.0]]]]])   # older: ignored
    h = ["histogram", "", [], [1.0, 5.0]]
    t.update("p1", [["h", *h, [[[], [[1, 2, 0], 6.5, 3]]]]])
    t.update("p3", [["h", *h, [[[], [[0, 0, 1], 9.0, 1]]]]])
    assert t.update("p3", [["reqs", "gauge", "", [], [], []]]) == ["reqs"]   # conflict
    samples, types = parse(prometheus.render(t.families()))
    assert types == {"ray_reqs_total": "counter", "ray_g": "gauge",
                     "ray_h": "histogram"}
    assert value(samples, "ray_reqs_total", route="/a") == 7.0
    assert value(samples, "ray_reqs_total", route="/b\\n") == 1.0   # escaped newline
    assert value(samples, "ray_g") == 5.0
    assert value(samples, "ray_h_bucket", le="1.0") == 1
    assert value(samples, "ray_h_bucket", le="5.0") == 3      # cumulative buckets
    assert value(samples, "ray_h_bucket", le="+Inf") == 4
    assert value(samples, "ray_h_sum") == 15.5 and value(samples, "ray_h_count") == 4


# ------------------------------------------------------------------ a live node
def test_driver_task_and_actor_metrics_reach_the_nodes_endpoint(ray_start):
    requests = Counter("dash_requests", description="requests served",
                       tag_keys=("route",))
    requests.inc(2, tags={"route": "/a"})           # in the driver
    Gauge("dash_queue", tag_keys=("q",)).set_default_tags({"q": "main"}).set(3)

    @ray.remote
    def handle(i):
        from beamlet.util.metrics import Counter, Histogram
        Counter("dash_requests", tag_keys=("route",)).inc(tags={"route": "/a"})
        Histogram("dash_latency", boundaries=[1, 10]).observe(i)
        return i

    @ray.remote
    class Worker:
        def __init__(self):
            self.served = Counter("dash_requests", tag_keys=("route",))
            self.served.set_default_tags({"route": "/actor"})

        def serve(self, n):
            for _ in range(n):
                self.served.inc()
            return n

    assert ray.get([handle.remote(i) for i in range(6)]) == list(range(6))
    w = Worker.remote()
    assert ray.get(w.serve.remote(5)) == 5
    port, token = _port(ray.get_runtime_context().get_node_id()), _token()

    def complete():
        s, _ = parse(scrape(port, token))
        return s if value(s, "ray_dash_requests_total", route="/a") == 8 and \
            value(s, "ray_dash_requests_total", route="/actor") == 5 and \
            value(s, "ray_dash_latency_count") == 6 else None
    samples = wait_for(complete, timeout=30, msg="the metrics of 3 kinds of process")
    assert value(samples, "ray_dash_queue", q="main") == 3
    assert value(samples, "ray_dash_latency_bucket", le="1.0") == 2     # 0 and 1
    assert value(samples, "ray_dash_latency_bucket", le="10.0") == 6
    assert value(samples, "ray_dash_latency_sum") == 15
    # beamlet's own gauges
    node = ray.get_runtime_context().get_node_id()
    assert value(samples, "beamlet_resources", node_id=node, resource="CPU",
                 state="AVAILABLE") is not None
    assert value(samples, "beamlet_workers", node_id=node, state="ACTOR") == 1
    assert value(samples, "beamlet_object_store_capacity_bytes", node_id=node) > 0


def test_own_gauges_follow_the_node(ray_start):
    @ray.remote
    def hold(x):
        import time
        time.sleep(30)

    node = ray.get_runtime_context().get_node_id()
    port, token = _port(node), _token()
    big = ray.put(b"x" * 2_000_000)                 # an arena object
    blocked = [hold.remote(big) for _ in range(3)]  # 2 run, 1 waits for a CPU

    def seen():
        s, _ = parse(scrape(port, token))
        return s if value(s, "beamlet_tasks", state="RUNNING") == 2 and \
            value(s, "beamlet_tasks", state="PENDING_NODE_ASSIGNMENT") == 1 else None
    samples = wait_for(seen, timeout=30, msg="2 running tasks and 1 waiting")
    assert value(samples, "beamlet_object_store_used_bytes", location="arena") \
        >= 2_000_000
    assert value(samples, "beamlet_resources", resource="CPU", state="USED") == 2
    del blocked     # (shutdown ends them)


def test_the_endpoint_needs_the_token(ray_start):
    port = _port(ray.get_runtime_context().get_node_id())
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {_token()}"}):
        with pytest.raises(urllib.error.HTTPError) as e:
            scrape(port, None, headers=headers)
        assert e.value.code == 401
        body = e.value.read().decode()
        assert "Bearer" in body and "beamlet_" not in body
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, _token(), path="/other")
    assert e.value.code == 404
    # loopback only by default
    conns = [c for c in __import__("psutil").net_connections("tcp")
             if c.laddr and c.laddr.port == port and c.status == "LISTEN"]
    assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns)


def test_metrics_export_port_is_used_and_a_busy_one_is_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    ray.init(num_cpus=1, _metrics_export_port=free, include_dashboard=False)
    try:
        assert _port(ray.get_runtime_context().get_node_id()) == free
        assert "beamlet_workers" in scrape(free, _token())
        with pytest.raises(RuntimeError, match=f"port {free}.*already in use"):
            Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 1, "metrics_export_port": free})
    finally:
        ray.shutdown()
    with pytest.raises(ValueError, match="_metrics_export_port.*port number"):
        ray.init(_metrics_export_port=70000)


def test_every_node_has_its_own_endpoint():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        node2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
        ray.init(address=cluster.address)

        @ray.remote(resources={"node2": 1})
        def on_node2():
            from beamlet.util.metrics import Counter
            Counter("dash_where").inc(7)
            return ray.get_runtime_context().get_node_id()

        assert ray.get(on_node2.remote()) == node2.node_id_hex()
        token = cluster.head_node.password
        head_port = _port(cluster.head_node.node_id_hex())
        port2 = _port(node2.node_id_hex())
        assert head_port != port2
        wait_for(lambda: value(parse(scrape(port2, token))[0],
                               "ray_dash_where_total") == 7, timeout=30,
                 msg="node2's counter on node2's endpoint")
        assert value(parse(scrape(head_port, token))[0], "ray_dash_where_total") is None
        # Ray's nodes() has the port too
        ports = {n["NodeID"]: n["MetricsExportPort"] for n in ray.nodes()}
        assert ports == {cluster.head_node.node_id_hex(): head_port,
                         node2.node_id_hex(): port2}
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_metrics_recorded_before_init_are_sent_once_connected():
    Counter("dash_early").inc(4)
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        port = _port(ray.get_runtime_context().get_node_id())
        wait_for(lambda: value(parse(scrape(port, _token()))[0],
                               "ray_dash_early_total") == 4, timeout=30,
                 msg="a value recorded before init()")
    finally:
        ray.shutdown()
    json.dumps(Counter("dash_early").info)    # (info is plain data)
