"""The raylet's memory monitor: when the node runs low on memory, kill the worker
of the newest retriable task before the kernel's OOM killer picks a victim (which
may be the raylet or the driver), as Ray's memory monitor does.

Every MEMORY_MONITOR_REFRESH_MS (0: off) it reads the node's memory use
(`read_memory`): its cgroup's when a cgroup above the raylet has a memory limit
(v2 memory.current/memory.max, else v1 memory.usage_in_bytes/limit_in_bytes,
both less the inactive file cache, which the kernel reclaims first), else the
machine's (/proc/meminfo: MemTotal - MemAvailable).  Above
MEMORY_USAGE_THRESHOLD it picks a victim among this node's workers
(`choose_victim`, Ray's policy, pure), records why on the Worker (`oom`) and
SIGKILLs it; the task scheduler then retries its task per max_retries or fails
it with OutOfMemoryError carrying that reason (an actor restarts per
max_restarts or dies with it).  One kill at a time: the next victim is chosen
only once the last one's process is gone.  The raylet and drivers are never
candidates: only the pool's workers are.

Owns: the monitor's timer, the last reading, the kill in flight, and a Worker's
  `oom` field (why the monitor killed it; read by the task scheduler).
Uses: WorkerPool (all: the workers and what they run; signal: the kill);
  GcsWriter.put (the warning on the victim's job's error channel).
Messages: none (its own timer; `report` for the "status" call).
"""
import os
import signal
import time


from .._private import config
from ..gcs import keys
from .common import log
from .worker_pool import WState

# The components it uses (GcsWriter, WorkerPool) are named in annotations only, as
# strings: the shell (raylet.py) wires them together, so their modules need not import
# each other (no import circle).

MiB = 2**20
# a limit this large means "no limit" (cgroup v1 writes 2^63 - page size)
NO_LIMIT = 2**60
# a kill whose process is not gone after this long no longer holds the next one
KILL_WAIT_S = 5.0


# ---------------------------------------------------------------- reading memory
def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_field(text, name):
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == name:
            return int(v)
    return 0


def _cgroup_dirs(proc="/proc/self"):
    """(version, directory) of this process's memory cgroup, v2 first, from
    /proc/self/cgroup and the mounts in /proc/self/mountinfo."""
    groups = _read(os.path.join(proc, "cgroup")) or ""
    mounts = _read(os.path.join(proc, "mountinfo")) or ""
    v2_path = v1_path = None
    for line in groups.splitlines():
        hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and ctrls == "":
            v2_path = path
        elif "memory" in ctrls.split(","):
            v1_path = path
    out = []
    for line in mounts.splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) < 5 or len(r) < 3:
            continue
        root, point, fstype, opts = f[3], f[4], r[0], r[2]
        for version, path, wanted in ((2, v2_path, fstype == "cgroup2"),
                                      (1, v1_path, fstype == "cgroup" and
                                       "memory" in opts.split(","))):
            if path is None or not wanted:
                continue
            rel = os.path.relpath(path, root) if path.startswith(root) else path
            d = os.path.normpath(os.path.join(point, rel.lstrip("/")))
            if os.path.isdir(d):
                out.append((version, d, point))
    out.sort(key=lambda x: -x[0])
    return out


def _cgroup_memory(version, d, top):
    """(used, limit, where) of the tightest memory limit among `d` and its
    parents up to the mount `top`, or None when none of them has a limit."""
    best = None
    while True:
        if version == 2:
            raw = (_read(os.path.join(d, "memory.max")) or "max").strip()
            limit = NO_LIMIT if raw == "max" else int(raw)
            used = _read(os.path.join(d, "memory.current"))
            inactive = _stat_field(_read(os.path.join(d, "memory.stat")), "inactive_file")
        else:
            raw = (_read(os.path.join(d, "memory.limit_in_bytes")) or "").strip()
            limit = int(raw) if raw else NO_LIMIT
            used = _read(os.path.join(d, "memory.usage_in_bytes"))
            inactive = _stat_field(_read(os.path.join(d, "memory.stat")),
                                   "total_inactive_file")
        if limit < NO_LIMIT and used is not None:
            u = max(0, int(used) - inactive)
            if best is None or u / limit > best[0] / best[1]:
                best = (u, limit, f"cgroup v{version} {d}")
        if os.path.normpath(d) == os.path.normpath(top) or d in ("/", ""):
            return best
        d = os.path.dirname(d)


def machine_memory(meminfo="/proc/meminfo"):
    """(used, total, where) of the machine: MemTotal - MemAvailable."""
    vals = {}
    for line in (_read(meminfo) or "").splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts:
            vals[k] = int(parts[0]) * 1024
    total = vals.get("MemTotal", 0)
    return total - vals.get("MemAvailable", total), total, "the machine"


def read_memory(proc="/proc/self", meminfo="/proc/meminfo"):
    """(used bytes, limit bytes, where) of what this process's memory counts
    against: the tightest of its cgroup's limits and the machine's memory."""
    machine = machine_memory(meminfo)
    best = machine
    for version, d, top in _cgroup_dirs(proc):
        got = _cgroup_memory(version, d, top)
        if got is not None and got[1] <= machine[1] and \
                (best is machine or got[0] / got[1] > best[0] / best[1]):
            best = got
        if got is not None:
            break           # v2 first: a v1 hierarchy only where there is no v2 limit
    return best


def process_memory(pid):
    """(resident, shared) bytes of a process, from /proc/<pid>/statm (shared
    includes the object store's pages it maps)."""
    text = _read(f"/proc/{pid}/statm")
    if not text:
        return 0, 0
    f = text.split()
    page = os.sysconf("SC_PAGE_SIZE")
    return int(f[1]) * page, int(f[2]) * page


