"""The `beamlet` command line: one function per subcommand.

    beamlet start --head [--port P] [...]      a head node (GCS, monitor, raylet)
    beamlet start --address HOST:PORT [...]    a worker node (raylet) joining a head
    beamlet stop                               stop the nodes `beamlet start` ran here
    beamlet status [--address HOST:PORT]       nodes, resources used/total, demand
    beamlet memory [--address HOST:PORT]       the objects in this machine's store
    beamlet list KIND [--filter K=V] [...]     tasks, actors, objects, nodes, workers,
                                               placement-groups or jobs (state API)
    beamlet get KIND ID                        one of them, every column
    beamlet summary tasks|actors|objects       counts per function / class and state
    beamlet logs [FILE|worker|actor|task]      log files of every node, or one of them
    beamlet timeline [-o FILE]                 the task timeline (Chrome trace JSON)
    beamlet run SCRIPT [ARGS...]               a Ray program, unchanged (ray is beamlet)
    beamlet job submit|status|logs|stop|list|delete   jobs run on the head (job_submission/)

Nodes made by `beamlet start` outlive the command (no owner pid, no parent-death
signal); their session directories' cluster.json files list their pids, which is
how `beamlet stop` finds them (never by process name).

Every error is one line on stderr and exit status 1 (`-v`: with the traceback);
the subcommands check what they are given before they start anything.
"""
import argparse
import json
import os
import re
import signal
import stat
import sys
import time


class CliError(Exception):
    """A mistake in what the command was given: printed as it is, one line."""


def _parse_resources(text):
    if not text:
        return None
    try:
        res = json.loads(text)
    except ValueError as e:
        raise CliError(f"--resources must be a JSON object such as "
                       f"'{{\"node2\": 1}}': {e}")
    if not isinstance(res, dict):
        raise CliError("--resources must be a JSON object such as '{\"node2\": 1}'.")
    for k, v in res.items():
        if k in ("CPU", "GPU"):
            raise CliError(f"--resources: give {k} with --num-{k.lower()}s, not in "
                           f"--resources.")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise CliError(f"--resources: {k!r} must be a non-negative number, got "
                           f"{v!r}.")
    return res


# The token may also come from this environment variable (a container's env
# file, say); the CLI removes it from its environment at once, so that no process
# it starts inherits it.
TOKEN_ENV = "BEAMLET_REDIS_PASSWORD"


def _password(args):
    """The cluster token given by --redis-password or --redis-password-file, else
    by $BEAMLET_REDIS_PASSWORD, or None."""
    from_env = os.environ.pop(TOKEN_ENV, "").strip() or None
    if getattr(args, "redis_password_file", None):
        if args.redis_password:
            raise CliError("give either --redis-password or --redis-password-file, "
                           "not both.")
        return _read_token_file(args.redis_password_file)
    return args.redis_password or from_env


def _read_token_file(path):
    if path == "-":
        token = sys.stdin.readline().strip()
    else:
        try:
            st = os.stat(path)
            with open(path) as f:
                token = f.read().strip()
        except OSError as e:
            raise CliError(f"--redis-password-file {path}: {e.strerror or e}.")
        if st.st_mode & 0o077:
            # as ssh does with keys: a token others can read is no secret
            raise CliError(f"--redis-password-file {path} can be read by other users "
                           f"(mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {path}`.")
    if not token:
        raise CliError(f"--redis-password-file {path} holds no token.")
    return token


