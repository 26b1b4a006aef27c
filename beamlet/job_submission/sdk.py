"""JobSubmissionClient: submit, follow and stop jobs on a cluster, with Ray's
method names and parameters (`ray.job_submission.JobSubmissionClient`).

The transport is the cluster's GCS (docs/architecture.md, "Job submission"):
the client writes the job's record and a request for the head's job manager,
reads status and logs back from the GCS, all authenticated with the cluster
token.  So the address is the GCS's (`HOST:PORT`, as `beamlet start --head`
prints it), not Ray's dashboard URL; an `http://` prefix is accepted and
dropped.  The client may run on any machine that reaches the GCS; the token
comes from `_redis_password=` or, for a cluster on this machine, from its
session files.
"""
import asyncio
import os
import time
from typing import AsyncIterator, Dict, Iterator, List, Optional

from .. import __version__
from .._private import netaddr
from ..gcs import keys
from ..gcs.client import GcsClient
from ..node import check_gcs, find_cluster
from ..runtime_env.resolve import Resolver
from .common import (DriverInfo, JobDetails, JobStatus, check_submission_id,
                     from_record, new_submission_id, pending_message, to_record)

# Environment variables naming the cluster, in order (Ray's API-server one too).
ADDRESS_ENV = ("BEAMLET_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def _decode(raw: dict) -> dict:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _strip_scheme(address: str) -> str:
    for scheme in ("http://", "https://"):
        if address.startswith(scheme):
            return address[len(scheme):].rstrip("/")
    if "://" in address:
        raise ValueError(f"address {address!r}: give the cluster's GCS address "
                         f"HOST:PORT (as `beamlet start --head` prints it).")
    return address


def connect(address=None, password=None):
    """(GcsClient, "HOST:PORT") of the cluster `address` names (None/"auto":
    BEAMLET_ADDRESS, RAY_API_SERVER_ADDRESS or RAY_ADDRESS, else the latest
    cluster started on this machine), checked to answer and take the token."""
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a string, got {type(address).__name__}.")
    if address in (None, "auto"):
        for var in ADDRESS_ENV:
            if os.environ.get(var, "").strip():
                address = os.environ[var].strip()
                break
    address = "auto" if address in (None, "auto") else _strip_scheme(address)
    if address == "auto":
        info = find_cluster("auto")
        host, port = info["redis_host"], int(info["redis_port"])
        password = password or info["password"]
    else:
        host, port = netaddr.parse_host_port(address, "address")
        if not password:
            try:
                password = find_cluster(address)["password"]
            except ConnectionError as e:
                if "another machine" not in str(e):
                    raise
                raise PermissionError(
                    f"the cluster at {address} runs on another machine: give its token "
                    f"(--redis-password-file FILE, or JobSubmissionClient(..., "
                    f"_redis_password=TOKEN)); `beamlet start --head` printed it.") \
                    from None
    try:
        check_gcs(host, port, password)
    except ConnectionError as e:
        raise ConnectionError(
            f"{e} beamlet's job API goes through the cluster's GCS: give the address "
            f"`beamlet start --head` printed (HOST:PORT, default port 6379), not "
            f"Ray's dashboard port.") from None
    return GcsClient(host, port, password), f"{host}:{port}"


class JobSubmissionClient:
    """Submit jobs to a cluster's head and follow them (Ray's class).

    `address`: the cluster's GCS, "HOST:PORT" (None or "auto": the environment's
    BEAMLET_ADDRESS / RAY_API_SERVER_ADDRESS / RAY_ADDRESS, else the latest
    cluster started here).  `metadata` is added to every job's.
    `create_cluster_if_needed`, `cookies`, `headers` and `verify` are Ray's
    HTTP options: accepted (type-checked), unused here."""

    def __init__(self, address: Optional[str] = None, create_cluster_if_needed=False,
                 cookies=None, metadata=None, headers=None, verify=True, *,
                 _redis_password: Optional[str] = None):
        for name, value, types_ in (("create_cluster_if_needed", create_cluster_if_needed,
                                     bool), ("cookies", cookies, (dict, type(None))),
                                    ("metadata", metadata, (dict, type(None))),
                                    ("headers", headers, (dict, type(None))),
                                    ("verify", verify, (str, bool))):
            if not isinstance(value, types_):
                raise TypeError(f"{name} must be {types_}, got {type(value).__name__}.")
        self._gcs, self._address = connect(address, _redis_password)
        self._default_metadata = dict(metadata or {})
        self._resolver = Resolver(self._gcs)

    def get_address(self) -> str:
        return self._address

    def get_version(self) -> str:
        return __version__

    def close(self) -> None:
        self._gcs.r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- submitting
    def _check_manager(self) -> None:
        if not self._gcs.r.exists(keys.JOB_MANAGER):
            raise RuntimeError(
                f"the cluster at {self._address} runs no job manager: jobs are run by "
                f"the head of a cluster started with `beamlet start --head` (not one "
                f"that a driver's init() started); if it is one, its job manager "
                f"exited (see logs/job_manager.err in the head's session directory).")

    def submit_job(self, *, entrypoint: str, job_id: Optional[str] = None,
                   runtime_env: Optional[dict] = None,
                   metadata: Optional[Dict[str, str]] = None,
                   submission_id: Optional[str] = None,
                   entrypoint_num_cpus=None, entrypoint_num_gpus=None,
                   entrypoint_memory: Optional[int] = None,
                   entrypoint_resources: Optional[Dict[str, float]] = None,
                   entrypoint_label_selector: Optional[Dict[str, str]] = None,
                   retry_policy: Optional[dict] = None) -> str:
        """Run shell command `entrypoint` on the head as the job's driver (in
        `runtime_env`'s working_dir, with its env_vars; its tasks inherit the
        environment); returns the submission id.  entrypoint_* reserve resources
        on the head for the entrypoint itself while it runs (the job stays
        PENDING until they are free).  `entrypoint_label_selector` is accepted
        and not applied (nodes have no labels); `retry_policy` is refused."""
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError(f"entrypoint must be a non-empty shell command, got "
                             f"{entrypoint!r}.")
        if retry_policy:
            raise ValueError("retry_policy is not supported by beamlet: a job runs "
                             "once; submit it again to retry it.")
        for name, v in (("entrypoint_num_cpus", entrypoint_num_cpus),
                        ("entrypoint_num_gpus", entrypoint_num_gpus),
                        ("entrypoint_memory", entrypoint_memory)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or v < 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}.")
        if entrypoint_resources is not None:
            if not isinstance(entrypoint_resources, dict) or not all(
                    isinstance(k, str) and isinstance(q, (int, float)) and q >= 0
                    for k, q in entrypoint_resources.items()):
                raise ValueError(f"entrypoint_resources must map resource names to "
                                 f"non-negative numbers, got {entrypoint_resources!r}.")
        meta = {**self._default_metadata, **(metadata or {})}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise TypeError(f"metadata must map str to str, got {meta!r}.")
        sid = check_submission_id(submission_id or job_id or new_submission_id())
        self._check_manager()
        env = self._resolver.canonical(runtime_env) if runtime_env else {}
        r = self._gcs.r
        key = keys.submission(sid)
        if not r.hsetnx(key, "submission_id", sid):
            raise RuntimeError(f"Job with submission_id {sid} already exists. Please "
                               f"use a different submission_id.")
        rec = to_record(entrypoint=entrypoint, status=JobStatus.PENDING,
                        start_time=int(time.time() * 1000), metadata=meta,
                        runtime_env=env, entrypoint_num_cpus=entrypoint_num_cpus,
                        entrypoint_num_gpus=entrypoint_num_gpus,
                        entrypoint_memory=entrypoint_memory,
                        entrypoint_resources=entrypoint_resources or None)
        rec["message"] = pending_message(rec)
        p = r.pipeline()     # MULTI: the rest of the record, its listing, the request
        p.hset(key, mapping=rec)
        p.zadd(keys.SUBMISSIONS, {sid: time.time()})
        p.rpush(keys.JOB_MANAGER_REQUESTS, f"submit {sid}")
        p.execute()
        return sid

    # ---- reading
    def _submission_id(self, job_id: str) -> str:
        """The submission id of `job_id` (a submission id, or the job id of the
        driver a submission started); RuntimeError if there is no such job."""
        if not isinstance(job_id, str) or not job_id:
            raise TypeError(f"job_id must be a submission id (str), got {job_id!r}.")
        r = self._gcs.r
        if r.exists(keys.submission(job_id)):
            return job_id
        try:
            sid = r.hget(keys.job(bytes.fromhex(job_id)), "submission_id")
        except ValueError:
            sid = None
        if sid:
            return sid.decode()
        raise RuntimeError(f"Job {job_id} does not exist.")

    def _record(self, sid: str) -> dict:
        raw = _decode(self._gcs.r.hgetall(keys.submission(sid)))
        if not raw:
            raise RuntimeError(f"Job {sid} does not exist.")
        return raw

    def _manager_gone(self, status: JobStatus) -> bool:
        """A job not ended whose job manager is gone will never end."""
        return not status.is_terminal() and not self._gcs.r.exists(keys.JOB_MANAGER)

    def _details(self, raw: dict) -> JobDetails:
        driver = None
        job = raw.get("job_id")
        if job:
            jrec = _decode(self._gcs.r.hgetall(keys.job(bytes.fromhex(job))))
            head_ip = self._gcs.r.hget(keys.CLUSTER, "head_ip")
            driver = DriverInfo(id=job, node_ip_address=head_ip.decode() if head_ip
                                else "", pid=jrec.get("driver_pid", ""))
        details = from_record(raw, driver)
        if self._manager_gone(details.status):
            details.message = (f"{details.message} The head's job manager is not "
                               f"running (it exited, or the head stopped): this job "
                               f"will not run or end.")
        return details

    def get_job_info(self, job_id: str) -> JobDetails:
        """The job's details (status, message, times, metadata, ...)."""
        return self._details(self._record(self._submission_id(job_id)))

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def list_jobs(self) -> List[JobDetails]:
        """Every job submitted to the cluster (oldest first)."""
        r = self._gcs.r
        sids = [s.decode() for s in r.zrange(keys.SUBMISSIONS, 0, -1)]
        p = r.pipeline(transaction=False)
        for sid in sids:
            p.hgetall(keys.submission(sid))
        return [self._details(_decode(raw)) for raw in p.execute() if raw]

    def _log_entries(self, sid: str, after: str = "-", block_ms=None):
        """[(entry id, text, offset)] of the job's output after entry `after`."""
        r = self._gcs.r
        key = keys.submission_logs(sid)
        if block_ms is None:
            rows = r.xrange(key, after, "+")
            if rows and after != "-" and rows[0][0].decode() == after:
                rows = rows[1:]       # (XRANGE's start is inclusive)
        else:
            got = r.xread({key: "0-0" if after == "-" else after}, block=block_ms)
            rows = got[0][1] if got else []
        return [(eid.decode(), f[b"d"].decode(errors="replace"), int(f[b"o"]))
                for eid, f in rows]

    def get_job_logs(self, job_id: str) -> str:
        """All the output of the job's entrypoint so far (stdout and stderr)."""
        sid = self._submission_id(job_id)
        entries = self._log_entries(sid)
        text = "".join(t for _, t, _ in entries)
        if entries and entries[0][2] > 0:
            path = self._record(sid).get("log_path", "the job's log file")
            text = (f"[beamlet: the first {entries[0][2]} bytes of this job's output "
                    f"are only in {path} on the head node]\n") + text
        return text

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it comes, chunk by chunk, until the job ends."""
        it = self.iter_job_logs(job_id)
        done = object()
        while True:
            chunk = await asyncio.to_thread(next, it, done)
            if chunk is done:
                return
            yield chunk

    def iter_job_logs(self, job_id: str) -> Iterator[str]:
        """(beamlet) tail_job_logs as a plain iterator: the job's output as it
        comes until the job ends (each wait for more is at most 0.5 s, so a
        Ctrl-C in the caller's thread is seen at once)."""
        sid = self._submission_id(job_id)
        last = "-"
        while True:
            entries = self._log_entries(sid, last, 500)
            for eid, text, _ in entries:
                last = eid
                yield text
            if entries:
                continue
            status = JobStatus(self._record(sid).get("status", "PENDING"))
            if status.is_terminal():
                # the manager stores all of the output before the final status
                for eid, text, _ in self._log_entries(sid, last):
                    yield text
                return
            if self._manager_gone(status):
                raise RuntimeError(
                    f"Job {sid} is {status} but the head's job manager is not running "
                    f"(it exited, or the head stopped): the job will not end; see "
                    f"logs/job_manager.err in the head's session directory.")

    # ---- stopping, deleting
    def stop_job(self, job_id: str) -> bool:
        """Ask the job to stop (SIGTERM, then SIGKILL after a grace period);
        True if it had not ended yet."""
        sid = self._submission_id(job_id)
        status = JobStatus(self._record(sid).get("status", "PENDING"))
        if status.is_terminal():
            return False
        p = self._gcs.r.pipeline()
        p.hset(keys.submission(sid), "stop_requested", "1")
        p.rpush(keys.JOB_MANAGER_REQUESTS, f"stop {sid}")
        p.execute()
        return True

    def delete_job(self, job_id: str) -> bool:
        """Forget a job that ended (its record and logs in the GCS; its log file
        stays on the head)."""
        sid = self._submission_id(job_id)
        status = JobStatus(self._record(sid).get("status", "PENDING"))
        if not status.is_terminal():
            raise RuntimeError(f"Attempted to delete job '{sid}', but it is in a "
                               f"non-terminal state {status}.")
        p = self._gcs.r.pipeline()
        p.delete(keys.submission(sid), keys.submission_logs(sid))
        p.zrem(keys.SUBMISSIONS, sid)
        p.execute()
        return True
