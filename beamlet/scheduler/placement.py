"""The global scheduling policy (pure: no I/O).

A raylet that cannot run a task (no local resources for it, or a backlog while
other nodes idle) asks `choose_node` where it should go, against the cluster's
node table in the GCS (resources total/available and queued demand, refreshed by
every raylet's heartbeat).  The policy runs in the forwarding raylet rather than in
a central process, so forwarding costs no extra hop; see
beamlet/raylet/object_manager.py for how the task then travels (direct TCP).

Order of preference among the nodes that could ever run the task:
  1. the node holding most of the task's argument bytes (no transfer),
  2. a node where it fits right now,
  3. the least loaded node (fraction of CPUs in use, plus queued tasks).
"""

EPS = 1e-9


def feasible(total: dict, req: dict) -> bool:
    return all(v <= total.get(k, 0.0) + EPS for k, v in req.items())


def fits(available: dict, req: dict) -> bool:
    return all(v <= available.get(k, 0.0) + EPS for k, v in req.items())


def load(node: dict) -> float:
    total = node.get("resources_total", {}).get("CPU", 0.0)
    avail = node.get("resources_available", {}).get("CPU", 0.0)
    queued = sum(d.get("count", 1) for d in node.get("demand") or ())
    used = (total - avail) / total if total else 1.0
    return used + queued / max(total, 1.0)


def choose_node(req: dict, nodes: list, arg_bytes=None, exclude=()):
    """The node id (hex) to run a task needing `req` on, or None if no node can.

    nodes: GCS node records (dicts with node_id, state, resources_total,
    resources_available, demand); arg_bytes: node id -> bytes of the task's
    arguments held there."""
    arg_bytes = arg_bytes or {}
    cands = [n for n in nodes if n.get("state") == "ALIVE"
             and n["node_id"] not in exclude
             and feasible(n.get("resources_total", {}), req)]
    if not cands:
        return None
    best = min(cands, key=lambda n: (
        -arg_bytes.get(n["node_id"], 0),
        not fits(n.get("resources_available", {}), req),
        load(n), n["node_id"]))
    return best["node_id"]


def idle_cpus(node: dict) -> int:
    """Whole CPUs free on a node with no queue of its own (a spill-over target)."""
    if node.get("demand"):
        return 0
    return int(node.get("resources_available", {}).get("CPU", 0.0) + EPS)
