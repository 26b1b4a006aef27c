"""Why a task or actor is not running: the pending-reason vocabulary (pure).

Every task or actor that is not running has one reason, a dict:

    {"code": <one of Reason>, "text": <one line for people>, ...details}

The raylet component that owns the waiting thing computes the code and the
details from its own state (raylet/tasks.py, actors.py, constraints.py,
cluster_scheduling.py, object_manager.py) and `reason()` below adds the text.
The same dicts are a task's `pending_reason` in the state API
(beamlet.util.state), the lines of `beamlet status`, and the steps of the
diagnosis a stuck get()/wait() prints (`explain` chains: raylet/introspection.py).
docs/observability.md lists every code with what it means and what to do.
"""
import enum


class Reason(str, enum.Enum):
    # why a task / actor call / actor creation waits
    WAITING_FOR_ARGS = "WAITING_FOR_ARGS"            # an argument is not made yet
    FETCHING_ARGS = "FETCHING_ARGS"                  # an argument is on another node
    WAITING_FOR_RESOURCES = "WAITING_FOR_RESOURCES"  # the node's resources are in use
    INFEASIBLE = "INFEASIBLE"                        # no node could ever run it
    WAITING_FOR_PLACEMENT_GROUP = "WAITING_FOR_PLACEMENT_GROUP"
    WAITING_FOR_WORKER = "WAITING_FOR_WORKER"        # it fits: a worker is starting
    QUEUED_ON_WORKER = "QUEUED_ON_WORKER"            # sent ahead behind a running task
    WAITING_FOR_ACTOR_CREATION = "WAITING_FOR_ACTOR_CREATION"
    WAITING_FOR_ACTOR_RESTART = "WAITING_FOR_ACTOR_RESTART"
    QUEUED_BEHIND_ACTOR_CALLS = "QUEUED_BEHIND_ACTOR_CALLS"
    WAITING_FOR_REMOTE_ACTOR = "WAITING_FOR_REMOTE_ACTOR"   # locating its node
    FORWARDED = "FORWARDED"                          # runs (or waits) on another node
    # why a placement group is not created
    PLACEMENT_GROUP_INFEASIBLE = "PLACEMENT_GROUP_INFEASIBLE"
    PLACEMENT_GROUP_WAITING = "PLACEMENT_GROUP_WAITING"
    # steps of a chain only (what a blocked get waits on, in the end)
    RUNNING = "RUNNING"                              # progress: it runs normally
    BLOCKED_IN_GET = "BLOCKED_IN_GET"                # it runs, but waits in get/wait
    DEADLOCK = "DEADLOCK"                            # a cycle of waits
    ACTOR_SELF_CALL = "ACTOR_SELF_CALL"              # an actor waits on a call to itself
    OBJECT_LOST = "OBJECT_LOST"
    UNKNOWN = "UNKNOWN"                              # no node reports what makes it


# Codes that are progress (the chain ends in work being done): a get waiting on
# them is not stuck, however long it takes.
PROGRESS = {Reason.RUNNING, Reason.FETCHING_ARGS, Reason.WAITING_FOR_WORKER,
            Reason.QUEUED_ON_WORKER, Reason.FORWARDED}


def res_text(req: dict) -> str:
    """{"CPU": 1.0, "GPU": 0.5} -> "1 CPU, 0.5 GPU" (custom resources by name)."""
    if not req:
        return "no resources"
    return ", ".join(f"{v:g} {k}" for k, v in sorted(req.items()))


def holder_text(h: dict) -> str:
    """A resource holder ({"kind": "actor"|"task"|"placement_group", ...}) in words."""
    if h["kind"] == "actor":
        where = f" created at {h['call_site']}" if h.get("call_site") else ""
        pid = f" (pid {h['pid']})" if h.get("pid") else ""
        return f"actor {h['name']}{pid}{where}"
    if h["kind"] == "placement_group":
        return f"placement group {h['name']}"
    pid = f" (pid {h['pid']})" if h.get("pid") else ""
    return f"task {h['name']}{pid}"


def _resources_text(d: dict) -> str:
    req = d.get("required") or {}
    held = d.get("held_by") or []
    total = d.get("total") or {}
    short = [k for k, v in req.items() if v > (d.get("available") or {}).get(k, 0) + 1e-9]
    what = ", ".join(f"{total.get(k, 0):g} {k}" for k in sorted(short)) or res_text(total)
    text = f"waits for {res_text(req)}"
    node = d.get("node_id")
    if held:
        who = ", ".join(holder_text(h) for h in held[:4])
        if len(held) > 4:
            who += f" and {len(held) - 4} more"
        text += f"; the node's {what} {'is' if len(short) < 2 else 'are'} held by {who}"
        if all(h["kind"] == "actor" for h in held):
            names = ", ".join(sorted({h["name"] for h in held}))
            text += (f"; actors keep their resources for their whole life — create "
                     f"{names} with num_cpus=0 (or fewer resources), kill an actor, or "
                     f"add resources")
        elif all(h["kind"] == "placement_group" for h in held):
            text += "; a placement group keeps its bundles until it is removed"
    elif node:
        text += f" on node {node[:12]} ({res_text(d.get('available') or {})} free)"
    return text


