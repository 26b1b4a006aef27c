"""Every keyword option of `remote`, `.options()`, `method` and `init`, in tables.

Each table maps an option's name to an `Option`: the types it accepts, a check of
its value, and — for the options beamlet accepts (so that Ray programs run
unchanged) but does not act on — the reason it is ignored.  `validate()` checks a
dict of options against a table: an unknown name or a value out of range is a
ValueError, a value of the wrong type a TypeError, each naming the option and
what it takes (as Ray does, at the call, not later in a worker).

The tables are data: docs/api.md lists the same options, and a test checks that
every option marked ignored here is listed there as accepted-and-ignored.
"""

from ..job_config import JobConfig
from ..runtime_env import resolve as runtime_env_rules

NUMBER = (int, float)


class Option:
    __slots__ = ("types", "what", "check", "ignored")

    def __init__(self, types, what, check=None, ignored=None):
        self.types = types          # accepted types (None is always accepted)
        self.what = what            # "a non-negative number": for messages
        self.check = check          # value -> error text | None
        self.ignored = ignored      # why beamlet accepts it without applying it


def _nonneg(v):
    return None if v >= 0 else "must not be negative"


def _gpus(v):
    if v < 0:
        return "must not be negative"
    if v > 1 and v != int(v):
        return "above 1 must be a whole number (fractions of one GPU pack onto it)"
    return None


def _at_least(n, infinite=False):
    def check(v):
        if v >= n:
            return None
        return f"must be >= {n}" + (" (-1: unlimited)" if infinite else "")
    return check


def _num_returns(v):
    if isinstance(v, str):
        return None if v in ("streaming", "dynamic") else \
            "must be a non-negative int, 'streaming' or 'dynamic'"
    return None if v >= 0 else "must be a non-negative int, 'streaming' or 'dynamic'"


def _resources(v):
    for k, q in v.items():
        if not isinstance(k, str):
            return f"has a key {k!r} that is not a resource name (a str)"
        if k in ("CPU", "GPU"):
            return f"must not name {k!r}: use num_{k.lower()}s=... instead"
        if type(q) is bool or not isinstance(q, NUMBER):
            return f"maps {k!r} to {q!r}; resource amounts are numbers"
        if q < 0:
            return f"maps {k!r} to {q!r}; resource amounts must not be negative"
    return None


def _retry_exceptions(v):
    if isinstance(v, bool):
        return None
    if all(isinstance(c, type) and issubclass(c, BaseException) for c in v):
        return None
    return "must be True, False or a list of exception classes"


def _strategy(v):
    if isinstance(v, str):
        return None if v in ("DEFAULT", "SPREAD") else \
            "must be 'DEFAULT', 'SPREAD' or a strategy from beamlet.util." \
            "scheduling_strategies"
    return None if callable(getattr(v, "to_wire", None)) else \
        "must be 'DEFAULT', 'SPREAD' or a strategy from " \
        "beamlet.util.scheduling_strategies"


def _placement_group(v):
    if isinstance(v, str):
        return None if v == "default" else "must be a PlacementGroup, 'default' or None"
    return None if hasattr(v, "bundle_specs") else \
        "must be a PlacementGroup, 'default' or None"


def _port(v):
    return None if 0 <= v < 65536 else "must be a port number from 1 to 65535 (0: any " \
        "free port)"


def _non_empty(v):
    return None if v else "must be a non-empty string"


def _one_of(*values):
    def check(v):
        return None if v in values else f"must be one of {values} (or None)"
    return check


def _runtime_env(v):
    try:
        runtime_env_rules.validate(v)
    except (TypeError, ValueError) as e:
        return f"is not one beamlet can apply: {e}"
    return None


def _concurrency_groups(v):
    for name, limit in v.items():
        if not isinstance(name, str) or not name:
            return f"has a group name {name!r}; group names are non-empty strings"
        if type(limit) is not int or limit < 1:
            return f"gives group {name!r} the limit {limit!r}; limits are ints >= 1"
    return None


NUM = "a non-negative number"
COUNT = "an int"
_NOT_ADVERTISED = "nodes advertise no accelerator types or labels to match"
_NO_TASK_EVENTS = ("task states are always recorded in the GCS (docs/gcs.md); there "
                   "is no per-task switch")
