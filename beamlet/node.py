"""A node's processes: starting them in order and stopping them in reverse.

The head node runs redis-server (the GCS), the global scheduler/monitor and a
raylet; other nodes run a raylet only.  `init()` makes a head Node owned by the
driver (every process watches the driver's pid and exits with it);
`beamlet start` makes one that outlives the command.

It also decides what an address means (`resolve_address`, `find_cluster`): a
driver connects to the cluster at the address it was given, through a node of
that cluster on its own machine, or fails saying why.

Secrets: the cluster token is handed to redis-server, the monitor and the
raylet through inherited pipes (`process.spawn_python(secret=...)`), and kept
on disk only in cluster.json (0600) inside the session directory (0700); see
docs/security.md.
"""
import json
import logging
import os
import secrets
import shutil
import socket
import stat
import time

from ._private import config, netaddr, process
from .gcs import keys, redis_server
from .gcs.client import GcsClient

logger = logging.getLogger("beamlet")


def announce(msg: str) -> None:
    """Tell the user what beamlet chose (as Ray logs its choices at INFO): on
    stderr unless the program configured logging itself."""
    if not logger.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("beamlet: %(message)s"))
        logger.addHandler(h)
        logger.setLevel(logging.INFO)
    logger.info(msg)


def detect_gpus() -> int:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return len([x for x in cvd.split(",") if x.strip() and x.strip() != "-1"])
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def default_object_store_memory() -> int:
    import psutil
    total = psutil.virtual_memory().total
    want = int(total * config.OBJECT_STORE_FRACTION)
    try:
        st = os.statvfs("/dev/shm")
        shm_free = st.f_bavail * st.f_frsize
    except OSError:
        shm_free = want
    size = min(want, int(shm_free * 0.9))
    if size < config.OBJECT_STORE_MIN:
        raise RuntimeError(
            f"/dev/shm has only {shm_free // 2**20} MiB free, too little for beamlet's "
            f"object store (at least {config.OBJECT_STORE_MIN // 2**20} MiB). Free space "
            f"in /dev/shm, mount a larger one (docker: --shm-size=2g), or pass "
            f"object_store_memory= explicitly.")
    return size


def check_object_store_memory(value) -> int:
    """The arena size to use: `value` validated, or the default when None."""
    if value is None:
        return default_object_store_memory()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"object_store_memory must be a whole number of bytes, got "
                         f"{value!r}.")
    value = int(value)
    if value < 2**20:
        raise ValueError(f"object_store_memory={value} is too small: give at least 1 MiB "
                         f"(1048576 bytes); the value is in bytes, not MiB.")
    import psutil
    total = psutil.virtual_memory().total
    if value > total:
        raise ValueError(f"object_store_memory={value} bytes is more than this machine's "
                         f"memory ({total} bytes); give a smaller size, or leave it unset "
                         f"for the default ({config.OBJECT_STORE_FRACTION:.0%} of memory).")
    return value


def node_resources(num_cpus=None, num_gpus=None, resources=None, object_store_memory=0):
    import psutil
    res = dict(resources or {})
    for bad in ("CPU", "GPU"):
        if bad in res:
            raise ValueError(f"Use num_{bad.lower()}s=..., not resources={{'{bad}': ...}}.")
    res["CPU"] = float(os.cpu_count() if num_cpus is None else num_cpus)
    res["GPU"] = float(detect_gpus() if num_gpus is None else num_gpus)
    res["memory"] = float(int(psutil.virtual_memory().available * 0.7))
    res["object_store_memory"] = float(object_store_memory)
    for k, v in res.items():
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"Resource {k!r} must be a non-negative number, got {v!r}.")
    return res


