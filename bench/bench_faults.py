"""Detection and recovery times of the failures in docs/fault-tolerance.md,
measured on a real cluster on this machine (cluster_utils.Cluster; processes
stopped and killed for real).

    python bench/bench_faults.py [--node-death-s 30] [--loop-stall-s 30] [--only stall,kill]

Cases (each on a fresh cluster of a head and one more node, one CPU each):
  stall     SIGSTOP the node's raylet for node_death_s + 5 s: until it is declared
            dead; after SIGCONT, until it is ALIVE again under a new id (fenced)
  short     SIGSTOP it for node_death_s / 3: it must stay ALIVE
  kill      SIGKILL the raylet under a running task (max_retries=1, soft
            affinity to that node): until it is declared dead, until the task's
            result (re-run on the head)
  stuck     the raylet's event loop held (testing hook): until declared dead,
            until it rejoined (fenced from its heartbeat thread)
  redis     SIGKILL redis-server: until the monitor's restarted one answers, until
            a driver's nodes() lists both nodes again
  worker    SIGKILL the worker running a task: until the task's result (retried)
  driver    SIGKILL a driver that started its own cluster (init()): until every
            process of that cluster is gone
Times are seconds from the fault; the thresholds are the defaults unless given.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil

import beamlet
from beamlet.cluster_utils import Cluster
from beamlet.gcs.client import GcsClient


def until(cond, timeout=300.0, interval=0.05):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = cond()
        if v:
            return time.perf_counter() - t0
        time.sleep(interval)
    raise TimeoutError("condition not met")


class Case:
    """A fresh cluster of a head and one node `n2` (resource "n2"); with
    driver=True this process is connected to it.  A context manager."""

    def __init__(self, args, driver=False):
        cfg = {"node_death_s": args.node_death_s, "loop_stall_s": args.loop_stall_s,
               "testing_hooks": 1}
        self.c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "_system_config": cfg})
        self.n2 = self.c.add_node(num_cpus=1, resources={"n2": 1})
        h = self.c.head_node
        self.g = GcsClient(h.redis_host, h.redis_port, h.password, retry_s=0)
        self.driver = driver
        if driver:
            beamlet.init(address=self.c.address)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.driver:
            beamlet.shutdown()
        self.g.close()
        self.c.shutdown()

    def state(self, node_hex):
        try:
            return self.g.node_state(bytes.fromhex(node_hex))
        except Exception:
            return None

    def rejoined(self):
        try:
            return any(r.get("state") == "ALIVE" and r["node_id"] != self.n2.node_id.hex()
                       and r.get("pid") == str(self.n2.raylet_proc.pid)
                       for r in self.g.nodes())
        except Exception:
            return False


def case_stall(args):
    with Case(args) as k:
        pid, nid = k.n2.raylet_proc.pid, k.n2.node_id.hex()
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGSTOP)
        dead = until(lambda: k.state(nid) == "DEAD")
        time.sleep(max(0.0, args.node_death_s + 5 - (time.perf_counter() - t0)))
        os.kill(pid, signal.SIGCONT)
        back = until(k.rejoined)
        return f"declared dead {dead:.1f} s after SIGSTOP; rejoined (new id) {back:.1f} s after SIGCONT"


def case_short(args):
    with Case(args) as k:
        pid, nid = k.n2.raylet_proc.pid, k.n2.node_id.hex()
        os.kill(pid, signal.SIGSTOP)
        time.sleep(args.node_death_s / 3)
        os.kill(pid, signal.SIGCONT)
        time.sleep(2)
        return f"stopped {args.node_death_s / 3:.0f} s: state {k.state(nid)} (no change)"


def case_kill(args):
    from beamlet.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    with Case(args, driver=True) as k:
        marker = tempfile.mktemp()
        nid = k.n2.node_id.hex()

        @beamlet.remote(max_retries=1)
        def slow(path):
            import pathlib
            here = beamlet.get_runtime_context().get_node_id()
            if here == nid:
                pathlib.Path(path).touch()
                time.sleep(3600)
            return here
        ref = slow.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            nid, soft=True)).remote(marker)
        until(lambda: os.path.exists(marker), 120)
        t0 = time.perf_counter()
        k.n2.raylet_proc.send_signal(signal.SIGKILL)
        dead = until(lambda: k.state(nid) == "DEAD")
        beamlet.get(ref, timeout=600)
        done = time.perf_counter() - t0
        os.unlink(marker)
        return (f"declared dead {dead:.1f} s after SIGKILL; its task, re-run on the "
                f"head, done {done:.1f} s after")


def case_stuck(args):
    with Case(args, driver=True) as k:
        nid = k.n2.node_id.hex()

        @beamlet.remote(resources={"n2": 1}, max_retries=0)
        def block(seconds):
            from beamlet import connection
            return connection.core().call("testing_block_loop", seconds)
        stuck = block.remote(3600)
        dead = until(lambda: k.state(nid) == "DEAD", 600)
        back = until(k.rejoined, 600)
        del stuck
        return (f"declared dead {dead:.1f} s after its loop stuck (loop_stall_s + "
                f"node_death_s = {args.loop_stall_s + args.node_death_s:g}); rejoined "
                f"{dead + back:.1f} s after")


def case_redis(args):
    with Case(args, driver=True) as k:
        ids = {k.c.head_node.node_id.hex(), k.n2.node_id.hex()}
        t0 = time.perf_counter()
        k.c.head_node.redis_proc.send_signal(signal.SIGKILL)

        def answers():
            try:
                return k.g.r.ping()
            except Exception:
                return False
        back = until(answers)
        nodes = {n["NodeID"] for n in beamlet.nodes() if n["Alive"]}
        listed = time.perf_counter() - t0
        assert nodes == ids, nodes
        return f"Redis answers again {back:.1f} s after SIGKILL; nodes() complete {listed:.1f} s after"


def case_worker(args):
    with Case(args, driver=True):

        @beamlet.remote(max_retries=1)
        def pid_then_sleep(path):
            import pathlib
            p = pathlib.Path(path)
            if not p.exists():
                p.write_text(str(os.getpid()))
                time.sleep(3600)
            return "retried"
        marker = tempfile.mktemp()
        ref = pid_then_sleep.remote(marker)
        until(lambda: os.path.exists(marker) and open(marker).read(), 120)
        t0 = time.perf_counter()
        os.kill(int(open(marker).read()), signal.SIGKILL)
        beamlet.get(ref, timeout=120)
        os.unlink(marker)
        return f"task retried and done {time.perf_counter() - t0:.1f} s after SIGKILL"


def case_driver(args):
    code = textwrap.dedent("""
        import os, sys, time, beamlet
        beamlet.init(num_cpus=1)
        print(os.getpid(), flush=True)
        time.sleep(3600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    kids = psutil.Process(p.pid).children(recursive=True)
    t0 = time.perf_counter()
    p.kill()
    p.wait()
    until(lambda: not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE
                          for k in kids))
    return (f"{len(kids)} processes of its cluster gone "
            f"{time.perf_counter() - t0:.1f} s after SIGKILL")


CASES = {"stall": case_stall, "short": case_short, "kill": case_kill,
         "stuck": case_stuck, "redis": case_redis, "worker": case_worker,
         "driver": case_driver}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--node-death-s", type=float, default=30.0)
    ap.add_argument("--loop-stall-s", type=float, default=30.0)
    ap.add_argument("--only", default=",".join(CASES))
    args = ap.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M"), f"node_death_s={args.node_death_s:g}",
          f"loop_stall_s={args.loop_stall_s:g}", f"load {os.getloadavg()[0]:.1f}",
          flush=True)
    for name in args.only.split(","):
        print(f"{name:7} {CASES[name](args)}", flush=True)


if __name__ == "__main__":
    main()
