"""The raylet's writes to the GCS (Redis), kept off the event loop's hot path.

Owns: the write-behind thread (a pipeline flushed every GCS_FLUSH_S; writes the
  GCS could not take are kept and replayed), the tasks that ended since the last
  flush (each packed into its job's batch as it ends: that is all a task's end
  costs here; each heartbeat writes one batch per job, one Redis member, trimmed
  to the newest TASK_EVENTS_PER_JOB per job), this node's record (registration; its
  load as deltas: written and announced only when it changed; its end on
  shutdown), and the heartbeat thread.
Uses: the GcsClient (beamlet/gcs/client.py) only; the other components hand it
  what to write (`put`), with the key templates of beamlet/gcs/keys.py.
Messages: none; the shell calls report_load/flush_task_events each tick, every
  component calls `put` and the task scheduler `task_event` when a task ends.

Heartbeats: a thread of their own, so that a loop busy with a long backlog (a
  burst of 600,000 tasks, a slow handler) never delays them, while they still
  mean "this raylet works": each period the thread posts a no-op to the loop
  and beats only while the loop ran the previous one within LOOP_STALL_S.  A
  loop that is busy still turns (asyncio runs every ready callback each
  turn); a deadlocked one does not, so its node stops beating and is declared
  dead NODE_DEATH_S later (the thread still reads the record meanwhile, and
  fences the node itself once it is declared dead, since its loop may never
  turn again).  The beat answers the record's state: "DEAD" means
  the cluster declared this node dead while it was stalled or cut off (it is
  fenced: `on_fenced`), "UNKNOWN" that the GCS lost the record (a Redis that
  restarted without its data): the thread registers the node again.
"""
import json
import threading
import time

import msgpack

from .._private import config
from ..gcs import keys
from ..gcs.client import GcsClient, WriteBehind, add_task_events, member_event
from .common import log
from .scheduler import task_record


def _packer():
    return msgpack.Packer(use_bin_type=True, autoreset=False)


class Heartbeat:
    """The liveness beat of one node, in a thread (see the module docstring)."""

    def __init__(self, gcs: GcsClient, node_id: bytes, record, on_fenced):
        self.gcs = gcs                  # a client of its own (retry_s=0)
        self.node_id = node_id
        self.record = record            # () -> (record, seq): to register again
        self.on_fenced = on_fenced      # (why) -> None, from this thread
        self.loop = None
        self.loop_seen = time.monotonic()
        self.stalled = False
        self.unreachable = False
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self, loop) -> None:
        self.loop = loop
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(1.0)

    def _seen(self):
        self.loop_seen = time.monotonic()

    def _run(self):
        period = config.HEARTBEAT_S
        while not self._stop.wait(period):
            try:
                self.loop.call_soon_threadsafe(self._seen)
            except RuntimeError:
                return      # the loop is closed: the raylet is ending
            beat = self._loop_alive()
            try:
                if not beat:
                    # no beat, but look: a node declared dead while its loop is
                    # stuck is fenced from here (the loop may never turn again)
                    if self.gcs.node_state(self.node_id) == "DEAD":
                        self._stop.set()
                        self.on_fenced("the cluster declared this node dead while "
                                       "its event loop was stuck")
                        return
                    continue
                state = self.gcs.heartbeat(self.node_id)
                if state == "UNKNOWN":
                    rec, seq = self.record()
                    log("the GCS has no record of this node (it lost its data): "
                        "registering again")
                    self.gcs.register_node(self.node_id, rec, seq)
                    state = "OK"
            except Exception as e:
                if not self.unreachable:
                    self.unreachable = True
                    log(f"heartbeat: the GCS is unreachable ({e}); retrying every "
                        f"{period:g} s")
                continue
            if self.unreachable:
                self.unreachable = False
                log("heartbeat: the GCS answers again")
            if state == "DEAD":
                self._stop.set()
                self.on_fenced("the cluster declared this node dead (no heartbeat "
                               f"reached the GCS for {config.NODE_DEATH_S:g} s: the "
                               f"node was stalled or cut off)")
                return

    def _loop_alive(self) -> bool:
        lag = time.monotonic() - self.loop_seen
        if lag > config.LOOP_STALL_S:
            if not self.stalled:
                self.stalled = True
                log(f"the event loop has not turned for {lag:.0f} s (over "
                    f"LOOP_STALL_S={config.LOOP_STALL_S:g}): heartbeats stop, so the "
                    f"cluster will declare this node dead")
            return False
        if self.stalled:
            self.stalled = False
            log("the event loop turns again; heartbeats resume")
        return True


