"""From the runtime_env a user gives to the one its workers get.

    {"working_dir": ".", "excludes": [...],      validate()   checks it (at the call)
     "py_modules": [mylib], "env_vars": {...}}   Resolver.canonical()  uploads local
                    │                             paths as packages (packaging.py)
                    ▼                             and names them by URI
    {"working_dir": "gcs://_beamlet_pkg_<sha1>.zip", "py_modules": [...],
     "env_vars": {...}}                          inherit(): merged with the parent's
                    │                             (the job's, or the running task's)
                    ▼
    key = sha1(canonical JSON)[:32]             Resolver.register(): stored once in
                                                 the GCS (beamlet:runtime_env:<key>);
                                                 a task's spec carries only the key

Workers are started per key (the raylet's pool is keyed by it) and set
themselves up from the stored environment (setup.py).
"""
import copy
import hashlib
import json
import os
import types

from . import packaging
from .env_config import RuntimeEnvConfig

# Fields beamlet applies.
SUPPORTED = ("env_vars", "working_dir", "py_modules", "excludes", "config")

_NO_INSTALL = ("beamlet installs no packages: install them on every node beforehand "
               "(or in the node's image), or ship your own pure-Python code with "
               "working_dir / py_modules")
# Ray's other fields, refused with the reason (a field accepted and ignored would
# make a program fail later, on a node, for a reason nobody sees).
UNSUPPORTED = {
    "pip": _NO_INSTALL, "conda": _NO_INSTALL, "uv": _NO_INSTALL,
    "container": "workers do not run in containers",
    "image_uri": "workers do not run in containers",
    "py_executable": "workers always run with the raylet's Python interpreter",
    "java_jars": "beamlet runs Python workers only",
    "nsight": "beamlet has no profiler integration",
    "mpi": "beamlet has no MPI integration",
    "worker_process_setup_hook": ("run setup code at the start of the task, or in "
                                  "the actor's __init__, instead"),
}
# Environment variables that make a job's driver take its environment from
# `beamlet job submit` (set by the job manager), and that let init() override
# the job's fields instead of refusing a conflict (Ray's name, and ours).
JOB_CONFIG_ENV = "BEAMLET_JOB_CONFIG_JSON"
OVERRIDE_JOB_ENV = ("BEAMLET_OVERRIDE_JOB_RUNTIME_ENV", "RAY_OVERRIDE_JOB_RUNTIME_ENV")

_CONFIG_DEFAULTS = {"setup_timeout_seconds": 600, "eager_install": True}


def validate(env) -> None:
    """Raise TypeError/ValueError, naming the field, for a runtime_env beamlet
    cannot apply."""
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict (or beamlet.runtime_env."
                        f"RuntimeEnv), got {type(env).__name__}.")
    if env.get("pip") is not None and env.get("conda") is not None:
        raise ValueError("runtime_env cannot set both 'pip' and 'conda': use conda's "
                         "'pip' section to add pip packages to a conda environment.")
    for field, value in env.items():
        if value is None:
            continue
        if field in UNSUPPORTED:
            raise ValueError(f"runtime_env[{field!r}] is not supported by beamlet: "
                             f"{UNSUPPORTED[field]}.")
        if field not in SUPPORTED:
            raise ValueError(f"runtime_env has an unknown field {field!r}; beamlet "
                             f"applies {list(SUPPORTED)}.")
    ev = env.get("env_vars")
    if ev is not None and (not isinstance(ev, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ev.items())):
        raise TypeError(f"runtime_env['env_vars'] must be a dict of str -> str, "
                        f"got {ev!r}.")
    wd = env.get("working_dir")
    if wd is not None:
        if not isinstance(wd, str):
            raise TypeError(f"runtime_env['working_dir'] must be a path (str), got "
                            f"{type(wd).__name__}.")
        _check_uri(wd, "working_dir")
    pm = env.get("py_modules")
    if pm is not None:
        if not isinstance(pm, (list, tuple)):
            raise TypeError(f"runtime_env['py_modules'] must be a list, got "
                            f"{type(pm).__name__}.")
        for m in pm:
            if isinstance(m, str):
                _check_uri(m, "py_modules")
            elif not isinstance(m, types.ModuleType):
                raise TypeError(f"runtime_env['py_modules'] entries are paths or "
                                f"imported modules, got {type(m).__name__} {m!r}.")
    ex = env.get("excludes")
    if ex is not None and (not isinstance(ex, (list, tuple)) or
                           not all(isinstance(p, str) for p in ex)):
        raise TypeError(f"runtime_env['excludes'] must be a list of gitignore-style "
                        f"patterns (str), got {ex!r}.")
    cfg = env.get("config")
    if cfg is not None:
        _config(cfg)


