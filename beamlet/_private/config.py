"""Tunables, in one place.  Environment variables BEAMLET_<NAME> override them.

Processes a node starts read these from their environment, which is how
`init(_system_config=...)` reaches them (see `system_config_env`).
"""
import os

# name -> cast, for every tunable an environment variable can set
TUNABLES = {}
# name -> (check(value) -> bool, what it takes), for tunables with a range
CHECKS = {}


def flag(v) -> bool:
    """A yes/no setting: "0", "false", "no" (any case) and False mean no."""
    return str(v).strip().lower() not in ("0", "false", "no", "off")


def _env(name, default, cast):
    TUNABLES[name] = cast
    v = os.environ.get("BEAMLET_" + name)
    return cast(v) if v is not None else default


# Values whose serialized size is below this stay inline (never in the arena).
INLINE_THRESHOLD = _env("INLINE_THRESHOLD", 100 * 1024, int)
# Default arena size: this fraction of total RAM, capped by /dev/shm's free space.
OBJECT_STORE_FRACTION = _env("OBJECT_STORE_FRACTION", 0.3, float)
OBJECT_STORE_MIN = 64 * 1024 * 1024
# How often raylets heartbeat into the GCS (a thread of the raylet: one small
# write per node per period), and how long a node may stay silent before the
# monitor declares it dead.  30 s tolerates GC pauses, a swapping or overloaded
# machine and brief network partitions (Ray's health check waits about as long);
# tests set it low (Cluster(head_node_args={"_system_config": {"node_death_s": 3}})).
HEARTBEAT_S = _env("HEARTBEAT_S", 0.5, float)
NODE_DEATH_S = _env("NODE_DEATH_S", 30.0, float)
# The heartbeat thread beats only while the raylet's event loop still completes a
# turn within this long: a deadlocked loop stops the beats (and the node is then
# declared dead NODE_DEATH_S later), a loop that is merely busy does not.
LOOP_STALL_S = _env("LOOP_STALL_S", 30.0, float)
# A node that comes back after it was declared dead (it was stalled, or cut off)
# is fenced: its raylet kills its workers, drops its objects and, with this on,
# starts again in the same process as a new node (a new node id); off, it exits.
FENCED_NODE_REJOINS = _env("FENCED_NODE_REJOINS", True, flag)
# Fault injection for tests (off by default): the raylet call
# "testing_block_loop" blocks its event loop for the seconds given, as a
# deadlocked or very busy loop would.
TESTING_HOOKS = _env("TESTING_HOOKS", False, flag)
# Calls that need the GCS (Redis) wait this long for it to answer again (it may be
# restarting) before they raise GcsUnavailableError (Ray's
# gcs_rpc_server_reconnect_timeout_s).
GCS_RECONNECT_TIMEOUT_S = _env("GCS_RECONNECT_TIMEOUT_S", 60.0, float)
# The head node's Redis keeps an append-only file in the session directory, so a
# restarted Redis (the monitor restarts it when it dies) has the cluster's state.
GCS_PERSISTENCE = _env("GCS_PERSISTENCE", True, flag)
# GCS writes a raylet keeps while the GCS is unreachable (replayed once it answers
# again); beyond this many the oldest are dropped, with a log line saying so.
GCS_PENDING_WRITES_MAX = _env("GCS_PENDING_WRITES_MAX", 200_000, int)
# Write-behind: how often batched GCS writes are flushed.
GCS_FLUSH_S = _env("GCS_FLUSH_S", 0.05, float)
# Workers above the CPU count that sit idle this long exit.
IDLE_WORKER_S = _env("IDLE_WORKER_S", 10.0, float)
# Worker processes of a node beyond which (actors not counted) new ones start
# only one at a time, each after a backoff (1 s, doubling up to 10 s): tasks
# blocked in get() each hold a worker, and a pool grown without bound costs ~25
# MiB a worker.  0: the default, twice the node's CPUs (at least 8).
WORKER_SOFT_LIMIT = _env("WORKER_SOFT_LIMIT", 0, int)
WORKER_CAP_BACKOFF_S = _env("WORKER_CAP_BACKOFF_S", 1.0, float)
# The largest frame (one message) a raylet reads from a client, a peer raylet
# or any other connection it serves: a larger length prefix closes the
# connection at once (with the reason, to a local client) instead of buffering
# what it claims.  Ray's gRPC limit is of the same size.
MAX_FRAME_BYTES = _env("MAX_FRAME_BYTES", 512 * 1024 * 1024, int)
# A TCP connection that has not completed the peer handshake within this long is
# dropped, and at most this many may be pending at once (the oldest goes first).
PEER_HANDSHAKE_TIMEOUT_S = _env("PEER_HANDSHAKE_TIMEOUT_S", 10.0, float)
MAX_PENDING_PEER_HANDSHAKES = _env("MAX_PENDING_PEER_HANDSHAKES", 256, int)
# A message to a peer whose link cannot be opened (busy, its pending handshakes
# full, a reset) waits and is tried again: the first wait this long (jittered),
# doubling up to 2 s, until the node is declared dead or this long has passed.
PEER_RETRY_FIRST_S = _env("PEER_RETRY_FIRST_S", 0.05, float)
PEER_RETRY_GIVE_UP_S = _env("PEER_RETRY_GIVE_UP_S", 300.0, float)
# How long a CREATE waits for arena space (others unpinning) before failing.
CREATE_WAIT_S = _env("CREATE_WAIT_S", 10.0, float)
# First-touch puts: once an object of at least PREFAULT_MIN_BYTES is created, the
# raylet maps arena pages ahead of the highest offset ever allocated (twice that
# object's size, at most PREFAULT_AHEAD_MAX bytes) in a thread of its own, so the
# next large put writes into pages that exist; 0 turns it off.
PREFAULT_MIN_BYTES = _env("PREFAULT_MIN_BYTES", 8 * 1024 * 1024, int)
PREFAULT_AHEAD_MAX = _env("PREFAULT_AHEAD_MAX", 512 * 1024 * 1024, int)
# Default retries of a task whose worker died.
DEFAULT_MAX_RETRIES = 3
# Calls the raylet sends ahead to an actor's worker (which runs them in order, at
# most max_concurrency at a time): a window hides the round trip per call.
ACTOR_PIPELINE_DEPTH = _env("ACTOR_PIPELINE_DEPTH", 32, int)
# Actor calls from a process on the actor's node go straight to the actor's worker
# (a unix socket of their own) once the raylet grants it; 0: always through the
# raylet (to compare, or to rule them out).
DIRECT_CALLS = _env("DIRECT_CALLS", 1, int)
# A busy worker is sent its next normal task ahead (to start on its DONE, without
# waiting a round trip) only if the function it runs took less than this last
# time: a task queued behind a long one would wait while other workers idle.
PIPELINE_TASK_S = _env("PIPELINE_TASK_S", 0.002, float)
# ... and at most this many tasks wait sent ahead to one worker (the worker runs
# them back to back while the raylet reads their DONEs).
PIPELINE_DEPTH = _env("PIPELINE_DEPTH", 4, int)
# A process keeps the arena mapping it made last (and so its pin) this long after
# its values are gone: repeated get()s of one large object need no round trip.
RECENT_MAP_S = _env("RECENT_MAP_S", 0.1, float)
# Not /tmp/beamlet: a directory named like the package in /tmp would shadow it
# (as a namespace package) for scripts run from /tmp under an editable install.
SESSION_ROOT = _env("SESSION_ROOT", "/tmp/beamlet-sessions", str)
# Multi-node: a GET of an object id that no node lists in the GCS (never created, or
# freed) fails with ObjectLostError after this long instead of waiting forever.
UNKNOWN_OBJECT_WAIT_S = _env("UNKNOWN_OBJECT_WAIT_S", 30.0, float)
# Where raylets spill objects when their store is full (a directory of its own per
# node is made inside it); unset: the session directory's spill/.  The init()
# option object_spilling_directory and `beamlet start --object-spilling-directory`
# override it.
OBJECT_SPILLING_DIRECTORY = _env("OBJECT_SPILLING_DIRECTORY", None, str)
# Finished tasks the GCS keeps per job (the newest; beamlet:task_events:<job>):
# what the state API lists and the timeline draws of a job's past.  0: none are
# recorded (what bench/bench_task_events.py compares against).
TASK_EVENTS_PER_JOB = _env("TASK_EVENTS_PER_JOB", 10_000, int)
# A worker's log file (logs/worker-<id>-<pid>.out|.err) grows to at most this
# many bytes, then is moved to NAME.1 (one older copy is kept).
WORKER_LOG_MAX_BYTES = _env("WORKER_LOG_MAX_BYTES", 64 * 1024 * 1024, int)
# When a raylet stops, how long it goes on reading what its killed workers left
# in their pipes (their last lines), at most.
WORKER_OUTPUT_DRAIN_S = _env("WORKER_OUTPUT_DRAIN_S", 1.0, float)
# A get()/wait() that waited this long prints, once, what it waits for (unless
# that is work that runs); 0: never.  See beamlet/_private/stuck.py.
STUCK_WARNING_S = _env("STUCK_WARNING_S", 10.0, float)
# How often a process that records metrics (beamlet.util.metrics) sends what
# changed to its raylet (one METRICS message), i.e. how fresh a scrape is.
METRICS_REPORT_S = _env("METRICS_REPORT_S", 1.0, float)
# With BEAMLET_GET_PROGRESS=1, a get() of at least this many refs that is still
# waiting after GET_PROGRESS_DELAY_S draws a progress line (_private/progress.py).
GET_PROGRESS_MIN_REFS = _env("GET_PROGRESS_MIN_REFS", 100, int)
GET_PROGRESS_DELAY_S = _env("GET_PROGRESS_DELAY_S", 1.0, float)
# How long a driver or the CLI tries to reach a GCS on another machine before
# saying it cannot (the address is probed before anything else is done with it).
GCS_CONNECT_TIMEOUT_S = _env("GCS_CONNECT_TIMEOUT_S", 5.0, float)




