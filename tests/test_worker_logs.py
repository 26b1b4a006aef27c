"""Worker logs (issue 11 §3): every worker's output in a file of its node's
logs directory, `beamlet logs` (list, a worker, an actor, a task, --tail,
--follow), other nodes' logs through their raylets, the last lines of a worker
that runs when its raylet stops, and the driver's deduplication of lines many
workers print alike (as Ray's, with its switches)."""
import os
import re
import subprocess
import sys
import textwrap

import beamlet as ray
from beamlet.cluster_utils import Cluster
from beamlet.log_printer import LogDeduplicator
from beamlet.util import state

from conftest import wait_for
from clitools import cli_env, one_line_error, run, start_head  # noqa: F401

DRIVER = textwrap.dedent("""
    import sys, time
    import beamlet as ray
    ray.init(address=sys.argv[1])

    @ray.remote
    class Talker:
        def say(self, i):
            print("actor says", i)
            print("actor warns", i, file=sys.stderr)
            return i

    @ray.remote
    def task_print(x):
        print("task prints", x)
        return x

    t = Talker.remote()
    ray.get([t.say.remote(i) for i in range(5)])
    r = task_print.remote(7)
    ray.get(r)
    print("IDS", r.task_id().hex(), t._actor_id.hex(), flush=True)
    while sys.stdin.readline() == "say\\n":      # the test's cues
        ray.get(t.say.remote(99))
        print("SAID", flush=True)
""")


def test_logs_cli(cli_env, tmp_path):
    address, _ = start_head(cli_env, "--num-cpus", "2")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script), address], env=cli_env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        while True:
            line = driver.stdout.readline()
            assert line, "the driver ended early"
            if line.startswith("IDS"):
                break
        task_id, actor_id = line.split()[1:]
        listing = run(["logs"], cli_env)
        assert listing.returncode == 0, listing.stderr
        assert "raylet.out" in listing.stdout
        workers = re.findall(r"worker-([0-9a-f]{32})-(\d+)\.out", listing.stdout)
        assert workers
        # an actor's worker: its stdout, its stderr, the last N lines
        out = run(["logs", "actor", "--id", actor_id], cli_env).stdout
        assert [x for x in out.splitlines() if "actor says" in x] == \
            [f"(Talker pid={x.split('pid=')[1].split(')')[0]}) actor says {i}"
             for i, x in enumerate(x for x in out.splitlines() if "actor says" in x)]
        assert len([x for x in out.splitlines() if "actor says" in x]) == 5
        err = run(["logs", "--actor-id", actor_id, "--err", "--tail", "2"], cli_env)
        assert err.stdout.splitlines()[-2:] == [
            x for x in err.stdout.splitlines() if "actor warns" in x][-2:]
        assert len(err.stdout.splitlines()) == 2 and "actor warns 4" in err.stdout
        pid = int(re.search(r"\(Talker pid=(\d+)\)", out).group(1))
        by_pid = run(["logs", "worker", "--pid", str(pid), "--tail", "-1"], cli_env)
        assert by_pid.stdout == out
        # a task: only the lines it printed
        t = run(["logs", "task", "--id", task_id], cli_env).stdout
        assert re.fullmatch(r"\(task_print pid=\d+\) task prints 7\n", t), t
        # a file by name: as it is, without the task tags
        wid = next(w for w, p in workers if int(p) == pid)
        whole = run(["logs", f"worker-{wid}-{pid}.out", "--tail", "-1"], cli_env)
        assert whole.stdout == out and "\x1e" not in whole.stdout
        # bad input: one line each
        assert "needs --pid" in one_line_error(run(["logs", "worker"], cli_env))
        assert "no log file" in one_line_error(run(["logs", "nope.log"], cli_env))
        assert "no worker log" in one_line_error(
            run(["logs", "worker", "--pid", "1"], cli_env))
        # --follow prints the last line, then what is written after
        follow = subprocess.Popen(
            [sys.executable, "-m", "beamlet.cli", "logs", "--actor-id", actor_id,
             "--follow", "--tail", "1"], env=cli_env, stdout=subprocess.PIPE, text=True)
        try:
            assert follow.stdout.readline().endswith(") actor says 4\n")
            driver.stdin.write("say\n")
            driver.stdin.flush()
            while driver.stdout.readline().strip() != "SAID":
                pass        # (the worker lines it prints)
            assert follow.stdout.readline().endswith(") actor says 99\n")
        finally:
            follow.kill()
            follow.wait(10)
    finally:
        driver.kill()
        driver.wait(10)


def test_follow_and_tail_through_the_api(ray_start):
    @ray.remote
    class Chatty:
        def say(self, text):
            print(text)
            return os.getpid()

    c = Chatty.remote()
    pid = ray.get(c.say.remote("first"))
    aid = c._actor_id.hex()
    lines = state.get_log(actor_id=aid, follow=True, tail=0, _interval=0.05)
    ray.get(c.say.remote("second"))
    assert next(lines).endswith(") second\n")
    ray.get(c.say.remote("third"))
    assert next(lines).endswith(") third\n")
    lines.close()
    assert [x.split(") ", 1)[1] for x in state.get_log(pid=pid, tail=2)] == \
        ["second\n", "third\n"]
    files = state.list_logs(glob_filter=f"worker-*-{pid}.*")
    (names,) = files.values()
    assert any(n.endswith(".out") for n in names)


