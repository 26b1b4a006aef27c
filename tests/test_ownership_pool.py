"""A worker process that owns live objects (it put them) is not ended as idle,
as Ray keeps such workers: ending it would lose the objects (tests/test_ownership.py)."""
import os

import numpy as np

import beamlet as ray
from beamlet.worker import core_worker
from conftest import alive, wait_for


def test_a_worker_that_owns_objects_is_not_ended_as_idle(tmp_path):
    """Workers idle past the threshold are ended, except those owning objects."""
    ray.init(num_cpus=2, _system_config={"idle_worker_killing_time_threshold_ms": 200})
    try:
        @ray.remote(num_cpus=0)
        def put_and_wait(gate):
            import time
            while gate and not os.path.exists(gate):
                time.sleep(0.01)
            return os.getpid(), [ray.put(np.ones(50_000))]

        gate = str(tmp_path / "gate")
        owners = [put_and_wait.remote("") for _ in range(2)]
        others = [put_and_wait.remote(gate) for _ in range(2)]   # 4 workers at once
        kept = ray.get(owners)          # these workers are idle first (oldest)
        del owners                      # (the refs inside `kept` keep the objects)
        open(gate, "w").close()
        ray.get(others)
        del others                      # their workers own nothing now

        def idle_workers():
            return core_worker.global_worker.call("status")["workers"]["IDLE"]
        wait_for(lambda: idle_workers() <= 2, timeout=30, msg="idle workers ended")
        for pid, [ref] in kept:
            assert alive(pid)
            assert ray.get(ref, timeout=30).sum() == 50_000
    finally:
        ray.shutdown()
