"""A driver on a host that runs no node of the cluster (issue 15): init() with the
remote head's address fails, naming the address and saying what to run there;
after `beamlet start --address` on that host it connects.  Two hosts are two
network namespaces (the harness of test_netns.py); skips without root."""
import re

from test_netns import NS_HEAD, NS_WORKER, hosts, pytestmark, run_in  # noqa: F401

DRIVER = """
import beamlet
beamlet.init(address="{address}")
print("NODES", len([n for n in beamlet.nodes() if n["Alive"]]))
beamlet.shutdown()
"""


def test_remote_head_needs_a_local_node(hosts):
    p = run_in(NS_HEAD, hosts["roots"][0],
               ["start", "--head", "--port", "0", "--node-ip-address", hosts["head_ip"],
                "--num-cpus", "1", "--object-store-memory", str(100 * 2**20)])
    assert p.returncode == 0, p.stderr
    address = re.search(r"address:\s+(\S+)", p.stdout).group(1)
    token = re.search(r"--redis-password (\S+)", p.stdout).group(1)
    d = run_in(NS_WORKER, hosts["roots"][1], None, python=DRIVER.format(address=address))
    assert d.returncode != 0
    assert (f"the GCS at {address} is on another machine, and this machine runs no "
            f"node of that cluster" in d.stderr), d.stderr[-2000:]
    assert f"beamlet start --address {address}" in d.stderr
    # a port nothing listens on, on that host: a different, clear error
    wrong = f"{hosts['head_ip']}:1"
    d = run_in(NS_WORKER, hosts["roots"][1], None, python=DRIVER.format(address=wrong))
    assert d.returncode != 0 and f"no beamlet cluster at {wrong}" in d.stderr
    # as the error says: a node here first, then the driver connects
    p = run_in(NS_WORKER, hosts["roots"][1],
               ["start", "--address", address, "--redis-password", token,
                "--num-cpus", "1", "--object-store-memory", str(100 * 2**20)])
    assert p.returncode == 0, p.stderr
    d = run_in(NS_WORKER, hosts["roots"][1], None, python=DRIVER.format(address=address))
    assert d.returncode == 0 and "NODES 2" in d.stdout, d.stderr[-2000:]