def test_logs_of_another_node():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        node2 = cluster.add_node(num_cpus=1, resources={"node2": 1})
        cluster.connect()

        @ray.remote(resources={"node2": 1})
        def far_print():
            print("printed far away")
            return os.getpid()

        ref = far_print.remote()
        pid = ray.get(ref)
        n2 = node2.node_id.hex()
        files = state.list_logs()
        assert set(files) == {n2, cluster.head_node.node_id.hex()}
        assert any(name.endswith(f"-{pid}.out") for name in files[n2])
        wait_for(lambda: state.get_task(ref) is not None and
                 state.get_task(ref).state == "FINISHED", timeout=20,
                 msg="the task's record")
        lines = list(state.get_log(task_id=ref))
        assert len(lines) == 1 and lines[0].endswith(") printed far away\n")
    finally:
        cluster.shutdown()


SPAMMER = textwrap.dedent("""
    import sys
    import beamlet as ray
    ray.init(num_cpus=1)

    @ray.remote
    class Spammer:
        def spam(self, n):
            for i in range(n):
                print(f"line {i:06d} " + "x" * 40)
            return n

    s = Spammer.remote()
    n = ray.get(s.spam.remote(20000))
    sys.stdout.write(f"SPAMMED {n}\\n")   # (one write: print's pieces would let the
    sys.stdout.flush()                   # printer's lines in between)
    ray.shutdown()     # at once: the actor's worker still runs, its pipe is full
""")


def test_last_lines_of_a_running_worker_are_not_lost(tmp_path):
    script = tmp_path / "spam.py"
    script.write_text(SPAMMER)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, BEAMLET_DEDUP_LOGS="0"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "SPAMMED 20000" in out.stdout
    got = re.findall(r"^\(Spammer pid=\d+\) line (\d{6}) x{40}$", out.stdout, re.M)
    assert len(got) == 20000 and got[-1] == "019999", (len(got), got[-1:])


DEDUP = textwrap.dedent("""
    import time
    import beamlet as ray
    ray.init(num_cpus=4)

    @ray.remote
    def verbose(i):
        print(f"hello world, id={time.time()} {i}")
        time.sleep(0.5)

    ray.get([verbose.remote(i) for i in range(10)])
    ray.shutdown()
""")


def test_driver_deduplicates_like_ray(tmp_path):
    script = tmp_path / "dedup.py"
    script.write_text(DEDUP)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("hello world") == 2, out.stdout
    assert out.stdout.count("[repeated 9x across cluster]") == 1, out.stdout
    assert out.stdout.count("BEAMLET_DEDUP_LOGS=0") == 1
    # the switch: every line
    off = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, BEAMLET_DEDUP_LOGS="0"))
    assert off.stdout.count("hello world") == 10, off.stdout
    # and Ray's name for it
    ray_off = subprocess.run([sys.executable, str(script)], capture_output=True,
                             text=True, timeout=300, env=dict(os.environ,
                                                              RAY_DEDUP_LOGS="0"))
    assert ray_off.stdout.count("hello world") == 10, ray_off.stdout


def test_deduplicator_rules():
    now = [0.0]
    d = LogDeduplicator(window_s=5, allow="^keep", skip="^drop", clock=lambda: now[0])
    out = sys.stdout
    assert d.lines("(f pid=1) loss 0.5 at step 3", out) == \
        [("(f pid=1) loss 0.5 at step 3", out)]
    # the same source again: printed (only other sources' repeats fold)
    assert d.lines("(f pid=1) loss 0.4 at step 4", out) == \
        [("(f pid=1) loss 0.4 at step 4", out)]
    assert d.lines("(f pid=2) loss 0.3 at step 9", out) == []
    assert d.lines("(f pid=3) loss 0.2 at step 9", out) == []
    assert d.lines("(f pid=2) keep me 1", out) == [("(f pid=2) keep me 1", out)]
    assert d.lines("(f pid=3) keep me 1", out) == [("(f pid=3) keep me 1", out)]
    assert d.lines("(f pid=2) drop me", out) == []
    assert d.lines("(f pid=2) 12345", out) == [("(f pid=2) 12345", out)]  # numbers only
    now[0] = 5.0
    (line, stream), = d.expired()
    assert line.startswith("(f pid=3) loss 0.2 at step 9 [repeated 2x across cluster]")
    assert "BEAMLET_DEDUP_LOGS=0" in line
    # after its window a line is new again; the note is said once
    assert d.lines("(f pid=4) loss 0.1 at step 10", out) == \
        [("(f pid=4) loss 0.1 at step 10", out)]
    d.lines("(f pid=5) loss 0.1 at step 11", out)
    (line, _), = d.expired(everything=True)
    assert line == "(f pid=5) loss 0.1 at step 11 [repeated 1x across cluster]"