def _env_or_ray(name, ray_name, default, cast, check, what):
    """A tunable that Ray's own variable (RAY_<ray_name>) sets too; BEAMLET_<name>
    wins.  A value that is not valid stops the process with a message naming
    the variable and what it takes."""
    TUNABLES[name] = cast
    CHECKS[name] = (check, what)
    for var in ("BEAMLET_" + name, "RAY_" + ray_name):
        raw = os.environ.get(var)
        if raw is None:
            continue
        try:
            v = cast(raw)
        except ValueError:
            v = None
        if v is None or not check(v):
            raise ValueError(f"{var}={raw!r} is not valid: it takes {what}.")
        return v
    return default


# The memory monitor (raylet/memory_monitor.py), as Ray's: when the node's memory
# use (its cgroup's if it has a limit, else the machine's) is above this fraction,
# the worker of the newest retriable task is killed (OutOfMemoryError).
MEMORY_USAGE_THRESHOLD = _env_or_ray(
    "MEMORY_USAGE_THRESHOLD", "memory_usage_threshold", 0.95, float,
    lambda v: 0 < v <= 1, "a fraction in (0, 1], e.g. 0.95")
# How often it looks, in milliseconds; 0 turns the monitor off.
MEMORY_MONITOR_REFRESH_MS = _env_or_ray(
    "MEMORY_MONITOR_REFRESH_MS", "memory_monitor_refresh_ms", 250, int,
    lambda v: v >= 0, "a whole number of milliseconds >= 0 (0: no monitor)")


