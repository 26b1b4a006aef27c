"""The README's quick start works where the system Python is externally managed
(Debian/Ubuntu): both commands make a virtual environment first; and CI runs
exactly the README's test command."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick_start_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_quick_start_commands_make_a_venv_first():
    cmds = _quick_start_commands()
    assert len(cmds) == 2
    for cmd in cmds:
        assert cmd.startswith("python3 -m venv .venv && . .venv/bin/activate && pip "), cmd
    assert "examples/quickstart.py" in cmds[0] and "pytest" in cmds[1]
    assert os.path.exists(os.path.join(ROOT, "examples", "quickstart.py"))


def test_ci_runs_the_readmes_test_command():
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        lines = f.read().splitlines()
    marker = lines.index("# --- the README's test command ---")
    assert lines[marker + 1] == _quick_start_commands()[1]
    assert os.access(os.path.join(ROOT, ".ci", "run"), os.X_OK)
