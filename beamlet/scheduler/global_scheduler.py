"""The global scheduler / monitor process of the head node.

- Liveness: every raylet heartbeats into the `beamlet:heartbeats` sorted set; a
  node silent for NODE_DEATH_S is marked DEAD and its death published on
  `beamlet:node_events` (raylets and drivers react to it).
- Session reaper: when the cluster belongs to a driver (`init()`), this process
  watches the driver's pid; once it is gone it waits for the raylet to exit, stops
  redis-server and removes the session directory, so a driver killed with SIGKILL
  leaves nothing behind.
"""
import argparse
import os
import shutil
import signal
import sys
import time

from .._private import config, process
from ..gcs import keys
from ..gcs.client import GcsClient


def dead_nodes(beats: dict, now: float, states: dict, timeout: float) -> list:
    """Pure decision: which ALIVE nodes missed their heartbeats for `timeout` s."""
    return [n for n, t in beats.items()
            if states.get(n) == "ALIVE" and now - t > timeout]


class Monitor:
    def __init__(self, args):
        self.args = args
        self.gcs = GcsClient(args.redis_host, args.redis_port, args.redis_password)
        self.stopping = False

    def check_nodes(self):
        r = self.gcs.r
        beats = {k.decode(): s for k, s in r.zrange(keys.HEARTBEATS, 0, -1, withscores=True)}
        p = r.pipeline()
        for n in beats:
            p.hget(keys.node(bytes.fromhex(n)), "state")
        states = {n: (s.decode() if s else None) for n, s in zip(beats, p.execute())}
        for n in dead_nodes(beats, time.time(), states, config.NODE_DEATH_S):
            r.hset(keys.node(bytes.fromhex(n)), mapping={
                "state": "DEAD", "death_reason":
                f"no heartbeat for {config.NODE_DEATH_S} s"})
            r.publish(keys.NODE_EVENTS, f"{n} DEAD")
            print(f"node {n} declared dead", file=sys.stderr, flush=True)

    def run(self):
        owner = self.args.owner_pid
        while not self.stopping:
            time.sleep(config.HEARTBEAT_S)
            if owner and not process.pid_alive(owner):
                self.reap()
                return
            try:
                self.check_nodes()
            except Exception as e:
                if owner and not process.pid_alive(owner):
                    self.reap()
                    return
                print("monitor: GCS error:", e, file=sys.stderr, flush=True)
                time.sleep(1)

    def reap(self):
        """The owning driver died without shutdown(): clean the session up."""
        deadline = time.time() + 5
        # the raylet watches the owner too; give it a moment to stop its workers
        while time.time() < deadline:
            try:
                node_pids = []
                with open(os.path.join(self.args.session_dir, "cluster.json")) as f:
                    import json
                    node_pids = json.load(f).get("pids", [])[:1]
            except Exception:
                node_pids = []
            if not any(process.pid_alive(p) for p in node_pids):
                break
            time.sleep(0.05)
        if self.args.redis_pid:
            try:
                os.kill(self.args.redis_pid, signal.SIGTERM)
            except OSError:
                pass
        shutil.rmtree(self.args.session_dir, ignore_errors=True)


def start_dashboard(args):
    """Serve the dashboard from a thread of this process, and say on the ready
    pipe where it listens (or why it cannot)."""
    from ..dashboard.data import ClusterView
    from ..dashboard.server import DashboardServer
    # this process must never start a cluster of its own (auto-init) when the
    # dashboard asks a cluster that is gone
    os.environ["BEAMLET_ENABLE_AUTO_CONNECT"] = "0"
    try:
        server = DashboardServer(
            args.dashboard_host, args.dashboard_port, args.redis_password,
            ClusterView(args.raylet_socket, args.redis_host, args.redis_port,
                        args.redis_password),
            explicit_port=not args.dashboard_port_retries).start()
        answer = f"OK {server.host}:{server.port}\n"
    except Exception as e:
        answer = f"ERROR {e}\n"
        print(f"dashboard: {e}", file=sys.stderr, flush=True)
    if args.dashboard_ready_fd is not None:
        with os.fdopen(args.dashboard_ready_fd, "w") as f:
            f.write(answer)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="beamlet-monitor",
                                 description="beamlet global scheduler / monitor")
    ap.add_argument("--redis-host", default="127.0.0.1")
    ap.add_argument("--redis-port", type=int, required=True)
    # the cluster token comes through an inherited pipe, never argv (world-readable)
    ap.add_argument(process.SECRET_FD_FLAG, dest="redis_password_fd", type=int,
                    required=True, help="fd of a pipe holding the cluster token")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--owner-pid", type=int, default=0)
    ap.add_argument("--redis-pid", type=int, default=0)
    # the dashboard, served by a thread of this process (beamlet/dashboard/)
    ap.add_argument("--dashboard-host", default="127.0.0.1")
    ap.add_argument("--dashboard-port", type=int, default=None,
                    help="serve the dashboard on this port (none: no dashboard)")
    ap.add_argument("--raylet-socket", default=None,
                    help="the head raylet's socket, where the dashboard reads state")
    ap.add_argument("--dashboard-port-retries", action="store_true",
                    help="the port is the default one: if busy, take the next free")
    ap.add_argument("--dashboard-ready-fd", type=int, default=None,
                    help="fd of a pipe to write 'OK host:port' or 'ERROR why' to")
    args = ap.parse_args(argv)
    args.redis_password = process.read_secret(args.redis_password_fd)
    m = Monitor(args)
    if args.dashboard_port is not None:
        start_dashboard(args)

    def on_term(*_):
        if args.owner_pid and not process.pid_alive(args.owner_pid):
            m.reap()
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    if args.owner_pid:
        process.set_pdeathsig()   # `beamlet start` nodes (owner 0) outlive the CLI
    m.run()


if __name__ == "__main__":
    main()
