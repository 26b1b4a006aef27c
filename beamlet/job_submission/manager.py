"""The job manager: the head node's process that runs the jobs of `beamlet job
submit` / JobSubmissionClient.submit_job (started by `beamlet start --head`).

    client ─RPUSH "submit <id>" / "stop <id>"─▶ beamlet:job_manager:requests
                                                        │ BLPOP
                                                        ▼
    beamlet:submission:<id>  ◀──status────────── JobManager ── one thread per job (Job.run):
    beamlet:submission_logs:<id> ◀──output───┐     1. reserve entrypoint_* resources on the
    <session>/logs/job-driver-<id>.log ◀─────┤        head (an actor holding them), PENDING
                                             │     2. set the job's runtime_env up on the head
                                             │        (its working_dir as the cwd, PYTHONPATH)
                                             │     3. run the entrypoint (a shell command, its
                                             └──── own process group), RUNNING; its driver
                                                      joins the cluster (BEAMLET_ADDRESS)
                                                   4. SUCCEEDED / FAILED (exit code) / STOPPED

Owns: the entrypoint processes, their log files, the actors reserving their
resources, and the liveness key beamlet:job_manager (renewed every
JOB_MANAGER_TTL_S / 3: a client finding none says there is no job manager).
Only this process moves a job's status (common.TRANSITIONS); clients create
records PENDING and ask for stops.  Jobs run as long as this process: they do
not depend on the client that submitted them.  Its GCS connection is
authenticated with the cluster token (handed over through a pipe); it listens
on nothing.
"""
import argparse
import collections
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from .._private import config, process
from ..gcs import keys
from ..gcs.client import GcsClient
from ..runtime_env import resolve, setup
from .common import (ENTRYPOINT_FAILED, RUNTIME_ENV_FAILED, START_FAILED, JobStatus,
                     check_transition, to_record)

# How much of the end of its output a failed job's message quotes (Ray's).
_TAIL_CHARS = 20_000
# After the entrypoint exits, how long its output pipe may stay open (a process
# it left in the background) before the job ends anyway.
_DRAIN_S = 1.0


