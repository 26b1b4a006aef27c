"""What runtime environments and job submission cost (issues 10 §6 and 14).

On a local init(num_cpus=2) cluster, per round (a fresh working dir of --mib MiB
of incompressible files each round, so nothing is cached from the round before):
  upload      zip + upload of a new working_dir (what a first .remote() does)
  again       the same dir given again, unchanged (a stat pass: no zip, no upload)
  first task  a task in another new working_dir: the upload, a worker started
              for it, the package fetched from the GCS and unpacked, the task run
  next task   the next task in it (a warm worker of the environment)
  env_vars    the first task of an env_vars-only environment (a worker start)
  plain       a task with no runtime_env (warm)
and on a `beamlet start --head` cluster: a job running `true`, from submit_job()
to RUNNING and to SUCCEEDED (the job manager starts a shell; `true` does not
start a driver).

    python bench/bench_runtime_env.py [--mib 20] [--rounds 3]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import beamlet
from beamlet.job_submission import JobStatus, JobSubmissionClient


@beamlet.remote
def probe():
    return os.getpid()


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def make_dir(mib):
    d = tempfile.mkdtemp(prefix="blbench")
    for i in range(max(1, mib)):
        with open(os.path.join(d, f"blob{i}.bin"), "wb") as f:
            f.write(os.urandom(1024 * 1024))
    with open(os.path.join(d, "mod.py"), "w") as f:
        f.write("X = 1\n")
    return d


def env_round(mib):
    from beamlet import connection
    from beamlet.runtime_env.resolve import Resolver
    dirs = [make_dir(mib), make_dir(mib)]
    out = {}
    try:
        beamlet.get(probe.remote())                         # warm plain worker
        resolver = Resolver(connection.gcs())
        out["upload"] = timed(lambda: resolver.canonical({"working_dir": dirs[0]}))
        out["again"] = timed(lambda: resolver.canonical({"working_dir": dirs[0]}))
        env = {"working_dir": dirs[1]}
        out["first task (with upload)"] = timed(lambda: beamlet.get(
            probe.options(runtime_env=env).remote()))
        out["next task"] = timed(lambda: beamlet.get(
            probe.options(runtime_env=env).remote()))
        var = {"env_vars": {"BENCH": str(time.time())}}
        out["env_vars first task"] = timed(lambda: beamlet.get(
            probe.options(runtime_env=var).remote()))
        out["plain task"] = timed(lambda: beamlet.get(probe.remote()))
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    return out


def job_rounds(rounds):
    root = tempfile.mkdtemp(prefix="blbenchjob", dir="/tmp")
    env = dict(os.environ, BEAMLET_SESSION_ROOT=root)
    env.pop("BEAMLET_ADDRESS", None)
    cli = [sys.executable, "-m", "beamlet.cli"]
    p = subprocess.run(cli + ["start", "--head", "--port", "0", "--num-cpus", "2"],
                       env=env, capture_output=True, text=True, check=True)
    address = re.search(r"address:\s+(\S+)", p.stdout).group(1)
    token = re.search(r"--redis-password (\S+)", p.stdout).group(1)
    rows = {"job: submit -> RUNNING": [], "job: submit -> SUCCEEDED": []}
    try:
        c = JobSubmissionClient(address, _redis_password=token)
        for _ in range(rounds):
            t = time.perf_counter()
            sid = c.submit_job(entrypoint="true")
            running = None
            while True:
                s = c.get_job_status(sid)
                if running is None and s != JobStatus.PENDING:
                    running = time.perf_counter() - t
                if s.is_terminal():
                    break
                time.sleep(0.002)
            rows["job: submit -> RUNNING"].append(running)
            rows["job: submit -> SUCCEEDED"].append(time.perf_counter() - t)
        c.close()
    finally:
        subprocess.run(cli + ["stop"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=20, help="working_dir size (MiB)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    beamlet.init(num_cpus=2)
    try:
        rounds = [env_round(args.mib) for _ in range(args.rounds)]
    finally:
        beamlet.shutdown()
    rows = {k: [r[k] for r in rounds] for k in rounds[0]}
    rows.update(job_rounds(args.rounds))
    print(f"working_dir of {args.mib} MiB, {args.rounds} rounds (median, min)")
    for k, v in rows.items():
        print(f"  {k:28} {statistics.median(v) * 1000:9.1f} ms  {min(v) * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