# Ray's _system_config keys that mean the same thing here: key -> (tunable, how a
# Ray value becomes ours).  Other Ray keys are rejected (they would do nothing).
RAY_SYSTEM_CONFIG = {
    "max_direct_call_object_size": ("INLINE_THRESHOLD", int),
    "raylet_heartbeat_period_milliseconds": ("HEARTBEAT_S", lambda ms: float(ms) / 1000),
    "idle_worker_killing_time_threshold_ms": ("IDLE_WORKER_S",
                                              lambda ms: float(ms) / 1000),
    "gcs_rpc_server_reconnect_timeout_s": ("GCS_RECONNECT_TIMEOUT_S", float),
    "memory_usage_threshold": ("MEMORY_USAGE_THRESHOLD", float),
    "memory_monitor_refresh_ms": ("MEMORY_MONITOR_REFRESH_MS", int),
}

# tunables that have an init() option of their own (they are not per process)
_OWN_OPTION = {"SESSION_ROOT": "_temp_dir",
               "OBJECT_SPILLING_DIRECTORY": "object_spilling_directory"}


def system_config_env(system_config) -> dict:
    """The BEAMLET_<NAME> environment for a node's processes that applies
    `init(_system_config=...)`: keys are beamlet tunables (any case, e.g.
    "heartbeat_s") or the Ray keys in RAY_SYSTEM_CONFIG; anything else, or a value
    of the wrong type, is a ValueError naming it."""
    if system_config is None:
        return {}
    if not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got "
                        f"{type(system_config).__name__}.")
    env = {}
    for key, value in system_config.items():
        name, convert = None, None
        if isinstance(key, str) and key.upper() in _OWN_OPTION:
            raise ValueError(f"_system_config key {key!r}: use init's "
                             f"{_OWN_OPTION[key.upper()]} option instead.")
        if isinstance(key, str) and key.upper() in TUNABLES:
            name = key.upper()
            convert = TUNABLES[name]
        elif key in RAY_SYSTEM_CONFIG:
            name, convert = RAY_SYSTEM_CONFIG[key]
        if name is None:
            known = sorted(k.lower() for k in TUNABLES if k not in _OWN_OPTION) + \
                sorted(RAY_SYSTEM_CONFIG)
            raise ValueError(f"_system_config key {key!r} means nothing to beamlet; the "
                             f"keys it takes are: {', '.join(known)}.")
        try:
            v = convert(value)
            TUNABLES[name](str(v))   # the child parses the text again: check it does
        except (TypeError, ValueError):
            raise ValueError(f"_system_config[{key!r}] = {value!r} is not a valid value "
                             f"({TUNABLES[name].__name__} expected).") from None
        if name in CHECKS and not CHECKS[name][0](TUNABLES[name](str(v))):
            raise ValueError(f"_system_config[{key!r}] = {value!r} is not valid: it "
                             f"takes {CHECKS[name][1]}.")
        env["BEAMLET_" + name] = str(v)
    return env
