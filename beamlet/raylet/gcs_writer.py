"""The raylet's writes to the GCS (Redis), kept off the event loop's hot path.

Owns: the write-behind thread (a pipeline flushed every GCS_FLUSH_S), the task
  state changes not yet written (task events: one HSET per flush for all of
  them), the ids of finished tasks still listed in this node's task table, and
  this node's record (registration, heartbeats and load, its end on shutdown).
Uses: the GcsClient (beamlet/gcs/client.py) only; the other components hand it
  what to write (`put`), with the key templates of beamlet/gcs/keys.py.
Messages: none; the shell calls heartbeat/report_load/flush_task_events each
  tick, every component calls `put` and the task scheduler `task_event`.
"""
import collections
import json

from ..gcs import keys
from ..gcs.client import WriteBehind
from .scheduler import TaskState

DONE_STATES = (TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELLED)


class GcsWriter:
    INTERFACE = ("put", "task_event", "flush_task_events", "register_node",
                 "heartbeat", "report_load", "node_stopped", "close")

    def __init__(self, gcs, node_id: bytes, flush_s: float):
        self.gcs = gcs
        self.node_id = node_id
        self.node_key = keys.node(node_id)
        self.node_hex = node_id.hex()
        self.wb = WriteBehind(gcs.r, flush_s)
        # put(op, *args, **kw): queue one redis pipeline call (e.g. "hset").
        # The write-behind's own bound method: no layer on the hot paths.
        self.put = self.wb.put
        self.task_events = {}        # task_id -> Task whose state the GCS lacks
        self.finished_task_ids = collections.deque()

    def register_node(self, record: dict) -> None:
        self.gcs.register_node(self.node_id, record)

    def heartbeat(self, now: float) -> None:
        self.put("zadd", keys.HEARTBEATS, {self.node_hex: now})

    def report_load(self, resources_available: dict, demand: list,
                    object_store_used: int) -> None:
        self.put("hset", self.node_key, mapping={
            "resources_available": json.dumps(resources_available),
            "demand": json.dumps(demand),
            "object_store_used": object_store_used})

    def task_event(self, t) -> None:
        """Note a task's state for the GCS; flushed in batches by flush_task_events."""
        self.task_events[t.spec.task_id] = t

    def flush_task_events(self) -> None:
        """One HSET per flush for all tasks that changed (not one per task), and
        trim the table to the most recent TASKS_KEPT finished tasks."""
        if not self.task_events:
            return
        events, self.task_events = self.task_events, {}
        fields = {}
        done = self.finished_task_ids
        for tid, t in events.items():
            st = t.state
            fields[tid.hex()] = f"{st.value} {t.spec.name} {t.spec.job_id.hex()} " \
                                f"{t.history[-1][0]:.3f}"
            if st in DONE_STATES:
                done.append(tid.hex())
        key = keys.tasks(self.node_id)
        self.put("hset", key, mapping=fields)
        if len(done) > keys.TASKS_KEPT:
            drop = [done.popleft() for _ in range(len(done) - keys.TASKS_KEPT)]
            self.put("hdel", key, *drop)

    def node_stopped(self) -> None:
        """The raylet stops: its record says so at once (not write-behind)."""
        try:
            self.gcs.r.hset(self.node_key, "state", "DEAD")
            self.gcs.r.hset(self.node_key, "death_reason", "stopped")
        except Exception:
            pass

    def close(self) -> None:
        self.wb.close()
