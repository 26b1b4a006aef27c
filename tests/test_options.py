"""Options of remote / .options() / method / init (issue 16, issue 10 §4): a value
of the wrong type is a TypeError, one out of range a ValueError, both at the call
and naming the option; options Ray has and beamlet does not act on are accepted,
and docs/api.md lists each of them with the reason.  Also the size check of a
remote function's pickle (issue 15)."""
import pathlib
import warnings

import numpy as np
import pytest

import beamlet as ray
from beamlet._private import options as opts
from beamlet.util import accelerators
from beamlet.util.placement_group import PlacementGroup

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api.md"


def f():
    return 1


class A:
    def m(self):
        return 1


# (option, bad value, error type)
TASK_BAD = [
    ("max_retries", "x", TypeError), ("max_retries", -2, ValueError),
    ("max_retries", 1.5, TypeError), ("num_cpus", "2", TypeError),
    ("num_cpus", -1, ValueError), ("num_cpus", True, TypeError),
    ("num_gpus", -0.5, ValueError), ("num_gpus", 1.5, ValueError),
    ("memory", -1, ValueError), ("num_returns", -1, ValueError),
    ("num_returns", 1.0, TypeError), ("num_returns", "many", ValueError),
    ("resources", ["a"], TypeError), ("resources", {"CPU": 1}, ValueError),
    ("resources", {"x": -1}, ValueError), ("resources", {"x": "1"}, ValueError),
    ("retry_exceptions", "yes", TypeError), ("retry_exceptions", [1], ValueError),
    ("scheduling_strategy", "FASTEST", ValueError),
    ("scheduling_strategy", 3, ValueError), ("name", 3, TypeError),
    ("placement_group", "mine", ValueError),
    ("placement_group_bundle_index", -2, ValueError),
    ("placement_group_capture_child_tasks", "yes", TypeError),
    ("runtime_env", "env", TypeError), ("max_calls", -1, ValueError),
    ("enable_task_events", "no", TypeError), ("_metadata", [], TypeError),
    ("label_selector", "gpu", TypeError), ("accelerator_type", 100, TypeError),
]
ACTOR_BAD = [
    ("max_restarts", "3", TypeError), ("max_restarts", -5, ValueError),
    ("max_task_retries", 0.5, TypeError), ("max_concurrency", 0, ValueError),
    ("max_concurrency", "8", TypeError), ("lifetime", "forever", ValueError),
    ("lifetime", 1, TypeError), ("name", "", ValueError), ("name", 5, TypeError),
    ("namespace", "", ValueError), ("get_if_exists", "yes", TypeError),
    ("num_cpus", "1", TypeError), ("max_pending_calls", -3, ValueError),
    ("concurrency_groups", ["io"], TypeError),
    ("concurrency_groups", {"io": 0}, ValueError),
    ("concurrency_groups", {"": 2}, ValueError),
]
METHOD_BAD = [
    ("num_returns", "x", ValueError), ("num_returns", -1, ValueError),
    ("concurrency_group", 1, TypeError), ("max_task_retries", "1", TypeError),
    ("enable_task_events", 1, TypeError),
]
INIT_BAD = [
    ("num_cpus", "4", TypeError), ("num_cpus", -1, ValueError),
    ("num_gpus", "1", TypeError), ("resources", {"CPU": 2}, ValueError),
    ("object_store_memory", 0, ValueError), ("object_store_memory", "1G", ValueError),
    ("namespace", "", ValueError), ("namespace", 3, TypeError),
    ("ignore_reinit_error", "yes", TypeError), ("log_to_driver", 1, TypeError),
    ("runtime_env", [], TypeError), ("job_config", {"a": 1}, TypeError),
    ("address", 6379, TypeError), ("_metrics_export_port", "8080", TypeError),
    ("include_dashboard", "no", TypeError),
]


@pytest.mark.parametrize("name,value,err", TASK_BAD)
def test_bad_task_options(name, value, err):
    with pytest.raises(err, match=name):
        ray.remote(**{name: value})(f)
    with pytest.raises(err, match=name):
        ray.remote(f).options(**{name: value})


@pytest.mark.parametrize("name,value,err", ACTOR_BAD)
def test_bad_actor_options(name, value, err):
    with pytest.raises(err, match=name):
        ray.remote(**{name: value})(A)
    if name != "concurrency_groups":
        with pytest.raises(err, match=name):
            ray.remote(A).options(**{name: value})


@pytest.mark.parametrize("name,value,err", METHOD_BAD)
def test_bad_method_options(name, value, err):
    with pytest.raises(err, match=name):
        ray.method(**{name: value})


@pytest.mark.parametrize("name,value,err", INIT_BAD)
def test_bad_init_options(name, value, err):
    with pytest.raises(err, match=name):
        ray.init(**{name: value})
    assert not ray.is_initialized()


def test_unknown_options_are_value_errors_naming_them():
    with pytest.raises(ValueError, match="num_cpu"):
        ray.remote(num_cpu=1)(f)
    with pytest.raises(ValueError, match="Invalid option"):
        ray.remote(A).options(max_concurency=2)
    with pytest.raises(ValueError, match="bogus"):
        ray.method(bogus=1)
    with pytest.raises(TypeError, match="unexpected keyword.*num_cpu"):
        ray.init(num_cpu=2)


