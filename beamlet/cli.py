"""The `beamlet` command line: one function per subcommand.

    beamlet start --head [--port P] [...]      a head node (GCS, monitor, raylet)
    beamlet start --address HOST:PORT [...]    a worker node (raylet) joining a head
    beamlet stop                               stop the nodes `beamlet start` ran here
    beamlet status [--address HOST:PORT]       nodes, resources used/total, demand
    beamlet memory [--address HOST:PORT]       the objects in this machine's store
    beamlet run SCRIPT [ARGS...]               a Ray program, unchanged (ray is beamlet)

Nodes made by `beamlet start` outlive the command (no owner pid, no parent-death
signal); their session directories' cluster.json files list their pids, which is
how `beamlet stop` finds them (never by process name).
"""
import argparse
import json
import os
import signal
import sys
import time


def _parse_resources(text):
    if not text:
        return None
    try:
        res = json.loads(text)
    except ValueError as e:
        raise SystemExit(f"--resources must be a JSON object such as "
                         f"'{{\"node2\": 1}}': {e}")
    if not isinstance(res, dict):
        raise SystemExit("--resources must be a JSON object such as '{\"node2\": 1}'.")
    return res


def cmd_start(args):
    from .node import Node
    if bool(args.head) == bool(args.address):
        raise SystemExit("beamlet start: give either --head (start a new cluster) or "
                         "--address HOST:PORT (join the cluster whose head is there).")
    resources = _parse_resources(args.resources)
    if args.head:
        ip = args.node_ip_address or "127.0.0.1"
        node = Node(head=True, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                    resources=resources, object_store_memory=args.object_store_memory,
                    node_ip=ip, redis_port=args.port or None, password=args.redis_password,
                    owner_pid=0)
    else:
        host, _, port = args.address.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"--address must be HOST:PORT, got {args.address!r}")
        password = args.redis_password
        if not password:
            password = _local_password(args.address)
        if not password:
            raise SystemExit(
                "beamlet start --address: the cluster token is needed to join; pass "
                "--redis-password TOKEN (printed by `beamlet start --head`).")
        ip = args.node_ip_address or _route_ip(host)
        node = Node(head=False, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                    resources=resources, object_store_memory=args.object_store_memory,
                    node_ip=ip, redis_address=(host, int(port)), password=password,
                    owner_pid=0)
    node.start()
    if args.head:
        print(f"beamlet head node started: node id {node.node_id.hex()}")
        print(f"  address:     {node.address}")
        print(f"  session dir: {node.session_dir}")
        print("To add a worker node, run on it:")
        print(f"  beamlet start --address {node.address} "
              f"--redis-password {node.password}")
        print("To connect a driver on a machine of the cluster:")
        print(f"  beamlet.init(address=\"{node.address}\")   (or address=\"auto\")")
        print("To stop the nodes of this machine: beamlet stop")
    else:
        print(f"beamlet worker node started: node id {node.node_id.hex()}, joined "
              f"{node.address}")
        print(f"  session dir: {node.session_dir}")
    sys.stdout.flush()
    if args.block:
        _block(node)
    return 0


def _local_password(address):
    """The token of a cluster whose head runs on this machine, if any."""
    from .node import find_cluster
    try:
        return find_cluster(address)["password"]
    except Exception:
        return None


def _route_ip(host):
    """This machine's address on the route towards `host`."""
    import socket
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _block(node):
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        while not stop:
            if node.raylet_proc.poll() is not None:
                print("the raylet exited", file=sys.stderr)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    node.stop()


def _session_files():
    from ._private import config
    root = config.SESSION_ROOT
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(root, name)
        if name == "session_latest" or os.path.islink(path):
            continue
        try:
            with open(os.path.join(path, "cluster.json")) as f:
                out.append((path, json.load(f)))
        except (OSError, ValueError):
            continue
    return out


