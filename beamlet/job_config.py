"""JobConfig, as Ray's `ray.job_config.JobConfig`: the configuration of a job,
given to `init(job_config=...)`.

What init() does with it: `ray_namespace` is the job's namespace (unless init()
is given `namespace=`), `default_actor_lifetime` the lifetime of actors created
without one, `metadata` is stored in the job's GCS record (`beamlet:job:<job>`,
field "metadata", JSON) and `runtime_env` is taken as init's runtime_env.
`jvm_options` and `code_search_path` are accepted for Ray programs and ignored
(beamlet runs Python workers only).
"""
import json

_LIFETIMES = ("detached", "non_detached")


class JobConfig:
    def __init__(self, jvm_options=None, code_search_path=None, runtime_env=None,
                 _client_job=False, metadata=None, ray_namespace=None,
                 default_actor_lifetime="non_detached", _py_driver_sys_path=None):
        self.jvm_options = list(jvm_options or [])
        self.code_search_path = list(code_search_path or [])
        self.metadata = {}
        self.runtime_env = None
        self.ray_namespace = None
        self.default_actor_lifetime = "non_detached"
        self._py_driver_sys_path = list(_py_driver_sys_path or [])
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise TypeError(f"JobConfig metadata must be a dict, got "
                                f"{type(metadata).__name__}.")
            for k, v in metadata.items():
                self.set_metadata(k, v)
        if runtime_env is not None:
            self.set_runtime_env(runtime_env)
        if ray_namespace is not None:
            self.set_ray_namespace(ray_namespace)
        self.set_default_actor_lifetime(default_actor_lifetime)

    def set_metadata(self, key: str, value: str) -> None:
        """Add key-value pair to the metadata dictionary."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"JobConfig metadata keys and values are strings, got "
                            f"{key!r}: {value!r}.")
        self.metadata[key] = value

    def set_runtime_env(self, runtime_env, validate=False) -> None:
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"runtime_env must be a dict (or RuntimeEnv), got "
                            f"{type(runtime_env).__name__}.")
        self.runtime_env = runtime_env

    def set_ray_namespace(self, ray_namespace: str) -> None:
        if not isinstance(ray_namespace, str) or not ray_namespace:
            raise TypeError(f"ray_namespace must be a non-empty str, got "
                            f"{ray_namespace!r}.")
        self.ray_namespace = ray_namespace

    def set_default_actor_lifetime(self, default_actor_lifetime: str) -> None:
        if default_actor_lifetime not in _LIFETIMES:
            raise ValueError(f"default_actor_lifetime must be one of {_LIFETIMES}, got "
                             f"{default_actor_lifetime!r}.")
        self.default_actor_lifetime = default_actor_lifetime

    def set_py_logging_config(self, logging_config=None) -> None:
        """Accepted for Ray programs; beamlet does not configure workers' logging."""
        self.py_logging_config = logging_config

    def _to_dict(self) -> dict:
        return {"jvm_options": self.jvm_options,
                "code_search_path": self.code_search_path,
                "runtime_env": self.runtime_env, "metadata": self.metadata,
                "ray_namespace": self.ray_namespace,
                "default_actor_lifetime": self.default_actor_lifetime}

    @classmethod
    def from_json(cls, job_config_json) -> "JobConfig":
        """A JobConfig from its JSON form (a dict or a JSON string)."""
        d = json.loads(job_config_json) if isinstance(job_config_json, str) \
            else dict(job_config_json)
        return cls(**{k: v for k, v in d.items() if k in (
            "jvm_options", "code_search_path", "runtime_env", "metadata",
            "ray_namespace", "default_actor_lifetime")})

    def __repr__(self):
        return f"JobConfig({self._to_dict()})"
