"""Job submission against a real `beamlet start --head` cluster: the `beamlet job`
CLI (submit with a working dir, output streamed back, --no-wait, logs --follow,
Ctrl-C stops following but not the job, stop, list, delete) and the Python
JobSubmissionClient with Ray's method names."""
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

import beamlet
from beamlet._private import process
from beamlet.job_submission import JobStatus, JobSubmissionClient

from clitools import MiB, cli_env, run, session_infos, start_head  # noqa: F401
from conftest import wait_for


@pytest.fixture(scope="module")
def head():
    """A head started by `beamlet start --head` (2 CPUs), shared by the module."""
    root = tempfile.mkdtemp(prefix="bljob", dir="/tmp")
    env = dict(os.environ, BEAMLET_SESSION_ROOT=root)
    for var in ("BEAMLET_ADDRESS", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(var, None)
    p = run(["start", "--head", "--port", "0", "--num-cpus", "2",
             "--object-store-memory", str(100 * MiB)], env)
    assert p.returncode == 0, p.stderr
    address = re.search(r"address:\s+(\S+)", p.stdout).group(1)
    yield {"env": env, "address": address, "root": root}
    run(["stop", "--grace-period", "5"], env)
    shutil.rmtree(root, ignore_errors=True)


def job(head, sub, *args, timeout=120):
    return run(["job", sub, "--address", head["address"], *args], head["env"],
               timeout=timeout)


def client(head):
    """A client given the token explicitly (as one on another machine would be)."""
    with open(os.path.join(head["root"], "session_latest", "cluster.json")) as f:
        token = json.load(f)["password"]
    return JobSubmissionClient(head["address"], _redis_password=token)


def wait_status(c, sid, statuses, timeout=60):
    return wait_for(lambda: c.get_job_status(sid) in statuses and c.get_job_status(sid),
                    timeout=timeout, interval=0.1, msg=f"job {sid} to reach {statuses}")


SCRIPT = textwrap.dedent("""
    import os
    import beamlet
    from jobhelper import greet          # from the uploaded working dir
    beamlet.init()

    @beamlet.remote
    def task(x):
        from jobhelper import greet
        return greet(x), os.getcwd(), os.environ.get("JOB_VAR")

    print("driver:", greet("driver"), os.environ.get("JOB_VAR"), flush=True)
    got = beamlet.get([task.remote(i) for i in range(2)])
    print("tasks:", [g[0] for g in got], flush=True)
    print("same dir:", all(g[1] == os.getcwd() for g in got), "env:", got[0][2])
""")


def _project(tmp_path):
    wd = tmp_path / "proj"
    wd.mkdir()
    (wd / "jobhelper.py").write_text("def greet(x):\n    return f'hello {x}'\n")
    (wd / "script.py").write_text(SCRIPT)
    (wd / "big.bin").write_bytes(b"x" * 1000)
    return wd


def test_submit_runs_in_the_working_dir_and_streams_output(head, tmp_path):
    wd = _project(tmp_path)
    p = job(head, "submit", "--working-dir", str(wd),
            "--runtime-env-json", json.dumps({"env_vars": {"JOB_VAR": "v1"},
                                              "excludes": ["*.bin"]}),
            "--", "python", "script.py")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "driver: hello driver v1" in p.stdout
    assert "tasks: ['hello 0', 'hello 1']" in p.stdout
    assert "same dir: True env: v1" in p.stdout        # tasks inherit the job's env
    sid = re.search(r"Job '(\S+)' submitted", p.stderr).group(1)
    assert f"Job '{sid}' succeeded" in p.stderr
    st = job(head, "status", sid)
    assert st.returncode == 0 and "succeeded" in st.stderr, st.stderr
    logs = job(head, "logs", sid)
    assert "tasks: ['hello 0', 'hello 1']" in logs.stdout
    listed = json.loads(job(head, "list", "--json").stdout)
    mine = [j for j in listed if j["submission_id"] == sid]
    assert mine and mine[0]["status"] == "SUCCEEDED" and \
        mine[0]["entrypoint"] == "python script.py"
    assert mine[0]["runtime_env"]["env_vars"] == {"JOB_VAR": "v1"}
    assert mine[0]["runtime_env"]["working_dir"].startswith("gcs://_beamlet_pkg_")
    # the log file on the head holds the same output
    session = os.path.realpath(os.path.join(head["root"], "session_latest"))
    with open(os.path.join(session, "logs", f"job-driver-{sid}.log")) as f:
        assert "driver: hello driver v1" in f.read()


def test_a_failing_job_exits_1_and_says_why(head):
    p = job(head, "submit", "--", "python", "-c",
            "import sys; print('about to fail'); sys.exit(3)")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "about to fail" in p.stdout
    assert "failed" in p.stderr and "exited with code 3" in p.stderr


def test_no_wait_returns_the_id_and_the_job_outlives_its_client(head):
    p = job(head, "submit", "--no-wait", "--submission-id", "nowait-1", "--",
            "python -c \"import time; print('one', flush=True); time.sleep(1); "
            "print('two')\"")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "nowait-1"              # only the id on stdout
    f = job(head, "logs", "--follow", "nowait-1")      # the submitter has exited
    assert f.returncode == 0 and f.stdout.split() == ["one", "two"], f.stdout
    again = job(head, "submit", "--no-wait", "--submission-id", "nowait-1", "--", "true")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_ctrl_c_stops_following_but_not_the_job(head, tmp_path):
    go = tmp_path / "go"            # the job finishes only once this exists
    cmd = [sys.executable, "-m", "beamlet.cli", "job", "submit", "--address",
           head["address"], "--submission-id", "ctrlc-1", "--", "python", "-c",
           f"import os, time; print('started', flush=True)\n"
           f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
           f"print('finished')"]
    # as from a terminal: SIGINT not ignored (a test run started in the background
    # of a non-interactive shell ignores it, and its children inherit that)
    proc = subprocess.Popen(cmd, env=head["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "keeps running" in err and "finished" not in out
    c = client(head)
    assert c.get_job_status("ctrlc-1") == JobStatus.RUNNING
    go.touch()
    assert wait_status(c, "ctrlc-1", {JobStatus.SUCCEEDED}) == JobStatus.SUCCEEDED
    assert c.get_job_logs("ctrlc-1").split() == ["started", "finished"]


def test_stop_ends_the_whole_entrypoint(head, tmp_path):
    pidfile = tmp_path / "pid"
    p = job(head, "submit", "--no-wait", "--", "sh", "-c",
            f"sleep 60 & echo $! > {pidfile}; wait")
    sid = p.stdout.strip()
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=60,
             msg="the job to start its child")
    child = int(pidfile.read_text())
    s = job(head, "stop", sid)
    assert s.returncode == 0 and "was stopped" in s.stderr, s.stderr
    assert client(head).get_job_status(sid) == JobStatus.STOPPED
    wait_for(lambda: not process.pid_alive(child), timeout=10,
             msg="the job's child to end")


def test_python_client_with_rays_methods(head):
    c = client(head)
    sid = c.submit_job(
        entrypoint="python -c \"import os, beamlet; beamlet.init(); "
                   "print('id', beamlet.get_runtime_context().get_job_id()); "
                   "print('var', os.environ['CLIENT_VAR'])\"",
        runtime_env={"env_vars": {"CLIENT_VAR": "from-client"}},
        metadata={"team": "infra"}, submission_id="client-1")
    assert sid == "client-1"
    with pytest.raises(RuntimeError, match="already exists"):
        c.submit_job(entrypoint="true", submission_id="client-1")

    async def tail():
        return "".join([chunk async for chunk in c.tail_job_logs(sid)])
    text = asyncio.run(tail())
    assert "var from-client" in text
    info = c.get_job_info(sid)
    assert info.status == JobStatus.SUCCEEDED and info.status.is_terminal()
    assert info.metadata == {"team": "infra"} and info.driver_exit_code == 0
    assert info.runtime_env == {"env_vars": {"CLIENT_VAR": "from-client"}}
    assert info.start_time <= info.end_time and info.submission_id == sid
    driver_job = re.search(r"id (\w+)", text).group(1)
    assert info.job_id == driver_job and info.driver_info.id == driver_job
    assert c.get_job_status(driver_job) == JobStatus.SUCCEEDED   # by its job id too
    assert sid in [j.submission_id for j in c.list_jobs()]
    assert c.stop_job(sid) is False                   # it ended already
    assert c.delete_job(sid) is True
    with pytest.raises(RuntimeError, match="does not exist"):
        c.get_job_info(sid)
    # a deleted job's id may be used again
    assert c.submit_job(entrypoint="true", submission_id=sid) == sid
    assert wait_status(c, sid, {JobStatus.SUCCEEDED}) == JobStatus.SUCCEEDED
    long = c.submit_job(entrypoint="sleep 30")
    wait_status(c, long, {JobStatus.RUNNING})
    with pytest.raises(RuntimeError, match="non-terminal"):
        c.delete_job(long)
    assert c.stop_job(long) is True
    assert wait_status(c, long, {JobStatus.STOPPED}) == JobStatus.STOPPED
    with pytest.raises(ValueError, match="not supported"):
        c.submit_job(entrypoint="true", runtime_env={"pip": ["requests"]})
    c.close()


def test_entrypoint_resources_are_reserved_on_the_head(head):
    c = client(head)
    sid = c.submit_job(entrypoint="python -c \"import beamlet; beamlet.init(); "
                       "print('cpu', beamlet.available_resources().get('CPU', 0))\"",
                       entrypoint_num_cpus=1)
    assert wait_status(c, sid, {JobStatus.SUCCEEDED, JobStatus.FAILED}) == \
        JobStatus.SUCCEEDED, c.get_job_info(sid).message
    assert "cpu 1.0" in c.get_job_logs(sid)           # 2 CPUs, 1 held for it
    big = c.submit_job(entrypoint="echo never", entrypoint_num_cpus=8)
    info = c.get_job_info(big)
    assert info.status == JobStatus.PENDING and "waiting for resources" in info.message
    assert c.stop_job(big)
    assert wait_status(c, big, {JobStatus.STOPPED}) == JobStatus.STOPPED
    assert "never" not in c.get_job_logs(big)
    c.close()


def test_a_wrong_token_or_a_cluster_without_job_manager_is_said(head):
    bad = job(head, "list", "--redis-password", "not-the-token")
    assert bad.returncode == 1 and "rejected the cluster token" in bad.stderr
    with pytest.raises(PermissionError, match="token"):
        JobSubmissionClient(head["address"], _redis_password="not-the-token")
    info = beamlet.init(num_cpus=1)          # init() runs no job manager
    try:
        c = JobSubmissionClient(info["address"])
        with pytest.raises(RuntimeError, match="runs no job manager"):
            c.submit_job(entrypoint="true")
        c.close()
    finally:
        beamlet.shutdown()


def test_every_job_subcommand_and_option_has_help():
    from beamlet.cli import build_parser
    parser = build_parser()
    job_parser = next(a for a in parser._actions if a.dest == "command").choices["job"]
    subs = next(a for a in job_parser._actions if a.dest == "job_command").choices
    assert set(subs) == {"submit", "status", "logs", "stop", "list", "delete"}
    for name, sp in subs.items():
        for action in sp._actions:
            assert action.help and action.help.strip(), (name, action.option_strings)


def test_a_job_manager_that_died_is_said_not_waited_for(cli_env):
    """Its liveness key expires: following a job it ran fails saying so."""
    env = dict(cli_env, BEAMLET_JOB_MANAGER_TTL_S="4")
    address, _ = start_head(env)
    p = run(["job", "submit", "--address", address, "--no-wait", "--", "sleep 60"], env)
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()
    info, = session_infos(env["BEAMLET_SESSION_ROOT"])
    manager = info["pids"][-1]
    with open(f"/proc/{manager}/cmdline", "rb") as f:
        assert b"job_submission.manager" in f.read()
    os.kill(manager, signal.SIGKILL)
    f = run(["job", "logs", "--address", address, "--follow", sid], env, timeout=60)
    assert f.returncode == 1 and "job manager is not running" in f.stderr, f.stderr
    st = run(["job", "status", "--address", address, sid], env)
    assert "will not run or end" in st.stderr