# ---------------------------------------------------------------- the policy (pure)
class Candidate:
    """A worker the monitor may kill, as the policy sees it."""
    __slots__ = ("key", "owner", "started", "retriable", "name")

    def __init__(self, key, owner, started, retriable, name):
        self.key = key              # what the caller gets back (the Worker)
        self.owner = owner          # who submitted the task (a caller's worker id)
        self.started = started      # when it started running (monotonic seconds)
        self.retriable = retriable  # killing it costs a retry, not a failure
        self.name = name


def choose_victim(cands):
    """Ray's policy: retriable work first; among those, the tasks of the owner
    (caller) with the most running tasks, ties going to the owner whose first
    task started last (fairness: a caller with few tasks keeps making
    progress); within that owner, the newest task (the least work lost).
    Returns a Candidate, or None."""
    if not cands:
        return None
    pool = [c for c in cands if c.retriable] or list(cands)
    groups = {}
    for c in pool:
        groups.setdefault(c.owner, []).append(c)
    owner = max(groups, key=lambda o: (len(groups[o]), min(c.started for c in groups[o])))
    return max(groups[owner], key=lambda c: c.started)


# ---------------------------------------------------------------- the component
class MemoryMonitor:
    INTERFACE = ("wire", "start", "close", "report")

    def __init__(self, node_id: bytes, threshold=None, refresh_ms=None):
        self.node_hex = node_id.hex()
        self.threshold = config.MEMORY_USAGE_THRESHOLD if threshold is None else threshold
        self.refresh_s = (config.MEMORY_MONITOR_REFRESH_MS if refresh_ms is None
                          else refresh_ms) / 1000
        self.loop = None
        self.timer = None
        self.reading = None          # (used, limit, where) last read
        self.killing = None          # (Worker, deadline) of the kill in flight
        self.kills = 0
        self.warned_nothing = False  # logged once: above the threshold, no worker

    def wire(self, pool: "WorkerPool", gcs: "GcsWriter") -> None:
        self.pool = pool
        self.put_gcs = gcs.put

    def start(self, loop) -> None:
        self.loop = loop
        if self.refresh_s > 0:
            self.timer = loop.call_later(self.refresh_s, self.check)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def report(self) -> dict:
        try:
            used, limit, where = read_memory()
        except Exception:
            used, limit, where = self.reading or (0, 0, "")
        return {"enabled": self.refresh_s > 0, "threshold": self.threshold,
                "used": used, "limit": limit, "where": where, "kills": self.kills}

    def check(self) -> None:
        self.timer = self.loop.call_later(self.refresh_s, self.check)
        try:
            self.reading = used, limit, where = read_memory()
        except Exception as e:   # (a reader bug must not stop the monitor)
            log("memory monitor: cannot read memory use:", repr(e))
            return
        if not limit or used / limit <= self.threshold:
            self.warned_nothing = False
            return
        if self.killing is not None:
            w, deadline = self.killing
            if w.state is not WState.DEAD and time.monotonic() < deadline:
                return       # one at a time: wait for the last victim to go
            self.killing = None
        victim = choose_victim(self.candidates())
        if victim is None:
            if not self.warned_nothing:
                self.warned_nothing = True
                log(f"memory monitor: memory use {used} of {limit} bytes ({where}) is "
                    f"above the threshold {self.threshold}, and no worker runs a task "
                    f"or actor that could be killed")
            return
        self.kill(victim, used, limit, where)

    def candidates(self):
        out = []
        for w in self.pool.all():
            t = w.task
            a = w.actor
            if w.oom is not None or w.pid is None:
                continue
            if a is not None and w.state is WState.ACTOR:
                spec = a.creation_spec
                out.append(Candidate(w, spec.caller, w.started_at,
                                     a.restarts_left != 0, f"actor {a.class_name}"))
            elif t is not None and w.state in (WState.BUSY, WState.BLOCKED):
                out.append(Candidate(w, t.spec.caller, t.started, t.retries_left != 0,
                                     f"task {t.spec.name}"))
        return out

    def kill(self, victim, used, limit, where) -> None:
        w = victim.key
        rss, shared = process_memory(w.pid)
        t, a = w.task, w.actor
        what = f"Actor {a.class_name}" if a is not None else f"Task {t.spec.name}"
        ident = (a.actor_id.hex() if a is not None else t.spec.task_id.hex())
        w.oom = (
            f"{what} (id {ident}) was killed because the node ran low on memory: "
            f"memory use was {used / MiB:.0f} MiB of {limit / MiB:.0f} MiB "
            f"({used / limit:.3f}, {where}), above the memory usage threshold "
            f"{self.threshold}. Its worker (pid={w.pid}) used {rss / MiB:.0f} MiB "
            f"resident ({shared / MiB:.0f} MiB of it shared, e.g. object store "
            f"pages); it was chosen as the newest running "
            f"{'retriable ' if victim.retriable else ''}task or actor of the caller "
            f"with the most of them on node {self.node_hex[:12]}"
            f"{'' if victim.retriable else ' (none was retriable)'}. Give tasks "
            f"more memory (fewer at a time: num_cpus=, or memory=), lower their "
            f"memory use, or change the threshold (BEAMLET_MEMORY_USAGE_THRESHOLD "
            f"or RAY_memory_usage_threshold; BEAMLET_MEMORY_MONITOR_REFRESH_MS=0 "
            f"turns the monitor off).")
        log("memory monitor:", w.oom)
        job = w.job_id
        if job:
            self.put_gcs("publish", keys.errors_channel(job),
                         f"(raylet) A worker was killed due to memory pressure (OOM): "
                         f"{w.oom}")
        self.killing = (w, time.monotonic() + KILL_WAIT_S)
        self.kills += 1
        self.pool.signal(w, signal.SIGKILL)
