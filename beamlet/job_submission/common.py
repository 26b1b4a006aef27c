"""What a submitted job is: its status (Ray's JobStatus values and the legal
moves between them, in one table), its details (Ray's JobDetails fields), and
how both are stored in the GCS (beamlet:submission:<id>, gcs/keys.py).  Pure:
no I/O."""
import dataclasses
import enum
import json
import re
import secrets
import string
from typing import Any, Dict, Optional


class JobStatus(str, enum.Enum):
    """The status of a submitted job (Ray's values)."""
    #: not started yet: waiting for resources (entrypoint_num_cpus, ...) or for
    #: its runtime environment to be set up on the head
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    #: stopped on request (`stop_job`, `beamlet job stop`)
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    def is_terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


# status -> the statuses it may move to (the job manager moves jobs; the
# client only creates them PENDING)
TRANSITIONS = {
    JobStatus.PENDING: {JobStatus.RUNNING, JobStatus.STOPPED, JobStatus.FAILED},
    JobStatus.RUNNING: {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED},
    JobStatus.STOPPED: set(),
    JobStatus.SUCCEEDED: set(),
    JobStatus.FAILED: set(),
}


def check_transition(old: JobStatus, new: JobStatus, submission_id: str) -> None:
    if new not in TRANSITIONS[old]:
        raise ValueError(f"job {submission_id}: illegal status change {old} -> {new}")


# Ray's texts for each status (JobInfo's default messages)
DEFAULT_MESSAGES = {
    JobStatus.PENDING: "Job has not started yet.",
    JobStatus.RUNNING: "Job is currently running.",
    JobStatus.STOPPED: "Job was intentionally stopped.",
    JobStatus.SUCCEEDED: "Job finished successfully.",
    JobStatus.FAILED: "Job failed.",
}

# error_type values (Ray's)
ENTRYPOINT_FAILED = "JOB_ENTRYPOINT_COMMAND_ERROR"
RUNTIME_ENV_FAILED = "RUNTIME_ENV_SETUP_FAILURE"
START_FAILED = "JOB_SUPERVISOR_ACTOR_START_FAILURE"


class JobType(str, enum.Enum):
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


@dataclasses.dataclass
class DriverInfo:
    """The driver a submitted job's entrypoint started (once it called init())."""
    id: str
    node_ip_address: str
    pid: str


@dataclasses.dataclass
class JobDetails:
    """A job and its submission (Ray's JobDetails fields; times in ms)."""
    type: JobType
    status: JobStatus
    entrypoint: str
    job_id: Optional[str] = None
    submission_id: Optional[str] = None
    driver_info: Optional[DriverInfo] = None
    message: Optional[str] = None
    error_type: Optional[str] = None
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    metadata: Optional[Dict[str, str]] = None
    runtime_env: Optional[Dict[str, Any]] = None
    driver_agent_http_address: Optional[str] = None
    driver_node_id: Optional[str] = None
    driver_exit_code: Optional[int] = None
    entrypoint_num_cpus: Optional[float] = None
    entrypoint_num_gpus: Optional[float] = None
    entrypoint_memory: Optional[int] = None
    entrypoint_resources: Optional[Dict[str, float]] = None

    def dict(self) -> dict:
        """As JSON-ready data (what `beamlet job list --json` prints)."""
        d = dataclasses.asdict(self)
        d["type"], d["status"] = str(self.type.value), str(self.status.value)
        return d


# Ray's JobInfo is JobDetails without type, ids and driver: one class serves both
JobInfo = JobDetails


_ID_CHARS = string.ascii_letters + string.digits
_VALID_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def new_submission_id() -> str:
    """A fresh id in Ray's format (raysubmit_ + 16 letters and digits)."""
    return "raysubmit_" + "".join(secrets.choice(_ID_CHARS) for _ in range(16))


def check_submission_id(sid) -> str:
    if not isinstance(sid, str) or not _VALID_ID.match(sid):
        raise ValueError(f"submission_id must be 1-128 letters, digits, '_', '.' or "
                         f"'-' (it names the job's log file), got {sid!r}.")
    return sid


# ---- the GCS record (a hash of strings)
_JSON_FIELDS = ("metadata", "runtime_env", "entrypoint_resources")
_FLOAT_FIELDS = ("entrypoint_num_cpus", "entrypoint_num_gpus")
_INT_FIELDS = ("start_time", "end_time", "driver_exit_code", "entrypoint_memory")


def to_record(**fields) -> dict:
    """Fields as GCS hash values (None values left out)."""
    out = {}
    for k, v in fields.items():
        if v is None:
            continue
        if k in _JSON_FIELDS:
            out[k] = json.dumps(v, sort_keys=True)
        elif isinstance(v, enum.Enum):
            out[k] = v.value
        else:
            out[k] = str(v)
    return out


def from_record(raw: dict, driver: Optional[DriverInfo] = None) -> JobDetails:
    """JobDetails of a stored record (keys and values decoded to str)."""
    kw = {}
    for f in dataclasses.fields(JobDetails):
        v = raw.get(f.name)
        if v is None or f.name in ("type", "status", "driver_info", "entrypoint"):
            continue
        if f.name in _JSON_FIELDS:
            v = json.loads(v)
        elif f.name in _FLOAT_FIELDS:
            v = float(v)
        elif f.name in _INT_FIELDS:
            v = int(float(v))
        kw[f.name] = v
    status = JobStatus(raw.get("status", "PENDING"))
    kw.setdefault("message", DEFAULT_MESSAGES[status])
    return JobDetails(type=JobType.SUBMISSION, status=status,
                      entrypoint=raw.get("entrypoint", ""), driver_info=driver, **kw)


def pending_message(rec: dict) -> str:
    """Ray's PENDING text, saying what the job may be waiting for."""
    msg = DEFAULT_MESSAGES[JobStatus.PENDING]
    if any(rec.get(k) for k in ("entrypoint_num_cpus", "entrypoint_num_gpus",
                                "entrypoint_memory", "entrypoint_resources")):
        msg += (" It may be waiting for resources (CPUs, GPUs, memory, custom "
                "resources) to become available.")
    if rec.get("runtime_env") not in (None, "{}"):
        msg += " It may be waiting for the runtime environment to be set up."
    return msg
