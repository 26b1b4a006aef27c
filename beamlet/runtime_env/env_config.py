"""RuntimeEnvConfig: how a runtime environment is set up (Ray's class)."""


class RuntimeEnvConfig(dict):
    """Options of the runtime environment's setup (not of the environment):
    `setup_timeout_seconds` (how long a worker may take to set it up; -1: no
    limit), `eager_install` (accepted: beamlet always sets an environment up
    when the first worker that needs it starts on a node), `log_files`."""

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
