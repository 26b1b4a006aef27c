"""Programs written for Ray in the shape of Ray Core's user guide (tasks, objects,
wait, actors, async actors, generators, the DAG API, placement groups, cancel,
retries, queues, runtime_env, the state API) run unchanged under `beamlet run`:
`import ray` is beamlet.  Each is a real script in its own process and cluster;
it prints OK when every assertion in it held."""
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent / "ray_programs"
PROGRAMS = sorted(p.name for p in HERE.glob("*.py"))


@pytest.mark.parametrize("name", PROGRAMS)
def test_ray_program_runs_unchanged(name, tmp_path):
    env = dict(os.environ)
    env.pop("BEAMLET_ADDRESS", None)
    env.pop("RAY_ADDRESS", None)
    beamlet = os.path.join(os.path.dirname(sys.executable), "beamlet")
    p = subprocess.run([beamlet, "run", str(HERE / name)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), \
        f"{name}: rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