def _log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class Job:
    """One submitted job, run by its own thread."""

    def __init__(self, manager, sid: str):
        self.m = manager
        self.sid = sid
        self.key = keys.submission(sid)
        self.stop = threading.Event()
        self.status = JobStatus.PENDING
        self.proc = None
        self.log_path = os.path.join(manager.session_dir, "logs",
                                     f"job-driver-{sid}.log")
        self.kept = collections.deque()    # (entry id, size) of output in the GCS
        self.kept_bytes = 0
        self.thread = threading.Thread(target=self.run, name=f"job-{sid}", daemon=True)

    # ---- status
    def move(self, new: JobStatus, **fields) -> None:
        check_transition(self.status, new, self.sid)
        self.status = new
        rec = to_record(status=new, **fields)
        if new.is_terminal():
            rec["end_time"] = str(int(time.time() * 1000))
        rec.setdefault("message", "")
        self.m.r.hset(self.key, mapping=rec)
        _log(f"job {self.sid}: {new}", fields.get("message", "") or "")

    # ---- the job
    def run(self):
        reservation = None
        try:
            raw = self.m.r.hgetall(self.key)
            rec = {k.decode(): v.decode() for k, v in raw.items()}
            if not rec.get("entrypoint"):
                return     # deleted meanwhile
            if rec.get("stop_requested"):
                self.stop.set()
            reservation = self.reserve(rec)
            if self.stop.is_set():
                self.move(JobStatus.STOPPED, message="Job was intentionally stopped.")
                return
            env = json.loads(rec.get("runtime_env") or "{}")
            try:
                cwd, mods = setup.prepare(env, self.m.session_dir, self.m.gcs.get_package)
            except Exception as e:
                self.move(JobStatus.FAILED, error_type=RUNTIME_ENV_FAILED,
                          message=f"Failed to set up the job's runtime environment: "
                          f"{e}")
                return
            self.proc = self.spawn(rec, env, cwd, mods)
            self.move(JobStatus.RUNNING, message="Job is currently running.",
                      driver_node_id=self.m.node_id, log_path=self.log_path)
            self.follow()
            code = self.proc.wait()
            if self.stop.is_set():
                self.move(JobStatus.STOPPED, message="Job was intentionally stopped.",
                          driver_exit_code=code)
            elif code == 0:
                self.move(JobStatus.SUCCEEDED, message="Job finished successfully.",
                          driver_exit_code=code)
            else:
                self.move(JobStatus.FAILED, error_type=ENTRYPOINT_FAILED,
                          driver_exit_code=code, message=self.failure_message(code))
        except Exception as e:
            _log(f"job {self.sid} failed in the job manager: {type(e).__name__}: {e}")
            try:
                if not self.status.is_terminal():
                    self.move(JobStatus.FAILED, error_type=START_FAILED,
                              message=f"The job manager could not run the job: "
                              f"{type(e).__name__}: {e}")
            except Exception:
                pass
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.kill(signal.SIGKILL)
            if reservation is not None:
                self.m.release(reservation)
            self.m.finished(self)

    def reserve(self, rec):
        """An actor on the head holding the entrypoint's resources, once they
        are free (None if it asked for none, or it was stopped meanwhile)."""
        need = {"num_cpus": float(rec.get("entrypoint_num_cpus") or 0),
                "num_gpus": float(rec.get("entrypoint_num_gpus") or 0),
                "memory": float(rec.get("entrypoint_memory") or 0),
                "resources": json.loads(rec.get("entrypoint_resources") or "{}")}
        if not any(need[k] for k in ("num_cpus", "num_gpus", "memory")) and \
                not any(need["resources"].values()):
            return None
        return self.m.reserve(need, self.stop)

    def spawn(self, rec, env, cwd, mods):
        penv = dict(os.environ)
        penv.update(resolve.expand_env_vars(env.get("env_vars") or {}, os.environ))
        # its driver joins this cluster, in the job's environment (init merges it)
        penv["BEAMLET_ADDRESS"] = penv["RAY_ADDRESS"] = self.m.gcs_address
        penv["BEAMLET_SESSION_ROOT"] = self.m.session_root
        penv["BEAMLET_SUBMISSION_ID"] = self.sid
        penv[resolve.JOB_CONFIG_ENV] = json.dumps({"runtime_env": env,
                                                   "submission_id": self.sid})
        penv["PYTHONUNBUFFERED"] = "1"     # its output streams as it is printed
        if cwd or mods:
            penv["PYTHONPATH"] = setup.python_path(cwd, mods, penv.get("PYTHONPATH", ""))
        # `python` is the cluster's interpreter (the one beamlet is installed in)
        penv["PATH"] = os.path.dirname(sys.executable) + os.pathsep + penv.get("PATH", "")
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        return subprocess.Popen(
            rec["entrypoint"], shell=True, cwd=cwd or os.getcwd(), env=penv,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,      # its own process group: stopped as a whole
            preexec_fn=process.set_pdeathsig)

    def follow(self):
        """Copy the entrypoint's output to the log file and the GCS until it ends;
        stop it (SIGTERM, SIGKILL after JOB_STOP_WAIT_S) if asked."""
        fd = self.proc.stdout.fileno()
        offset = 0
        kill_at = None
        exited_at = None
        with open(self.log_path, "ab") as logf:
            while True:
                now = time.monotonic()
                if self.stop.is_set() and kill_at is None:
                    self.kill(signal.SIGTERM)
                    kill_at = now + config.JOB_STOP_WAIT_S
                elif kill_at is not None and now > kill_at:
                    self.kill(signal.SIGKILL)
                    kill_at = float("inf")
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = now
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    logf.write(data)
                    logf.flush()
                    self.append(data, offset)
                    offset += len(data)
                elif exited_at is not None and now - exited_at > _DRAIN_S:
                    break      # something it started keeps the pipe open
        self.proc.stdout.close()

    def append(self, data: bytes, offset: int) -> None:
        """Add output to the job's GCS stream, dropping its oldest part past
        JOB_LOG_GCS_BYTES (the log file keeps all of it)."""
        r = self.m.r
        stream = keys.submission_logs(self.sid)
        eid = r.xadd(stream, {"d": data, "o": offset})
        self.kept.append((eid, len(data)))
        self.kept_bytes += len(data)
        while self.kept_bytes > config.JOB_LOG_GCS_BYTES and len(self.kept) > 1:
            old, size = self.kept.popleft()
            r.xdel(stream, old)
            self.kept_bytes -= size

    def kill(self, sig) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except OSError:
            pass

    def failure_message(self, code: int) -> str:
        how = process.describe_exit(code)
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _TAIL_CHARS))
                tail = f.read().decode(errors="replace")
        except OSError:
            tail = ""
        return (f"Job entrypoint command failed: it {how}. Last available logs "
                f"(truncated to {_TAIL_CHARS} chars):\n{tail}")