def test_options_only_allowed_at_definition():
    with pytest.raises(ValueError, match="max_calls"):
        ray.remote(f).options(max_calls=2)
    with pytest.raises(ValueError, match="concurrency_groups"):
        ray.remote(A).options(concurrency_groups={"io": 1})


def test_method_in_an_undefined_group_is_refused_at_definition():
    class B:
        @ray.method(concurrency_group="io")
        def m(self):
            return 1
    with pytest.raises(ValueError, match="io"):
        ray.remote(B)
    ray.remote(concurrency_groups={"io": 2})(B)


def test_good_values_pass():
    pg = PlacementGroup(b"\0" * 16, [{"CPU": 1}])
    good_task = dict(num_cpus=0.5, num_gpus=2, memory=10 ** 6, num_returns=0,
                     max_retries=-1, resources={"x": 0.25}, retry_exceptions=[KeyError],
                     scheduling_strategy="SPREAD", name="n", placement_group=pg,
                     placement_group_bundle_index=0, runtime_env={"env_vars": {}})
    ray.remote(**good_task)(f)
    ray.remote(max_restarts=-1, max_task_retries=2, max_concurrency=4, lifetime="detached",
               name="x", namespace="ns", get_if_exists=True,
               concurrency_groups={"io": 2})(A)
    opts.validate({k: None for k in opts.TASK}, opts.TASK, "t")   # None: the default


def _options_in_docs():
    text = DOCS.read_text()
    section = text.split("## Accepted and ignored", 1)[1]
    return section


@pytest.mark.parametrize("table_name", ["TASK", "ACTOR", "METHOD", "INIT"])
def test_ignored_options_are_accepted_and_documented(table_name, ray_start):
    table = getattr(opts, table_name)
    doc = _options_in_docs()
    for name, reason in opts.ignored(table).items():
        assert f"`{name}`" in doc, f"docs/api.md does not list {name} as ignored"
    # and they are really accepted (the call goes through)
    ignored = {k: v for k, v in {
        "accelerator_type": accelerators.NVIDIA_TESLA_V100, "label_selector": {"a": "b"},
        "fallback_strategy": [], "_labels": {}, "enable_task_events": False,
        "_metadata": {"lib": {"k": 1}}, "max_calls": 3, "object_store_memory": 10 ** 6,
        "_generator_backpressure_num_objects": 2, "max_pending_calls": 10,
        "allow_out_of_order_execution": False, "tensor_transport": "object_store",
        "retry_exceptions": False}.items() if k in opts.ignored(table)}
    if table_name == "TASK":
        assert ray.get(ray.remote(**ignored)(f).remote(), timeout=60) == 1
        ignored.pop("max_calls")        # (only at @remote, as in Ray)
        assert ray.get(ray.remote(f).options(**ignored).remote(), timeout=60) == 1
    elif table_name == "ACTOR":
        a = ray.remote(**ignored)(A).remote()
        assert ray.get(a.m.remote(), timeout=60) == 1
    elif table_name == "METHOD":
        a = ray.remote(A).remote()
        assert ray.get(a.m.options(**ignored).remote(), timeout=60) == 1


def test_init_accepts_rays_other_options():
    info = ray.init(num_cpus=1, include_dashboard=False, dashboard_port=8265,
                    logging_level="info", configure_logging=False,
                    _metrics_export_port=8080, local_mode=False, labels={"zone": "a"})
    try:
        assert info["session_dir"]
        assert ray.get(ray.remote(f).remote(), timeout=60) == 1
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- pickled size
def test_large_closure_warns_and_huge_one_is_refused(ray_start, monkeypatch):
    from beamlet._private import config
    # thresholds scaled down (BEAMLET_FUNCTION_SIZE_*_BYTES) to keep the test light
    monkeypatch.setattr(config, "FUNCTION_SIZE_WARN_BYTES", 1 << 20)
    monkeypatch.setattr(config, "FUNCTION_SIZE_ERROR_BYTES", 4 << 20)
    medium = np.ones(2 << 20, dtype=np.uint8)
    huge = np.ones(8 << 20, dtype=np.uint8)

    @ray.remote
    def small():
        return 1

    @ray.remote
    def uses_medium():
        return int(medium[0])

    @ray.remote
    def uses_huge():
        return int(huge[0])

    @ray.remote
    class HoldsHuge:
        def get(self):
            return int(huge[0])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ray.get(small.remote()) == 1          # no warning
    with pytest.warns(UserWarning, match="uses_medium is very large.*put"):
        assert ray.get(uses_medium.remote()) == 1
    with pytest.raises(ValueError, match="uses_huge is too large.*put"):
        uses_huge.remote()
    with pytest.raises(ValueError, match="actor class .*HoldsHuge is too large"):
        HoldsHuge.remote()
    # the way out the message names works
    ref = ray.put(huge)

    @ray.remote
    def takes(a):
        return int(a[0])
    assert ray.get(takes.remote(ref)) == 1
