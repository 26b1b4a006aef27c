"""A multi-node cluster on one machine, for tests and experiments (as Ray's).

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node2 = cluster.add_node(num_cpus=2, resources={"node2": 1})
    # tunables for every node of the cluster (set with the head, as in Ray):
    #   Cluster(..., head_node_args={"_system_config": {"node_death_s": 3}})
    beamlet.init(address=cluster.address)
    ...
    cluster.remove_node(node2)          # or allow_graceful=False: SIGKILL
    cluster.shutdown()

Every node is a separate raylet process with its own session directory, unix
socket, shared-memory store, TCP port for peers and resources; all belong to this
process (they exit with it).
"""
import os
import signal
import time

from ._private import config
from .gcs.client import GcsClient
from .node import Node

# small stores by default: many nodes share one machine's /dev/shm
DEFAULT_STORE = 256 * 1024 * 1024


class Cluster:
    def __init__(self, initialize_head=False, connect=False, head_node_args=None,
                 shutdown_at_exit=True):
        self.head_node = None
        self.worker_nodes = []
        self._gcs = None
        self._child_env = {}     # BEAMLET_<NAME> of the head's _system_config
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()

    @property
    def address(self):
        if self.head_node is None:
            raise RuntimeError("The cluster has no head node yet: call add_node() "
                               "(the first node added is the head).")
        return self.head_node.address

    def connect(self, namespace=None):
        import beamlet
        return beamlet.init(address=self.address, namespace=namespace)

    def _node_args(self, num_cpus, num_gpus, resources, object_store_memory):
        return dict(num_cpus=1 if num_cpus is None else num_cpus,
                    num_gpus=0 if num_gpus is None else num_gpus,
                    resources=resources,
                    object_store_memory=object_store_memory or DEFAULT_STORE,
                    owner_pid=os.getpid(), prestart=0, child_env=self._child_env)

    def add_node(self, num_cpus=None, num_gpus=None, resources=None,
                 object_store_memory=None, wait=True, _system_config=None, **kw):
        """Start a node (the first one is the head) and return its handle.
        `_system_config` (the head only, as in Ray): tunables (config.py) for
        every node of the cluster, e.g. {"node_death_s": 3}."""
        unknown = set(kw) - {"node_ip_address", "port", "include_dashboard",
                             "dashboard_port", "metrics_export_port"}
        if unknown:
            raise TypeError(f"add_node() got unexpected keyword argument(s) "
                            f"{sorted(unknown)}.")
        if _system_config is not None:
            if self.head_node is not None:
                raise ValueError("_system_config is set with the head node (the first "
                                 "add_node(), or head_node_args) and applies to every "
                                 "node; a later node cannot change it.")
            self._child_env = config.system_config_env(_system_config)
        args = self._node_args(num_cpus, num_gpus, resources, object_store_memory)
        ip = kw.get("node_ip_address") or "127.0.0.1"
        args["metrics_export_port"] = kw.get("metrics_export_port") or 0
        if self.head_node is None:
            # (the dashboard only when asked: a test cluster seldom needs one)
            node = Node(head=True, node_ip=ip, redis_port=kw.get("port"),
                        include_dashboard=bool(kw.get("include_dashboard")),
                        dashboard_port=kw.get("dashboard_port"), **args).start()
            self.head_node = node
            self._gcs = GcsClient(node.redis_host, node.redis_port, node.password)
        else:
            h = self.head_node
            node = Node(head=False, node_ip=ip, redis_address=(h.redis_host, h.redis_port),
                        password=h.password, **args).start()
            self.worker_nodes.append(node)
        if wait:
            self._wait_alive([node.node_id.hex()])
        return node

    def remove_node(self, node, allow_graceful=True):
        """Stop a node: gracefully (its raylet deregisters) or by SIGKILL (it just
        goes silent, as a crashed machine would)."""
        if node is self.head_node:
            raise ValueError("remove_node() cannot remove the head node; use shutdown().")
        if node not in self.worker_nodes:
            raise ValueError(f"{node!r} is not a node of this cluster.")
        self.worker_nodes.remove(node)
        if not allow_graceful and node.raylet_proc.poll() is None:
            node.raylet_proc.send_signal(signal.SIGKILL)
            node.raylet_proc.wait(5)
        node.stop()

    def list_all_nodes(self):
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    def _wait_alive(self, node_ids, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            # only these nodes' states: reading every record per poll would make
            # bringing up N nodes cost N^2 reads
            states = self._gcs.node_states(node_ids)
            if all(states.get(i) == "ALIVE" for i in node_ids):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes {node_ids} did not register within {timeout} s")
            time.sleep(0.02)

    def wait_for_nodes(self, timeout=30.0):
        """Wait until every node added is registered ALIVE in the GCS."""
        self._wait_alive([n.node_id.hex() for n in self.list_all_nodes()], timeout)

    def shutdown(self):
        import beamlet
        if beamlet.is_initialized():
            beamlet.shutdown()
        # every raylet stops at once (each kills its workers and says it stops);
        # then each node is waited for and its files removed
        for node in self.worker_nodes:
            node.signal_stop()
        for node in reversed(self.worker_nodes):
            node.stop()
        self.worker_nodes = []
        if self._gcs is not None:
            try:
                self._gcs.r.close()
            except Exception:
                pass
            self._gcs = None
        if self.head_node is not None:
            self.head_node.stop()
            self.head_node = None
