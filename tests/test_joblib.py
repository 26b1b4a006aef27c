"""joblib's "ray" backend (beamlet.util.joblib.register_ray) on a real cluster."""
import os
import subprocess
import sys

import joblib
import pytest
from joblib import Parallel, delayed

import beamlet as ray
from beamlet.util.joblib import register_ray


@pytest.fixture(scope="module")
def cluster(shared_cluster):
    register_ray()
    return shared_cluster


def where(i):
    return i, os.getpid()


def fails(i):
    if i == 2:
        raise ValueError(f"item {i} fails")
    return i


def test_parallel_runs_on_the_cluster(cluster):
    with joblib.parallel_backend("ray"):
        out = Parallel(n_jobs=2)(delayed(where)(i) for i in range(20))
    assert [i for i, _ in out] == list(range(20))
    pids = {p for _, p in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_n_jobs_minus_one_counts_the_clusters_cpus(cluster):
    with joblib.parallel_backend("ray", n_jobs=-1):
        p = Parallel()
        assert p._effective_n_jobs() == 2
        assert p(delayed(pow)(i, 2) for i in range(5)) == [0, 1, 4, 9, 16]


def test_parallel_config_and_the_beamlet_name(cluster):
    with joblib.parallel_config(backend="beamlet", n_jobs=2):
        assert Parallel()(delayed(where)(i) for i in range(3))[0][1] != os.getpid()


def test_exceptions_propagate(cluster):
    with joblib.parallel_backend("ray"):
        with pytest.raises(ValueError, match="item 2 fails"):
            Parallel(n_jobs=2)(delayed(fails)(i) for i in range(6))
        # the backend is usable after a failure
        assert Parallel(n_jobs=2)(delayed(fails)(i) for i in (0, 1)) == [0, 1]


def free_cpus(_):
    return ray.available_resources().get("CPU", 0)


def test_ray_remote_args_reach_the_actors(cluster):
    with joblib.parallel_backend("ray"):     # the pool's actors take no CPU (Ray's default)
        assert set(Parallel(n_jobs=2)(delayed(free_cpus)(i) for i in range(2))) == {2}
    with joblib.parallel_backend("ray", ray_remote_args={"num_cpus": 1}):
        assert set(Parallel(n_jobs=2)(delayed(free_cpus)(i) for i in range(2))) == {0}


def test_clear_error_without_joblib(tmp_path):
    code = ("import sys; sys.modules['joblib'] = None\n"
            "from beamlet.util.joblib import register_ray\n"
            "try:\n    register_ray()\n"
            "except ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "ERR" in out.stdout and "pip install 'beamlet[joblib]'" in out.stdout, out
