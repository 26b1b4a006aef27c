"""The timeline: task rows (beamlet/_private/state_rows.py) as a Chrome trace /
Perfetto JSON (pure).

One duration event ("ph": "X") per task execution, on its worker's row: the
process is the node (pid = node id, named by a metadata event), the thread the
worker (tid = worker pid).  The time a task waited before it started (from
its submission) is an async "scheduling" event (ph b/e) on its node.  Events of one
worker that overlap (calls of a threaded or async actor run together) go to
lanes of their own ("pid 123 #2"), so the spans of each row never overlap.
"""


def trace_events(rows, with_scheduling=True) -> list:
    """Chrome trace events of the tasks in `rows` that started (a list, sorted
    by start time)."""
    runs = []
    for r in rows:
        start, end = r.get("start_time_ms"), r.get("end_time_ms")
        if not start or not r.get("worker_pid") or not r.get("node_id"):
            continue
        runs.append((start, end, r))
    runs.sort(key=lambda x: (x[0], x[1] or 0))
    events, lanes, nodes = [], {}, {}
    for start, end, r in runs:
        node, pid = r["node_id"], r["worker_pid"]
        nodes.setdefault(node, len(nodes) + 1)
        # first lane of this worker whose last span ended by `start`
        worker_lanes = lanes.setdefault((node, pid), [])
        lane = next((i for i, last in enumerate(worker_lanes) if last <= start), None)
        if lane is None:
            lane = len(worker_lanes)
            worker_lanes.append(0)
        stop = end if end else None
        worker_lanes[lane] = stop if stop is not None else float("inf")
        tid = pid if lane == 0 else f"{pid} #{lane + 1}"
        args = {"task_id": r["task_id"], "state": r["state"], "type": r.get("type"),
                "job_id": r.get("job_id")}
        if r.get("actor_id"):
            args["actor_id"] = r["actor_id"]
        if r.get("error_type"):
            args["error_type"] = r["error_type"]
        ev = {"name": r["name"], "cat": "task", "ph": "X", "pid": node, "tid": tid,
              "ts": start * 1000.0,
              "dur": max(0.0, ((end or start) - start) * 1000.0), "args": args}
        if not end:
            args["running"] = True
        events.append(ev)
        created = r.get("creation_time_ms")
        if with_scheduling and created and created < start:
            # async events: the waits of many tasks overlap, each on its own track
            wait = {"name": r["name"], "cat": "scheduling", "id": r["task_id"],
                    "pid": node, "tid": "scheduling"}
            events.append({**wait, "ph": "b", "ts": created * 1000.0})
            events.append({**wait, "ph": "e", "ts": start * 1000.0})
    for node, i in nodes.items():
        events.append({"name": "process_name", "ph": "M", "pid": node,
                       "args": {"name": f"node {node[:12]}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": node,
                       "args": {"sort_index": i}})
    events.sort(key=lambda e: e.get("ts", 0))
    return events