class GcsWriter:
    INTERFACE = ("put", "task_event", "flush_task_events", "register_node",
                 "start_heartbeats", "report_load", "node_stopped", "discard", "close")

    def __init__(self, gcs, node_id: bytes, flush_s: float):
        self.gcs = gcs
        self.node_id = node_id
        self.node_key = keys.node(node_id)
        self.node_hex = node_id.hex()
        # its own client, one attempt per flush: the thread keeps what fails
        self.wb = WriteBehind(GcsClient(gcs.host, gcs.port, gcs.password, retry_s=0).r,
                              flush_s)
        # put(op, *args, **kw): queue one redis pipeline call (e.g. "hset").
        # The write-behind's own bound method: no layer on the hot paths.
        self.put = self.wb.put
        self.record = {}             # this node's record as last announced
        self.seq = 0                 # this node's membership events so far
        self.last_used = None        # object_store_used as last written
        self.heartbeat = None
        # the records of tasks that ended since the last flush, packed as they
        # end (while the task is still in the CPU's caches; nothing of it is kept
        # alive): job id -> [Packer of a stream of records, count]; a job's
        # batch goes once it holds batch_max records, even between flushes
        self.batches = {}
        self.batch_max = max(min(config.TASK_EVENTS_PER_JOB, 10_000), 1000)
        self.recording = config.TASK_EVENTS_PER_JOB > 0

    def register_node(self, record: dict) -> None:
        """Write and announce this node's record (at start-up)."""
        self.record = dict(record)
        self.seq += 1
        self.gcs.register_node(self.node_id, self.record, self.seq)

    def start_heartbeats(self, loop, on_fenced) -> None:
        g = self.gcs
        self.heartbeat = Heartbeat(GcsClient(g.host, g.port, g.password, retry_s=0),
                                   self.node_id, lambda: (dict(self.record), self.seq),
                                   on_fenced)
        self.heartbeat.start(loop)

    def report_load(self, resources_available: dict, demand: list,
                    object_store_used: int) -> None:
        """Each tick: announce the node's load if it changed since the last
        announcement (nothing at all while it does not)."""
        rec = self.record
        if rec.get("resources_available") != resources_available or \
                rec.get("demand") != demand:
            rec["resources_available"] = resources_available
            rec["demand"] = demand
            self.seq += 1
            self.put("hset", self.node_key, mapping={
                "resources_available": json.dumps(resources_available),
                "demand": json.dumps(demand), "seq": self.seq})
            self.put("publish", keys.MEMBERSHIP, member_event(
                self.node_hex, "load", self.seq,
                {"resources_available": resources_available, "demand": demand}))
        if object_store_used != self.last_used:
            self.last_used = object_store_used
            self.put("hset", self.node_key, "object_store_used", object_store_used)

    def task_event(self, t) -> None:
        """Task `t` ended (finished, failed or cancelled): pack its record into
        its job's batch (written at the next flush)."""
        if self.recording:
            rec = task_record(t)
            if rec is None:
                return      # it ran on another node, which records it
            b = self.batches.get(t.spec.job_id)
            if b is None:
                b = self.batches[t.spec.job_id] = [_packer(), 0]
                b[0].pack(self.node_id)
            b[0].pack(rec)
            b[1] += 1
            if b[1] >= self.batch_max:
                self._write(t.spec.job_id)

    def flush_task_events(self) -> None:
        """One write per job for the tasks that ended (one Redis member: their
        packed records), the job's count of finished tasks, and the trim to the
        newest TASK_EVENTS_PER_JOB (gcs/client.py add_task_events)."""
        for job in list(self.batches):
            self._write(job)

    def _write(self, job) -> None:
        packer, n = self.batches.pop(job)
        self.put(*add_task_events(job, packer.bytes(), n, config.TASK_EVENTS_PER_JOB))

    def node_stopped(self) -> None:
        """The raylet stops: its record says so at once (not write-behind), and
        every raylet hears of it."""
        if self.heartbeat is not None:
            self.heartbeat.close()
        try:
            # a short wait: at `beamlet stop` Redis may be stopping too
            GcsClient(self.gcs.host, self.gcs.port, self.gcs.password,
                      retry_s=0.5).node_stopped(self.node_id)
        except Exception:
            pass

    def discard(self) -> None:
        """This node was fenced: nothing more of it is written (its pending
        writes describe a node the cluster declared dead), no more beats."""
        if self.heartbeat is not None:
            self.heartbeat.close()
        self.wb.discard()

    def close(self) -> None:
        self.wb.close()
