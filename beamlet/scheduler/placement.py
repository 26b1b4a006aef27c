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


# ---- placement groups and strategies across nodes ---------------------------------
def _take(avail: dict, req: dict) -> None:
    for k, v in req.items():
        avail[k] = avail.get(k, 0.0) - v


def _sum(bundles) -> dict:
    out = {}
    for b in bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + v
    return out


def place_bundles(bundles: list, strategy: str, nodes: list):
    """Which node each bundle of a placement group goes to, or None if the group
    cannot be placed (all or nothing).

    bundles: resource dicts; nodes: [(node_id, resources dict)] in order of
    preference (the creating node first), with what is available now (to place)
    or the totals (to tell whether the group could ever be placed).
      STRICT_PACK   every bundle on one node;
      PACK          one node if one can hold them all, else as few as first-fit gives;
      STRICT_SPREAD every bundle on a different node;
      SPREAD        each bundle on the node holding fewest bundles of the group so
                    far (different nodes while there are enough)."""
    avail = [(nid, dict(a)) for nid, a in nodes]
    n = len(bundles)
    if strategy in ("PACK", "STRICT_PACK"):
        total = _sum(bundles)
        for nid, a in avail:
            if fits(a, total):
                return [nid] * n
        if strategy == "STRICT_PACK":
            return None
        out = []
        for b in bundles:
            for nid, a in avail:
                if fits(a, b):
                    _take(a, b)
                    out.append(nid)
                    break
            else:
                return None
        return out
    if strategy == "STRICT_SPREAD":
        if n > len(avail):
            return None
        out, used = [None] * n, set()
        # the biggest bundles choose first: they have the fewest candidates
        for i in sorted(range(n), key=lambda i: -sum(bundles[i].values())):
            for nid, a in avail:
                if nid not in used and fits(a, bundles[i]):
                    _take(a, bundles[i])
                    used.add(nid)
                    out[i] = nid
                    break
            else:
                return None
        return out
    if strategy == "SPREAD":
        count = {nid: 0 for nid, _ in avail}
        out = []
        for b in bundles:
            cands = [(count[nid], k, nid, a) for k, (nid, a) in enumerate(avail)
                     if fits(a, b)]
            if not cands:
                return None
            _, _, nid, a = min(cands, key=lambda c: (c[0], c[1]))
            _take(a, b)
            count[nid] += 1
            out.append(nid)
        return out
    raise ValueError(f"unknown placement group strategy {strategy!r}")


def spread_node(req: dict, nodes: list, turn: int):
    """SPREAD: the node (id) for the `turn`-th task, round robin over the nodes
    that could ever run it (nodes: [(node_id, totals)] in a stable order); None
    if none can."""
    cands = [nid for nid, total in nodes if feasible(total, req)]
    if not cands:
        return None
    return cands[turn % len(cands)]
