"""`beamlet run SCRIPT` and `python -m beamlet SCRIPT` run a program written for Ray
(`import ray`, `import ray.util.X`, `from ray.exceptions import Y`) with no edit:
in the driver and in its workers `ray` is beamlet.  Without the runner, `import
ray` is untouched.  Real scripts in subprocesses, real clusters."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

BIN = os.path.dirname(sys.executable)

HELPER = textwrap.dedent("""
    # a module of the program's own, imported by reference in the workers
    import ray
    from ray.exceptions import GetTimeoutError  # noqa: F401

    @ray.remote
    def double(x):
        import ray.util                          # resolved inside the worker
        return 2 * x, ray.util.__name__
""")

PROGRAM = textwrap.dedent("""
    import sys
    import ray
    import ray.util
    from ray.util.queue import Queue
    from ray.exceptions import TaskError, GetTimeoutError
    from ray.dag import InputNode
    import helper

    beamlet = sys.modules["beamlet"]
    assert sys.modules["ray"] is beamlet
    assert sys.modules["ray.util"] is sys.modules["beamlet.util"]
    assert ray.ObjectRef is beamlet.ObjectRef and ray.remote is beamlet.remote
    assert TaskError is beamlet.exceptions.TaskError
    assert ray.__spec__.name == "beamlet"        # beamlet keeps its own identity
    print("ALIASED", ray.__name__)

    ray.init(num_cpus=2)

    @ray.remote
    def inner(x):
        return x * 10

    @ray.remote
    def outer(x):
        import ray                                # a function that imports ray
        import sys
        return ray.get(inner.remote(x)) + 1, sys.modules["ray"].__name__

    print("RESULT", ray.get(outer.remote(4)))
    print("HELPER", ray.get(helper.double.remote(21)))
    with InputNode() as inp:
        dag = inner.bind(inp)
    print("DAG", ray.get(dag.execute(3)))
    try:
        import ray.serve
    except ImportError as e:
        print("SERVE", type(e).__name__, e)
    try:
        from ray import tune
    except ImportError as e:
        print("TUNE", type(e).__name__, e)
    print("ARGV", sys.argv[1:])
    ray.shutdown()
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
""")


@pytest.fixture
def program(tmp_path):
    (tmp_path / "helper.py").write_text(HELPER)
    (tmp_path / "prog.py").write_text(PROGRAM)
    return tmp_path


def check_output(out):
    text = out.stdout
    assert "ALIASED beamlet" in text, out.stderr[-3000:]
    assert "RESULT (41, 'beamlet')" in text, out.stderr[-3000:]
    assert "HELPER (42, 'beamlet.util')" in text, out.stderr[-3000:]
    assert "DAG 30" in text
    m = re.search(r"^SERVE ModuleNotFoundError (.*)$", text, re.M)
    assert m and "'ray.serve'" in m.group(1) and "beamlet" in m.group(1), text
    m = re.search(r"^TUNE ModuleNotFoundError (.*)$", text, re.M)
    assert m and "'ray.tune'" in m.group(1), text   # the clear message, not "cannot import"


def run(cmd, cwd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=str(cwd))


def test_beamlet_run(program):
    out = run([os.path.join(BIN, "beamlet"), "run", "prog.py", "0", "--flag", "x"], program)
    assert out.returncode == 0, out.stderr[-3000:]
    check_output(out)
    assert "ARGV ['0', '--flag', 'x']" in out.stdout


def test_python_dash_m_beamlet(program):
    out = run([sys.executable, "-m", "beamlet", "prog.py", "3"], program)
    assert out.returncode == 3, out.stderr[-3000:]       # the program's exit status
    check_output(out)


def test_run_a_module(program):
    out = run([sys.executable, "-m", "beamlet", "-m", "prog"], program)
    assert out.returncode == 0, out.stderr[-3000:]
    check_output(out)


def test_a_failing_program_shows_its_traceback(tmp_path):
    (tmp_path / "bad.py").write_text("import ray\n\ndef f():\n    raise KeyError('boom')\n\nf()\n")
    out = run([os.path.join(BIN, "beamlet"), "run", "bad.py"], tmp_path)
    assert out.returncode == 1
    assert "KeyError: 'boom'" in out.stderr and 'bad.py", line 4, in f' in out.stderr
    assert "runpy" not in out.stderr and "ray_alias" not in out.stderr
    out = run([os.path.join(BIN, "beamlet"), "run", "missing.py"], tmp_path)
    assert out.returncode == 2 and "missing.py" in out.stderr
    out = run([os.path.join(BIN, "beamlet"), "run"], tmp_path)
    assert out.returncode == 2 and "beamlet run SCRIPT" in out.stderr


def test_without_the_runner_import_ray_is_untouched(program):
    out = run([sys.executable, "prog.py"], program)
    assert out.returncode != 0
    assert "No module named 'ray'" in out.stderr
    probe = ("import beamlet, beamlet.util, importlib.util, sys\n"
             "print(importlib.util.find_spec('ray'), 'ray' in sys.modules)")
    out = run([sys.executable, "-c", probe], program)
    assert out.stdout.strip() == "None False", out.stderr