_NOT_READ = "nothing in beamlet reads it (Ray libraries keep their own data there)"

# Options every task and actor takes.
COMMON = {
    "num_cpus": Option(NUMBER, NUM, _nonneg),
    "num_gpus": Option(NUMBER, NUM, _gpus),
    "memory": Option(NUMBER, NUM, _nonneg),
    "resources": Option(dict, "a dict of resource name -> amount", _resources),
    "name": Option(str, "a str"),
    "scheduling_strategy": Option((str, object), "'DEFAULT', 'SPREAD' or a strategy",
                                  _strategy),
    "placement_group": Option((str, object), "a PlacementGroup", _placement_group),
    "placement_group_bundle_index": Option(int, COUNT, _at_least(-1)),
    "placement_group_capture_child_tasks": Option(bool, "a bool"),
    "runtime_env": Option(dict, "a dict (or beamlet.runtime_env.RuntimeEnv)",
                          _runtime_env),
    "accelerator_type": Option(str, "a str", ignored=_NOT_ADVERTISED),
    "label_selector": Option(dict, "a dict", ignored=_NOT_ADVERTISED),
    "fallback_strategy": Option(list, "a list", ignored=_NOT_ADVERTISED),
    "_labels": Option(dict, "a dict", ignored=_NOT_ADVERTISED),
    "enable_task_events": Option(bool, "a bool", ignored=_NO_TASK_EVENTS),
    "_metadata": Option(dict, "a dict", ignored=_NOT_READ),
}

TASK = {
    **COMMON,
    "num_returns": Option((int, str), "a non-negative int, 'streaming' or 'dynamic'",
                          _num_returns),
    "max_retries": Option(int, COUNT, _at_least(-1, infinite=True)),
    "retry_exceptions": Option((bool, list, tuple), "a bool or a list of exception "
                               "classes", _retry_exceptions),
    "max_calls": Option(int, COUNT, _at_least(0), ignored=(
        "workers are not recycled after a number of calls; a worker lives until "
        "the pool shrinks it")),
    "object_store_memory": Option(int, COUNT, _at_least(0), ignored=(
        "the object store is shared by the node; tasks reserve no part of it")),
    # a streaming generator pauses while this many of its items are not taken
    "_generator_backpressure_num_objects": Option(int, COUNT),
}

ACTOR = {
    **COMMON,
    "max_restarts": Option(int, COUNT, _at_least(-1, infinite=True)),
    "max_task_retries": Option(int, COUNT, _at_least(-1, infinite=True)),
    "max_concurrency": Option(int, "an int >= 1", _at_least(1)),
    "concurrency_groups": Option(dict, "a dict of group name -> max concurrency",
                                 _concurrency_groups),
    "name": Option(str, "a non-empty str", _non_empty),
    "namespace": Option(str, "a non-empty str", _non_empty),
    "lifetime": Option(str, "'detached' or 'non_detached'",
                       _one_of("detached", "non_detached")),
    "get_if_exists": Option(bool, "a bool"),
    "max_pending_calls": Option(int, COUNT, _at_least(-1, infinite=True), ignored=(
        "calls are not counted per handle; a caller is never refused with "
        "PendingCallsLimitExceeded")),
    "allow_out_of_order_execution": Option(bool, "a bool", ignored=(
        "calls from one caller always run in submission order")),
    "object_store_memory": Option(int, COUNT, _at_least(0), ignored=(
        "the object store is shared by the node; actors reserve no part of it "
        "(deprecated in Ray too)")),
}

# @method(...) and handle.method.options(...).
METHOD = {
    "num_returns": Option((int, str), "a non-negative int, 'streaming' or 'dynamic'",
                          _num_returns),
    "concurrency_group": Option(str, "a str (a group of the actor class)"),
    "max_task_retries": Option(int, COUNT, _at_least(-1, infinite=True)),
    "name": Option(str, "a str"),
    # retried (up to max_task_retries) when the method raises a listed exception
    "retry_exceptions": Option((bool, list, tuple), "a bool or a list of exception "
                               "classes", _retry_exceptions),
    "enable_task_events": Option(bool, "a bool", ignored=_NO_TASK_EVENTS),
    "_generator_backpressure_num_objects": Option(int, COUNT),
    "tensor_transport": Option(str, "a str", ignored=(
        "values always travel through the object store")),
    "_metadata": Option(dict, "a dict", ignored=_NOT_READ),
}

