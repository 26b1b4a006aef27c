"""What the dashboard and metrics cost.

    python bench/bench_dashboard.py [--tasks 10000] [--rounds 3]

- init() + shutdown() with the dashboard (the default) and without
  (include_dashboard=False): the dashboard is a thread of the monitor, so the
  difference is the monitor's start being waited for;
- each JSON endpoint's latency with --tasks finished tasks recorded (the tasks
  page reads every task the state API returns, up to 10,000);
- one metrics scrape (latency, bytes) with 100 series of user metrics;
- the cost of Counter.inc / Gauge.set / Histogram.observe in the process (no I/O:
  a dict update; the values leave once per METRICS_REPORT_S).
"""
import argparse
import http.client
import statistics
import time

import beamlet as ray
from beamlet import connection
from beamlet.util.metrics import Counter, Gauge, Histogram


def get(addr, path, token):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    t = time.perf_counter()
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, (path, r.status)
    return time.perf_counter() - t, len(body)


def init_times(rounds):
    out = {}
    for dashboard in (True, False):
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=dashboard)
            ray.shutdown()
            times.append(time.perf_counter() - t)
        out[dashboard] = statistics.median(times)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    t = init_times(args.rounds)
    print(f"init()+shutdown(): {t[True]:.2f} s with the dashboard, "
          f"{t[False]:.2f} s without (median of {args.rounds})")

    info = ray.init(num_cpus=2)
    gcs = connection.gcs()
    token = gcs.password

    @ray.remote
    def nop(i):
        return i

    ray.get([nop.remote(i) for i in range(args.tasks)])
    time.sleep(2)     # finished tasks are recorded behind, each heartbeat
    for path in ("/api/cluster", "/api/jobs", "/api/tasks", "/api/actors",
                 "/api/objects", "/api/timeline", "/tasks"):
        lat = [get(info["dashboard_url"], path, token) for _ in range(args.rounds)]
        print(f"{path:14} {statistics.median(x for x, _ in lat) * 1000:8.1f} ms  "
              f"{lat[0][1] / 1024:8.1f} KiB  ({args.tasks} tasks)")

    c = Counter("bench_c", tag_keys=("k",))
    g = Gauge("bench_g", tag_keys=("k",))
    h = Histogram("bench_h", boundaries=[1, 10, 100], tag_keys=("k",))
    for i in range(100):
        c.inc(tags={"k": str(i % 34)})
        g.set(i, tags={"k": str(i % 33)})
        h.observe(i, tags={"k": str(i % 33)})
    time.sleep(2)
    node = ray.get_runtime_context().get_node_id()
    port = int(gcs.r.hget(f"beamlet:node:{node}", "metrics_export_port"))
    lat = [get(f"127.0.0.1:{port}", "/metrics", token) for _ in range(args.rounds)]
    print(f"/metrics       {statistics.median(x for x, _ in lat) * 1000:8.1f} ms  "
          f"{lat[0][1] / 1024:8.1f} KiB  (100 user series + beamlet's gauges)")

    n = 200_000
    for name, call in (("Counter.inc", lambda: c.inc(tags={"k": "1"})),
                       ("Counter.inc (default tags)",
                        (lambda m: m.inc)(Counter("bench_d", tag_keys=("k",))
                                          .set_default_tags({"k": "x"}))),
                       ("Gauge.set", lambda: g.set(1.0, tags={"k": "1"})),
                       ("Histogram.observe", lambda: h.observe(5, tags={"k": "1"}))):
        t = time.perf_counter()
        for _ in range(n):
            call()
        print(f"{name:28} {(time.perf_counter() - t) / n * 1e6:6.2f} us per call")
    ray.shutdown()


if __name__ == "__main__":
    main()