# The most a runtime_env package (a working_dir or py_modules entry: the files
# it holds, before compression) may hold: every node downloads it from the GCS.
# Ray's limit.
RUNTIME_ENV_MAX_BYTES = _env("RUNTIME_ENV_MAX_BYTES", 100 * 1024 * 1024, int)
# Job submission (beamlet job submit): the job manager renews its liveness key
# (beamlet:job_manager) every JOB_MANAGER_TTL_S / 3; a client finding no key says
# the head runs no job manager.  Of a job's output, the last JOB_LOG_GCS_BYTES are
# kept in the GCS for clients (the whole log is a file on the head).  A job being
# stopped gets SIGTERM, then SIGKILL after JOB_STOP_WAIT_S (Ray's 3 s).
JOB_MANAGER_TTL_S = _env("JOB_MANAGER_TTL_S", 6.0, float)
JOB_LOG_GCS_BYTES = _env("JOB_LOG_GCS_BYTES", 16 * 1024 * 1024, int)
JOB_STOP_WAIT_S = _env("JOB_STOP_WAIT_S", 3.0, float)
# A remote function or actor class whose pickle is larger than this gets a warning
# when it is exported; above the error size it is refused (ValueError, telling to
# put() the large object instead): it travels through Redis and every worker that
# runs it.  Ray's values (FUNCTION_SIZE_WARN_THRESHOLD / _ERROR_THRESHOLD).
FUNCTION_SIZE_WARN_BYTES = _env("FUNCTION_SIZE_WARN_BYTES", 10 ** 7, int)
FUNCTION_SIZE_ERROR_BYTES = _env("FUNCTION_SIZE_ERROR_BYTES", 10 ** 8, int)
# A driver that is not connected when it first needs a cluster calls init() itself
# (as Ray does), unless BEAMLET_ENABLE_AUTO_CONNECT (or Ray's name for it,
# RAY_ENABLE_AUTO_CONNECT) is "0".  Read when used, so a program may set it late.


def auto_connect_enabled() -> bool:
    for name in ("BEAMLET_ENABLE_AUTO_CONNECT", "RAY_ENABLE_AUTO_CONNECT"):
        if os.environ.get(name, "").strip() == "0":
            return False
    return True


# A driver whose cluster it did not start waits, at shutdown(), until worker output
# has been quiet this long (the raylet publishes it every GCS_FLUSH_S), so the last
# lines a task printed are not lost when the driver exits right after get().
LOG_DRAIN_QUIET_S = _env("LOG_DRAIN_QUIET_S", 0.15, float)
