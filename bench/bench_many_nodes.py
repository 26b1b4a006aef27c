"""Many nodes on one machine (issue 14's goal: GCS traffic per node flat in N, and
100 nodes up in under 60 s).

For each N: a `cluster_utils.Cluster` of N nodes (the head and N-1 more), one CPU
each and no worker started ahead (the pool starts one when a task comes); then

  up        seconds from nothing to every node ALIVE in the GCS (nodes are started
            --parallel at a time: each waits for its raylet's socket)
  spread    seconds for a SPREAD job of 10 short tasks per node (the driver's
            first job on the fresh cluster: it starts a worker on every node),
            and whether every node got its 10
  cpu       CPU seconds per raylet at the end of `up` (its start-up: mostly
            Python imports), which bounds `up` on a busy machine
  rest      GCS commands per second per node with nothing running (Redis INFO
            commandstats over --rest seconds, after the cluster settled; the
            commands a script makes count too): the heartbeats and the monitor
  beats     of which round trips (EVALSHA: a heartbeat, or the monitor's check)
  reads     node-table reads (HGETALL/SMEMBERS) during that window: 0 when
            membership travels as deltas
  down      seconds for Cluster.shutdown()

    python bench/bench_many_nodes.py [--nodes 10,25,50,100] [--rest 5] [--parallel 4]

The machine is shared: the numbers move with other load (`uptime` is printed
before each size).
"""
import argparse
import collections
import concurrent.futures
import os
import time

import psutil

import beamlet
from beamlet.cluster_utils import Cluster
from beamlet.gcs.client import GcsClient


@beamlet.remote
def where(i):
    return beamlet.get_runtime_context().get_node_id()


def commands(g) -> dict:
    return {k[len("cmdstat_"):]: v["calls"] for k, v in g.r.info("commandstats").items()}


def one(n, rest_s, parallel):
    t0 = time.perf_counter()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
            list(ex.map(lambda _: c.add_node(num_cpus=1, wait=False), range(n - 1)))
        c.wait_for_nodes(timeout=600)
        up = time.perf_counter() - t0
        cpu = 0.0
        for node in c.list_all_nodes():
            t_ = psutil.Process(node.raylet_proc.pid).cpu_times()
            cpu += t_.user + t_.system
        h = c.head_node
        g = GcsClient(h.redis_host, h.redis_port, h.password)
        beamlet.init(address=c.address)
        t = time.perf_counter()
        got = beamlet.get([where.options(scheduling_strategy="SPREAD").remote(i)
                           for i in range(10 * n)], timeout=600)
        spread = time.perf_counter() - t
        per_node = collections.Counter(got)
        even = len(per_node) == n and set(per_node.values()) == {10}
        beamlet.shutdown()
        time.sleep(2)       # the workers' first load reports, then quiet
        before = commands(g)
        time.sleep(rest_s)
        after = commands(g)
        grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # minus our own INFO call
        total = sum(grew.values()) - grew.get("info", 0)
        reads = grew.get("hgetall", 0) + grew.get("smembers", 0)
        beats = grew.get("evalsha", 0)
        g.close()
    finally:
        t = time.perf_counter()
        c.shutdown()
        down = time.perf_counter() - t
    return (up, cpu / n, spread, even, total / rest_s / n, beats / rest_s / n, reads,
            down)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="10,25,50,100")
    ap.add_argument("--rest", type=float, default=5.0)
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M"), f"{os.cpu_count()} CPUs", flush=True)
    print(f"{'nodes':>5} {'up s':>7} {'cpu s':>6} {'spread s':>9} {'even':>5} "
          f"{'rest cmd/s/node':>16} {'beats':>6} {'reads':>6} {'down s':>7}   load",
          flush=True)
    for n in (int(x) for x in args.nodes.split(",")):
        load = os.getloadavg()[0]
        up, cpu, spread, even, rate, beats, reads, down = one(n, args.rest,
                                                              args.parallel)
        print(f"{n:>5} {up:>7.1f} {cpu:>6.2f} {spread:>9.1f} {str(even):>5} "
              f"{rate:>16.2f} {beats:>6.2f} {reads:>6} {down:>7.1f}   {load:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
