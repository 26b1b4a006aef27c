"""The raylet's writes to the GCS (Redis), kept off the event loop's hot path.

Owns: the write-behind thread (a pipeline flushed every GCS_FLUSH_S), the tasks
  that ended since the last flush (a bounded buffer: appending to it is all a
  task's end costs here; each heartbeat turns it into one ZADD per job of
  compact records, trimmed to the newest TASK_EVENTS_PER_JOB per job), and
  this node's record (registration, heartbeats and load, its end on shutdown).
Uses: the GcsClient (beamlet/gcs/client.py) only; the other components hand it
  what to write (`put`), with the key templates of beamlet/gcs/keys.py.
Messages: none; the shell calls heartbeat/report_load/flush_task_events each
  tick, every component calls `put` and the task scheduler `task_event` when a
  task ends.
"""
import collections
import json

import msgpack

from .._private import config
from ..gcs import keys
from ..gcs.client import WriteBehind
from .scheduler import TaskState, task_record

_packb = msgpack.Packer(use_bin_type=True).pack


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
        # tasks that ended since the last flush (bounded: if a flush falls behind,
        # the oldest go, as the per-job trim would drop them anyway)
        self.ended = collections.deque(maxlen=max(config.TASK_EVENTS_PER_JOB, 1000))
        self.recording = config.TASK_EVENTS_PER_JOB > 0

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
        """Task `t` ended (finished, failed or cancelled): record it at the next
        flush.  (On every task's end: an append, nothing more.)"""
        if self.recording:
            self.ended.append(t)

    def flush_task_events(self) -> None:
        """One ZADD per job for the tasks that ended (not one write per task), the
        job's count of finished tasks, and the trim to TASK_EVENTS_PER_JOB."""
        ended = self.ended
        if not ended:
            return
        by_job = collections.defaultdict(dict)
        node = self.node_id
        forwarded = TaskState.FORWARDED
        while ended:
            t = ended.popleft()
            if any(s is forwarded for _, s in t.history):
                continue    # it ran on another node, which records it
            by_job[t.spec.job_id][_packb(task_record(t, node))] = t.history[-1][0]
        keep = config.TASK_EVENTS_PER_JOB
        for job, members in by_job.items():
            key = keys.task_events(job)
            self.put("zadd", key, members)
            self.put("zremrangebyrank", key, 0, -keep - 1)
            self.put("hincrby", keys.job(job), "tasks_finished", len(members))

    def node_stopped(self) -> None:
        """The raylet stops: its record says so at once (not write-behind)."""
        try:
            self.gcs.r.hset(self.node_key, "state", "DEAD")
            self.gcs.r.hset(self.node_key, "death_reason", "stopped")
        except Exception:
            pass

    def close(self) -> None:
        self.wb.close()
