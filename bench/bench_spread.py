"""Tasks spread over two nodes vs the same CPUs on one node (issue 6's goal:
throughput over two nodes at least that of one node).

One node: init(num_cpus=2).  Two nodes: a Cluster of a head and a second node with
one CPU each (so the same two CPUs in all); tasks are submitted with "SPREAD".
Each round measures both, alternating which goes first; prints tasks/s and the
ratio two-nodes/one-node for short tasks (1 ms of sleep) and 20 ms tasks.

    python bench/bench_spread.py [--tasks 2000] [--rounds 3]
"""
import argparse
import statistics
import time

import beamlet
from beamlet.cluster_utils import Cluster


@beamlet.remote
def work(ms):
    time.sleep(ms / 1000)
    return 1


def rate(n, ms, strategy):
    opts = {"scheduling_strategy": strategy} if strategy else {}
    beamlet.get([work.options(**opts).remote(ms) for _ in range(20)])  # warm up
    t = time.perf_counter()
    assert sum(beamlet.get([work.options(**opts).remote(ms) for _ in range(n)])) == n
    return n / (time.perf_counter() - t)


def one_node(n, ms):
    beamlet.init(num_cpus=2)
    try:
        return rate(n, ms, None)
    finally:
        beamlet.shutdown()


def two_nodes(n, ms):
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        time.sleep(1.2)   # one heartbeat: every raylet sees both nodes
        beamlet.init(address=c.address)
        try:
            return rate(n, ms, "SPREAD")
        finally:
            beamlet.shutdown()
    finally:
        c.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for ms, n in ((1, args.tasks), (20, max(200, args.tasks // 10))):
        ones, twos = [], []
        for r in range(args.rounds):
            order = (one_node, two_nodes) if r % 2 == 0 else (two_nodes, one_node)
            for fn in order:
                (ones if fn is one_node else twos).append(fn(n, ms))
        o, t = statistics.median(ones), statistics.median(twos)
        print(f"{ms:>3} ms tasks: one node {o:8.0f}/s   two nodes {t:8.0f}/s   "
              f"two/one {t / o:.2f}", flush=True)


if __name__ == "__main__":
    main()
