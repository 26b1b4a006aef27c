"""The timeline (issue 11 §3): beamlet.timeline(filename) and `beamlet timeline
-o FILE` write a Chrome trace / Perfetto JSON with one duration event per task
execution on its worker's row; loaded back, every task of a run is there once
and the spans of each row never overlap."""
import collections
import json
import time

import beamlet as ray
from beamlet.util import state

from conftest import wait_for
from clitools import cli_env, run, start_head  # noqa: F401


def spans(events):
    return [e for e in events if e.get("ph") == "X"]


def check_rows_do_not_overlap(events):
    rows = collections.defaultdict(list)
    for e in spans(events):
        assert e["dur"] >= 0
        rows[(e["pid"], e["tid"])].append(e)
    for row in rows.values():
        row.sort(key=lambda e: e["ts"])
        for a, b in zip(row, row[1:]):
            assert a["ts"] + a["dur"] <= b["ts"], (a, b)
    return rows


def test_timeline_file(ray_start, tmp_path):
    @ray.remote
    def work(i):
        time.sleep(0.02)
        return i

    @ray.remote
    def quick(i):
        return i

    @ray.remote
    class Seq:
        def step(self, i):
            time.sleep(0.01)
            return i

    seq = Seq.remote()
    refs = [work.remote(i) for i in range(8)] + [quick.remote(i) for i in range(30)]
    calls = [seq.step.remote(i) for i in range(10)]      # sent ahead to the actor
    ray.get(refs + calls)
    ids = {r.task_id().hex() for r in refs + calls}

    def recorded():
        done = {t.task_id for t in state.list_tasks(limit=1000,
                                                      filters=[("state", "=", "FINISHED")])}
        return ids <= done
    wait_for(recorded, timeout=20, msg="the run's finished-task records")
    path = tmp_path / "trace.json"
    assert ray.timeline(str(path)) is None
    events = json.loads(path.read_text())
    ours = [e for e in spans(events) if e["args"]["task_id"] in ids]
    assert sorted(e["args"]["task_id"] for e in ours) == sorted(ids)   # each once
    rows = check_rows_do_not_overlap(events)
    node = ray.get_runtime_context().get_node_id()
    assert all(pid == node for pid, _tid in rows)
    # the actor's calls are on its worker's row, one after the other
    (actor_row,) = {(e["pid"], e["tid"]) for e in ours if e["args"].get("actor_id")
                    and e["name"].endswith("Seq.step")}
    assert isinstance(actor_row[1], int)            # a worker pid, not a lane
    # the process rows are named, and waits show as scheduling events
    assert any(e.get("ph") == "M" and e["name"] == "process_name" for e in events)
    assert any(e.get("cat") == "scheduling" for e in events)
    assert len(spans(ray.timeline())) >= len(ours)      # the list form


def test_cli_timeline(cli_env, tmp_path):
    address, _ = start_head(cli_env, "--num-cpus", "2")
    script = tmp_path / "driver.py"
    script.write_text(
        "import sys, beamlet as ray\n"
        "ray.init(address=sys.argv[1])\n"
        "@ray.remote\n"
        "def t(i):\n"
        "    return i\n"
        "print(sum(ray.get([t.remote(i) for i in range(20)])))\n")
    import subprocess
    import sys
    p = subprocess.run([sys.executable, str(script), address], env=cli_env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "190", p.stderr
    out = tmp_path / "cli.json"

    def written():
        r = run(["timeline", "-o", str(out)], cli_env)
        assert r.returncode == 0, r.stderr
        return len([e for e in spans(json.loads(out.read_text()))
                    if e["name"] == "t"]) == 20
    wait_for(written, timeout=30, msg="20 spans in `beamlet timeline`")
    check_rows_do_not_overlap(json.loads(out.read_text()))
