"""RuntimeEnv and RuntimeEnvConfig, as Ray's `ray.runtime_env`: the environment a
job, task or actor runs in.  A RuntimeEnv is a dict (so a plain dict works
wherever one is taken); it is the one type every runtime_env is checked as.

What beamlet applies (resolve.py, setup.py; docs/api.md "Runtime environments"):
`env_vars`, `working_dir` and `py_modules` (local directories, .zip files, .py
files or modules, uploaded through the GCS and unpacked once per node),
`excludes`, `config` (`setup_timeout_seconds`).  Ray's other fields (pip, conda,
uv, container, ...) are refused with the reason.
"""
import json

from . import resolve
from .env_config import RuntimeEnvConfig  # noqa: F401 (Ray's name, here)

KNOWN_FIELDS = ("py_modules", "py_executable", "java_jars", "working_dir", "conda",
                "pip", "uv", "container", "image_uri", "excludes", "env_vars",
                "worker_process_setup_hook", "nsight", "mpi", "config")


class RuntimeEnv(dict):
    """A runtime environment: RuntimeEnv(env_vars={"X": "1"}, working_dir=".", ...),
    checked when made (a field beamlet cannot apply is an error saying why)."""

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
            resolve.validate(self)

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

    def excludes(self) -> list:
        return list(self.get("excludes") or [])

    def has_working_dir(self) -> bool:
        return bool(self.get("working_dir"))

    def has_py_modules(self) -> bool:
        return bool(self.get("py_modules"))
