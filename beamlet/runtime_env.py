"""RuntimeEnv and RuntimeEnvConfig, as Ray's `ray.runtime_env`: a dict describing
the environment a job, task or actor runs in (env_vars, working_dir, py_modules,
pip, ...).  A RuntimeEnv is a plain dict to everything that takes a runtime_env.

This module only describes and checks the environment; applying it to workers is
not done here (see docs/api.md for what beamlet applies today).
"""
import json

KNOWN_FIELDS = ("py_modules", "py_executable", "java_jars", "working_dir", "conda",
                "pip", "uv", "container", "image_uri", "excludes", "env_vars",
                "worker_process_setup_hook", "nsight", "mpi", "config")


class RuntimeEnvConfig(dict):
    """Options of the runtime environment's setup (not of the environment)."""

    known_fields = ("setup_timeout_seconds", "eager_install", "log_files")

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True,
                 log_files=None):
        super().__init__()
        if type(setup_timeout_seconds) is not int:
            raise TypeError(f"setup_timeout_seconds must be an int, got "
                            f"{type(setup_timeout_seconds).__name__}.")
        if setup_timeout_seconds <= 0 and setup_timeout_seconds != -1:
            raise ValueError(f"setup_timeout_seconds must be > 0 or -1 (no timeout), "
                             f"got {setup_timeout_seconds}.")
        if not isinstance(eager_install, bool):
            raise TypeError(f"eager_install must be a bool, got "
                            f"{type(eager_install).__name__}.")
        self["setup_timeout_seconds"] = setup_timeout_seconds
        self["eager_install"] = eager_install
        if log_files is not None:
            self["log_files"] = list(log_files)


class RuntimeEnv(dict):
    """A runtime environment: RuntimeEnv(env_vars={"X": "1"}, working_dir=".", ...).

    Fields beamlet does not know are kept (Ray lets plugins add fields)."""

    known_fields = KNOWN_FIELDS

    def __init__(self, *, py_modules=None, working_dir=None, pip=None, conda=None,
                 container=None, env_vars=None, worker_process_setup_hook=None,
                 config=None, _validate=True, **kwargs):
        super().__init__()
        given = dict(py_modules=py_modules, working_dir=working_dir, pip=pip,
                     conda=conda, container=container, env_vars=env_vars,
                     worker_process_setup_hook=worker_process_setup_hook,
                     config=config, **kwargs)
        for k, v in given.items():
            if v is not None:
                self[k] = v
        if _validate:
            _check(self)

    def to_dict(self) -> dict:
        return dict(self)

    def serialize(self) -> str:
        return json.dumps(self, sort_keys=True, default=str)

    @classmethod
    def deserialize(cls, text: str) -> "RuntimeEnv":
        return cls(**json.loads(text))

    def env_vars(self) -> dict:
        return dict(self.get("env_vars") or {})

    def working_dir(self):
        return self.get("working_dir")

    def py_modules(self) -> list:
        return list(self.get("py_modules") or [])


def _check(env: dict) -> None:
    ev = env.get("env_vars")
    if ev is not None:
        if not isinstance(ev, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in ev.items()):
            raise TypeError(f"runtime_env['env_vars'] must be a dict of str -> str, "
                            f"got {ev!r}.")
    if env.get("pip") is not None and env.get("conda") is not None:
        raise ValueError("runtime_env cannot set both 'pip' and 'conda': use conda's "
                         "'pip' section to add pip packages to a conda environment.")
    wd = env.get("working_dir")
    if wd is not None and not isinstance(wd, str):
        raise TypeError(f"runtime_env['working_dir'] must be a path or URI (str), got "
                        f"{type(wd).__name__}.")
    pm = env.get("py_modules")
    if pm is not None and not isinstance(pm, (list, tuple)):
        raise TypeError(f"runtime_env['py_modules'] must be a list, got "
                        f"{type(pm).__name__}.")