def _is_beamlet_process(pid):
    """Guard against pid reuse: the pid must still run beamlet or its redis."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"beamlet" in cmd or b"redis-server" in cmd


def cmd_stop(args):
    from ._private import config, process
    stopped = 0
    for path, info in _session_files():
        if not info.get("detached"):
            continue   # owned by a driver's init(): it stops with that driver
        pids = [p for p in info.get("pids", []) if process.pid_alive(p)
                and _is_beamlet_process(p)]
        for p in pids:   # raylet first (it stops its workers), then monitor, redis
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + (args.grace_period or 5)
        while time.monotonic() < deadline and any(process.pid_alive(p) for p in pids):
            time.sleep(0.05)
        for p in pids:
            if process.pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        import shutil
        shutil.rmtree(path, ignore_errors=True)
        latest = os.path.join(config.SESSION_ROOT, "session_latest")
        if os.path.islink(latest) and not os.path.exists(latest):
            os.unlink(latest)
        print(f"stopped {'head' if info.get('head') else 'worker'} node "
              f"{info.get('node_id') or ''} ({len(pids)} processes), removed {path}")
        stopped += 1
    if not stopped:
        print("no beamlet nodes started by `beamlet start` are running on this machine")
    return 0


def _fmt(v):
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _find_cluster(args, command):
    """The cluster.json of the cluster `args.address` names, or None after saying
    why on stderr."""
    from .node import find_cluster
    try:
        return find_cluster(args.address)
    except (ConnectionError, ValueError) as e:
        print(f"beamlet {command}: {e}", file=sys.stderr)
        return None


def cmd_status(args):
    from .gcs.client import GcsClient
    info = _find_cluster(args, "status")
    if info is None:
        return 1
    gcs = GcsClient(info["redis_host"], info["redis_port"],
                    args.redis_password or info["password"])
    nodes = gcs.nodes()
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    dead = [n for n in nodes if n.get("state") != "ALIVE"]
    print(f"beamlet cluster at {info['redis_host']}:{info['redis_port']}")
    print(f"Nodes: {len(alive)} alive, {len(dead)} dead")
    total, avail, demand = {}, {}, []
    for n in nodes:
        tag = "head" if n.get("is_head") == "1" else "worker"
        res_t = n.get("resources_total", {})
        res_a = n.get("resources_available", {})
        line = ", ".join(f"{k} {_fmt(res_t[k] - res_a.get(k, 0))}/{_fmt(res_t[k])}"
                         for k in sorted(res_t) if k not in ("memory",
                                                             "object_store_memory"))
        print(f"  {n['node_id']} {n.get('state', '?'):5} {tag:6} "
              f"{n.get('address', '?')}  {line}"
              + (f"  ({n.get('death_reason')})" if n.get("state") != "ALIVE" else ""))
        if n.get("state") == "ALIVE":
            for k, v in res_t.items():
                total[k] = total.get(k, 0) + v
                avail[k] = avail.get(k, 0) + res_a.get(k, 0)
            demand.extend((n["node_id"], d) for d in n.get("demand") or [])
    print("Resources (used/total):")
    for k in sorted(total):
        if k in ("memory", "object_store_memory"):
            continue
        print(f"  {k}: {_fmt(total[k] - avail.get(k, 0))}/{_fmt(total[k])}")
    # per node: what is queued there (waiting for resources) or infeasible
    print("Pending demand (per node):")
    if not demand:
        print("  (none)")
    for node, d in demand:
        print(f"  {node[:12]}  {d.get('resources')} x {d.get('count', 1)}"
              + (" (infeasible)" if d.get("infeasible") else " (queued)"))
    gcs.r.close()
    return 0


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def cmd_memory(args):
    """Print what this machine's object store holds (like `ray memory`)."""
    from .worker.core_worker import CoreWorker
    info = _find_cluster(args, "memory")
    if info is None:
        return 1
    # a light client of the raylet (no job): it only asks for the object table
    core = CoreWorker(info["raylet_socket"], "cli")
    try:
        mem = core.call("memory")
    finally:
        core.close()
    objs = mem["objects"]
    if args.json:
        json.dump(mem, sys.stdout, indent=1)
        print()
        return 0
    st = mem["stats"]
    print(f"Object store of node {mem.get('node_id', '?')} ({info['session_dir']})")
    print(f"  arena: {_bytes(st['arena_used'])} used of {_bytes(st['arena_capacity'])}; "
          f"inline: {_bytes(st['inline_bytes'])}; spilled: {_bytes(st['spilled_bytes'])}; "
          f"{len(objs)} objects")
    if args.sort_by == "size":
        objs.sort(key=lambda o: -o["size"])
    if not objs:
        print("  (no objects)")
        return 0
    print(f"{'OBJECT ID':40} {'SIZE':>10} {'WHERE':8} {'STATE':9} {'REFS':>4} "
          f"{'PINS':>4}  HOLDERS")
    for o in objs:
        holders = "; ".join(o["holders"]) or "-"
        if o["pinned_by"]:
            holders += f"; mapped by pid {', '.join(map(str, o['pinned_by']))}"
        print(f"{o['object_id']:40} {_bytes(o['size']):>10} {o['where']:8} "
              f"{o['state']:9} {o['refcount']:>4} {o['pins']:>4}  {holders}")
    return 0


