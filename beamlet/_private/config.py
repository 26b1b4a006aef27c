"""Tunables, in one place.  Environment variables BEAMLET_<NAME> override them.

Processes a node starts read these from their environment, which is how
`init(_system_config=...)` reaches them (see `system_config_env`).
"""
import os

# name -> cast, for every tunable an environment variable can set
TUNABLES = {}


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
# How long a CREATE waits for arena space (others unpinning) before failing.
CREATE_WAIT_S = _env("CREATE_WAIT_S", 10.0, float)
# Default retries of a task whose worker died.
DEFAULT_MAX_RETRIES = 3
# Calls the raylet sends ahead to an actor's worker (which runs them in order, at
# most max_concurrency at a time): a window hides the round trip per call.
ACTOR_PIPELINE_DEPTH = _env("ACTOR_PIPELINE_DEPTH", 32, int)
# A busy worker is sent its next normal task ahead (to start on its DONE, without
# waiting a round trip) only if the function it runs took less than this last
# time: a task queued behind a long one would wait while other workers idle.
PIPELINE_TASK_S = _env("PIPELINE_TASK_S", 0.002, float)
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
# How long a driver or the CLI tries to reach a GCS on another machine before
# saying it cannot (the address is probed before anything else is done with it).
GCS_CONNECT_TIMEOUT_S = _env("GCS_CONNECT_TIMEOUT_S", 5.0, float)


# Ray's _system_config keys that mean the same thing here: key -> (tunable, how a
# Ray value becomes ours).  Other Ray keys are rejected (they would do nothing).
RAY_SYSTEM_CONFIG = {
    "max_direct_call_object_size": ("INLINE_THRESHOLD", int),
    "raylet_heartbeat_period_milliseconds": ("HEARTBEAT_S", lambda ms: float(ms) / 1000),
    "idle_worker_killing_time_threshold_ms": ("IDLE_WORKER_S",
                                              lambda ms: float(ms) / 1000),
    "gcs_rpc_server_reconnect_timeout_s": ("GCS_RECONNECT_TIMEOUT_S", float),
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
        env["BEAMLET_" + name] = str(v)
    return env
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