def _check_uri(value: str, field: str) -> None:
    if "://" in value and packaging.digest_of_uri(value) is None:
        raise ValueError(
            f"runtime_env[{field!r}] = {value!r}: beamlet does not download from "
            f"remote URIs (s3://, gs://, https://, ...); give a local directory, .zip "
            f"or module, which is uploaded through the GCS to every node.")


def _config(cfg) -> dict:
    """The non-default settings of a runtime_env's config (dict or RuntimeEnvConfig)."""
    if not isinstance(cfg, dict):
        raise TypeError(f"runtime_env['config'] must be a dict or RuntimeEnvConfig, "
                        f"got {type(cfg).__name__}.")
    unknown = set(cfg) - set(RuntimeEnvConfig.known_fields)
    if unknown:
        raise ValueError(f"runtime_env['config'] has unknown fields {sorted(unknown)}; "
                         f"it takes {list(RuntimeEnvConfig.known_fields)}.")
    full = RuntimeEnvConfig(**cfg)
    return {k: v for k, v in full.items() if _CONFIG_DEFAULTS.get(k) != v}


def setup_timeout(env: dict) -> float:
    """Seconds a worker may take to set up `env` (-1 in the config: no limit)."""
    t = (env.get("config") or {}).get("setup_timeout_seconds",
                                       _CONFIG_DEFAULTS["setup_timeout_seconds"])
    return float("inf") if t == -1 else float(t)


def inherit(parent, child) -> dict:
    """A child's environment given its parent's, as Ray merges them: env_vars
    merged (the child's win), every other field the child gives replaces the
    parent's."""
    if not parent:
        return dict(child or {})
    out = copy.deepcopy(parent)
    for k, v in (child or {}).items():
        if k == "env_vars":
            out["env_vars"] = {**out.get("env_vars", {}), **v}
        else:
            out[k] = v
    return out


def merge_job(job_env, driver_env) -> dict:
    """The environment of a submitted job's driver (from `beamlet job submit`) and
    of its init(runtime_env=...), as Ray merges them: a field (or an env var)
    both give differently is an error, unless BEAMLET_OVERRIDE_JOB_RUNTIME_ENV
    (or RAY_OVERRIDE_JOB_RUNTIME_ENV) is 1 (then init's win)."""
    if not job_env or not driver_env:
        return dict(job_env or driver_env or {})
    if any(os.environ.get(v, "").strip() == "1" for v in OVERRIDE_JOB_ENV):
        return inherit(job_env, driver_env)
    out = copy.deepcopy(job_env)
    for k, v in driver_env.items():
        if k == "env_vars":
            mine = out.setdefault("env_vars", {})
            for name, value in v.items():
                if name in mine and mine[name] != value:
                    raise ValueError(
                        f"runtime_env env var {name!r} is {mine[name]!r} in the job's "
                        f"environment (beamlet job submit) and {value!r} in init(): "
                        f"give it in one place, or set "
                        f"BEAMLET_OVERRIDE_JOB_RUNTIME_ENV=1 to let init's win.")
                mine[name] = value
        elif k in out and out[k] != v:
            raise ValueError(
                f"runtime_env[{k!r}] is given both by the job (beamlet job submit) and "
                f"by init(), differently: give it in one place, or set "
                f"BEAMLET_OVERRIDE_JOB_RUNTIME_ENV=1 to let init's win.")
        else:
            out[k] = v
    return out