def remove_stale_sessions(root: str, min_age_s: float = 30.0) -> None:
    """Remove session dirs left by a driver that was killed while it was still
    starting its cluster (before the monitor that reaps sessions existed): the
    creating pid (last part of the name) is dead and no process of the session
    runs.  Sessions of `beamlet start` (their creator exits) keep live pids in
    cluster.json and are left alone."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(root, name)
        if not name.startswith("session_2") or os.path.islink(path):
            continue
        try:
            creator = int(name.rsplit("_", 1)[1])
            if now - os.stat(path).st_mtime < min_age_s or process.pid_alive(creator):
                continue
            pids = []
            cfile = os.path.join(path, "cluster.json")
            if os.path.exists(cfile):
                with open(cfile) as f:
                    pids = json.load(f).get("pids", [])
            if not any(process.pid_alive(p) for p in pids):
                shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            continue


def ensure_session_root(root: str) -> str:
    """`root` made (0700) if missing, and safe to keep sessions in: owned by this
    user (or root), and not writable by others unless sticky like /tmp (else
    another user could swap a session for one of theirs)."""
    if not isinstance(root, str) or not os.path.isabs(root):
        raise ValueError(f"the session root (_temp_dir= or BEAMLET_SESSION_ROOT) must "
                         f"be an absolute path, got {root!r}.")
    if not os.path.isdir(root):
        try:
            os.makedirs(root, exist_ok=True)
            os.chmod(root, 0o700)
        except OSError as e:
            raise ValueError(f"cannot create the session root {root}: "
                             f"{e.strerror or e}.") from None
    st = os.stat(root)
    if st.st_uid not in (os.geteuid(), 0):
        raise ValueError(f"the session root {root} belongs to another user (uid "
                         f"{st.st_uid}); give a directory of your own (_temp_dir= or "
                         f"BEAMLET_SESSION_ROOT).")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise ValueError(f"the session root {root} is writable by other users (mode "
                         f"{stat.S_IMODE(st.st_mode):o}); make it 0700, or give another "
                         f"one (_temp_dir= or BEAMLET_SESSION_ROOT).")
    return root


def _private_dir(path: str) -> None:
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)   # whatever the umask


# A unix socket path is at most 107 bytes (sun_path); ours end in sockets/raylet.
_SOCKET_PATH_MAX = 107


def new_session_dir(root=None) -> str:
    """A new session directory (0700) with logs/ and sockets/ (0700) under `root`."""
    root = ensure_session_root(root or config.SESSION_ROOT)
    remove_stale_sessions(root)
    name = time.strftime("session_%Y-%m-%d_%H-%M-%S_") + f"{int(time.time()*1e6)%10**6:06d}_{os.getpid()}"
    path = os.path.join(root, name)
    if len(os.path.join(path, "sockets", "raylet")) > _SOCKET_PATH_MAX:
        raise ValueError(f"the session root {root} is too long a path for unix sockets "
                         f"(at most {_SOCKET_PATH_MAX - len(name) - 16} characters); "
                         f"give a shorter one.")
    _private_dir(path)
    _private_dir(os.path.join(path, "logs"))
    _private_dir(os.path.join(path, "sockets"))
    return path


def _spill_dir_in(base: str, node_id_hex: str) -> str:
    """A directory of this node's own inside the user's spilling directory (the
    raylet removes its spill directory when it stops: never the user's)."""
    base = os.path.abspath(os.path.expanduser(base))
    try:
        os.makedirs(base, exist_ok=True)
        path = os.path.join(base, f"beamlet_spill_{node_id_hex[:16]}")
        _private_dir(path)
    except OSError as e:
        raise ValueError(f"cannot use {base} as the object spilling directory: "
                         f"{e.strerror or e}.") from None
    return path


def init_node_options(kwargs: dict, connecting: bool) -> dict:
    """Node() arguments from init()'s object_spilling_directory, _temp_dir,
    _system_config, dashboard and metrics options (validated); connecting to a
    running cluster takes only _temp_dir (where to look for it): the others are
    fixed when a node starts (the dashboard and metrics options are then ignored,
    as Ray ignores them: the head serves the cluster's dashboard)."""
    system_config = kwargs.get("_system_config") or {}
    if not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got "
                        f"{type(system_config).__name__}.")
    system_config = dict(system_config)
    spill = kwargs.get("object_spilling_directory")
    # Ray's way to say it: _system_config={"object_spilling_config": json}
    ray_spill = system_config.pop("object_spilling_config", None)
    if ray_spill is not None and spill is None:
        spill = _ray_spilling_directory(ray_spill)
    root = kwargs.get("_temp_dir")
    if root is not None:
        ensure_session_root(root)
    if connecting:
        given = [k for k in ("object_spilling_directory", "_system_config")
                 if kwargs.get(k)]
        if given:
            raise ValueError(f"When connecting to an existing cluster, {given} cannot be "
                             f"set: they are fixed when a node starts (beamlet start "
                             f"--object-spilling-directory ..., BEAMLET_<NAME> "
                             f"variables).")
        return {"session_root": root}
    if spill is not None and (not isinstance(spill, str) or not spill):
        raise ValueError(f"object_spilling_directory must be a directory path, got "
                         f"{spill!r}.")
    include = kwargs.get("include_dashboard")
    return {"session_root": root, "spill_dir": spill,
            "child_env": config.system_config_env(system_config),
            # the dashboard is on unless turned off (Ray's default when it can run)
            "include_dashboard": True if include is None else include,
            "dashboard_host": kwargs.get("dashboard_host") or "127.0.0.1",
            "dashboard_port": kwargs.get("dashboard_port"),
            "metrics_export_port": kwargs.get("_metrics_export_port") or 0}


