"""The dashboard over HTTP, on a live cluster running real tasks and actors: every
JSON endpoint, every page, and the token check (no token, a wrong one, the
cookie flow, the login form; nothing is served without it).  The browser test is
test_dashboard_browser.py."""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import psutil
import pytest

import beamlet as ray
from beamlet import connection
from beamlet.dashboard import auth, pages

from conftest import wait_for
from clitools import cli_env, run, start_head  # noqa: F401

PAGES = list(pages.PAGES)
ENDPOINTS = ["/api/cluster", "/api/jobs", "/api/tasks", "/api/actors", "/api/objects",
             "/api/logs", "/api/log?node=x&name=y", "/api/timeline",
             "/static/dashboard.js", "/static/dashboard.css"]


def request(addr, path, headers=None, method="GET", body=None):
    """(status, headers, body text) of one request; redirects are not followed."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read().decode()
    finally:
        c.close()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def live(shared_cluster):
    """The module's cluster with finished, running and pending tasks, two actors
    and a stored object: (dashboard address, token, what was made)."""
    @ray.remote
    def dash_square(x):
        return x * x

    @ray.remote
    def dash_sleep():
        time.sleep(60)

    @ray.remote
    class DashCounter:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            print("dash counter at", self.n)
            return os.getpid()

    assert ray.get([dash_square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    counter = DashCounter.options(name="dash_counter").remote()
    pid = ray.get(counter.incr.remote())
    sleeper = dash_sleep.remote()
    infeasible = dash_square.options(num_cpus=64).remote(3)
    big = ray.put(b"x" * 300_000)
    addr = connection.gcs().r.hget("beamlet:cluster", "dashboard_address").decode()
    made = {"actor_pid": pid, "counter": counter, "sleeper": sleeper,
            "infeasible": infeasible, "big": big,
            "node_id": ray.get_runtime_context().get_node_id(),
            "job_id": ray.get_runtime_context().get_job_id()}
    yield addr, connection.gcs().password, made


def get_json(live, path):
    addr, token, _ = live
    status, headers, body = request(addr, path, bearer(token))
    assert status == 200, (path, status, body)
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def short(name):
    return (name or "").split("<locals>.")[-1]


def test_cluster_jobs_and_objects_endpoints(live):
    made = live[2]
    d = get_json(live, "/api/cluster")
    node = next(n for n in d["nodes"] if n["node_id"] == made["node_id"])
    assert node["is_head_node"] and node["state"] == "ALIVE"
    assert node["cpu"][1] == 2 and node["object_store"][1] > 0
    assert node["workers"] >= 1
    assert {"CPU", "memory", "object_store_memory"} <= {r["resource"] for r in
                                                          d["resources"]}

    def job():
        jobs = get_json(live, "/api/jobs")["jobs"]
        j = next(j for j in jobs if j["job_id"] == made["job_id"])
        # (finished tasks are recorded behind, each heartbeat)
        return j if j["tasks"].get("FINISHED", 0) >= 6 else None
    j = wait_for(job, timeout=30, msg="the job's finished tasks")
    assert j["status"] == "RUNNING" and j["driver_pid"] == os.getpid()
    objs = get_json(live, "/api/objects")
    big = next(o for o in objs["objects"] if o["object_id"] == made["big"].hex())
    assert big["object_size"] >= 300_000 and big["owner"] == os.getpid()
    assert big["where"] == "arena" and big["spilled"] is False
    assert any(s["node_id"] == made["node_id"] and s["bytes"] >= 300_000
               for s in objs["summary"])


def test_tasks_endpoint_counts_filters_and_pending_reasons(live):
    made = live[2]

    def everything():
        d = get_json(live, "/api/tasks")
        names = {short(t["name"]): t for t in d["tasks"]}
        return d if "dash_sleep" in names and names["dash_sleep"]["state"] == \
            "RUNNING" else None
    d = wait_for(everything, timeout=30, msg="the running task listed")
    summary = {short(s["func_or_class_name"]): s for s in d["summary"]}
    assert summary["dash_square"]["state_counts"]["FINISHED"] == 5
    assert summary["dash_square"]["total"] == 6        # + the infeasible one
    assert summary["DashCounter.incr"]["type"] == "ACTOR_TASK"
    stuck = next(t for t in d["tasks"]
                 if t["task_id"] == made["infeasible"].task_id().hex())
    assert stuck["pending_reason"]["code"] == "INFEASIBLE"
    assert "64" in stuck["pending_reason"]["text"]
    finished = get_json(live, "/api/tasks?state=FINISHED")["tasks"]
    assert finished and {t["state"] for t in finished} == {"FINISHED"}
    named = get_json(live, "/api/tasks?name=dash_sleep")
    assert {short(t["name"]) for t in named["tasks"]} == {"dash_sleep"}
    assert "name containing 'dash_sleep'" in named["shown"]
    assert get_json(live, "/api/tasks?job_id=ffff")["tasks"] == []
    assert "not a task state" in get_json(live, "/api/tasks?state=BOGUS")["error"]


def test_actors_endpoint(live):
    made = live[2]
    actors = get_json(live, "/api/actors")["actors"]
    a = next(a for a in actors if a["name"] == "dash_counter")
    assert short(a["class_name"]) == "DashCounter"
    assert a["state"] == "ALIVE" and a["pid"] == made["actor_pid"]
    assert a["num_restarts"] == 0 and a["node_id"] == made["node_id"]


def test_timeline_endpoint_is_the_chrome_trace(live):
    addr, token, _ = live

    def spans():
        trace = get_json(live, "/api/timeline")
        return [e for e in trace if e.get("ph") == "X" and
                short(e["name"]) == "dash_square"]
    assert len(wait_for(spans, timeout=30, msg="the finished tasks' spans")) == 5
    status, headers, body = request(addr, "/api/timeline?download=1", bearer(token))
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert isinstance(json.loads(body), list)


def test_logs_page_lists_and_tails_every_log_file(live):
    made = live[2]
    pid = made["actor_pid"]
    files = get_json(live, "/api/logs")["files"]
    mine = next(f for f in files if f["pid"] == pid and f["file"][0].endswith(".out"))
    assert mine["node_id"] == made["node_id"] and mine["size"] > 0
    name, href = mine["file"]
    assert href.startswith("/logs?") and urllib.parse.quote(name) in href
    assert any(f["file"][0] == "raylet.out" for f in files)
    q = urllib.parse.urlencode({"node": made["node_id"], "name": name})
    tail = wait_for(lambda: (lambda t: t if "dash counter at 1" in t["data"] else None)(
        get_json(live, f"/api/log?{q}")), timeout=20, msg="the actor's line in its log")
    assert "\x1e" not in tail["data"]    # (the task tags stay in the file)
    assert f"(DashCounter pid={pid}) dash counter at 1\n" in tail["data"]
    # from the offset it gave: only what came after
    ray.get(made["counter"].incr.remote())
    more = wait_for(lambda: (lambda t: t if t["data"] else None)(
        get_json(live, f"/api/log?{q}&offset={tail['offset']}")), timeout=20,
        msg="the actor's next line")
    assert re.fullmatch(rf"\(DashCounter pid={pid}\) dash counter at \d+\n",
                        more["data"]), more
    page = urllib.parse.urlencode({"node": made["node_id"], "file": name})
    assert "dash counter at 1" in request(live[0], f"/logs?{page}", bearer(live[1]))[2]


def test_every_page_renders_server_side(live):
    addr, token, made = live
    expect = {"/": made["node_id"][:12], "/jobs": made["job_id"],
              "/tasks": "dash_square", "/actors": "dash_counter",
              "/objects": made["big"].hex()[:12], "/logs": "Log files",
              "/timeline": "timeline.json"}
    for path in PAGES:
        status, headers, body = request(addr, path, bearer(token))
        assert status == 200, path
        assert expect[path] in body, path
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert '<script src="/static/dashboard.js"' in body
    status, _, body = request(addr, "/tasks?state=RUNNING", bearer(token))
    assert 'value="RUNNING" selected' in body and "dash_sleep" in body


def test_nothing_is_served_without_the_token(live):
    addr, token, made = live
    secrets_ = (made["node_id"][:12], "dash_square", "dash_counter", "beamlet_")
    wrong = [{}, bearer("0" * 32), bearer(""), {"Authorization": f"Basic {token}"},
             {"Cookie": f"{auth.COOKIE}={token}"},          # the token is not a cookie
             {"Cookie": f"{auth.COOKIE}={'a' * 64}"}]
    for path in PAGES + ENDPOINTS:
        for headers in wrong:
            status, _, body = request(addr, path, headers)
            assert status == 401, (path, headers, status)
            assert not any(s in body for s in secrets_), (path, body[:200])
        sep = "&" if "?" in path else "?"
        status, _, body = request(addr, f"{path}{sep}token={'f' * 32}")
        assert status == 401 and "not this cluster" in body, path
    status, headers, body = request(addr, "/api/tasks")
    assert json.loads(body)["error"] and headers["WWW-Authenticate"] == "Bearer"


def test_the_token_url_sets_an_httponly_cookie_and_drops_the_token(live):
    addr, token, _ = live
    status, headers, _ = request(addr, f"/tasks?state=FINISHED&token={token}")
    assert status == 303
    assert headers["Location"] == "/tasks?state=FINISHED"     # no token left in it
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0]
    assert value.startswith(auth.COOKIE + "=") and token not in value
    status, _, body = request(addr, "/tasks?state=FINISHED", {"Cookie": value})
    assert status == 200 and "dash_square" in body
    status, _, body = request(addr, "/api/actors", {"Cookie": f"other=1; {value}"})
    assert status == 200 and "dash_counter" in body
    # a JSON endpoint takes ?token= as it is (no redirect)
    status, _, body = request(addr, f"/api/cluster?token={token}")
    assert status == 200 and json.loads(body)["nodes"]


def test_the_login_form(live):
    addr, token, _ = live
    status, headers, body = request(addr, "/login?next=/actors")
    assert status == 200 and 'name="token"' in body and 'value="/actors"' in body
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = request(addr, "/login", form, "POST",
                              urllib.parse.urlencode({"token": "nope", "next": "/"}))
    assert status == 401 and "not this cluster" in body
    status, headers, _ = request(addr, "/login", form, "POST", urllib.parse.urlencode(
        {"token": token, "next": "/actors"}))
    assert status == 303 and headers["Location"] == "/actors"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert request(addr, "/actors", {"Cookie": cookie})[0] == 200
    for evil in ("//evil.example/x", "http://evil.example/", "/\\evil.example"):
        status, headers, _ = request(addr, "/login", form, "POST",
                                     urllib.parse.urlencode({"token": token,
                                                             "next": evil}))
        assert status == 303 and headers["Location"] == "/", evil
    status, _, _ = request(addr, "/login", form, "POST", "token=" + "x" * 10_000)
    assert status == 413
    status, headers, _ = request(addr, "/logout")
    assert status == 303 and "Max-Age=0" in headers["Set-Cookie"]
    # a page asked without the token answers with the form, coming back to it
    status, _, body = request(addr, "/objects?x=1")
    assert status == 401 and 'value="/objects?x=1"' in body


def test_it_listens_on_loopback_in_the_monitor(live):
    addr, _, _ = live
    port = int(addr.rsplit(":", 1)[1])
    assert addr.startswith("127.0.0.1:")
    listeners = [c for c in psutil.net_connections("tcp")
                 if c.laddr and c.laddr.port == port and c.status == "LISTEN"]
    assert [c.laddr.ip for c in listeners] == ["127.0.0.1"]
    # a thread of the head's monitor process: no process of its own
    monitor = connection.state.node.monitor_proc.pid
    assert {c.pid for c in listeners} <= {monitor, None}


def test_every_listener_of_the_cluster_is_loopback_and_the_http_ones_ask(live):
    """What docs/security.md lists: the GCS, the raylet's peer port, its metrics
    endpoint and the dashboard, all on loopback by default; both HTTP ones
    answer 401 without the token."""
    addr, token, _ = live
    node = connection.state.node
    pids = {p for p in node.pids()}
    ports = {}
    for c in psutil.net_connections("tcp"):
        if c.status == "LISTEN" and c.pid in pids:
            ports[c.laddr.port] = (c.pid, c.laddr.ip)
    assert {ip for _, ip in ports.values()} == {"127.0.0.1"}
    rec = connection.gcs().r.hgetall(f"beamlet:node:{node.node_id_hex()}")
    metrics, peer = int(rec[b"metrics_export_port"]), int(rec[b"peer_port"])
    dash = int(addr.rsplit(":", 1)[1])
    assert set(ports) == {node.redis_port, peer, metrics, dash}
    assert ports[dash][0] == node.monitor_proc.pid
    assert ports[metrics][0] == ports[peer][0] == node.raylet_proc.pid
    for port in (metrics, dash):
        status, _, body = request(f"127.0.0.1:{port}", "/metrics")
        assert status == 401 and "beamlet_" not in body
