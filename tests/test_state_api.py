"""The state API (beamlet.util.state, Ray's ray.util.state) and its command line
(`beamlet list|get|summary`), on real clusters: one node, several nodes, and a
cluster started by `beamlet start` that the real CLI inspects."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import beamlet as ray
from beamlet.cluster_utils import Cluster
from beamlet.gcs import keys
from beamlet.util import state

from conftest import wait_for
from clitools import cli_env, one_line_error, run, start_head  # noqa: F401


def _tasks(**kw):
    """Every task, with the short name of its function (a function defined in a
    test is named module.test.<locals>.f, as its qualified name)."""
    out = state.list_tasks(limit=10_000, detail=True, **kw)
    for t in out:
        t.name = short(t.name)
    return out


def short(name):
    return name.split("<locals>.")[-1]


def test_tasks_actors_objects_workers_and_their_fields(ray_start):
    @ray.remote
    def f(x):
        return x + 1

    @ray.remote
    def boom():
        raise ValueError("no")

    @ray.remote
    class Counter:
        def incr(self):
            return os.getpid()

    refs = [f.remote(i) for i in range(5)]
    assert ray.get(refs) == [1, 2, 3, 4, 5]
    c = Counter.remote()
    pid = ray.get(c.incr.remote())
    with pytest.raises(ValueError):
        ray.get(boom.remote())
    big = ray.put(b"x" * 300_000)

    # finished records are written behind (each heartbeat): wait for them
    def finished():
        ts = _tasks(filters=[("state", "!=", "RUNNING")])
        return ts if len([t for t in ts if t.name == "f"]) == 5 and \
            any(t.name == "boom" for t in ts) and any(t.name == "Counter.incr"
                                                      for t in ts) else None
    tasks = wait_for(finished, timeout=20, msg="finished task records")
    by_name = {}
    for t in tasks:
        by_name.setdefault(t.name, []).append(t)
    assert len({t.task_id for t in by_name["f"]}) == 5       # each task once
    for t in by_name["f"]:
        assert t.state == "FINISHED" and t.type == "NORMAL_TASK"
        assert t.worker_pid and t.node_id == ray.get_runtime_context().get_node_id()
        assert t.start_time_ms <= t.end_time_ms
        assert t["state"] == t.get("state") == t.asdict()["state"]    # dict-like
    (b,) = by_name["boom"]
    assert b.state == "FAILED" and b.error_type == "TASK_EXECUTION_EXCEPTION"
    (call,) = by_name["Counter.incr"]
    assert call.type == "ACTOR_TASK" and call.worker_pid == pid and call.actor_id
    assert by_name["Counter"][0].type == "ACTOR_CREATION_TASK"
    assert short(by_name["Counter"][0].func_or_class_name) == "Counter.__init__"

    # filters: =, != (case-insensitive values), and limit (the newest)
    fname = next(t.name for t in state.list_tasks() if short(t.name) == "f")
    assert {t.name for t in _tasks(filters=[("name", "=", fname.upper())])} == {"f"}
    assert "f" not in {t.name for t in _tasks(filters=[("name", "!=", fname)])}
    two = state.list_tasks(filters=[("name", "=", fname)], limit=2)
    assert len(two) == 2
    assert two[0].start_time_ms is None         # a detail column, not asked for
    # get_task by id or by the ObjectRef it returns
    assert state.get_task(refs[0]).task_id == refs[0].task_id().hex()
    assert state.get_task(refs[1].task_id().hex()).state == "FINISHED"
    assert state.get_task("00" * 16) is None

    (a,) = [a for a in state.list_actors() if short(a.class_name) == "Counter"]
    assert a.state == "ALIVE" and a.pid == pid and a.node_id
    assert state.get_actor(a.actor_id).actor_id == a.actor_id

    objs = state.list_objects(filters=[("object_id", "=", big.hex())], detail=True)
    assert len(objs) == 1 and objs[0].object_size >= 300_000
    assert objs[0].reference_type == "LOCAL_REFERENCE" and objs[0].where == "arena"

    workers = state.list_workers()
    assert pid in {w.pid for w in workers if w.worker_type == "WORKER"}
    assert os.getpid() in {w.pid for w in workers if w.worker_type == "DRIVER"}
    (node,) = state.list_nodes()
    assert node.state == "ALIVE" and node.is_head_node and node.resources_total["CPU"] == 2
    (job,) = [j for j in state.list_jobs() if j.job_id ==
              ray.get_runtime_context().get_job_id()]
    assert job.status == "RUNNING"

    s = state.summarize_tasks()["cluster"]
    summary = {short(k): v for k, v in s["summary"].items()}
    assert summary["f"]["state_counts"]["FINISHED"] == 5
    assert summary["boom"]["state_counts"] == {"FAILED": 1}
    assert s["total_actor_tasks"] >= 1 and s["total_actor_scheduled"] >= 1
    assert {short(k): v for k, v in state.summarize_actors()["cluster"][
        "summary"].items()}["Counter"]["state_counts"] == {"ALIVE": 1}
    assert state.summarize_objects()["cluster"]["total_objects"] >= 1


def test_pending_tasks_have_a_reason(ray_start):
    @ray.remote(num_cpus=1)
    class Hog:
        def ping(self):
            return 1

    hogs = [Hog.remote() for _ in range(2)]
    ray.get([h.ping.remote() for h in hogs])

    @ray.remote
    def waits():
        return 1

    @ray.remote(num_gpus=1)
    def needs_gpu():
        return 1

    r1, r2 = waits.remote(), needs_gpu.remote()

    def pending():
        ts = {short(t.name): t for t in
              state.list_tasks(filters=[("state", "!=", "FINISHED")])}
        return ts if "waits" in ts and "needs_gpu" in ts and ts["needs_gpu"].pending_reason \
            and ts["needs_gpu"].pending_reason["code"] == "INFEASIBLE" else None
    ts = wait_for(pending, msg="pending reasons")
    w = ts["waits"]
    assert w.state == "PENDING_NODE_ASSIGNMENT"
    assert w.pending_reason["code"] == "WAITING_FOR_RESOURCES"
    held = {h["pid"] for h in w.pending_reason["held_by"]}
    assert held == {a.pid for a in state.list_actors()}
    assert "held by actor Hog" in w.pending_reason["text"]
    assert "GPU" in ts["needs_gpu"].pending_reason["text"]
    ray.cancel(r2)
    for h in hogs:
        ray.kill(h)
    assert ray.get(r1) == 1


def test_bad_arguments_are_explained(ray_start):
    with pytest.raises(ValueError, match="predicate"):
        state.list_tasks(filters=[("state", "~", "RUNNING")])
    with pytest.raises(ValueError, match="not a column of tasks"):
        state.list_tasks(filters=[("nope", "=", 1)])
    with pytest.raises(ValueError, match="limit"):
        state.list_actors(limit=0)
    with pytest.raises(ValueError, match="tuple"):
        state.list_tasks(filters=["state=RUNNING"])


def test_finished_task_records_are_bounded_per_job():
    ray.init(num_cpus=2, _system_config={"task_events_per_job": 30})
    try:
        @ray.remote
        def tiny(i):
            return i
        ray.get([tiny.remote(i) for i in range(200)])
        from beamlet import api
        r = api.connection.gcs().r
        job = bytes.fromhex(ray.get_runtime_context().get_job_id())

        def counted():
            n = r.hget(keys.job(job), "tasks_finished")
            return n is not None and int(n) >= 200
        wait_for(counted, timeout=20, msg="the job's count of finished tasks")
        from beamlet.gcs.client import StateReader
        records, kept = StateReader(r).finished_tasks([job.hex()])
        assert len(records) == 30 and kept == {job.hex(): 30}
        # stored as batches: never much more than what is kept
        assert r.zcard(keys.task_events(job)) < 200
        # in Redis's memory only: its append-only file has the count, not them
        aof = os.path.join(r.config_get("dir")["dir"], r.config_get(
            "appendfilename")["appendfilename"])
        with open(aof, "rb") as f:
            text = f.read()
        assert b"tasks_finished" in text and keys.task_events(job).encode() not in text
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            done = state.list_tasks(limit=1000, filters=[("state", "=", "FINISHED")])
        assert len(done) == 30
        assert any("keeps the newest 30 of" in str(w.message) for w in seen)
    finally:
        ray.shutdown()


def test_every_node_of_a_cluster_is_covered():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        node2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
        cluster.connect()

        @ray.remote(resources={"node2": 1})
        def there():
            return os.getpid()

        @ray.remote(resources={"node2": 0.5})
        class Far:
            def pid(self):
                return os.getpid()

        pid = ray.get(there.remote())
        far = Far.remote()
        apid = ray.get(far.pid.remote())
        n2 = node2.node_id.hex()

        def recorded():
            ts = [t for t in _tasks() if t.name == "there"]  # (short names)
            return ts if ts and ts[0].state == "FINISHED" else None
        (t,) = wait_for(recorded, timeout=20, msg="the remote task's record")
        assert t.node_id == n2 and t.worker_pid == pid
        (a,) = [a for a in state.list_actors() if short(a.class_name) == "Far"]
        assert a.node_id == n2 and a.pid == apid and a.state == "ALIVE"
        nodes = {w.node_id for w in state.list_workers()}
        assert nodes == {n2, cluster.head_node.node_id.hex()}
        assert {n.node_id for n in state.list_nodes()} == nodes
    finally:
        cluster.shutdown()


DRIVER = textwrap.dedent("""
    import sys, time
    import beamlet as ray
    ray.init(address=sys.argv[1])

    @ray.remote
    def sleeper(i):
        time.sleep(300)

    @ray.remote
    def late():
        return 1

    refs = [sleeper.remote(i) for i in range(2)] + [late.remote()]
    print("SUBMITTED", flush=True)
    ray.get(refs)
