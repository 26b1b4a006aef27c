"""The dashboard's options: init()'s link and include_dashboard/dashboard_port/
dashboard_host, the default port moving on when busy, and `beamlet start --head`'s
flags (each test starts clusters of its own)."""
import json
import socket
import subprocess
import sys

import pytest

import beamlet as ray
from beamlet import connection

from clitools import cli_env, run, start_head  # noqa: F401
from test_dashboard import bearer, request


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_init_prints_the_link_and_the_dashboard_options():
    code = ("import beamlet, urllib.request\n"
            "info = beamlet.init(num_cpus=1)\n"
            "print('URL', info['dashboard_url'])\n"
            "beamlet.shutdown()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    printed = p.stdout.split("URL ", 1)[1].strip()
    assert f"View the dashboard at http://{printed}/?token=" in p.stderr
    # off
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        assert ray.init(ignore_reinit_error=True)["dashboard_url"] == ""
    finally:
        ray.shutdown()
    # an explicit port is used; a busy one is refused, naming it
    port = _free_port()
    info = ray.init(num_cpus=1, dashboard_port=port)
    try:
        assert info["dashboard_url"] == f"127.0.0.1:{port}"
        assert request(info["dashboard_url"], "/api/cluster",
                       bearer(connection.gcs().password))[0] == 200
    finally:
        ray.shutdown()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    try:
        with pytest.raises(RuntimeError, match=f"port {busy}.*already in use"):
            ray.init(num_cpus=1, dashboard_port=busy)
        assert not ray.is_initialized()
    finally:
        blocker.close()
    with pytest.raises(ValueError, match="dashboard_host"):
        ray.init(num_cpus=1, dashboard_host="192.0.2.77")
    with pytest.raises(TypeError, match="dashboard_port"):
        ray.init(num_cpus=1, dashboard_port="8265")


def test_the_default_port_moves_on_when_busy():
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 8265))
        blocker.listen()
    except OSError:
        pass                # busy already (another cluster here): just as good
    try:
        info = ray.init(num_cpus=1)
        try:
            assert info["dashboard_url"].startswith("127.0.0.1:")
            assert info["dashboard_url"] != "127.0.0.1:8265"
        finally:
            ray.shutdown()
    finally:
        blocker.close()


def test_beamlet_start_head_serves_the_dashboard(cli_env):
    port = _free_port()
    address, out = start_head(cli_env, "--dashboard-port", str(port))
    line = next(x for x in out.splitlines() if x.strip().startswith("dashboard:"))
    url = line.split("dashboard:", 1)[1].strip()
    assert url.startswith(f"http://127.0.0.1:{port}/?token=")
    token = url.split("token=", 1)[1]
    status, _, body = request(f"127.0.0.1:{port}", "/api/cluster", bearer(token))
    assert status == 200 and json.loads(body)["nodes"][0]["is_head_node"]
    assert request(f"127.0.0.1:{port}", "/api/cluster")[0] == 401
    p = run(["status", "--address", address], cli_env)
    assert f"Dashboard: http://127.0.0.1:{port}/" in p.stdout and token not in p.stdout
    p = run(["start", "--address", address, "--dashboard-port", "9999"], cli_env)
    assert p.returncode == 1 and "for a head node" in p.stderr
    run(["stop"], cli_env)
    # turned off
    _, out = start_head(cli_env, "--include-dashboard", "false")
    assert "dashboard:" not in out
    p = run(["start", "--head", "--port", "0", "--include-dashboard", "maybe"], cli_env)
    assert p.returncode != 0 and "true or false" in p.stderr