def cmd_run(args):
    """Run a Ray program unchanged: `import ray` is beamlet in it and its workers."""
    from ._private.ray_alias import run_program
    if args.module is None and not args.args:
        return run_program()          # prints the usage error
    if args.module is not None:
        return run_program(module=args.module, args=args.args)
    return run_program(script=args.args[0], args=args.args[1:])


def build_parser():
    ap = argparse.ArgumentParser(prog="beamlet", description="beamlet cluster tools")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("start", help="start a head node (--head) or a worker node "
                       "(--address HOST:PORT) on this machine")
    p.add_argument("--head", action="store_true", help="start a new cluster's head node")
    p.add_argument("--address", help="HOST:PORT of the head node's GCS, to join it")
    p.add_argument("--port", type=int, default=6379,
                   help="the GCS (Redis) port of a head node (default 6379; 0: any free port)")
    p.add_argument("--num-cpus", type=float)
    p.add_argument("--num-gpus", type=float)
    p.add_argument("--resources", help="custom resources, JSON: '{\"node2\": 1}'")
    p.add_argument("--node-ip-address",
                   help="this node's address (head default: 127.0.0.1, loopback only)")
    p.add_argument("--object-store-memory", type=int, help="object store size in bytes")
    p.add_argument("--redis-password", help="the cluster token (default: a new random "
                   "one for --head; the local head's for --address)")
    p.add_argument("--block", action="store_true",
                   help="stay in the foreground; stop the node on Ctrl-C")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", help="stop the nodes `beamlet start` ran on this machine")
    p.add_argument("--grace-period", type=float, default=5,
                   help="seconds to wait after SIGTERM before SIGKILL")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("status", help="nodes, resources used/total, pending demand")
    p.add_argument("--address", default="auto", help="HOST:PORT of the GCS, or auto")
    p.add_argument("--redis-password")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("memory", help="the objects in this machine's object store: "
                       "id, size, where (inline/arena/spilled), refcount, holders",
                       description="List every object the local raylet's object store "
                       "holds, with its size, where it is (inline in the raylet, in "
                       "the shared-memory arena, or spilled to disk), its reference "
                       "count, who holds the references (driver/worker processes, "
                       "pending tasks, other objects) and which processes map it.")
    p.add_argument("--address", default="auto", help="HOST:PORT of the GCS, or auto "
                   "(the latest cluster started on this machine)")
    p.add_argument("--sort-by", choices=("size", "none"), default="size",
                   help="order of the rows (default: largest first)")
    p.add_argument("--json", action="store_true", help="print the raw table as JSON")
    p.set_defaults(func=cmd_memory)
    p = sub.add_parser("run", help="run a Ray program unchanged (`import ray` is beamlet "
                       "in it and in its workers)",
                       description="Run SCRIPT (or -m MODULE) with ARGS as python would, "
                       "with `import ray`, `import ray.util.X`, `from ray.exceptions "
                       "import Y` resolving to beamlet's modules, in the program and in "
                       "the workers of the jobs it starts. Nothing named ray is "
                       "installed: outside `beamlet run`, `import ray` is unaffected.")
    p.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]")
    p.set_defaults(func=cmd_run)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (RuntimeError, ValueError, ConnectionError) as e:
        print(f"beamlet {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