class JobManager:
    def __init__(self, args, password):
        self.gcs = GcsClient(args.redis_host, args.redis_port, password)
        self.r = self.gcs.r
        self.gcs_address = f"{args.redis_host}:{args.redis_port}"
        self.session_dir = args.session_dir
        self.session_root = args.session_root
        self.node_id = args.node_id
        self.jobs = {}             # submission id -> Job, while it runs
        self.stopping = threading.Event()
        self.driver_lock = threading.Lock()
        self.reservation_cls = None   # the actor class holding entrypoint resources

    # ---- liveness
    def announce(self):
        info = json.dumps({"pid": os.getpid(), "node_id": self.node_id,
                           "session_dir": self.session_dir, "started_at": time.time()})
        while not self.stopping.is_set():
            try:
                self.r.set(keys.JOB_MANAGER, info,
                           px=max(100, int(config.JOB_MANAGER_TTL_S * 1000)))
            except Exception as e:
                _log("cannot renew the liveness key:", e)
            self.stopping.wait(config.JOB_MANAGER_TTL_S / 3)

    # ---- resources for entrypoints (through a driver of our own, made when needed)
    def reserve(self, need: dict, stop: threading.Event):
        import beamlet
        from beamlet.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        with self.driver_lock:
            if not beamlet.is_initialized():
                beamlet.init(address=self.gcs_address, log_to_driver=False,
                             namespace="_beamlet_job_manager",
                             _temp_dir=self.session_root)
            if self.reservation_cls is None:
                @beamlet.remote
                class EntrypointReservation:
                    """Holds a job entrypoint's resources on the head while it runs."""
                self.reservation_cls = EntrypointReservation
        actor = self.reservation_cls.options(
            num_cpus=need["num_cpus"], num_gpus=need["num_gpus"],
            memory=need["memory"] or None, resources=need["resources"] or None,
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.node_id, soft=False)
        ).remote()
        ready = actor.__ray_ready__.remote()
        while not stop.is_set() and not self.stopping.is_set():
            done, _ = beamlet.wait([ready], timeout=0.5)
            if done:
                beamlet.get(ready)       # (raises if it could not be created)
                return actor
        beamlet.kill(actor)
        return None

    def release(self, actor):
        import beamlet
        try:
            beamlet.kill(actor)
        except Exception:
            pass

    # ---- requests
    def handle(self, request: str):
        verb, _, sid = request.partition(" ")
        if verb == "submit" and sid not in self.jobs:
            # (a job that ended is no longer here: its id, once deleted, may be
            # submitted again)
            job = self.jobs[sid] = Job(self, sid)
            job.thread.start()
        elif verb == "stop":
            job = self.jobs.get(sid)
            if job is not None:
                job.stop.set()

    def finished(self, job: Job):
        """`job`'s thread ends: forget it."""
        if self.jobs.get(job.sid) is job:
            del self.jobs[job.sid]

    def run(self):
        signal.signal(signal.SIGTERM, lambda *a: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *a: self.stopping.set())
        threading.Thread(target=self.announce, name="announce", daemon=True).start()
        _log(f"job manager {os.getpid()} serving {self.gcs_address}")
        failures = 0
        while not self.stopping.is_set():
            try:
                item = self.r.blpop(keys.JOB_MANAGER_REQUESTS, timeout=1)
                failures = 0
            except Exception as e:
                failures += 1
                if failures >= 5:
                    _log("the GCS does not answer; stopping:", e)
                    break
                time.sleep(0.5)
                continue
            if item:
                self.handle(item[1].decode())
        self.shutdown()

    def shutdown(self):
        """Stop every job still running (the head node is stopping)."""
        self.stopping.set()
        running = [j for j in list(self.jobs.values()) if j.thread.is_alive()]
        for j in running:
            j.stop.set()
        deadline = time.monotonic() + config.JOB_STOP_WAIT_S + 1
        for j in running:
            j.thread.join(max(0.0, deadline - time.monotonic()))
        try:
            self.r.delete(keys.JOB_MANAGER)
        except Exception:
            pass
        import beamlet
        if beamlet.is_initialized():
            beamlet.shutdown()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="beamlet-job-manager",
                                 description="beamlet's job manager (started by "
                                 "`beamlet start --head`)")
    ap.add_argument("--redis-host", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--session-root", required=True)
    ap.add_argument("--node-id", required=True)
    ap.add_argument(process.SECRET_FD_FLAG, dest="redis_password_fd", type=int,
                    required=True, help="fd of a pipe holding the cluster token")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    JobManager(args, process.read_secret(args.redis_password_fd)).run()


if __name__ == "__main__":
    main()