""")


def test_cli_list_get_summary(cli_env, tmp_path):
    address, _ = start_head(cli_env, "--num-cpus", "2")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(cli_env)
    driver = subprocess.Popen([sys.executable, str(script), address], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "SUBMITTED"

        def running():
            p = run(["list", "tasks", "--filter", "state=RUNNING", "--format", "json"],
                    cli_env)
            assert p.returncode == 0, p.stderr
            rows = json.loads(p.stdout)
            return rows if len(rows) == 2 else None
        rows = wait_for(running, timeout=30, msg="two RUNNING tasks in `beamlet list`")
        assert {r["name"] for r in rows} == {"sleeper"} and all(r["worker_pid"]
                                                                 for r in rows)
        table = run(["list", "tasks"], cli_env)
        assert table.returncode == 0 and "sleeper" in table.stdout
        assert "Total: 3 tasks" in table.stdout
        # `beamlet status` says why the pending demand waits (the raylet's reason)
        def explained():
            p = run(["status"], cli_env)
            return p.stdout if "late (task) waits for 1 CPU" in p.stdout else None
        status = wait_for(explained, timeout=30, msg="the reason in `beamlet status`")
        assert "held by task sleeper" in status
        (waiting,) = json.loads(run(["list", "tasks", "--filter", "state!=RUNNING",
                                     "--format", "json"], cli_env).stdout)
        assert waiting["name"] == "late"
        assert waiting["pending_reason"]["code"] == "WAITING_FOR_RESOURCES"
        got = run(["get", "tasks", rows[0]["task_id"], "--format", "json"], cli_env)
        assert got.returncode == 0, got.stderr
        one = json.loads(got.stdout)
        assert one["task_id"] == rows[0]["task_id"] and one["start_time_ms"]
        yaml = run(["get", "tasks", rows[0]["task_id"]], cli_env).stdout
        tid = rows[0]["task_id"]
        assert (f"task_id: {tid}\n" in yaml or f'task_id: "{tid}"' in yaml) \
            and "\nstate: RUNNING\n" in yaml, yaml
        summary = run(["summary", "tasks"], cli_env)
        assert "sleeper" in summary.stdout and "RUNNING: 2" in summary.stdout
        assert "PENDING_NODE_ASSIGNMENT: 1" in summary.stdout
        workers = json.loads(run(["list", "workers", "--format", "json"], cli_env).stdout)
        assert driver.pid in {w["pid"] for w in workers if w["worker_type"] == "DRIVER"}
        for kind in ("actors", "objects", "nodes", "placement-groups", "jobs"):
            p = run(["list", kind], cli_env)
            assert p.returncode == 0, (kind, p.stderr)
        err = one_line_error(run(["list", "tasks", "--filter", "state"], cli_env))
        assert "KEY=VALUE" in err
        err = one_line_error(run(["get", "tasks", "ab" * 16], cli_env))
        assert "no task with id" in err
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
