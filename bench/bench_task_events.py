"""What recording finished tasks costs (issue 11: goal under 5% on the async-task
row).  Each raylet appends every task that ends to a bounded buffer and writes
them behind, one ZADD per job per heartbeat (raylet/gcs_writer.py); with
BEAMLET_TASK_EVENTS_PER_JOB=0 nothing is recorded.  This runs the microbenchmark's
"single client tasks async" and "tasks sync" shapes with recording on and off, in
alternating subprocesses (a fresh cluster each), and prints the medians and the
cost of recording (also paired: the median of each round's ratio, and the raylet's
CPU time per task, the steadiest of the three on a shared machine).

    python bench/bench_task_events.py [--rounds 5] [--seconds 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import psutil
import beamlet as ray
ray.init(num_cpus=2)

@ray.remote
def noop():
    return 0

raylet = next(p for p in psutil.Process().children(recursive=True)
              if "beamlet.raylet.raylet" in p.cmdline())

def cpu(p):
    t = p.cpu_times()
    return t.user + t.system

def rate(body, ops, seconds):
    body()
    n, t0, c0 = 0, time.perf_counter(), cpu(raylet)
    while time.perf_counter() - t0 < seconds:
        body(); n += 1
    el = time.perf_counter() - t0
    return n * ops / el, (cpu(raylet) - c0) / (n * ops) * 1e6

seconds = float(sys.argv[1])
out = {}
for row, body, ops in (("tasks async", lambda: ray.get([noop.remote() for _ in range(1000)]), 1000),
                       ("tasks sync", lambda: ray.get(noop.remote()), 1)):
    out[row], out[row + " raylet us"] = rate(body, ops, seconds)
ray.shutdown()
print(json.dumps(out))
"""


def run(recording, seconds):
    env = dict(os.environ)
    if recording:
        env.pop("BEAMLET_TASK_EVENTS_PER_JOB", None)
    else:
        env["BEAMLET_TASK_EVENTS_PER_JOB"] = "0"
    p = subprocess.run([sys.executable, "-c", CHILD, str(seconds)], env=env,
                       capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    results = {True: [], False: []}
    for i in range(args.rounds):
        for recording in ((True, False) if i % 2 == 0 else (False, True)):
            results[recording].append(run(recording, args.seconds))
    print(f"{'row':14} {'recorded /s':>12} {'not /s':>12} {'cost':>7} {'paired':>7}  "
          f"{'raylet CPU us/task: recorded':>28} {'not':>6}")
    for row in (r for r in results[True][0] if not r.endswith(" raylet us")):
        on = statistics.median(r[row] for r in results[True])
        off = statistics.median(r[row] for r in results[False])
        # each round's two runs were adjacent in time: their ratio cancels the
        # machine's drift between rounds
        paired = statistics.median(a[row] / b[row] for a, b in
                                   zip(results[True], results[False]))
        cpu_on = statistics.median(r[row + " raylet us"] for r in results[True])
        cpu_off = statistics.median(r[row + " raylet us"] for r in results[False])
        print(f"{row:14} {on:12,.0f} {off:12,.0f} {100 * (1 - on / off):6.1f}% "
              f"{100 * (1 - paired):6.1f}%  {cpu_on:28.1f} {cpu_off:6.1f}")
    print(f"({args.rounds} rounds each, alternating, medians; cost: 1 - recorded/not of "
          f"the medians, paired: of the median of each round's ratio; "
          f"{time.strftime('%F %T')})")


if __name__ == "__main__":
    main()
