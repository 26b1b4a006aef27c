"""beamlet's microbenchmark: the rows of Ray's `ray microbenchmark` that apply, plus
cluster start/stop time, idle memory, a dependent chain, the tutorial's tree reduce
and a 100,000-task run.

    python bench/microbench.py                        # beamlet only
    python bench/microbench.py --compare ray --ray-python /work/ray-venv/bin/python
    python bench/microbench.py --rows 'actor' --seconds 1 --rounds 3
    python bench/microbench.py --compare ray --load 2     # with 2 CPU spinners running

Every engine runs in its own subprocess (a fresh cluster per round); with --compare
the engines alternate round by round (beamlet first in odd rounds, Ray first in even
ones) so that noise from other load hits both alike, and the table shows the median
of the rounds and the beamlet/Ray ratio (> 1: beamlet is better; for times and
memory the ratio is Ray/beamlet, so > 1 still means beamlet is better).

Each rate row runs its body once to warm up, then as many times as fit in --seconds,
and reports operations per second (the body's count of operations times the number
of runs, divided by the time).  Shapes follow Ray's suite (ray/_private/ray_perf.py),
scaled to a 2-CPU machine: batches of 1,000 instead of 10,000, 2 clients/actors
instead of one per CPU of a large host.

`--load N` starts N busy-loop processes (pure CPU spinners) before the first round
and ends them (by pid) after the last, so both engines run every row on a machine
whose cores are also busy with other work.

A row may time several phases of one body (the put and the get of Ray's
single-node release test): its body returns {row name: seconds} and each phase is
reported as a row of its own.
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
NUM_CPUS = 2
BATCH = 1000          # Ray's suite uses 10,000 on big hosts


# ----------------------------------------------------------------------------- child
def cluster_memory_mib():
    """(RSS, PSS) in MiB of this process and every process it started, directly or
    not (the whole local cluster: GCS/Redis, raylet, workers, ...).  RSS counts
    shared pages once per process; PSS splits them fairly."""
    import psutil
    me = psutil.Process()
    rss = pss = 0
    for p in [me] + me.children(recursive=True):
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20


def define(ray):
    """The remote functions and actor classes, defined with the engine under test."""
    import numpy as np
    d = argparse.Namespace()

    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote
    def echo(x):
        return x

    @ray.remote
    def small_value_batch(n):
        ray.get([small_value.remote() for _ in range(n)])

    @ray.remote
    def create_object_containing_ref():
        return [ray.put(1) for _ in range(10000)]

    @ray.remote
    def generate_data(i):
        return np.full(1000, i, dtype=np.int64)

    @ray.remote
    def aggregate_data(a, b):
        return a + b

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

    @ray.remote(num_cpus=0)
    class AsyncActor:
        async def small_value(self):
            return b"ok"

        async def small_value_arg(self, x):
            return b"ok"

    @ray.remote(num_cpus=0)
    class Client:
        """Drives calls to actors from another process (1:n, n:n rows)."""

        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n):
            ray.get([self.servers[i % len(self.servers)].small_value.remote()
                     for i in range(n)])

        def small_value_batch_arg(self, n):
            x = ray.put(0)
            ray.get([self.servers[i % len(self.servers)].small_value_arg.remote(x)
                     for i in range(n)])

    d.__dict__.update(locals())
    del d.ray, d.d
    return d


def rows(ray, d, np):
    """(name, unit, setup) for every row; setup() -> (body, ops per body run) or
    None when the engine cannot run the row.  Setup runs outside the timing."""
    out = []

    def row(name, unit="/s", phases=None):
        def deco(setup):
            out.append((name, unit, setup, phases))
            return setup
        return deco

    @row("single client get calls")
    def _():
        ref = ray.put(0)
        return (lambda: ray.get(ref)), 1

    @row("single client put calls")
    def _():
        return (lambda: ray.put(0)), 1

    @row("single client put gigabytes", "GB/s")
    def _():
        arr = np.zeros(25 * 1024 * 1024, dtype=np.int64)  # 200 MB
        return (lambda: ray.put(arr)), 0.2

    @row("single client get 200MB array", "GB/s")
    def _():
        ref = ray.put(np.zeros(25 * 1024 * 1024, dtype=np.int64))
        return (lambda: ray.get(ref)), 0.2

    @row("single client tasks sync")
    def _():
        return (lambda: ray.get(d.small_value.remote())), 1

    @row("single client tasks async")
    def _():
        return (lambda: ray.get([d.small_value.remote() for _ in range(BATCH)])), BATCH

    @row("multi client tasks async")
    def _():
        # tasks that each submit BATCH tasks and wait for them (Ray uses actors as
        # the clients; a task is the same submitter without an actor's pinned CPU)
        return (lambda: ray.get([d.small_value_batch.remote(BATCH)
                                 for _ in range(NUM_CPUS)])), BATCH * NUM_CPUS

    @row("single client wait 1k refs")
    def _():
        def body():
            not_ready = [d.small_value.remote() for _ in range(1000)]
            while not_ready:
                _ready, not_ready = ray.wait(not_ready)
        return body, 1

    @row("single client get object containing 10k refs")
    def _():
        holder = d.create_object_containing_ref.remote()
        ray.get(holder)
        return (lambda: ray.get(holder)), 1

    @row("put 10k small objects", phases=("put 10k small objects",
                                          "get 10k small objects"))
    def _():
        # Ray's single-node release test (test_ray_get_args, with_dese): 10,000
        # puts of list(range(10000)) (~29 KB pickled each, under the 100 KiB
        # inline threshold), then one get of all of them; each part timed
        value = list(range(10000))

        def body():
            t0 = time.perf_counter()
            refs = [ray.put(value) for _ in range(10_000)]
            t1 = time.perf_counter()
            got = ray.get(refs)
            t2 = time.perf_counter()
            assert len(got) == 10_000 and got[-1] == value
            del got, refs
            return {"put 10k small objects": t1 - t0, "get 10k small objects": t2 - t1}
        return body, 10_000

    @row("1:1 actor calls sync")
    def _():
        a = d.Actor.remote()
        return (lambda: ray.get(a.small_value.remote())), 1

    @row("1:1 actor calls async")
    def _():
        a = d.Actor.remote()
        return (lambda: ray.get([a.small_value.remote() for _ in range(BATCH)])), BATCH

    @row("1:1 actor calls with args async")
    def _():
        a = d.Actor.remote()
        x = ray.put(0)
        return (lambda: ray.get([a.small_value_arg.remote(x)
                                 for _ in range(BATCH)])), BATCH

    @row("1:n actor calls async")
    def _():
        actors = [d.Actor.remote() for _ in range(NUM_CPUS)]
        return (lambda: ray.get([actors[i % NUM_CPUS].small_value.remote()
                                 for i in range(BATCH)])), BATCH

    @row("n:n actor calls async")
    def _():
        actors = [d.Actor.remote() for _ in range(NUM_CPUS)]
        clients = [d.Client.remote(actors) for _ in range(NUM_CPUS)]
        return (lambda: ray.get([c.small_value_batch.remote(BATCH)
                                 for c in clients])), BATCH * NUM_CPUS

    @row("n:n actor calls with arg async")
    def _():
        actors = [d.Actor.remote() for _ in range(NUM_CPUS)]
        clients = [d.Client.remote(a) for a in actors]
        return (lambda: ray.get([c.small_value_batch_arg.remote(BATCH)
                                 for c in clients])), BATCH * NUM_CPUS

    @row("1:1 async-actor calls sync")
    def _():
        a = d.AsyncActor.remote()
        return (lambda: ray.get(a.small_value.remote())), 1

    @row("1:1 async-actor calls async")
    def _():
        a = d.AsyncActor.remote()
        return (lambda: ray.get([a.small_value.remote() for _ in range(BATCH)])), BATCH

    @row("1:1 async-actor calls with args async")
    def _():
        a = d.AsyncActor.remote()
        x = ray.put(0)
        return (lambda: ray.get([a.small_value_arg.remote(x)
                                 for _ in range(BATCH)])), BATCH

    @row("n:n async-actor calls async")
    def _():
        actors = [d.AsyncActor.remote() for _ in range(NUM_CPUS)]
        clients = [d.Client.remote(a) for a in actors]
        return (lambda: ray.get([c.small_value_batch.remote(BATCH)
                                 for c in clients])), BATCH * NUM_CPUS

    @row("placement group create/removal")
    def _():
        try:
            util = importlib.import_module(ray.__name__ + ".util")
            pg_create = util.placement_group
            pg_remove = util.remove_placement_group
        except (ImportError, AttributeError):
            return None

        def body():
            pgs = [pg_create([{"CPU": 0.001}]) for _ in range(100)]
            ray.get([pg.ready() for pg in pgs])
            for pg in pgs:
                pg_remove(pg)
        return body, 100

    @row("chained tasks (100-deep)")
    def _():
        def body():
            x = d.echo.remote(0)
            for _ in range(99):
                x = d.echo.remote(x)
            ray.get(x)
        return body, 100

    @row("tree reduce of 100 arrays (tutorial)")
    def _():
        def body():
            data = [d.generate_data.remote(i) for i in range(100)]
            while len(data) > 1:
                data = data[2:] + [d.aggregate_data.remote(data[0], data[1])]
            ray.get(data[0])
        return body, 199   # tasks per reduce

    @row("tasks with a 1 MB array argument")
    def _():
        arg = np.zeros(128 * 1024, dtype=np.int64)
        return (lambda: ray.get([d.echo.remote(arg) for _ in range(100)])), 100

    @row("100,000-task run")
    def _():
        def body():
            refs = [d.small_value.remote() for _ in range(100_000)]
            ray.get(refs)
        return body, 100_000

    return out


ONCE_ROWS = {"100,000-task run"}   # one timed run, no warm-up repetition


def emit(**kw):
    print("BENCH " + json.dumps(kw), flush=True)


def run_phases(body, ops, unit, seconds):
    """A body timing its own phases: each phase's rate over the runs that fit in
    `seconds` (at least two after the warm-up)."""
    body()   # warm-up
    total = {}
    n = 0
    start = time.perf_counter()
    while n < 2 or time.perf_counter() - start < seconds:
        for k, v in body().items():
            total[k] = total.get(k, 0.0) + v
        n += 1
    for k, v in total.items():
        emit(row=k, unit=unit, value=n * ops / v)


def child(engine, pattern, seconds):
    import numpy as np
    import re
    sel = re.compile(pattern, re.I) if pattern else None
    ray = importlib.import_module(engine)
    t0 = time.perf_counter()
    ray.init(num_cpus=NUM_CPUS)
    emit(row="init time", unit="s", value=time.perf_counter() - t0)
    d = define(ray)
    ray.get(d.small_value.remote())
    time.sleep(2)
    rss, pss = cluster_memory_mib()
    emit(row="idle cluster memory (RSS)", unit="MiB", value=rss)
    emit(row="idle cluster memory (PSS)", unit="MiB", value=pss)
    for name, unit, setup, phases in rows(ray, d, np):
        if sel and not any(sel.search(n) for n in (phases or (name,))):
            continue
        try:
            prepared = setup()
            if prepared is None:
                emit(row=name, unit=unit, skip=f"{engine} has no such feature")
                continue
            body, ops = prepared
            if phases:
                run_phases(body, ops, unit, seconds)
                continue
            if name in ONCE_ROWS:
                start = time.perf_counter()
                body()
                emit(row=name, unit=unit, value=ops / (time.perf_counter() - start))
                continue
            body()   # warm-up (starts workers, fills caches)
            n = 0
            start = time.perf_counter()
            while True:
                body()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break
            emit(row=name, unit=unit, value=n * ops / elapsed)
        except Exception as e:   # report and go on with the next row
            emit(row=name, unit=unit, error=f"{type(e).__name__}: {e}"[:300])
    t0 = time.perf_counter()
    ray.shutdown()
    emit(row="shutdown time", unit="s", value=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- parent
SPINNER = "while True:\n    pass\n"


def start_load(n, python):
    """N pure CPU spinners (busy loops), each its own process."""
    return [subprocess.Popen([python, "-c", SPINNER], stdin=subprocess.DEVNULL)
            for _ in range(n)]


def stop_load(procs):
    for p in procs:
        p.kill()      # by pid: the Popen objects we started
    for p in procs:
        p.wait()


def run_engine(engine, python, args):
    cmd = [python, HERE, "--child", engine, "--seconds", str(args.seconds)]
    if args.rows:
        cmd += ["--rows", args.rows]
    env = dict(os.environ)
    if engine == "ray":
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                           env=env)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timed out after {args.timeout} s", -1
    results = {}
    for line in out.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            results[r["row"]] = r
    if rc != 0:
        tail = "\n".join(err.strip().splitlines()[-8:])
        print(f"  [{engine} exited with {rc} after {time.perf_counter() - t0:.0f} s]"
              f"\n{tail}", file=sys.stderr)
    if args.verbose:
        for r in results.values():
            print(f"  {engine:8s} {r['row']:45s} {r.get('value', r.get('skip') or r.get('error'))}",
                  file=sys.stderr)
    return results


LOWER_IS_BETTER = {"s", "MiB"}


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "GB/s":
        return f"{v:.2f} GB/s"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "MiB":
        return f"{v:.0f} MiB"
    return f"{v:,.0f}/s" if v >= 100 else f"{v:,.1f}/s"


def main():
    ap = argparse.ArgumentParser(
        description="Ray's microbenchmark rows (and a few more) against beamlet, and "
                    "optionally against Ray installed in another Python, side by side.",
        epilog="Each engine runs in its own subprocess with a fresh num_cpus=2 cluster; "
               "engines alternate round by round; the table shows medians over the "
               "rounds. Ratio: beamlet's advantage (rate_b/rate_r, or time_r/time_b, "
               "memory_r/memory_b), so > 1 means beamlet is better.")
    ap.add_argument("--compare", choices=["ray"], help="also run Ray and show ratios")
    ap.add_argument("--ray-python", default="python3",
                    help="the Python interpreter that has Ray installed (a separate "
                         "virtualenv), e.g. /work/ray-venv/bin/python")
    ap.add_argument("--python", default=sys.executable,
                    help="the Python interpreter that has beamlet (default: this one)")
    ap.add_argument("--rows", default="",
                    help="only rows whose name matches this regular expression "
                         "(case-insensitive); init/memory/shutdown always run")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="time spent measuring each row, per round (default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per engine (default 3)")
    ap.add_argument("--timeout", type=float, default=900,
                    help="seconds one engine's run may take before it is killed")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="run N busy-loop processes (CPU spinners) during every round, "
                         "for both engines alike (default 0: a quiet machine)")
    ap.add_argument("--json", help="also write the raw per-round results here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every result")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rows, args.seconds)
        return
    if args.compare and not os.path.exists(args.ray_python) and os.sep in args.ray_python:
        ap.error(f"--ray-python {args.ray_python} does not exist; install Ray in its "
                 f"own virtualenv, e.g. python3 -m venv /work/ray-venv && "
                 f"/work/ray-venv/bin/pip install ray numpy psutil")
    engines = [("beamlet", args.python)]
    if args.compare:
        engines.append(("ray", args.ray_python))
    if args.load < 0:
        ap.error("--load takes a number of spinner processes >= 0")
    runs = {e: [] for e, _ in engines}
    load = start_load(args.load, sys.executable)
    try:
        for r in range(args.rounds):
            order = engines if r % 2 == 0 else engines[::-1]
            for engine, python in order:
                print(f"round {r + 1}/{args.rounds}: {engine} ...", file=sys.stderr,
                      flush=True)
                runs[engine].append(run_engine(engine, python, args))
    finally:
        stop_load(load)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    names = []
    for e in runs:
        for res in runs[e]:
            for n in res:
                if n not in names:
                    names.append(n)
    names.sort(key=lambda n: n == "shutdown time")   # keep order, shutdown last

    def median(engine, name):
        vals = [res[name]["value"] for res in runs[engine]
                if name in res and "value" in res[name]]
        note = next((res[name].get("skip") or res[name].get("error")
                     for res in runs[engine] if name in res and "value" not in res[name]),
                    None)
        unit = next((res[name]["unit"] for res in runs[engine] if name in res), "")
        return (statistics.median(vals) if vals else None), unit, note

    cols = [e for e, _ in engines]
    head = f"| {'row':45s} | " + " | ".join(f"{c:>14s}" for c in cols)
    if args.compare:
        head += " | beamlet/Ray"
    print(head + " |")
    print("|" + "-" * 47 + "|" + "|".join("-" * 16 for _ in cols) +
          ("|-------------" if args.compare else "") + "|")
    notes = []
    for n in names:
        cells, vals, unit = [], [], ""
        for c in cols:
            v, u, note = median(c, n)
            unit = unit or u
            vals.append(v)
            cells.append(fmt(v, u) if v is not None else ("n/a" if note else "-"))
            if note:
                notes.append(f"{n} ({c}): {note}")
        line = f"| {n:45s} | " + " | ".join(f"{c:>14s}" for c in cells)
        if args.compare:
            b, r = vals
            if b and r:
                ratio = (r / b) if unit in LOWER_IS_BETTER else (b / r)
                line += f" | {ratio:10.2f}x"
            else:
                line += f" | {'-':>11s}"
        print(line + " |")
    for n in dict.fromkeys(notes):
        print(f"note: {n}")
    print(f"({args.rounds} rounds, {args.seconds:g} s per row per round, medians; "
          f"{args.load} CPU spinners running; ratio > 1 means beamlet is better)")


if __name__ == "__main__":
    main()