def describe(d: dict) -> str:
    """The one-line text of a reason dict (without its "text"), with its cause
    when it has one (the reason of what it waits for)."""
    text = _describe(d)
    cause = d.get("cause")
    if cause and d.get("code") != Reason.WAITING_FOR_PLACEMENT_GROUP:
        text += ", which " + (cause.get("text") or describe(cause))
    return text


def _describe(d: dict) -> str:
    code = d.get("code")
    R = Reason
    if code == R.WAITING_FOR_ARGS:
        maker = f" from {d['task_name']}" if d.get("task_name") else ""
        return f"waits for argument ObjectRef({d['object_id'][:16]}..){maker}"
    if code == R.FETCHING_ARGS:
        return (f"fetches argument ObjectRef({d['object_id'][:16]}..) from node "
                f"{(d.get('from_node') or '?')[:12]}")
    if code == R.WAITING_FOR_RESOURCES:
        return _resources_text(d)
    if code == R.INFEASIBLE:
        return (f"is infeasible: it requires {res_text(d.get('required') or {})} but no "
                f"node has that (the cluster has {res_text(d.get('cluster_total') or {})} "
                f"in total); it stays pending until a node with these resources joins — "
                f"lower the request or add such a node")
    if code == R.WAITING_FOR_PLACEMENT_GROUP:
        name = d.get("name") or (d.get("placement_group_id") or "?")[:12]
        text = f"waits for placement group {name} ({d.get('state', 'PENDING')})"
        cause = d.get("cause")
        if cause:
            text += ", which " + (cause.get("text") or describe(cause))
        return text
    if code == R.PLACEMENT_GROUP_INFEASIBLE:
        bundles = ", ".join("{" + res_text(b) + "}" for b in d.get("bundles") or ())
        return (f"cannot be placed: its bundles [{bundles}] ({d.get('strategy')}) "
                f"do not fit the cluster's nodes (the cluster has "
                f"{res_text(d.get('cluster_total') or {})} on {d.get('nodes', '?')} "
                f"node(s)); it stays pending until enough nodes join")
    if code == R.PLACEMENT_GROUP_WAITING:
        text = f"waits for {res_text(d.get('required') or {})} to reserve its bundles"
        if d.get("held_by"):
            text = _resources_text(d)
            text = "waits to reserve its bundles: it " + text
        return text
    if code == R.WAITING_FOR_WORKER:
        return (f"fits, and waits for a worker process to start on node "
                f"{(d.get('node_id') or '?')[:12]} ({d.get('starting', 0)} starting)")
    if code == R.QUEUED_ON_WORKER:
        return (f"is queued on worker pid {d.get('worker_pid')} behind its running task "
                f"{d.get('behind', '?')}")
    if code == R.WAITING_FOR_ACTOR_CREATION:
        return f"waits for actor {d.get('class_name')} to be created"
    if code == R.WAITING_FOR_ACTOR_RESTART:
        return (f"waits for actor {d.get('class_name')} to restart (restart "
                f"{d.get('num_restarts', '?')})")
    if code == R.QUEUED_BEHIND_ACTOR_CALLS:
        running = d.get("running") or []
        text = (f"is queued behind {d.get('ahead', 0)} call(s) on actor "
                f"{d.get('class_name')}")
        if running:
            text += f" (running: {', '.join(running[:3])})"
        return text
    if code == R.WAITING_FOR_REMOTE_ACTOR:
        return f"waits to be sent to actor {d.get('class_name') or d.get('actor_id', '?')[:12]}"
    if code == R.FORWARDED:
        node = (d.get('node_id') or '?')[:12]
        if d.get("unreachable_s") is not None:
            return (f"is being sent to node {node}, whose raylet has not answered a "
                    f"connection for {d['unreachable_s']:g} s (busy or stalled; tried "
                    f"again until it answers or the cluster declares it dead)")
        return f"was sent to node {node}"
    if code == R.RUNNING:
        pid = f" (pid {d['pid']})" if d.get("pid") else ""
        return f"is running{pid}"
    if code == R.BLOCKED_IN_GET:
        pid = f" (pid {d['pid']})" if d.get("pid") else ""
        return (f"is running{pid} and waits in {d.get('call', 'get')}() for "
                f"ObjectRef({(d.get('object_id') or '?')[:16]}..)")
    if code == R.DEADLOCK:
        return ("is a deadlock: " + " -> ".join(d.get("cycle") or []) +
                " wait on each other in a cycle; none can finish — restructure the "
                "calls so that no task waits on work that waits on it")
    if code == R.ACTOR_SELF_CALL:
        return (f"is a deadlock: actor {d.get('class_name')} calls itself "
                f"synchronously ({d.get('waiting')} waits in get() for {d.get('called')}, "
                f"queued behind it on the same actor, which runs "
                f"{d.get('max_concurrency', 1)} call(s) at a time) — return the ref "
                f"instead of get(), or give the actor max_concurrency > 1 or make it async")
    if code == R.OBJECT_LOST:
        return d.get("message") or "its object is lost"
    return d.get("message") or "no node of the cluster reports what makes it"


def reason(code: Reason, **details) -> dict:
    """A reason dict with its text."""
    d = {"code": code.value, **details}
    d["text"] = describe(d)
    return d


def is_progress(d) -> bool:
    return d is not None and d.get("code") in {r.value for r in PROGRESS}
