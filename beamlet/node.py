"""A node's processes: starting them in order and stopping them in reverse.

The head node runs redis-server (the GCS), the global scheduler/monitor and a
raylet; other nodes run a raylet only.  `init()` makes a head Node owned by the
driver (every process watches the driver's pid and exits with it);
`beamlet start` makes one that outlives the command.
"""
import json
import os
import secrets
import shutil
import socket
import time

from ._private import config, process
from .gcs import keys, redis_server
from .gcs.client import GcsClient


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


def new_session_dir() -> str:
    root = config.SESSION_ROOT
    os.makedirs(root, exist_ok=True)
    remove_stale_sessions(root)
    name = time.strftime("session_%Y-%m-%d_%H-%M-%S_") + f"{int(time.time()*1e6)%10**6:06d}_{os.getpid()}"
    path = os.path.join(root, name)
    os.makedirs(os.path.join(path, "logs"))
    os.makedirs(os.path.join(path, "sockets"))
    return path


class Node:
    def __init__(self, head=True, num_cpus=None, num_gpus=None, resources=None,
                 object_store_memory=None, node_ip="127.0.0.1", redis_port=None,
                 redis_address=None, password=None, owner_pid=None, prestart=None):
        self.head = head
        self.node_ip = node_ip
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
        self.session_dir = None
        self.redis_proc = None
        self.monitor_proc = None
        self.raylet_proc = None
        self.socket_path = None
        self.node_id = os.urandom(16)   # given to the raylet (--node-id)

    @property
    def address(self) -> str:
        return f"{self.redis_host}:{self.redis_port}"

    def start(self):
        self.session_dir = new_session_dir()
        logs = os.path.join(self.session_dir, "logs")
        try:
            if self.head:
                self.redis_proc, self.redis_port = redis_server.start(
                    self.session_dir, self.password, host=self.node_ip,
                    port=self.redis_port, owner_pid=self.owner_pid)
                gcs = GcsClient(self.redis_host, self.redis_port, self.password)
                gcs.r.hset(keys.CLUSTER, mapping={
                    "session_dir": self.session_dir, "started_at": time.time(),
                    "version": "0.1.0", "head_ip": self.node_ip})
                gcs.r.close()
                self.monitor_proc = process.spawn_python(
                    "beamlet.scheduler.global_scheduler",
                    ["--redis-host", self.redis_host, "--redis-port", str(self.redis_port),
                     "--redis-password", self.password, "--session-dir", self.session_dir,
                     "--owner-pid", str(self.owner_pid or 0),
                     "--redis-pid", str(self.redis_proc.pid)],
                    stdout=open(os.path.join(logs, "monitor.out"), "ab"),
                    stderr=open(os.path.join(logs, "monitor.err"), "ab"),
                    die_with_parent=bool(self.owner_pid))
            self.socket_path = os.path.join(self.session_dir, "sockets", "raylet")
            self.raylet_proc = process.spawn_python(
                "beamlet.raylet.raylet",
                ["--session-dir", self.session_dir, "--socket", self.socket_path,
                 "--node-id", self.node_id.hex(),
                 "--redis-host", self.redis_host, "--redis-port", str(self.redis_port),
                 "--redis-password", self.password, "--node-ip", self.node_ip,
                 "--resources", json.dumps(self.resources),
                 "--object-store-memory", str(self.object_store_memory),
                 "--prestart", str(self.prestart),
                 "--owner-pid", str(self.owner_pid or 0)] + (["--head"] if self.head else []),
                stdout=open(os.path.join(logs, "raylet.out"), "ab"),
                stderr=open(os.path.join(logs, "raylet.err"), "ab"),
                die_with_parent=bool(self.owner_pid))
            self.wait_for_raylet()
            self.write_cluster_file()
        except BaseException:
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
                # started by `beamlet start` (outlives its command; `beamlet stop`
                # stops it) rather than owned by a driver's init()
                "detached": not self.owner_pid, "node_id": self.node_id_hex()}
        path = os.path.join(self.session_dir, "cluster.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        if self.head:
            latest = os.path.join(config.SESSION_ROOT, "session_latest")
            try:
                if os.path.islink(latest):
                    os.unlink(latest)
                os.symlink(self.session_dir, latest)
            except OSError:
                pass

    def node_id_hex(self):
        return self.node_id.hex()

    def pids(self):
        return [p.pid for p in (self.raylet_proc, self.monitor_proc, self.redis_proc) if p]

    def stop(self):
        """Stop in reverse order of start; remove the session directory."""
        process.terminate([self.raylet_proc])
        process.terminate([self.monitor_proc, self.redis_proc])
        if self.session_dir:
            latest = os.path.join(config.SESSION_ROOT, "session_latest")
            try:
                if os.path.realpath(latest) == os.path.realpath(self.session_dir):
                    os.unlink(latest)
            except OSError:
                pass
            shutil.rmtree(self.session_dir, ignore_errors=True)


def find_cluster(address=None) -> dict:
    """The cluster.json of a running cluster on this machine: the latest one for
    address "auto"/None, else the one whose GCS is at HOST:PORT."""
    root = config.SESSION_ROOT
    if address in (None, "auto"):
        env = os.environ.get("BEAMLET_ADDRESS")
        if env and env != "auto":
            return find_cluster(env)
        path = os.path.join(root, "session_latest", "cluster.json")
        if not os.path.exists(path):
            # no head here: a worker node started by `beamlet start --address`?
            for name in sorted(os.listdir(root) if os.path.isdir(root) else [],
                               reverse=True):
                cand = os.path.join(root, name, "cluster.json")
                if name != "session_latest" and os.path.exists(cand):
                    path = cand
                    break
        if not os.path.exists(path):
            raise ConnectionError(
                "No running beamlet cluster found on this machine (init(address='auto') "
                "looks for one started with `beamlet start --head`). Start one, or call "
                "init() without an address to start a local cluster.")
        with open(path) as f:
            return json.load(f)
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"address must be 'HOST:PORT' or 'auto', got {address!r}")
    try:
        names = sorted(os.listdir(root), reverse=True)
    except OSError:
        names = []
    matches = []
    for name in names:
        path = os.path.join(root, name, "cluster.json")
        if name == "session_latest" or not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if int(info["redis_port"]) == int(port):
            matches.append(info)
    # a worker node's cluster.json names the head's GCS too: a driver on a machine
    # that runs only a worker node joins through that (local) raylet; where the head
    # runs here as well, through the head's
    matches.sort(key=lambda i: not i.get("head"))
    if matches:
        return matches[0]
    raise ConnectionError(
        f"No beamlet cluster with its GCS at {address} was found on this machine. "
        f"Check the address printed by `beamlet start --head`.")