def _start_options(args):
    """Node() arguments common to a head and a worker node, checked with the
    flags' names."""
    from ._private import netaddr
    from .node import check_object_store_memory
    for flag, v in (("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus)):
        if v is not None and v < 0:
            raise CliError(f"{flag} must be 0 or more, got {v:g}.")
    if args.node_ip_address:
        try:
            netaddr.check_node_ip(args.node_ip_address, flag="--node-ip-address")
        except ValueError as e:
            raise CliError(str(e))
    try:
        store = check_object_store_memory(args.object_store_memory)
    except ValueError as e:
        raise CliError(re.sub(r"object_store_memory=\s?", "--object-store-memory ", str(e)))
    if not 0 <= args.node_manager_port < 65536:
        raise CliError(f"--node-manager-port must be from 1 to 65535 (0: any free "
                       f"port), got {args.node_manager_port}.")
    try:
        netaddr.check_port(args.metrics_export_port, "--metrics-export-port")
        netaddr.check_listen_host(args.metrics_export_host, "--metrics-export-host")
    except ValueError as e:
        raise CliError(str(e))
    return dict(num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                resources=_parse_resources(args.resources), object_store_memory=store,
                spill_dir=args.object_spilling_directory, owner_pid=0,
                peer_port=args.node_manager_port,
                metrics_export_port=args.metrics_export_port,
                metrics_export_host=args.metrics_export_host)


def _dashboard_options(args):
    """Node() arguments of a head's dashboard, checked with the flags' names."""
    from ._private import netaddr
    try:
        if args.dashboard_port is not None:
            netaddr.check_port(args.dashboard_port, "--dashboard-port")
        netaddr.check_listen_host(args.dashboard_host, "--dashboard-host")
    except ValueError as e:
        raise CliError(str(e))
    return dict(include_dashboard=args.include_dashboard,
                dashboard_host=args.dashboard_host, dashboard_port=args.dashboard_port)


def cmd_start(args):
    from ._private import netaddr
    from .node import Node, check_gcs
    if bool(args.head) == bool(args.address):
        raise CliError("give either --head (start a new cluster) or --address "
                       "HOST:PORT (join the cluster whose head is there).")
    opts = _start_options(args)
    password = _password(args)
    if args.head:
        port = 6379 if args.port is None else args.port
        if not 0 <= port < 65536:
            raise CliError(f"--port must be from 1 to 65535 (0: any free port), got "
                           f"{port}.")
        ip = args.node_ip_address or "127.0.0.1"
        node = Node(head=True, node_ip=ip, redis_port=port or None, password=password,
                    job_manager=True, **opts, **_dashboard_options(args))
    else:
        if args.port is not None:
            raise CliError("--port is the GCS port of a new head (--head); a worker "
                           "node joins the GCS given by --address HOST:PORT.")
        if args.dashboard_port is not None or args.include_dashboard is False:
            raise CliError("--dashboard-port and --include-dashboard are for a head "
                           "node (--head): the head serves the cluster's dashboard.")
        try:
            host, port = netaddr.parse_host_port(args.address, "--address")
        except ValueError as e:
            raise CliError(str(e))
        password = password or _local_password(args.address)
        if not password:
            raise CliError(
                "joining needs the cluster token printed by `beamlet start --head`: "
                "pass --redis-password TOKEN or --redis-password-file FILE.")
        try:
            check_gcs(host, port, password)
        except PermissionError as e:
            raise CliError(f"{e} (--redis-password / --redis-password-file)")
        ip = args.node_ip_address or _route_ip(host)
        node = Node(head=False, node_ip=ip, redis_address=(host, port), password=password,
                    **opts)
    node.start()
    if args.head:
        print(f"beamlet head node started: node id {node.node_id.hex()}")
        print(f"  address:     {node.address}")
        print(f"  session dir: {node.session_dir}")
        print("To add a worker node, run on it:")
        token_hidden = bool(args.redis_password_file or not args.redis_password
                            and password)
        if token_hidden:
            # the token was kept off the command line: keep it out of this output
            # (a container's log) too
            given = f"--redis-password-file {args.redis_password_file}" \
                if args.redis_password_file else f"with ${TOKEN_ENV} set to the token"
            print(f"  beamlet start --address {node.address} {given}")
        else:
            print(f"  beamlet start --address {node.address} "
                  f"--redis-password {node.password}")
            print("  (the token lets whoever has it run code on this cluster as you: to "
                  "keep it off command lines, put it in a file only you can read and "
                  "pass --redis-password-file FILE instead)")
        if node.dashboard_address and token_hidden:
            print(f"  dashboard:   {node.dashboard_url(with_token=False)}")
            print("  (it asks for the cluster token once; docs/observability.md)")
        elif node.dashboard_address:
            print(f"  dashboard:   {node.dashboard_url()}")
            print("  (opening that link logs the browser in; docs/security.md)")
        print("To connect a driver on a machine of the cluster:")
        print(f"  beamlet.init(address=\"{node.address}\")   (or address=\"auto\")")
        print("To run a job on this head from any machine:")
        print(f"  beamlet job submit --address {node.address} --working-dir . -- "
              f"python script.py")
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
    from ._private import netaddr
    from .node import find_cluster
    try:
        if netaddr.is_this_machine(netaddr.parse_host_port(address)[0]):
            return find_cluster(address)["password"]
    except (ConnectionError, ValueError, KeyError):
        pass
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
    from .node import _cluster_files
    return [(os.path.dirname(path), info)
            for path, info in _cluster_files(config.SESSION_ROOT)]


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
    from .node import remove_session
    if args.grace_period < 0:
        raise CliError(f"--grace-period must be 0 or more seconds, got "
                       f"{args.grace_period:g}.")
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
        deadline = time.monotonic() + args.grace_period
        while time.monotonic() < deadline and any(process.pid_alive(p) for p in pids):
            time.sleep(0.05)
        for p in pids:
            if process.pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        remove_session(config.SESSION_ROOT, path, info.get("spill_dir"))
        print(f"stopped {'head' if info.get('head') else 'worker'} node "
              f"{info.get('node_id') or ''} ({len(pids)} processes), removed {path}")
        stopped += 1
    if not stopped:
        print("no beamlet nodes started by `beamlet start` are running on this machine")
    return 0


def _fmt(v):
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _connect(args):
    """(cluster.json of the local node to go through, a GcsClient that answered)
    for the cluster that --address (or BEAMLET_ADDRESS / RAY_ADDRESS) names."""
    from .gcs.client import GcsClient
    from .node import check_gcs, find_cluster, resolve_address
    address = resolve_address(args.address, default="auto")
    info = find_cluster(address)
    host, port = info["redis_host"], info["redis_port"]
    password = _password(args) or info["password"]
    try:
        check_gcs(host, port, password)
    except PermissionError as e:
        raise CliError(f"{e} (--redis-password)")
    except ConnectionError as e:
        raise CliError(f"the GCS at {host}:{port} does not answer: {e}. Is the "
                       f"cluster's head node running? (`beamlet stop` removes what a "
                       f"dead one left)")
    return info, GcsClient(host, port, password)


def cmd_status(args):
    from .gcs import keys
    from .node import dashboard_url
    info, gcs = _connect(args)
    try:
        nodes = gcs.nodes()
        dashboard = (gcs.r.hget(keys.CLUSTER, "dashboard_address") or b"").decode()
    finally:
        gcs.r.close()
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    dead = [n for n in nodes if n.get("state") != "ALIVE"]
    print(f"beamlet cluster at {info['redis_host']}:{info['redis_port']}")
    if dashboard:
        print(f"Dashboard: {dashboard_url(dashboard)} (log in with the cluster token)")
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
        if d.get("reason"):
            # why the first of them waits (the raylet's pending reason)
            print(f"      {d['reason']}")
    return 0


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def cmd_memory(args):
    """Print what this machine's object store holds (like `ray memory`)."""
    from .worker.core_worker import CoreWorker
    info, gcs = _connect(args)
    gcs.r.close()
    # a light client of the raylet (no job): it only asks for the object table
    try:
        core = CoreWorker(info["raylet_socket"], "cli")
    except OSError as e:
        raise CliError(f"cannot reach this machine's raylet at {info['raylet_socket']} "
                       f"({e.strerror or e}): its node is not running (`beamlet stop` "
                       f"removes what it left).")
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


# ------------------------------------------------------------------ the state API
# `beamlet list|get|summary`: the command line of beamlet.util.state (Ray's
# `ray list|get|summary`), one function each; what they print comes from the
# same records as the Python API.
STATE_KINDS = ("tasks", "actors", "objects", "nodes", "workers", "placement-groups",
               "jobs")


def _kind(name):
    return name.replace("-", "_")


def _parse_filters(texts):
    """--filter "key=value" / "key!=value" -> [(key, op, value)]."""
    out = []
    for text in texts or ():
        m = re.match(r"^\s*([A-Za-z_][\w]*)\s*(!=|=)\s*(.*?)\s*$", text)
        if not m:
            raise CliError(f"--filter {text!r}: write KEY=VALUE or KEY!=VALUE, e.g. "
                           f"--filter state=RUNNING.")
        out.append((m.group(1), "=" if m.group(2) == "=" else "!=", m.group(3)))
    return out


def _state_query(args, kind, filters, limit, detail):
    from .util.state import api as state_api
    address = args.address or None
    try:
        return state_api.query(_kind(kind), address, filters, limit, args.timeout,
                               detail, password=_password(args))
    except ValueError as e:
        raise CliError(str(e))


def _cell(v, width=48):
    if isinstance(v, dict) and "text" in v and "code" in v:
        v = v["text"]             # a pending reason: its sentence
    elif isinstance(v, (dict, list)):
        v = json.dumps(v, sort_keys=True)
    v = "" if v is None else str(v)
    return v if len(v) <= width else v[:width - 2] + ".."


def _print_table(records, columns):
    rows = [[_cell(r.get(c)) for c in columns] for r in records]
    head = [c.upper() for c in columns]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _yaml(v, indent=0) -> str:
    """Plain data (dicts, lists, scalars) as YAML (no library needed)."""
    pad = "  " * indent
    if isinstance(v, dict):
        if not v:
            return "{}"
        lines = []
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                lines.append(f"{pad}{k}:\n{_yaml(x, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {_yaml(x, indent + 1)}")
        return "\n".join(lines)
    if isinstance(v, list):
        if not v:
            return "[]"
        out = []
        for x in v:
            body = _yaml(x, indent + 1)
            out.append(f"{pad}- {body.lstrip()}" if isinstance(x, (dict, list)) and x
                       else f"{pad}- {body}")
        return "\n".join(out)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    text = str(v)
    plain = re.match(r"^[\w./-][\w ./()=-]*$", text) and text.lower() not in (
        "null", "true", "false", "yes", "no", "~") and not re.match(r"^[\d.+-]", text)
    return text if plain else json.dumps(text, ensure_ascii=False)


def _output(data, fmt):
    if fmt == "json":
        json.dump(data, sys.stdout, indent=2, default=str)
        print()
    else:
        print(_yaml(data))


def cmd_list(args):
    """`beamlet list KIND`: as `ray list`."""
    from .util.state.common import SCHEMAS
    kind = args.kind
    records, total = _state_query(args, kind, _parse_filters(args.filter), args.limit,
                                  args.detail)
    fmt = args.format or ("yaml" if args.detail else "table")
    if fmt != "table":
        _output([r.asdict() for r in records], fmt)
        return 0
    columns = SCHEMAS[_kind(kind)].list_columns(detail=args.detail)
    if not records:
        print(f"(no {kind})")
    else:
        _print_table(records, columns)
    shown = f"{len(records)} of {total}" if total > len(records) else f"{total}"
    print(f"Total: {shown} {kind}" + (" (the newest; --limit N shows more)"
                                      if total > len(records) else ""))
    return 0


def cmd_get(args):
    """`beamlet get KIND ID`: one record with every column (as `ray get`)."""
    from .util.state.common import ID_COLUMNS
    kind = _kind(args.kind)
    records, _ = _state_query(args, args.kind, [(ID_COLUMNS[kind], "=", args.id)],
                              10_000, True)
    if not records:
        raise CliError(f"no {args.kind[:-1].replace('-', ' ')} with id {args.id} "
                       f"(`beamlet list {args.kind}` shows the ids).")
    data = [r.asdict() for r in records]
    _output(data[-1] if kind != "objects" else data, args.format or "yaml")
    return 0


def cmd_summary(args):
    """`beamlet summary tasks|actors|objects`: counts per function / class and
    state (as `ray summary`)."""
    from .util.state import api as state_api
    fn = {"tasks": state_api.summarize_tasks, "actors": state_api.summarize_actors,
          "objects": state_api.summarize_objects}[args.kind]
    if args.address and not re.match(r"^(auto|[^:]+:\d+)$", args.address):
        raise CliError(f"--address {args.address!r}: write HOST:PORT or auto.")
    data = fn(address=args.address or None, timeout=args.timeout,
              _password=_password(args))["cluster"]
    if args.format in ("json", "yaml"):
        _output(data, args.format)
        return 0
    stats = {k: v for k, v in data.items() if k != "summary"}
    print(f"{args.kind.capitalize()} summary")
    for k in sorted(stats):
        print(f"  {k}: {stats[k]}")
    rows = []
    for key, s in sorted(data["summary"].items()):
        counts = s.get("state_counts") or s.get("task_state_counts") or {}
        rows.append({"name": key, "type": s.get("type", ""),
                     "states": ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
                     **({"size_mb": f"{s['total_size_mb']:.3f}", "refs": ", ".join(
                         f"{k}: {v}" for k, v in sorted(s["ref_type_counts"].items()))}
                        if "total_size_mb" in s else {})})
    if rows:
        _print_table(rows, list(rows[0]))
    else:
        print(f"(no {args.kind})")
    return 0


def cmd_logs(args):
    """`beamlet logs`: the log files of every node, or one of them (a file, a
    worker, the worker of an actor, the lines of a task), as `ray logs`."""
    from .util.state import api as state_api
    target = args.target
    actor_id = args.actor_id or (args.id if target == "actor" else None)
    task_id = args.task_id or (args.id if target == "task" else None)
    if target in ("actor", "task") and not (actor_id or task_id):
        raise CliError(f"`beamlet logs {target}` needs --id ID (`beamlet list "
                       f"{target}s` shows the ids).")
    if target == "worker" and args.pid is None:
        raise CliError("`beamlet logs worker` needs --pid N (`beamlet list workers` "
                       "shows the pids).")
    address = args.address or None
    password = _password(args)
    filename = None
    if target not in (None, "worker", "actor", "task"):
        if any(c in target for c in "*?["):       # a glob: the files it matches
            return _print_log_list(state_api.list_logs(
                address, node_id=args.node_id, glob_filter=target,
                timeout=args.timeout, _password=password), target)
        filename = target
    elif target is None and not (actor_id or task_id or args.pid is not None):
        files = state_api.list_logs(address, node_id=args.node_id,
                                    timeout=args.timeout, _password=password)
        return _print_log_list(files, None)
    try:
        lines = state_api.get_log(
            address, node_id=args.node_id, filename=filename, actor_id=actor_id,
            task_id=task_id, pid=args.pid, follow=args.follow, tail=args.tail,
            timeout=args.timeout, suffix="err" if args.err else "out",
            errors="replace", _password=password)
        for line in lines:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            if args.follow:
                sys.stdout.flush()
    except ValueError as e:
        raise CliError(str(e))
    return 0


def _print_log_list(files, pattern):
    shown = 0
    for node, names in sorted(files.items()):
        if not names:
            continue
        print(f"node {node}:")
        for name in names:
            print(f"  {name}")
            shown += 1
    if not shown:
        print(f"(no log files{' matching ' + repr(pattern) if pattern else ''})")
    return 0


def cmd_timeline(args):
    """`beamlet timeline [-o FILE]`: the cluster's task timeline as a Chrome
    trace (chrome://tracing, ui.perfetto.dev), from the same records as
    beamlet.timeline()."""
    from ._private.timeline import trace_events
    records, _ = _state_query(args, "tasks", [], 1_000_000, True)
    events = trace_events([r.asdict() for r in records])
    path = args.output or f"timeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    try:
        with open(path, "w") as f:
            json.dump(events, f)
    except OSError as e:
        raise CliError(f"-o {path}: {e.strerror or e}.")
    spans = sum(1 for e in events if e.get("ph") == "X")
    print(f"wrote {spans} task spans to {path} (open it in chrome://tracing or "
          f"https://ui.perfetto.dev)")
    return 0


def cmd_run(args):
    """Run a Ray program unchanged: `import ray` is beamlet in it and its workers."""
    from ._private.ray_alias import run_program
    if args.module is None and not args.args:
        return run_program()          # prints the usage error
    if args.module is not None:
        return run_program(module=args.module, args=args.args)
    return run_program(script=args.args[0], args=args.args[1:])


def _subcommand(sub, name, func, help, description=None):
    """A subparser with the options every subcommand has (-v)."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="on an error, print its details (the traceback) too")
    p.set_defaults(func=func)
    return p


def _connection_options(p):
    """--address and the token, for subcommands that talk to a running cluster."""
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="the GCS address of the cluster (as printed by `beamlet start "
                   "--head`), or auto: the latest cluster started on this machine "
                   "(default: $BEAMLET_ADDRESS, else $RAY_ADDRESS, else auto)")
    _token_options(p, "the cluster token (default: the one in the local node's "
                   "session files)")


def _token_options(p, password_help):
    p.add_argument("--redis-password", metavar="TOKEN", help=password_help)
    p.add_argument("--redis-password-file", metavar="FILE",
                   help="read the cluster token from FILE (mode 0600; - for stdin) "
                   f"instead of giving it on the command line (or set ${TOKEN_ENV})")


def _add_start(sub):
    p = _subcommand(sub, "start", cmd_start,
                    "start a head node (--head) or a worker node (--address HOST:PORT) "
                    "on this machine; it keeps running after the command returns")
    p.add_argument("--head", action="store_true",
                   help="start a new cluster's head node: the GCS (Redis), the monitor "
                   "and a raylet")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join the cluster whose head's GCS is at HOST:PORT with a worker "
                   "node (a raylet)")
    p.add_argument("--port", type=int, default=None,
                   help="the GCS (Redis) port of a head node (default 6379; 0: any free "
                   "port); it must be free")
    p.add_argument("--num-cpus", type=float, metavar="N",
                   help="CPUs this node offers to tasks (default: the machine's CPU "
                   "count)")
    p.add_argument("--num-gpus", type=float, metavar="N",
                   help="GPUs this node offers (default: CUDA_VISIBLE_DEVICES, else the "
                   "GPUs found in /proc/driver/nvidia)")
    p.add_argument("--resources", metavar="JSON",
                   help="custom resources of this node, as JSON: '{\"node2\": 1}'")
    p.add_argument("--node-ip-address", metavar="IP",
                   help="this node's address, one of this machine's: the GCS of a head "
                   "and the raylet listen there (default: 127.0.0.1, loopback only, for "
                   "a head; the address towards the head for a worker node)")
    p.add_argument("--object-store-memory", type=int, metavar="BYTES",
                   help="object store size in bytes (default: 30%% of memory, at most "
                   "90%% of /dev/shm's free space)")
    p.add_argument("--object-spilling-directory", metavar="DIR",
                   help="spill objects to a directory of this node's own under DIR when "
                   "the store is full (default: $BEAMLET_OBJECT_SPILLING_DIRECTORY, else "
                   "the session directory)")
    _token_options(p, "the cluster token (default: a new random one for --head; for "
                   "--address, the local head's if it runs on this machine)")
    p.add_argument("--node-manager-port", type=int, default=0, metavar="PORT",
                   help="the TCP port this node's raylet listens on for other nodes "
                   "(objects and tasks between nodes; default 0: any free port). "
                   "Fix it to open it in a firewall (docs/deployment.md)")
    p.add_argument("--include-dashboard", type=_bool_arg, default=True,
                   metavar="true|false",
                   help="serve the web dashboard from the head (default: true)")
    p.add_argument("--dashboard-host", default="127.0.0.1", metavar="HOST",
                   help="where the dashboard listens (default: 127.0.0.1, loopback "
                   "only; 0.0.0.0: every interface). It always asks for the "
                   "cluster token")
    p.add_argument("--dashboard-port", type=int, default=None, metavar="PORT",
                   help="the dashboard's port (default: 8265, or the next free one; "
                   "a port given here must be free)")
    p.add_argument("--metrics-export-port", type=int, default=0, metavar="PORT",
                   help="the port of this node's Prometheus metrics endpoint "
                   "(default: 0, any free port; it is in the node's GCS record)")
    p.add_argument("--metrics-export-host", default="127.0.0.1", metavar="HOST",
                   help="where the metrics endpoint listens (default: 127.0.0.1; "
                   "0.0.0.0: every interface). Scrapes send the cluster token as "
                   "a bearer token")
    p.add_argument("--block", action="store_true",
                   help="stay in the foreground; stop the node on Ctrl-C or SIGTERM")


def _bool_arg(text):
    v = str(text).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_stop(sub):
    p = _subcommand(sub, "stop", cmd_stop,
                    "stop the nodes `beamlet start` ran on this machine (clusters owned "
                    "by a driver's init() stop with that driver)")
    p.add_argument("--grace-period", type=float, default=5, metavar="SECONDS",
                   help="how long to wait after SIGTERM before SIGKILL (default: 5)")


def _add_status(sub):
    p = _subcommand(sub, "status", cmd_status,
                    "nodes, resources used/total, pending demand")
    _connection_options(p)


def _add_memory(sub):
    p = _subcommand(sub, "memory", cmd_memory,
                    "the objects in this machine's object store: id, size, where "
                    "(inline/arena/spilled), refcount, holders",
                    description="List every object the local raylet's object store "
                    "holds, with its size, where it is (inline in the raylet, in "
                    "the shared-memory arena, or spilled to disk), its reference "
                    "count, who holds the references (driver/worker processes, "
                    "pending tasks, other objects) and which processes map it.")
    _connection_options(p)
    p.add_argument("--sort-by", choices=("size", "none"), default="size",
                   help="order of the rows (default: size, largest first)")
    p.add_argument("--json", action="store_true", help="print the raw table as JSON")


def _add_run(sub):
    # no -v here: every argument after SCRIPT is the program's own
    p = sub.add_parser("run", help="run a Ray program unchanged (`import ray` is beamlet "
                       "in it and in its workers)",
                       description="Run SCRIPT (or -m MODULE) with ARGS as python would, "
                       "with `import ray`, `import ray.util.X`, `from ray.exceptions "
                       "import Y` resolving to beamlet's modules, in the program and in "
                       "the workers of the jobs it starts. Nothing named ray is "
                       "installed: outside `beamlet run`, `import ray` is unaffected.")
    p.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]",
                   help="the program to run and its own arguments (passed on as they are)")
    p.set_defaults(func=cmd_run, verbose=False)


# ---------------------------------------------------------------- beamlet job
def _job_client(args):
    from .job_submission import JobSubmissionClient
    return JobSubmissionClient(args.address, _redis_password=_password(args))


def _json_arg(text, flag, example):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise CliError(f"{flag} must be JSON such as '{example}': {e}")
    if not isinstance(value, dict):
        raise CliError(f"{flag} must be a JSON object such as '{example}'.")
    return value


def _runtime_env_arg(args):
    """The runtime_env of --runtime-env FILE (JSON, or YAML with PyYAML),
    --runtime-env-json, and --working-dir (which overrides theirs)."""
    env = {}
    if args.runtime_env and args.runtime_env_json:
        raise CliError("give either --runtime-env FILE or --runtime-env-json, not both.")
    if args.runtime_env:
        try:
            with open(args.runtime_env) as f:
                text = f.read()
        except OSError as e:
            raise CliError(f"--runtime-env {args.runtime_env}: {e.strerror or e}.")
        try:
            env = json.loads(text)
        except ValueError:
            try:
                import yaml
            except ImportError:
                raise CliError(f"--runtime-env {args.runtime_env} is not JSON, and "
                               f"reading YAML needs PyYAML (pip install pyyaml).") from None
            env = yaml.safe_load(text)
        if not isinstance(env, dict):
            raise CliError(f"--runtime-env {args.runtime_env} must hold a mapping "
                           f"(working_dir, env_vars, ...).")
    if args.runtime_env_json:
        env = _json_arg(args.runtime_env_json, "--runtime-env-json",
                        '{"env_vars": {"A": "1"}}')
    if args.working_dir:
        env["working_dir"] = args.working_dir
    return env or None


def _print_job_status(client, sid):
    from .job_submission import JobStatus
    info = client.get_job_info(sid)
    if info.status == JobStatus.SUCCEEDED:
        print(f"Job '{sid}' succeeded", file=sys.stderr)
    elif info.status == JobStatus.STOPPED:
        print(f"Job '{sid}' was stopped", file=sys.stderr)
    elif info.status == JobStatus.FAILED:
        print(f"Job '{sid}' failed\nStatus message: {info.message}", file=sys.stderr)
    else:
        print(f"Status for job '{sid}': {info.status}\nStatus message: {info.message}",
              file=sys.stderr)
    return info.status


def _follow_logs(client, sid):
    """Print the job's output as it comes until it ends (Ctrl-C: stop following,
    the job goes on)."""
    try:
        # a plain loop in this thread (no event loop, no executor thread to wait
        # for at exit): Ctrl-C interrupts it wherever it is
        for chunk in client.iter_job_logs(sid):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        print(f"\nStopped following job '{sid}'; it keeps running (follow it again: "
              f"beamlet job logs --follow {sid}; stop it: beamlet job stop {sid}).",
              file=sys.stderr, flush=True)
        raise


def cmd_job_submit(args):
    import shlex
    from .job_submission import JobStatus
    entry = list(args.entrypoint)
    if entry[:1] == ["--"]:
        entry = entry[1:]
    if not entry:
        raise CliError("give the command to run after --, e.g. `beamlet job submit "
                       "--working-dir . -- python script.py`.")
    client = _job_client(args)
    sid = client.submit_job(
        entrypoint=entry[0] if len(entry) == 1 else shlex.join(entry),
        submission_id=args.submission_id, runtime_env=_runtime_env_arg(args),
        metadata=_json_arg(args.metadata_json, "--metadata-json", '{"team": "a"}'),
        entrypoint_num_cpus=args.entrypoint_num_cpus,
        entrypoint_num_gpus=args.entrypoint_num_gpus,
        entrypoint_memory=args.entrypoint_memory,
        entrypoint_resources=_json_arg(args.entrypoint_resources,
                                       "--entrypoint-resources", '{"disk": 1}'))
    err = sys.stderr
    print(f"Job '{sid}' submitted successfully to {client.get_address()}", file=err)
    print(f"  logs:   beamlet job logs {sid}  (--follow)\n"
          f"  status: beamlet job status {sid}\n"
          f"  stop:   beamlet job stop {sid}", file=err)
    if args.no_wait:
        print(sid)
        return 0
    print("Tailing logs until the job exits (disable with --no-wait; Ctrl-C stops "
          "following, not the job):", file=err, flush=True)
    _follow_logs(client, sid)
    return 1 if _print_job_status(client, sid) == JobStatus.FAILED else 0


def cmd_job_status(args):
    _print_job_status(_job_client(args), args.job_id)
    return 0


def cmd_job_logs(args):
    client = _job_client(args)
    if args.follow:
        _follow_logs(client, args.job_id)
    else:
        sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def cmd_job_stop(args):
    client = _job_client(args)
    print(f"Attempting to stop job '{args.job_id}'", file=sys.stderr)
    if not client.stop_job(args.job_id):
        print(f"Job '{args.job_id}' had already ended", file=sys.stderr)
    elif args.no_wait:
        return 0
    while not client.get_job_status(args.job_id).is_terminal():
        time.sleep(0.2)
    _print_job_status(client, args.job_id)
    return 0


def cmd_job_list(args):
    jobs = _job_client(args).list_jobs()
    if args.json:
        json.dump([j.dict() for j in jobs], sys.stdout, indent=1)
        print()
        return 0
    if not jobs:
        print("(no jobs)")
        return 0
    print(f"{'SUBMISSION ID':28} {'STATUS':10} {'STARTED':19}  ENTRYPOINT")
    for j in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.start_time / 1000)) \
            if j.start_time else "-"
        print(f"{j.submission_id:28} {j.status.value:10} {started:19}  {j.entrypoint}")
    return 0


def cmd_job_delete(args):
    _job_client(args).delete_job(args.job_id)
    print(f"Job '{args.job_id}' deleted")
    return 0


def _add_job(sub):
    p = sub.add_parser("job", help="submit a job to run on the head, follow its "
                       "output, stop it (Ray's `ray job`)",
                       description="Jobs run on the cluster's head node as drivers, "
                       "under the head's job manager: they outlive the command that "
                       "submitted them. The commands talk to it through the GCS "
                       "(--address HOST:PORT, the token of the cluster).")
    jobs = p.add_subparsers(dest="job_command", metavar="SUBCOMMAND",
                            help="what to do with jobs (beamlet job SUBCOMMAND --help)")
    jobs.required = True

    def job_parser(name, func, help, job_id=True):
        q = _subcommand(jobs, name, func, help)
        _connection_options(q)
        if job_id:
            q.add_argument("job_id", metavar="SUBMISSION_ID",
                           help="the job's submission id (or its driver's job id)")
        return q

    q = job_parser("submit", cmd_job_submit, "run ENTRYPOINT (a shell command, after "
                   "--) on the head as a job's driver; print its output until it "
                   "ends (exit status 1 if it failed)", job_id=False)
    q.add_argument("--submission-id", metavar="ID",
                   help="the job's id (default: a new raysubmit_... id)")
    q.add_argument("--working-dir", metavar="DIR",
                   help="a local directory (or .zip) to upload and run the entrypoint "
                   "in, on the head; its tasks and actors get it too (runtime_env "
                   "working_dir; overrides the one of --runtime-env)")
    q.add_argument("--runtime-env", metavar="FILE",
                   help="a runtime_env as a JSON (or YAML, with PyYAML) file")
    q.add_argument("--runtime-env-json", metavar="JSON", help="a runtime_env as JSON")
    q.add_argument("--metadata-json", metavar="JSON",
                   help="metadata to attach to the job, a JSON object of strings")
    q.add_argument("--entrypoint-num-cpus", type=float, metavar="N",
                   help="CPUs to reserve on the head for the entrypoint itself")
    q.add_argument("--entrypoint-num-gpus", type=float, metavar="N",
                   help="GPUs to reserve on the head for the entrypoint itself")
    q.add_argument("--entrypoint-memory", type=int, metavar="BYTES",
                   help="memory to reserve on the head for the entrypoint itself")
    q.add_argument("--entrypoint-resources", metavar="JSON",
                   help="custom resources to reserve for the entrypoint, as JSON")
    q.add_argument("--no-wait", action="store_true",
                   help="print the submission id and return at once")
    q.add_argument("entrypoint", nargs=argparse.REMAINDER, metavar="-- ENTRYPOINT...",
                   help="the command to run, e.g. -- python script.py --epochs 3")
    job_parser("status", cmd_job_status, "the status of a job")
    q = job_parser("logs", cmd_job_logs, "the output of a job")
    q.add_argument("-f", "--follow", action="store_true",
                   help="keep printing its output until it ends")
    q = job_parser("stop", cmd_job_stop, "stop a job (SIGTERM, SIGKILL after "
                   "BEAMLET_JOB_STOP_WAIT_S) and wait for it to end")
    q.add_argument("--no-wait", action="store_true", help="do not wait for it to end")
    q = job_parser("list", cmd_job_list, "every job submitted to the cluster",
                   job_id=False)
    q.add_argument("--json", action="store_true", help="print them as JSON")
    job_parser("delete", cmd_job_delete, "forget a job that ended (its record and "
               "logs in the GCS; its log file stays on the head)")


def _state_options(p, formats=("table", "json", "yaml")):
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="the GCS address of the cluster, or auto: the latest cluster "
                   "started on this machine (default: $BEAMLET_ADDRESS, else "
                   "$RAY_ADDRESS, else auto)")
    _token_options(p, "the cluster token (default: the one in the local node's "
                   "session files)")
    p.add_argument("--timeout", type=float, default=30, metavar="SECONDS",
                   help="give up after this long (default: 30)")
    p.add_argument("--format", choices=formats, default=None,
                   help=f"output format ({', '.join(formats)}; default: table, or "
                   f"yaml with --detail)")


def _add_list(sub):
    p = _subcommand(sub, "list", cmd_list,
                    "list tasks, actors, objects, nodes, workers, placement groups or "
                    "jobs of the cluster (every node), as `ray list`",
                    description="List what the cluster runs, waits for and holds, on "
                    "every node (beamlet.util.state). Tasks and actors that wait say "
                    "why in PENDING_REASON.")
    p.add_argument("kind", choices=STATE_KINDS, metavar="KIND",
                   help="one of: " + ", ".join(STATE_KINDS))
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="keep the rows whose KEY equals VALUE (KEY!=VALUE: differs); "
                   "case-insensitive; repeat for several (all must hold)")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="at most N rows, the newest (default: 100)")
    p.add_argument("--detail", action="store_true",
                   help="every column (default: the base columns)")
    _state_options(p)


def _add_get(sub):
    p = _subcommand(sub, "get", cmd_get, "one task, actor, object, node, worker, "
                    "placement group or job by id, every column (as `ray get`)")
    p.add_argument("kind", choices=STATE_KINDS, metavar="KIND",
                   help="one of: " + ", ".join(STATE_KINDS))
    p.add_argument("id", metavar="ID", help="its id (hex), as `beamlet list` shows it")
    _state_options(p, ("yaml", "json"))


def _add_summary(sub):
    p = _subcommand(sub, "summary", cmd_summary,
                    "counts of tasks per function, actors per class, objects, by state "
                    "(as `ray summary`)")
    p.add_argument("kind", choices=("tasks", "actors", "objects"), metavar="KIND",
                   help="tasks, actors or objects")
    _state_options(p)


def _cluster_options(p):
    """Where the cluster is, its token, how long to wait for it."""
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="the GCS address of the cluster, or auto (default: "
                   "$BEAMLET_ADDRESS, else $RAY_ADDRESS, else auto)")
    _token_options(p, "the cluster token (default: the one in the local node's "
                   "session files)")
    p.add_argument("--timeout", type=float, default=30, metavar="SECONDS",
                   help="give up after this long (default: 30)")


def _add_logs(sub):
    p = _subcommand(sub, "logs", cmd_logs,
                    "the log files of every node, or one of them: a file, a worker's "
                    "output (worker --pid N), an actor's (actor --id ID), a task's "
                    "lines (task --id ID); as `ray logs`",
                    description="With no argument, list every node's log files "
                    "(raylet, monitor, redis, and one pair per worker process: "
                    "worker-<worker id>-<pid>.out|.err). Otherwise print one: a file "
                    "by name (or glob), `worker --pid N`, `actor --id ID` (the worker "
                    "that hosts it), `task --id ID` (only the lines the task printed).")
    p.add_argument("target", nargs="?", metavar="FILE|worker|actor|task",
                   help="a log file name or glob, or worker / actor / task")
    p.add_argument("--pid", type=int, metavar="N", help="the worker's pid (worker)")
    p.add_argument("--id", metavar="ID", help="the actor's or task's id (actor, task)")
    p.add_argument("--actor-id", metavar="ID", help="the output of this actor's worker")
    p.add_argument("--task-id", metavar="ID", help="the lines this task printed")
    p.add_argument("--node-id", metavar="NODE", help="the node (when a pid or a file "
                   "name is on several)")
    p.add_argument("--err", action="store_true",
                   help="the worker's stderr (default: its stdout)")
    p.add_argument("--tail", type=int, default=1000, metavar="N",
                   help="the last N lines (default: 1000; -1: all)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="then print what is written, until Ctrl-C")
    _cluster_options(p)


def _add_timeline(sub):
    p = _subcommand(sub, "timeline", cmd_timeline,
                    "write the cluster's task timeline (Chrome trace / Perfetto JSON: "
                    "one span per task execution on its worker's row)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write it (default: timeline-<time>.json here)")
    _cluster_options(p)


def build_parser():
    from . import __version__
    ap = argparse.ArgumentParser(prog="beamlet", description="beamlet cluster tools: "
                                 "start and stop nodes, look at a running cluster")
    ap.add_argument("--version", action="version", version=f"beamlet {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_start, _add_stop, _add_status, _add_memory, _add_list, _add_get,
                _add_summary, _add_logs, _add_timeline, _add_run, _add_job):
        add(sub)
    return ap


def _one_line(e) -> str:
    """An exception as one line of the CLI's language."""
    if isinstance(e, CliError):
        return str(e)
    text = str(e).strip() or type(e).__name__
    lines = text.splitlines()
    line = lines[0].rstrip(":")
    known = isinstance(e, (RuntimeError, ValueError, ConnectionError, OSError)) and \
        type(e).__module__ == "builtins"
    if not known:
        line = f"{type(e).__name__}: {line}"   # a library's error: name it
    if len(lines) > 1 or not known:
        line += " (-v: details)"
    return line


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        command = " ".join(c for c in (args.command, getattr(args, "job_command", None))
                           if c)
        print(f"beamlet {command}: {_one_line(e)}", file=sys.stderr)
        if args.verbose:
            import traceback
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
