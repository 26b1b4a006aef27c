"""init()'s object_spilling_directory, _temp_dir and _system_config are applied or
refused (issue 16): spill files go where the user asks (init option, `beamlet
start` flag, BEAMLET_OBJECT_SPILLING_DIRECTORY), sessions live under _temp_dir,
and _system_config keys reach the node's processes or are rejected by name."""
import os
import tempfile

import numpy as np
import pytest

import beamlet
from beamlet.worker import core_worker

from clitools import MiB, cli_env, run, run_python, session_infos  # noqa: F401
from conftest import wait_for


def _memory():
    return core_worker.global_worker.call("memory")


def _fill_store_and_check_spills(where):
    """Put 3x the (100 MiB) store; every spilled object's file is under `where`."""
    refs = [beamlet.put(np.full(4 * MiB, i, dtype=np.int64)) for i in range(10)]
    spilled = [o for o in _memory()["objects"] if o["where"] == "spilled"]
    assert spilled
    for o in spilled:
        assert o["spill_path"].startswith(where + os.sep), o["spill_path"]
        assert os.path.exists(o["spill_path"])
    for i, r in enumerate(refs):         # and they come back from there
        assert beamlet.get(r)[0] == i
    return refs


def test_object_spilling_directory(tmp_path):
    user_dir = tmp_path / "spill"
    user_dir.mkdir()
    (user_dir / "mine.txt").write_text("the user's own file")
    info = beamlet.init(num_cpus=1, object_store_memory=100 * MiB,
                        object_spilling_directory=str(user_dir))
    try:
        node_dirs = [d for d in os.listdir(user_dir) if d.startswith("beamlet_spill_")]
        assert len(node_dirs) == 1
        refs = _fill_store_and_check_spills(str(user_dir / node_dirs[0]))
        assert not os.path.exists(os.path.join(info["session_dir"], "spill")) or \
            not os.listdir(os.path.join(info["session_dir"], "spill"))
        del refs
    finally:
        beamlet.shutdown()
    # the node's directory goes with it; the user's directory and files stay
    assert os.listdir(user_dir) == ["mine.txt"]


def test_spilling_directory_from_env_and_ray_system_config(tmp_path, monkeypatch):
    from beamlet._private import config
    monkeypatch.setattr(config, "OBJECT_SPILLING_DIRECTORY", str(tmp_path / "env"))
    beamlet.init(num_cpus=1, object_store_memory=100 * MiB)
    try:
        _fill_store_and_check_spills(str(tmp_path / "env"))
    finally:
        beamlet.shutdown()
    # Ray's spelling: _system_config={"object_spilling_config": json}
    import json
    spec = {"type": "filesystem", "params": {"directory_path": str(tmp_path / "ray")}}
    beamlet.init(num_cpus=1, object_store_memory=100 * MiB,
                 _system_config={"object_spilling_config": json.dumps(spec)})
    try:
        _fill_store_and_check_spills(str(tmp_path / "ray"))
    finally:
        beamlet.shutdown()
    with pytest.raises(ValueError) as ei:
        beamlet.init(num_cpus=1, _system_config={"object_spilling_config": json.dumps(
            {"type": "smart_open", "params": {"uri": "s3://b"}})})
    assert "object_spilling_config" in str(ei.value)


def test_start_flag_spilling_directory(cli_env, tmp_path):
    spill = tmp_path / "cli-spill"
    p = run(["start", "--head", "--port", "0", "--num-cpus", "1",
             "--object-store-memory", str(100 * MiB), "--object-spilling-directory",
             str(spill)], cli_env)
    assert p.returncode == 0, p.stderr
    info, = session_infos(cli_env["BEAMLET_SESSION_ROOT"])
    assert info["spill_dir"].startswith(str(spill) + os.sep)
    code = ("import beamlet, numpy as np\n"
            "from beamlet.worker import core_worker\n"
            "beamlet.init(address='auto')\n"
            "refs = [beamlet.put(np.ones(4 * 2**20, dtype=np.int64)) for _ in range(10)]\n"
            "objs = core_worker.global_worker.call('memory')['objects']\n"
            "print('\\n'.join(o['spill_path'] for o in objs if o['where'] == 'spilled'))\n")
    d = run_python(code, cli_env)
    assert d.returncode == 0, d.stderr
    paths = d.stdout.split()
    assert paths and all(x.startswith(info["spill_dir"] + os.sep) for x in paths)
    s = run(["stop"], cli_env)
    assert s.returncode == 0
    assert not os.path.exists(info["spill_dir"]) and spill.is_dir()


def test_temp_dir_is_the_session_root():
    with tempfile.TemporaryDirectory(prefix="bltmp", dir="/tmp") as root:
        info = beamlet.init(num_cpus=1, object_store_memory=100 * MiB, _temp_dir=root)
        try:
            assert info["session_dir"].startswith(root + os.sep)
            assert beamlet.get(beamlet.put(7)) == 7
        finally:
            beamlet.shutdown()
        wait_for(lambda: not [n for n in os.listdir(root) if n.startswith("session_2")],
                 msg="session removed")
    for bad, error in (("relative/dir", ValueError), (5, TypeError)):
        with pytest.raises(error) as ei:
            beamlet.init(num_cpus=1, _temp_dir=bad)
        assert "_temp_dir" in str(ei.value)
    assert not beamlet.is_initialized()


@beamlet.remote
def tunables():
    from beamlet._private import config
    return config.INLINE_THRESHOLD, config.HEARTBEAT_S


def test_system_config_reaches_the_nodes_processes():
    beamlet.init(num_cpus=1, object_store_memory=100 * MiB,
                 _system_config={"max_direct_call_object_size": 1000,
                                 "heartbeat_s": 0.25})
    try:
        assert beamlet.get(tunables.remote()) == (1000, 0.25)
        # the raylet applies it: a 10 KB object is no longer inline
        ref = beamlet.put(b"x" * 10_000)
        where = {o["object_id"]: o["where"] for o in _memory()["objects"]}
        assert where[ref.hex()] == "arena"
    finally:
        beamlet.shutdown()


def test_system_config_rejects_what_it_cannot_apply(cli_env):
    for bad, words in (({"no_such_key": 1}, ["no_such_key", "heartbeat_s"]),
                       ({"heartbeat_s": "soon"}, ["heartbeat_s", "float"]),
                       ({"session_root": "/tmp/x"}, ["_temp_dir"]),
                       ("not a dict", ["_system_config", "must be a dict"]),
                       ([("heartbeat_s", 1)], ["_system_config", "must be a dict"])):
        with pytest.raises((ValueError, TypeError)) as ei:
            beamlet.init(num_cpus=1, _system_config=bad)
        for w in words:
            assert w in str(ei.value)
        assert not beamlet.is_initialized()
    # connecting: node settings are fixed when the node starts
    for opt in ({"_system_config": {"heartbeat_s": 1}},
                {"object_spilling_directory": "/tmp"}):
        with pytest.raises(ValueError) as ei:
            beamlet.init(address="auto", _temp_dir=cli_env["BEAMLET_SESSION_ROOT"], **opt)
        assert "When connecting to an existing cluster" in str(ei.value)