def env_key(canonical: dict):
    """The name of a canonical environment (None for the empty one)."""
    if not canonical:
        return None
    text = json.dumps(canonical, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:32]


def expand_env_vars(env_vars: dict, base: dict) -> dict:
    """env_vars with ${NAME} replaced by NAME's value in `base` (the node's
    environment; "" if unset), as Ray does: {"PATH": "${PATH}:/opt/bin"}."""
    out = {}
    for k, v in env_vars.items():
        parts = []
        i = 0
        while True:
            j = v.find("${", i)
            end = v.find("}", j + 2) if j >= 0 else -1
            if j < 0 or end < 0:
                parts.append(v[i:])
                break
            parts.append(v[i:j])
            parts.append(base.get(v[j + 2:end], ""))
            i = end + 1
        out[k] = "".join(parts)
    return out


# (absolute path, excludes, prefix) -> (signature of the files, digest): a
# directory packed before and unchanged since is not read or zipped again
_packed = {}


class Resolver:
    """Uploads packages and environments to one cluster's GCS, once each: one per
    connection (connection.py keeps it)."""

    def __init__(self, gcs):
        self.gcs = gcs
        self.packages = set()      # digests known to be in this GCS
        self.envs = set()          # env keys stored in this GCS
        self.memo = {}             # (parent key, the env as given) -> key (no paths)

    # ---- packages
    def _put(self, blob: bytes) -> str:
        d = packaging.digest(blob)
        if d not in self.packages:
            self.gcs.put_package(d, blob)
            self.packages.add(d)
        return packaging.uri(d)

    def _known_uri(self, value: str, field: str) -> str:
        d = packaging.digest_of_uri(value)
        if d not in self.packages:
            if not self.gcs.has_package(d):
                raise ValueError(f"runtime_env[{field!r}] = {value!r}: this cluster's "
                                 f"GCS has no such package (it was uploaded to another "
                                 f"cluster, or deleted).")
            self.packages.add(d)
        return value

    def _directory(self, path, excludes, prefix, what) -> str:
        entries = packaging.walk(path, excludes, what)
        sig = packaging.signature(entries)
        cache_key = (path, tuple(excludes), prefix)
        hit = _packed.get(cache_key)
        if hit is not None and hit[0] == sig and (
                hit[1] in self.packages or self.gcs.has_package(hit[1])):
            self.packages.add(hit[1])
            return packaging.uri(hit[1])
        uri = self._put(packaging.zip_entries(entries, prefix))
        _packed[cache_key] = (sig, packaging.digest_of_uri(uri))
        return uri

    def working_dir(self, value: str, excludes) -> str:
        if packaging.digest_of_uri(value):
            return self._known_uri(value, "working_dir")
        path = os.path.abspath(os.path.expanduser(value))
        if os.path.isdir(path):
            return self._directory(path, excludes, "", "working_dir")
        if os.path.isfile(path) and path.endswith(".zip"):
            return self._put(packaging.repack_zip(path, "working_dir"))
        raise ValueError(f"runtime_env['working_dir'] = {value!r}: no such directory "
                         f"or .zip file (relative paths are from {os.getcwd()}).")

    def py_module(self, value, excludes) -> str:
        if isinstance(value, types.ModuleType):
            path = _module_path(value)
        elif packaging.digest_of_uri(value):
            return self._known_uri(value, "py_modules")
        else:
            path = os.path.abspath(os.path.expanduser(value))
        if os.path.isdir(path):
            # unpacked as <package dir>/<name>/..., so `import name` finds it
            return self._directory(path, excludes, os.path.basename(path), "py_modules entry")
        if path.endswith(".whl"):
            raise ValueError(f"runtime_env['py_modules'] entry {value!r}: a wheel is "
                             f"installed with pip, which beamlet does not do; pip "
                             f"install it on every node, or give the package's source "
                             f"directory.")
        if os.path.isfile(path) and path.endswith(".zip"):
            return self._put(packaging.repack_zip(path, "py_modules entry"))
        if os.path.isfile(path) and path.endswith(".py"):
            return self._put(packaging.zip_single_file(path))
        raise ValueError(f"runtime_env['py_modules'] entry {value!r}: no such "
                         f"directory, .py or .zip file (relative paths are from "
                         f"{os.getcwd()}).")

    # ---- environments
    def canonical(self, env: dict) -> dict:
        """`env` (validated) with its local paths uploaded; what workers are
        given.  `excludes` is consumed by the upload."""
        validate(env)
        out = {}
        excludes = list(env.get("excludes") or [])
        if env.get("env_vars"):
            out["env_vars"] = dict(sorted(env["env_vars"].items()))
        if env.get("working_dir"):
            out["working_dir"] = self.working_dir(env["working_dir"], excludes)
        if env.get("py_modules"):
            out["py_modules"] = [self.py_module(m, excludes) for m in env["py_modules"]]
        if env.get("config"):
            cfg = _config(env["config"])
            if cfg:
                out["config"] = cfg
        return out

    def register(self, canonical: dict):
        """Store a canonical environment in the GCS; its key (None: empty)."""
        key = env_key(canonical)
        if key is not None and key not in self.envs:
            self.gcs.put_runtime_env(key, json.dumps(canonical, sort_keys=True))
            self.envs.add(key)
        return key

    def child(self, parent, parent_key, env: dict):
        """(canonical, key) of the environment of a task or actor given
        `runtime_env=env`, submitted from a process whose environment is
        `parent` (its key `parent_key`)."""
        has_paths = env.get("working_dir") or env.get("py_modules")
        memo_key = None
        if not has_paths:
            try:
                memo_key = (parent_key, json.dumps(env, sort_keys=True))
            except (TypeError, ValueError):
                memo_key = None
            hit = self.memo.get(memo_key) if memo_key else None
            if hit is not None:
                return hit
        merged = inherit(parent, self.canonical(env))
        result = (merged, self.register(merged))
        if memo_key is not None:
            if len(self.memo) > 1024:
                self.memo.clear()
            self.memo[memo_key] = result
        return result