def _ray_spilling_directory(value) -> str:
    try:
        spec = json.loads(value) if isinstance(value, str) else value
        params = spec.get("params", {})
        if spec.get("type") != "filesystem":
            raise ValueError
        path = params["directory_path"]
        return path[0] if isinstance(path, list) else path
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        raise ValueError(
            f"_system_config['object_spilling_config'] = {value!r}: beamlet spills to a "
            f"directory only; give {{\"type\": \"filesystem\", \"params\": "
            f"{{\"directory_path\": PATH}}}} (as JSON), or use "
            f"object_spilling_directory=PATH.") from None


class Node:
    def __init__(self, head=True, num_cpus=None, num_gpus=None, resources=None,
                 object_store_memory=None, node_ip="127.0.0.1", redis_port=None,
                 redis_address=None, password=None, owner_pid=None, prestart=None,
                 session_root=None, spill_dir=None, child_env=None, job_manager=False,
                 peer_port=0, include_dashboard=False, dashboard_host="127.0.0.1",
                 dashboard_port=None, metrics_export_port=0,
                 metrics_export_host="127.0.0.1"):
        self.head = head
        self.node_ip = netaddr.check_node_ip(node_ip)
        self.object_store_memory = check_object_store_memory(object_store_memory)
        self.resources = node_resources(num_cpus, num_gpus, resources,
                                        self.object_store_memory)
        self.redis_port = redis_port
        self.redis_host = redis_address[0] if redis_address else node_ip
        if redis_address:
            self.redis_port = redis_address[1]
        self.password = password or secrets.token_hex(16)
        self.owner_pid = owner_pid
        self.prestart = int(self.resources["CPU"]) if prestart is None else prestart
        self.session_root = session_root or config.SESSION_ROOT
        # where the user asked objects to spill (None: the session's spill/)
        self.spill_base = spill_dir or config.OBJECT_SPILLING_DIRECTORY
        self.spill_dir = None      # this node's own directory inside spill_base
        # BEAMLET_<NAME> settings for the node's processes (init's _system_config)
        self.child_env = dict(child_env or {})
        # the head runs the job manager (beamlet job submit) when asked to
        self.job_manager = job_manager and head
        self.peer_port = peer_port   # the raylet's TCP port for peers (0: any free)
        # the dashboard (head only; a thread of the monitor): where it listens
        # (None: Ray's 8265, or the next free port) and, once started, its address
        self.include_dashboard = bool(include_dashboard) and head
        self.dashboard_host = netaddr.check_listen_host(dashboard_host,
                                                        "dashboard_host")
        self.dashboard_port = None if dashboard_port is None else \
            netaddr.check_port(dashboard_port, "dashboard_port")
        self.dashboard_address = None
        # the node's metrics endpoint (the raylet's); 0: any free port
        self.metrics_export_port = netaddr.check_port(metrics_export_port,
                                                      "metrics_export_port")
        self.metrics_export_host = netaddr.check_listen_host(metrics_export_host,
                                                             "metrics_export_host")
        self.session_dir = None
        self.manager_proc = None
        self.redis_proc = None
        self.monitor_proc = None
        self.raylet_proc = None
        self.socket_path = None
        self.node_id = os.urandom(16)   # given to the raylet (--node-id)

    @property
    def address(self) -> str:
        return f"{self.redis_host}:{self.redis_port}"

    def check_can_start(self):
        """What would make start() fail, found before anything is started: a busy
        GCS port (a head), an unreachable GCS or a wrong token (a worker node)."""
        self.check_port_free(self.metrics_export_host, self.metrics_export_port,
                             "the metrics endpoint", "--metrics-export-port, "
                             "init(_metrics_export_port=...)")
        if self.head:
            if self.redis_port:
                holder = netaddr.port_holder(self.node_ip, self.redis_port)
                if holder:
                    raise RuntimeError(
                        f"port {self.redis_port} on {self.node_ip} is already in use "
                        f"({holder}): another Redis or beamlet head listens there. "
                        f"Choose another port (beamlet start --port; 0 picks a free one).")
            if self.include_dashboard:
                self.check_port_free(self.dashboard_host, self.dashboard_port,
                                     "the dashboard", "--dashboard-port, "
                                     "init(dashboard_port=...)")
        else:
            check_gcs(self.redis_host, self.redis_port, self.password)

    @staticmethod
    def check_port_free(host, port, what, how):
        """A port given explicitly must be free (0 and None pick one)."""
        if not port:
            return
        holder = netaddr.port_holder(host, port)
        if holder:
            raise RuntimeError(f"port {port} on {host}, asked for {what}, is already in "
                               f"use ({holder}). Choose another port ({how}; 0 picks "
                               f"a free one).")

    def start(self):
        self.check_can_start()
        self.session_dir = new_session_dir(self.session_root)
        logs = os.path.join(self.session_dir, "logs")
        ready = None    # the pipe on which the monitor says where the dashboard is
        self.socket_path = os.path.join(self.session_dir, "sockets", "raylet")
        try:
            if self.spill_base:
                self.spill_dir = _spill_dir_in(self.spill_base, self.node_id_hex())
            if self.head:
                self.redis_proc, self.redis_port = redis_server.start(
                    self.session_dir, self.password, host=self.node_ip,
                    port=self.redis_port, owner_pid=self.owner_pid)
                gcs = GcsClient(self.redis_host, self.redis_port, self.password)
                record = {"session_dir": self.session_dir, "started_at": time.time(),
                          "version": "0.1.0", "head_ip": self.node_ip}
                gcs.r.hset(keys.CLUSTER, mapping=record)
                gcs.r.close()
                dashboard_args, ready = self._dashboard_args()
                try:
                    self.monitor_proc = process.spawn_python(
                        "beamlet.scheduler.global_scheduler",
                        ["--redis-host", self.redis_host,
                         "--redis-port", str(self.redis_port),
                         "--session-dir", self.session_dir,
                         "--owner-pid", str(self.owner_pid or 0),
                         "--redis-pid", str(self.redis_proc.pid),
                         # what it writes again if Redis loses it (no secret in it)
                         "--cluster-record", json.dumps(record)] + dashboard_args,
                        secret=self.password, extra_env=self.child_env,
                        stdout=open(os.path.join(logs, "monitor.out"), "ab"),
                        stderr=open(os.path.join(logs, "monitor.err"), "ab"),
                        die_with_parent=bool(self.owner_pid),
                        pass_fds=(ready[1],) if ready else ())
                finally:
                    if ready:
                        os.close(ready[1])
            self.raylet_proc = process.spawn_python(
                "beamlet.raylet.raylet",
                ["--session-dir", self.session_dir, "--socket", self.socket_path,
                 "--node-id", self.node_id.hex(),
                 "--redis-host", self.redis_host, "--redis-port", str(self.redis_port),
                 "--node-ip", self.node_ip,
                 "--resources", json.dumps(self.resources),
                 "--object-store-memory", str(self.object_store_memory),
                 "--prestart", str(self.prestart),
                 "--owner-pid", str(self.owner_pid or 0),
                 "--peer-port", str(self.peer_port or 0),
                 "--metrics-export-port", str(self.metrics_export_port),
                 "--metrics-export-host", self.metrics_export_host]
                + (["--spill-dir", self.spill_dir] if self.spill_dir else [])
                + (["--head"] if self.head else []),
                secret=self.password, extra_env=self.child_env,
                stdout=open(os.path.join(logs, "raylet.out"), "ab"),
                stderr=open(os.path.join(logs, "raylet.err"), "ab"),
                die_with_parent=bool(self.owner_pid))
            self.wait_for_raylet()
            if self.job_manager:
                self.manager_proc = process.spawn_python(
                    "beamlet.job_submission.manager",
                    ["--redis-host", self.redis_host, "--redis-port", str(self.redis_port),
                     "--session-dir", self.session_dir,
                     "--session-root", self.session_root,
                     "--node-id", self.node_id_hex()],
                    secret=self.password, extra_env=self.child_env,
                    stdout=open(os.path.join(logs, "job_manager.out"), "ab"),
                    stderr=open(os.path.join(logs, "job_manager.err"), "ab"),
                    die_with_parent=bool(self.owner_pid))
            if ready:
                fd, ready = ready[0], None      # wait_for_dashboard closes it
                self.wait_for_dashboard(fd)
            if self.job_manager:
                self.wait_for_job_manager()
            self.write_cluster_file()
        except BaseException:
            if ready:
                os.close(ready[0])
            self.stop()
            raise
        return self

    def wait_for_raylet(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.raylet_proc.poll() is not None:
                raise RuntimeError(
                    f"The raylet exited during start-up "
                    f"({process.describe_exit(self.raylet_proc.returncode)}); see "
                    f"{self.session_dir}/logs/raylet.err:\n" + self._tail("raylet.err"))
            if os.path.exists(self.socket_path):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(self.socket_path)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.003)
        raise RuntimeError(f"The raylet did not start within {timeout} s; see "
                           f"{self.session_dir}/logs/raylet.err")

    def wait_for_job_manager(self, timeout=30.0):
        """Until the job manager announced itself (its liveness key): a `job
        submit` right after `beamlet start --head` finds it."""
        deadline = time.monotonic() + timeout
        gcs = GcsClient(self.redis_host, self.redis_port, self.password)
        try:
            while time.monotonic() < deadline:
                if self.manager_proc.poll() is not None:
                    raise RuntimeError(
                        f"The job manager exited during start-up "
                        f"({process.describe_exit(self.manager_proc.returncode)}); see "
                        f"{self.session_dir}/logs/job_manager.err:\n"
                        + self._tail("job_manager.err"))
                if gcs.r.exists(keys.JOB_MANAGER):
                    return
                time.sleep(0.01)
        finally:
            gcs.r.close()
        raise RuntimeError(f"The job manager did not start within {timeout} s; see "
                           f"{self.session_dir}/logs/job_manager.err")

    def _dashboard_args(self):
        """The monitor's dashboard arguments, and the pipe (read, write) it
        answers on; ([], None) without a dashboard."""
        if not self.include_dashboard:
            return [], None
        ready = os.pipe()
        port = self.dashboard_port
        args = ["--dashboard-host", self.dashboard_host,
                "--raylet-socket", self.socket_path,
                "--dashboard-port", str(DEFAULT_DASHBOARD_PORT if port is None else port),
                "--dashboard-ready-fd", str(ready[1])]
        return args + (["--dashboard-port-retries"] if port is None else []), ready

    def wait_for_dashboard(self, fd, timeout=30.0):
        """Read the monitor's answer: "OK host:port" once the dashboard listens,
        or "ERROR why"; record the address in the GCS (beamlet:cluster)."""
        import select
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise RuntimeError(f"the dashboard did not start within {timeout} s; "
                                       f"see {self.session_dir}/logs/monitor.err")
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
        finally:
            os.close(fd)
        answer = buf.decode(errors="replace").strip()
        if not answer.startswith("OK "):
            why = answer[len("ERROR "):] if answer.startswith("ERROR ") else (
                f"the monitor exited ({process.describe_exit(self.monitor_proc.poll())})"
                f"; see {self.session_dir}/logs/monitor.err:\n" + self._tail("monitor.err"))
            raise RuntimeError(f"the dashboard could not start: {why}")
        self.dashboard_address = answer[3:]
        gcs = GcsClient(self.redis_host, self.redis_port, self.password)
        try:
            gcs.r.hset(keys.CLUSTER, "dashboard_address", self.dashboard_address)
        finally:
            gcs.r.close()

    def dashboard_url(self, with_token=True):
        """The dashboard's URL (with the token: opening it logs in), or None."""
        return dashboard_url(self.dashboard_address, self.password if with_token else None)

    def _tail(self, name, n=20):
        try:
            with open(os.path.join(self.session_dir, "logs", name)) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def write_cluster_file(self):
        """cluster.json: how other processes on this machine join (mode 0600)."""
        info = {"redis_host": self.redis_host, "redis_port": self.redis_port,
                "password": self.password, "raylet_socket": self.socket_path,
                "session_dir": self.session_dir, "node_ip": self.node_ip,
                "head": self.head, "pids": self.pids(),
                "raylet_pid": self.raylet_proc.pid, "spill_dir": self.spill_dir,
                # started by `beamlet start` (outlives its command; `beamlet stop`
                # stops it) rather than owned by a driver's init()
                "detached": not self.owner_pid, "node_id": self.node_id_hex()}
        path = os.path.join(self.session_dir, "cluster.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        if self.head:
            latest = os.path.join(self.session_root, "session_latest")
            try:
                if os.path.islink(latest):
                    os.unlink(latest)
                os.symlink(self.session_dir, latest)
            except OSError:
                pass

    def node_id_hex(self):
        return self.node_id.hex()

    def pids(self):
        return [p.pid for p in (self.raylet_proc, self.monitor_proc, self.redis_proc,
                                self.manager_proc) if p]

    def signal_stop(self):
        """Ask the raylet to stop (SIGTERM) without waiting: stop() waits, so
        many nodes stopped together take as long as one."""
        p = self.raylet_proc
        if p is not None and p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass

    def stop(self):
        """Stop in reverse order of start; remove the session directory."""
        # the job manager stops its jobs first (SIGTERM, SIGKILL after a while)
        process.terminate([self.manager_proc], timeout=config.JOB_STOP_WAIT_S + 2)
        process.terminate([self.raylet_proc])
        # the monitor first: it restarts a Redis that dies while it runs
        process.terminate([self.monitor_proc])
        process.terminate([self.redis_proc])
        if self.session_dir:
            remove_session(self.session_root, self.session_dir, self.spill_dir)


DEFAULT_DASHBOARD_PORT = 8265   # Ray's


def dashboard_url(address, token=None):
    """http://HOST:PORT/ for a dashboard address (from the GCS's beamlet:cluster),
    with ?token= when given (the link that logs in); None without an address.
    A wildcard host (0.0.0.0) is shown as this machine's loopback."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{port}/"
    return base + (f"?token={token}" if token else "")


def remove_session(root: str, session_dir: str, spill_dir=None) -> None:
    """Remove a stopped node's files: its session directory, its spill directory
    (when outside it) and the session_latest link if it pointed there."""
    latest = os.path.join(root, "session_latest")
    try:
        if os.path.realpath(latest) == os.path.realpath(session_dir) or \
                (os.path.islink(latest) and not os.path.exists(latest)):
            os.unlink(latest)
    except OSError:
        pass
    if spill_dir:
        shutil.rmtree(spill_dir, ignore_errors=True)
    shutil.rmtree(session_dir, ignore_errors=True)


def check_gcs(host: str, port: int, password: str) -> None:
    """Return if the GCS at host:port answers and takes `password`; else a
    ConnectionError (unreachable, not a Redis) or PermissionError (wrong token)
    that says so."""
    import redis
    netaddr.probe_redis(host, port, config.GCS_CONNECT_TIMEOUT_S)
    r = redis.Redis(host=host, port=port, password=password,
                    socket_timeout=config.GCS_CONNECT_TIMEOUT_S,
                    socket_connect_timeout=config.GCS_CONNECT_TIMEOUT_S)
    try:
        r.ping()
    except redis.AuthenticationError:
        raise PermissionError(
            f"the GCS at {host}:{port} rejected the cluster token given; use the "
            f"token printed by `beamlet start --head` (it is in the head's "
            f"cluster.json).") from None
    except redis.RedisError as e:
        raise ConnectionError(f"the GCS at {host}:{port} does not answer properly "
                              f"({e}).") from None
    finally:
        r.close()


# Environment variables naming the cluster to connect to, in order of precedence.
ADDRESS_ENV = ("BEAMLET_ADDRESS", "RAY_ADDRESS")


def resolve_address(address, default=None):
    """The address to use: `address`, or when it is None or "auto" the one set in
    BEAMLET_ADDRESS or RAY_ADDRESS (announced, as Ray logs it); None (or
    "local") means start a new cluster and becomes `default`."""
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a string ('HOST:PORT', 'auto' or 'local'), "
                        f"got {type(address).__name__} {address!r}.")
    if address in (None, "auto"):
        for var in ADDRESS_ENV:
            value = os.environ.get(var, "").strip()
            if value:
                announce(f"Using address {value} set in the environment variable {var}")
                address = value
                break
    if address in (None, "local"):
        return default
    if address != "auto":
        netaddr.parse_host_port(address)
    return address


def _cluster_files(root):
    """(path, info) of every readable cluster.json under `root` that this user
    wrote (another user's could point us at their processes)."""
    try:
        names = sorted(os.listdir(root), reverse=True)    # newest first
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(root, name, "cluster.json")
        if name == "session_latest" or os.path.islink(os.path.join(root, name)):
            continue
        try:
            if os.stat(path).st_uid != os.geteuid():
                continue
            with open(path) as f:
                out.append((path, json.load(f)))
        except (OSError, ValueError):
            continue
    return out


def _running(info) -> bool:
    """Whether the node of a cluster.json still runs (its raylet)."""
    pid = info.get("raylet_pid") or (info.get("pids") or [0])[0]
    return bool(pid) and process.pid_alive(pid)


def _stale_error(where, infos):
    dirs = ", ".join(os.path.dirname(p) for p, _ in infos)
    return ConnectionError(
        f"the beamlet cluster {where} is no longer running (its processes exited; "
        f"session {dirs}). Run `beamlet stop` to remove what it left, then start a "
        f"new one.")


def find_cluster(address=None, root=None) -> dict:
    """The cluster.json of the node a driver on this machine connects through:
    for address "auto"/None the latest cluster started here; for "HOST:PORT" a
    node of the cluster whose GCS is there (host and port must match; the host
    may be a name, or any address of this machine for a GCS on this machine).
    A ConnectionError says why there is none."""
    root = root or config.SESSION_ROOT
    files = _cluster_files(root)
    if address in (None, "auto"):
        return _latest_cluster(root, files)
    host, port = netaddr.parse_host_port(address)
    try:
        wanted = netaddr.resolve(host)
    except ValueError as e:
        raise ValueError(f"address {address!r}: {e}") from None
    here = netaddr.is_this_machine(host)
    candidates = []
    for path, info in files:
        if int(info.get("redis_port", 0)) != port:
            continue
        try:
            exact = bool(wanted & netaddr.resolve(info["redis_host"]))
        except (ValueError, KeyError):
            continue
        if exact or (here and netaddr.is_this_machine(info["redis_host"])):
            # the same address first; through the head's raylet where one runs here
            candidates.append((not exact, not info.get("head"), path, info))
    candidates.sort(key=lambda c: c[:2])
    for *_, info in candidates:
        if _running(info):
            return info
    if candidates:
        raise _stale_error(f"at {address} on this machine", [c[2:] for c in candidates])
    timeout = config.GCS_CONNECT_TIMEOUT_S
    try:
        netaddr.probe_redis(host, port, timeout)
    except ConnectionError as e:
        raise ConnectionError(f"no beamlet cluster at {address}: {e}. Check the address "
                              f"printed by `beamlet start --head`.") from None
    if here:
        raise ConnectionError(
            f"a Redis server answers at {address}, but no beamlet cluster of this user "
            f"under {root} has its GCS there (another Redis, or a cluster started with "
            f"another BEAMLET_SESSION_ROOT). Check the address printed by `beamlet "
            f"start --head`.")
    raise ConnectionError(
        f"the GCS at {address} is on another machine, and this machine runs no node "
        f"of that cluster; a driver connects through a node on its own machine. Run "
        f"`beamlet start --address {address} --redis-password-file FILE` here first "
        f"(FILE holding the cluster token printed by `beamlet start --head`), then "
        f"connect again.")


def _latest_cluster(root, files):
    """The cluster.json of the latest cluster started on this machine (a head's,
    else a worker node's: a machine may run only a worker node)."""
    latest = os.path.join(root, "session_latest", "cluster.json")
    ordered = [f for f in files if os.path.realpath(os.path.dirname(f[0])) ==
               os.path.realpath(os.path.dirname(latest))] + files
    for _, info in ordered:
        if _running(info):
            return info
    if files:
        raise _stale_error(f"last started on this machine (under {root})", files[:1])
    raise ConnectionError(
        f"No running beamlet cluster was found on this machine (under {root}). Start "
        f"one with `beamlet start --head`, or give the address of a running one.")
