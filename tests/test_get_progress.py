"""The optional progress line of a long get() on many refs: get(progress=True),
BEAMLET_GET_PROGRESS=1, off by default."""
import io
import os
import subprocess
import sys

import pytest

import beamlet as ray
from beamlet._private import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_line_and_when_it_is_drawn():
    assert progress.line(0, 4, 0.0).startswith("get: 0/4 ready [....")
    assert progress.line(4, 4, 2.5) == f"get: 4/4 ready [{'#' * 24}] 100%  2.5 s"
    term = Terminal()
    bar = progress.ProgressLine(10, term, started=100.0, delay_s=1.0)
    bar.update(3, 100.5)                 # before the delay: nothing
    assert term.getvalue() == ""
    bar.update(3, 101.0)
    bar.update(4, 101.01)                # too soon after the last draw
    bar.update(9, 101.2)
    bar.finish(10, 101.3)
    out = term.getvalue()
    assert out.count("\r") == 3 and out.endswith("\n")
    assert "3/10" in out and "4/10" not in out and "9/10" in out and "10/10" in out
    log = io.StringIO()                  # not a terminal: few lines, one per draw
    bar = progress.ProgressLine(10, log, started=0.0)
    bar.update(1, 0.1)
    bar.update(2, 0.2)
    bar.finish(10, 0.3)
    assert log.getvalue().splitlines() == [progress.line(1, 10, 0.1),
                                           progress.line(10, 10, 0.3)]
    quiet = io.StringIO()                # a get quicker than the delay draws nothing
    progress.ProgressLine(10, quiet, started=0.0, delay_s=1.0).finish(10, 0.5)
    assert quiet.getvalue() == ""


SCRIPT = """
import sys, time, beamlet as ray
ray.init(num_cpus=2, include_dashboard=False)
@ray.remote
def f(i):
    time.sleep(0.02)
    return i
for kw in ({}, {"progress": True}, {"progress": False}):
    print("GET", kw, file=sys.stderr, flush=True)
    assert sum(ray.get([f.remote(i) for i in range(30)], **kw)) == 435
ray.shutdown()
"""


def _lines(**env):
    """The progress lines of the script's three gets: default, progress=True,
    progress=False."""
    p = subprocess.run([sys.executable, "-c", SCRIPT], text=True, capture_output=True,
                       timeout=120, env={**os.environ, **env})
    assert p.returncode == 0, p.stderr
    out = []
    for line in p.stderr.splitlines():
        if line.startswith("GET "):
            out.append([])
        elif line.startswith("get: "):
            out[-1].append(line)
    assert len(out) == 3
    return out


def test_get_draws_it_when_asked_and_only_then():
    default, asked, refused = _lines()
    assert default == [] and refused == []                  # off by default
    assert asked and asked[-1].startswith("get: 30/30 ready")
    default, asked, refused = _lines(BEAMLET_GET_PROGRESS="1",
                                     BEAMLET_GET_PROGRESS_MIN_REFS="10",
                                     BEAMLET_GET_PROGRESS_DELAY_S="0")
    assert default and default[-1].startswith("get: 30/30 ready")
    assert asked and refused == []


def test_progress_get_keeps_gets_contract(ray_start):
    @ray.remote
    def slow():
        import time
        time.sleep(30)

    @ray.remote
    def boom():
        raise KeyError("k")

    @ray.remote
    def one():
        return 1

    done = one.remote()
    assert ray.get(done) == 1
    with pytest.raises(ray.exceptions.GetTimeoutError, match="after 0.3 s: 1 of .*slow"):
        ray.get([done, slow.remote()], timeout=0.3, progress=True)
    with pytest.raises(KeyError):
        ray.get([one.remote(), boom.remote()], progress=True)
    r = one.remote()
    assert ray.get([r, r, one.remote()], progress=True) == [1, 1, 1]