_NO_LOGGING = "beamlet does not configure the driver's Python logging"

INIT = {
    "address": Option(str, "'auto', 'local' or 'HOST:PORT'"),
    "num_cpus": Option(NUMBER, NUM, _nonneg),
    "num_gpus": Option(NUMBER, NUM, _nonneg),
    "resources": Option(dict, "a dict of resource name -> amount", _resources),
    # checked where the store is sized (node.py: the range depends on the machine)
    "object_store_memory": Option(object, "a number of bytes"),
    "namespace": Option(str, "a non-empty str", _non_empty),
    "ignore_reinit_error": Option(bool, "a bool"),
    "log_to_driver": Option(bool, "a bool"),
    "runtime_env": Option(dict, "a dict (or beamlet.runtime_env.RuntimeEnv)",
                          _runtime_env),
    "job_config": Option(JobConfig, "a beamlet.job_config.JobConfig"),
    "_redis_password": Option(str, "a str"),
    "labels": Option(dict, "a dict", ignored=_NOT_ADVERTISED),
    "local_mode": Option(bool, "a bool", ignored=(
        "tasks always run in worker processes (local_mode is deprecated in Ray)")),
    # the dashboard (node.py: started with a cluster init() starts; a driver that
    # joins a cluster uses the one its head serves)
    "include_dashboard": Option(bool, "a bool"),
    "dashboard_host": Option(str, "an address of this machine, or 0.0.0.0"),
    "dashboard_port": Option(int, "a port number (0: any free port)", _port),
    "configure_logging": Option(bool, "a bool", ignored=_NO_LOGGING),
    "logging_level": Option((int, str), "a logging level", ignored=_NO_LOGGING),
    "logging_format": Option(str, "a str", ignored=_NO_LOGGING),
    "logging_config": Option(object, "a LoggingConfig", ignored=_NO_LOGGING),
    "enable_resource_isolation": Option(bool, "a bool", ignored=(
        "workers run without cgroup isolation")),
    "system_reserved_cpu": Option(NUMBER, NUM, _nonneg, ignored=(
        "workers run without cgroup isolation")),
    "system_reserved_memory": Option(int, "a number of bytes", _nonneg, ignored=(
        "workers run without cgroup isolation")),
    # the node's metrics endpoint (raylet/metrics.py); 0: any free port
    "_metrics_export_port": Option(int, "a port number (0: any free port)", _port),
    # applied by node.init_node_options: the session root, tunables of the node's
    # processes, where objects spill
    "_temp_dir": Option(str, "a path"),
    "_system_config": Option(dict, "a dict"),
    "object_spilling_directory": Option(str, "a path"),
    "_node_ip_address": Option(str, "an IP address", ignored=(
        "a cluster started by init() listens on loopback; use `beamlet start` "
        "with --node-ip-address for a cluster of machines")),
}


def validate(options: dict, table: dict, what: str) -> None:
    """Raise ValueError/TypeError for the first bad option, naming it."""
    for name, value in options.items():
        opt = table.get(name)
        if opt is None:
            raise ValueError(f"Invalid option {name!r} for {what}; valid options are "
                             f"{sorted(table)}.")
        if value is None:
            continue
        if (type(value) is bool and opt.types is not bool and
                bool not in (opt.types if isinstance(opt.types, tuple) else ())) \
                or not isinstance(value, opt.types):
            raise TypeError(f"Option {name!r} of {what} must be {opt.what}, got "
                            f"{type(value).__name__} {value!r}.")
        if opt.check is not None:
            err = opt.check(value)
            if err:
                raise ValueError(f"Option {name!r} of {what} {err}; got {value!r}.")


def ignored(table: dict) -> dict:
    """name -> reason, for the options of `table` that are accepted and ignored."""
    return {k: o.ignored for k, o in table.items() if o.ignored}
