"""Placement group create + remove rate (issue 5's speed item), on one node and
on a 2-node Cluster (beamlet.cluster_utils) on this machine.

    .venv/bin/python bench/bench_placement_groups.py [N]

Each round: placement_group([...]) -> get(pg.ready()) -> remove_placement_group.
On the 2-node cluster: PACK groups that fit on the driver's node (reserved there,
no peer messages) and STRICT_SPREAD groups with one bundle per node (a
PG_RESERVE round trip to the other raylet, then a PG_REMOVE)."""
import sys
import time

import beamlet
from beamlet.cluster_utils import Cluster
from beamlet.util import placement_group, remove_placement_group


def rate(n, bundles, strategy):
    for _ in range(5):      # warm up
        pg = placement_group(bundles, strategy=strategy)
        beamlet.get(pg.ready(), timeout=30)
        remove_placement_group(pg)
    t0 = time.perf_counter()
    for _ in range(n):
        pg = placement_group(bundles, strategy=strategy)
        beamlet.get(pg.ready(), timeout=30)
        remove_placement_group(pg)
    return n / (time.perf_counter() - t0)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    beamlet.init(num_cpus=2)
    one = rate(n, [{"CPU": 1}], "PACK")
    two = rate(n, [{"CPU": 1}, {"CPU": 1}], "PACK")
    beamlet.shutdown()
    print(f"one node:  {one:8.0f} groups/s (1 bundle)   {two:8.0f} groups/s (2 bundles)")

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        c.add_node(num_cpus=2)
        beamlet.init(address=c.address)
        time.sleep(1.2)     # the raylets' node tables see both nodes
        local = rate(n, [{"CPU": 1}, {"CPU": 1}], "PACK")
        spread = rate(n, [{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD")
        print(f"2 nodes:   {local:8.0f} groups/s (PACK, on the driver's node)   "
              f"{spread:8.0f} groups/s (STRICT_SPREAD over both nodes)")
    finally:
        c.shutdown()


if __name__ == "__main__":
    main()