def job_runtime_env(resolver: Resolver, given):
    """(canonical environment, key, submission id or None) of a driver's job:
    init(runtime_env=given), merged with the environment of the job it runs for
    when `beamlet job submit` started it (JOB_CONFIG_ENV)."""
    job_env, submission = {}, None
    raw = os.environ.get(JOB_CONFIG_ENV)
    if raw:
        try:
            cfg = json.loads(raw)
            job_env = cfg.get("runtime_env") or {}
            submission = cfg.get("submission_id")
        except (ValueError, AttributeError):
            raise ValueError(f"the environment variable {JOB_CONFIG_ENV} (set by the "
                             f"job manager for a submitted job's driver) is not valid "
                             f"JSON: {raw[:200]!r}.") from None
    driver_env = resolver.canonical(given) if given else {}
    env = merge_job(job_env, driver_env)
    return env, resolver.register(env), submission


def _module_path(m) -> str:
    f = getattr(m, "__file__", None)
    if f:
        return os.path.dirname(f) if os.path.basename(f) == "__init__.py" else f
    paths = list(getattr(m, "__path__", []))    # a namespace package
    if paths:
        return paths[0]
    raise ValueError(f"runtime_env['py_modules'] entry {m!r}: the module has no "
                     f"file to ship (a built-in or C module); install it on every "
                     f"node instead.")
