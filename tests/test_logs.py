"""Worker output reaches the driver, and functions are exported once to the GCS
under the documented key schema; on real local clusters."""
import os
import re
import subprocess
import sys
import textwrap

import redis

import beamlet as ray
from beamlet.gcs import keys

DRIVER = textwrap.dedent("""
    import os, sys, time
    import beamlet as ray
    ray.init(num_cpus=2)

    @ray.remote
    def hello(i):
        print(f"hello from task {i}")
        print(f"to stderr {i}", file=sys.stderr)
        print("partial line without newline", end="")
        return os.getpid()

    pids = ray.get([hello.remote(i) for i in range(3)])
    print("PIDS", " ".join(map(str, pids)), flush=True)
    time.sleep(1.0)   # output is streamed; give it a moment before exiting
    ray.shutdown()
""")


def test_worker_print_reaches_driver_with_prefix(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    # every line (the tasks print alike: deduplication would fold them)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path),
                         env=dict(os.environ, BEAMLET_DEDUP_LOGS="0"))
    assert out.returncode == 0, out.stderr[-3000:]
    pids = set(re.search(r"^PIDS (.*)$", out.stdout, re.M).group(1).split())
    for i in range(3):
        m = re.search(rf"^\(hello pid=(\d+)\) hello from task {i}$", out.stdout, re.M)
        assert m, out.stdout
        assert m.group(1) in pids
        assert re.search(rf"^\(hello pid=\d+\) to stderr {i}$", out.stderr, re.M), \
            out.stderr
    # a last line without a newline is flushed when the task ends
    assert re.search(r"^\(hello pid=\d+\) partial line without newline$", out.stdout,
                     re.M), out.stdout
    assert "to stderr" not in out.stdout


def test_log_to_driver_false(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.replace("ray.init(num_cpus=2)",
                                     "ray.init(num_cpus=2, log_to_driver=False)"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PIDS" in out.stdout
    assert "hello from task" not in out.stdout


def test_print_reaches_capfd(capfd):
    ray.init(num_cpus=1)
    try:
        @ray.remote
        def shout():
            print("SHOUT-12345")
        ray.get(shout.remote())
        from conftest import wait_for
        seen = []

        def got():
            seen.append(capfd.readouterr().out)
            return "SHOUT-12345" in "".join(seen)
        wait_for(got, timeout=10, msg="worker output")
        assert re.search(r"^\(shout pid=\d+\) SHOUT-12345$", "".join(seen), re.M)

        @ray.remote
        class Talker:
            def talk(self):
                print("TALK-777")
        t = Talker.remote()
        ray.get(t.talk.remote())
        seen.clear()

        def got_actor():
            seen.append(capfd.readouterr().out)
            return "TALK-777" in "".join(seen)
        wait_for(got_actor, timeout=10, msg="actor output")
        assert re.search(r"^\(Talker pid=\d+\) TALK-777$", "".join(seen), re.M)
    finally:
        ray.shutdown()


def _redis():
    """A plain redis client on the GCS, as a person with redis-cli would have."""
    from beamlet import api
    host, port, password = api._core().node_info["redis"]
    return redis.Redis(host=host, port=int(port), password=password)


def test_functions_exported_once_to_gcs():
    ray.init(num_cpus=2)
    try:
        r = _redis()
        before = set(r.scan_iter(f"{keys.P}fn:*"))

        @ray.remote
        def exported_fn(x):
            return x + 1

        @ray.remote
        def other_fn(x):
            return x * 2
        assert ray.get([exported_fn.remote(i) for i in range(20)]) == list(range(1, 21))
        after = set(r.scan_iter(f"{keys.P}fn:*"))
        new = after - before
        assert len(new) == 1, new
        (key,) = new
        assert re.fullmatch(rb"beamlet:fn:[0-9a-f]+", key)
        import cloudpickle
        fn = cloudpickle.loads(r.get(key))
        assert fn(1) == 2 and fn.__name__ == "exported_fn"
        # more calls export nothing more; another function adds one key
        ray.get(exported_fn.remote(0))
        ray.get(other_fn.remote(1))
        assert len(set(r.scan_iter(f"{keys.P}fn:*")) - before) == 2
        # the rest of the schema is readable too: this node and the tasks run
        node = r.hgetall(f"{keys.P}node:{ray.get_runtime_context().get_node_id()}")
        assert node[b"state"] == b"ALIVE"
        from conftest import wait_for
        node_id = bytes.fromhex(ray.get_runtime_context().get_node_id())
        import msgpack
        job = bytes.fromhex(ray.get_runtime_context().get_job_id())

        def recorded():     # batches of records (raylet/scheduler.py task_record)
            batches = []
            for m in r.zrange(keys.task_events(job), 0, -1):
                u = msgpack.Unpacker(raw=False)
                u.feed(m)
                batches.append(list(u))     # the node id, then its records
            return any(rec[2].endswith("exported_fn") and rec[4] == "FINISHED" and
                       b[0] == node_id for b in batches for rec in b[1:])
        wait_for(recorded, msg="finished-task records in the GCS")
        r.close()
    finally:
        ray.shutdown()
