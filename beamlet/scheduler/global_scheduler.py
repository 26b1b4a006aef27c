"""The global scheduler / monitor process of the head node.

- Liveness: every raylet's heartbeat thread refreshes its entry in the
  `beamlet:heartbeats` sorted set (Redis server time); once per HEARTBEAT_S the
  monitor runs one script that declares dead every ALIVE node silent for
  NODE_DEATH_S and publishes each death on `beamlet:membership` (gcs/client.py:
  atomic with the heartbeat, so a node declared dead stays dead: it is fenced).
  Deaths count only from when the monitor could watch: after a start, a pause
  of the monitor itself (SIGSTOP, a swapping machine) or a GCS outage, every
  node gets NODE_DEATH_S from then on (`Watch`), so a monitor that was not
  looking never declares the whole cluster dead.
- GCS supervision: it watches the head's redis-server and, when it dies,
  starts it again on the same address with the same token (through its stdin,
  as at the start) and the same append-only file, so the cluster's state comes
  back with it; raylets, drivers and this monitor reconnect (their calls wait
  up to GCS_RECONNECT_TIMEOUT_S meanwhile).
- Session reaper: when the cluster belongs to a driver (`init()`), this process
  watches the driver's pid; once it is gone it waits for the raylet to exit, stops
  redis-server and removes the session directory, so a driver killed with SIGKILL
  leaves nothing behind.
"""
import argparse
import json
import os
import signal
import sys
import time

from .._private import config, process
from ..gcs import keys, redis_server
from ..gcs.client import GcsClient
from ..node import remove_session


def log(*a):
    print(time.strftime("%H:%M:%S"), "monitor:", *a, file=sys.stderr, flush=True)


class Watch:
    """Pure: since when (Redis server time) the monitor has watched the
    heartbeats without a gap.  A check that comes late (the monitor was paused)
    or a check that failed (the GCS was unreachable) starts a new watch: no node
    may be declared dead before it had NODE_DEATH_S of watched time to beat."""

    def __init__(self, period: float):
        self.max_gap = max(4 * period, 2.0)
        self.since = 0.0            # 0: not watching (the script declares nobody)
        self.last_check = None      # monotonic time of the last good check

    def before_check(self, now_mono: float) -> float:
        if self.last_check is None or now_mono - self.last_check > self.max_gap:
            self.since = 0.0
        return self.since

    def checked(self, now_mono: float, server_now: float) -> None:
        self.last_check = now_mono
        if self.since == 0.0:
            self.since = server_now

    def failed(self) -> None:
        self.since, self.last_check = 0.0, None


class RedisSupervisor:
    """The head's redis-server: started by node.py (pid given), restarted here."""

    def __init__(self, pid, host, port, password, session_dir):
        self.pid = pid
        self.proc = None            # a Popen once this monitor started one
        self.host, self.port, self.password = host, port, password
        self.session_dir = session_dir

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return process.pid_alive(self.pid)

    def check(self) -> bool:
        """Restart Redis if it died; whether it was restarted."""
        if not self.pid or self.alive():
            return False
        how = (process.describe_exit(self.proc.returncode) if self.proc is not None
               else "exited")
        log(f"the GCS Redis (pid {self.pid}) {how}: starting it again on "
            f"{self.host}:{self.port}" + (" from its append-only file"
                                          if config.GCS_PERSISTENCE else
                                          " (GCS_PERSISTENCE is off: it starts empty)"))
        try:
            # it dies with this monitor, which lives as long as the cluster
            self.proc, _ = redis_server.start(self.session_dir, self.password,
                                              host=self.host, port=self.port,
                                              die_with_parent=True)
        except RuntimeError as e:
            log(f"could not restart the GCS Redis: {e}; trying again")
            return False
        self.pid = self.proc.pid
        log(f"the GCS Redis is back (pid {self.pid})")
        return True

    def stop(self) -> None:
        """Stop the Redis this monitor started (node.py stops the first one)."""
        if self.proc is not None:
            process.terminate([self.proc])
        elif self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass


class Monitor:
    def __init__(self, args):
        self.args = args
        # one attempt per call: this loop must go on (to restart Redis) when it fails
        self.gcs = GcsClient(args.redis_host, args.redis_port, args.redis_password,
                             retry_s=0)
        self.redis = RedisSupervisor(args.redis_pid, args.redis_host, args.redis_port,
                                     args.redis_password, args.session_dir)
        self.watch = Watch(config.HEARTBEAT_S)
        # beamlet:cluster, written again if Redis lost it: the head hands it over
        # (a flush before this monitor's first look must not lose it)
        self.cluster = json.loads(args.cluster_record)
        self.stopping = False
        self.failing = False

    def check_nodes(self):
        since = self.watch.before_check(time.monotonic())
        server_now, dead = self.gcs.declare_dead(
            config.NODE_DEATH_S, since, f"no heartbeat for {config.NODE_DEATH_S:g} s")
        self.watch.checked(time.monotonic(), server_now)
        for n in dead:
            log(f"node {n} declared dead (no heartbeat for {config.NODE_DEATH_S:g} s)")

    def keep_cluster_record(self):
        """beamlet:cluster as the head wrote it (kept here: a Redis that comes back
        without its data gets it again)."""
        # one HLEN a period at rest
        if self.gcs.r.hlen(keys.CLUSTER) == 0:
            self.gcs.r.hset(keys.CLUSTER, mapping=self.cluster)
            log("the cluster record was gone from the GCS: written again")

    def run(self):
        owner = self.args.owner_pid
        while not self.stopping:
            time.sleep(config.HEARTBEAT_S)
            if owner and not process.pid_alive(owner):
                self.reap()
                return
            self.redis.check()
            try:
                self.keep_cluster_record()
                self.check_nodes()
                if self.failing:
                    self.failing = False
                    log("the GCS answers again")
            except Exception as e:
                self.watch.failed()
                if owner and not process.pid_alive(owner):
                    self.reap()
                    return
                if not self.failing:
                    self.failing = True
                    log(f"GCS error: {e}")

    def reap(self):
        """The owning driver died without shutdown(): clean the session up."""
        deadline = time.time() + 5
        # the raylet watches the owner too; give it a moment to stop its workers
        while time.time() < deadline:
            try:
                node_pids = []
                with open(os.path.join(self.args.session_dir, "cluster.json")) as f:
                    node_pids = json.load(f).get("pids", [])[:1]
            except Exception:
                node_pids = []
            if not any(process.pid_alive(p) for p in node_pids):
                break
            time.sleep(0.05)
        self.redis.stop()
        # the directory, and the session_latest link if it points there
        remove_session(os.path.dirname(self.args.session_dir), self.args.session_dir)


def start_dashboard(args):
    """Serve the dashboard from a thread of this process, and say on the ready
    pipe where it listens (or why it cannot); that address, or None."""
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
        address = f"{server.host}:{server.port}"
        answer = f"OK {address}\n"
    except Exception as e:
        address, answer = None, f"ERROR {e}\n"
        print(f"dashboard: {e}", file=sys.stderr, flush=True)
    if args.dashboard_ready_fd is not None:
        with os.fdopen(args.dashboard_ready_fd, "w") as f:
            f.write(answer)
    return address


def parse_args(argv=None):
    """The monitor's arguments (the token read from its pipe)."""
    ap = argparse.ArgumentParser(prog="beamlet-monitor",
                                 description="beamlet global scheduler / monitor")
    ap.add_argument("--redis-host", default="127.0.0.1")
    ap.add_argument("--redis-port", type=int, required=True)
    # the cluster token comes through an inherited pipe, never argv (world-readable)
    ap.add_argument(process.SECRET_FD_FLAG, dest="redis_password_fd", type=int,
                    required=True, help="fd of a pipe holding the cluster token")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--owner-pid", type=int, default=0)
    ap.add_argument("--redis-pid", type=int, default=0,
                    help="the head's redis-server, restarted when it dies (0: none)")
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
    ap.add_argument("--cluster-record", required=True,
                    help="the beamlet:cluster hash the head wrote (JSON), written "
                         "again if Redis loses it")
    args = ap.parse_args(argv)
    args.redis_password = process.read_secret(args.redis_password_fd)
    return args


def main(argv=None):
    args = parse_args(argv)
    m = Monitor(args)
    if args.dashboard_port is not None:
        address = start_dashboard(args)
        if address:
            m.cluster["dashboard_address"] = address   # (the head writes it too)

    def on_term(*_):
        if args.owner_pid and not process.pid_alive(args.owner_pid):
            m.reap()
        elif m.redis.proc is not None:
            m.redis.stop()      # the Redis it started (node.py stops the first)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    if args.owner_pid:
        process.set_pdeathsig()   # `beamlet start` nodes (owner 0) outlive the CLI
    m.run()


if __name__ == "__main__":
    main()
