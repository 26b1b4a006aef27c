"""The dashboard in a real browser: headless Chromium (Debian's `chromium`
package; `.ci/run` installs it), driven over the DevTools protocol (tests/cdp.py),
opens the token link of a live cluster running real tasks and actors (which logs
it in with a cookie), then every page without the token; each page's script must
have refreshed it from the JSON endpoints, and the rendered DOM must show the
cluster's nodes, tasks and actors.  Without a browser the test is skipped, saying
why.

With BEAMLET_DASHBOARD_SCREENSHOTS=1 it also writes docs/img/dashboard-<page>.png
(the screenshots of docs/observability.md)."""
import os
import re
import shutil
import tempfile
import time

import pytest

import beamlet as ray
from beamlet import connection
from beamlet.util import state

from cdp import Browser, find_browser
from conftest import wait_for

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on PATH, so the dashboard's browser test "
    "cannot run: install it (Debian: apt-get install -y chromium; .ci/run does)")
DOCS_IMG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "img")
SCREENSHOTS = os.environ.get("BEAMLET_DASHBOARD_SCREENSHOTS") == "1"
# the page's script refreshed it from the JSON endpoints at least once
REFRESHED = "document.body.dataset.live === '1'"


@ray.remote
def dash_square(x):
    return x * x


@ray.remote
def dash_wait():
    time.sleep(120)


@ray.remote
class DashCounter:
    def incr(self):
        return os.getpid()


def test_each_page_in_a_real_browser(ray_start):
    assert ray.get([dash_square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    counter = DashCounter.options(name="dash_browser_counter").remote()
    actor_pid = ray.get(counter.incr.remote())
    waiting = dash_wait.remote()
    infeasible = dash_square.options(num_cpus=64).remote(1)
    big = ray.put(b"x" * 200_000)
    gcs = connection.gcs()
    addr = gcs.r.hget("beamlet:cluster", "dashboard_address").decode()
    token = gcs.password
    node = ray.get_runtime_context().get_node_id()
    job = ray.get_runtime_context().get_job_id()
    actor_id = counter._actor_id.hex()
    # the finished tasks are recorded behind: wait until the GCS has them
    wait_for(lambda: len(state.list_tasks(filters=[("state", "=", "FINISHED")],
                                          limit=100)) >= 5, timeout=30,
             msg="the finished tasks recorded")
    task_ids = [t.task_id for t in state.list_tasks(limit=100)
                if t.name.endswith("dash_square") and t.state == "FINISHED"]
    assert len(task_ids) == 4

    expect = {
        "": [node, "ALIVE", "object_store_memory"],
        "jobs": [job, "RUNNING"],
        "tasks": ["dash_square", "dash_wait", *task_ids,
                  infeasible.task_id().hex(), "64 CPU", "RUNNING"],
        "actors": ["DashCounter", "dash_browser_counter", actor_id, str(actor_pid),
                   "ALIVE"],
        "objects": [big.hex(), "arena"],
        "logs": ["Log files"],
        "timeline": ["dash_square", "timeline.json", "<rect"],
    }
    profile = tempfile.mkdtemp(prefix="bl-chromium-")
    browser = Browser(BROWSER, profile)
    try:
        tab = browser.new_tab()
        # the link init() prints: it logs the browser in and drops the token
        landed = tab.open(f"http://{addr}/tasks?token={token}", REFRESHED)
        assert landed == f"http://{addr}/tasks"
        assert tab.evaluate("document.cookie") == ""          # HttpOnly
        for page, wanted in expect.items():
            tab.open(f"http://{addr}/{page}", REFRESHED)      # the cookie only
            dom = tab.dom()
            assert re.search(r'id="error"[^>]*hidden', dom), (page, dom[:3000])
            for w in wanted:
                assert w in dom, (page, w)
            assert token not in dom, page
            if SCREENSHOTS:
                os.makedirs(DOCS_IMG, exist_ok=True)
                out = os.path.join(DOCS_IMG, f"dashboard-{page or 'cluster'}.png")
                tab.screenshot(out)
                assert os.path.getsize(out) > 10_000, out
        # the tasks page's filter form, submitted as a person would
        tab.open(f"http://{addr}/tasks")
        tab.evaluate("document.querySelector('#filters select').value = 'RUNNING';"
                     "document.getElementById('filters').submit(); true")
        wait_for(lambda: "state=RUNNING" in (tab.poll("location.href") or "") and
                 tab.poll(REFRESHED), timeout=30, msg="the filtered page")
        rows = tab.evaluate("Array.from(document.querySelectorAll("
                            "'#t-tasks tbody td.c-state')).map(td => td.textContent)")
        assert rows and set(rows) == {"RUNNING"}, rows
        # a browser that has not the token gets the login form and nothing else
        fresh = browser.new_tab(isolated=True)
        fresh.open(f"http://{addr}/tasks", "document.getElementById('token')")
        dom = fresh.dom()
        assert "dash_square" not in dom and node not in dom
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
    del waiting
