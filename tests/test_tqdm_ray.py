"""beamlet.experimental.tqdm_ray: bars made in tasks and actors are drawn by the
driver.  A real driver script runs in a subprocess, its output going to pipes and
then to a pseudo-terminal, and what it wrote is checked."""
import os
import pty
import re
import select
import struct
import subprocess
import sys
import textwrap
import time

import fcntl
import termios

from beamlet.experimental.tqdm_ray import MAGIC, _Bar, format_bar

DRIVER = textwrap.dedent("""
    import sys, time
    import beamlet as ray
    from beamlet.experimental.tqdm_ray import tqdm, safe_print

    class Tee:   # remembers what the driver printed, to wait for the last lines
        def __init__(self, s):
            self.s, self.text = s, ""
        def write(self, t):
            self.text += t
            return self.s.write(t)
        def flush(self):
            self.s.flush()
        def isatty(self):
            return self.s.isatty()
        def fileno(self):
            return self.s.fileno()
        @property
        def encoding(self):
            return self.s.encoding
    sys.stdout = Tee(sys.stdout)

    ray.init(num_cpus=2)

    @ray.remote
    def work(name, n):
        print(f"starting {name}")
        for _ in tqdm(range(n), desc=name):
            time.sleep(0.02)
        print(f"DONE {name}")

    @ray.remote
    class Loader:
        def load(self, n):
            bar = tqdm(total=n, desc="loader", unit="files")
            for _ in range(n):
                bar.update(1)
                time.sleep(0.02)
            bar.close()
            print("DONE loader")

    loader = Loader.remote()
    ray.get([work.remote("task-1", 20), work.remote("task-2", 30),
             loader.load.remote(5)])
    deadline = time.time() + 60
    while time.time() < deadline and not all(
            f"DONE {n}" in sys.stdout.text for n in ("task-1", "task-2", "loader")):
        time.sleep(0.05)
    safe_print("between the bars")
    for _ in tqdm(range(3), desc="driver-bar"):
        pass
    print("END", flush=True)
    ray.shutdown()
""")

# every worker line as it is ("starting task-1" and "starting task-2" differ only
# in a word with a digit: the driver's deduplication would fold them, as Ray's)
NO_DEDUP = dict(os.environ, BEAMLET_DEDUP_LOGS="0")

BAR = r"{name}: 100%\|\S+\| {n}/{n} \[[\d:]+<[\d:]+, [\d.]+{unit}/s\]"


def expect_bars(text):
    for name, n, unit in (("task-1", 20, "it"), ("task-2", 30, "it"),
                          ("loader", 5, "files"), ("driver-bar", 3, "it")):
        lines = re.findall(BAR.format(name=name, n=n, unit=unit), text)
        assert len(lines) == 1, (name, text)
    assert re.search(r"^\(work pid=\d+\) task-1: 100%", text, re.M), text
    assert MAGIC not in text


def test_bars_from_tasks_and_actors_on_pipes(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=180, cwd=str(tmp_path), env=NO_DEDUP)
    assert out.returncode == 0, out.stderr[-3000:]
    # not a terminal: each bar is one whole line, written when it closes
    expect_bars(out.stderr)
    assert MAGIC not in out.stdout
    for name in ("task-1", "task-2"):
        assert re.search(rf"^\(work pid=\d+\) starting {name}$", out.stdout, re.M)
        assert re.search(rf"^\(work pid=\d+\) DONE {name}$", out.stdout, re.M)
    assert re.search(r"^\(Loader pid=\d+\) DONE loader$", out.stdout, re.M)
    assert "between the bars" in out.stdout and out.stdout.rstrip().endswith("END")


def screen(data: str, width: int) -> list:
    """What a terminal shows after `data`: a tiny emulator of the sequences the
    bars use (CR, LF, cursor up, erase line / erase below)."""
    lines, row, col = [""], 0, 0
    i = 0
    while i < len(data):
        ch = data[i]
        m = re.match(r"\x1b\[(\d*)([AJK])", data[i:])
        if m:
            n = int(m.group(1) or 1)
            if m.group(2) == "A":
                row = max(row - n, 0)
            elif m.group(2) == "J":
                lines[row] = lines[row][:col]
                del lines[row + 1:]
            else:
                lines[row] = lines[row][:col]
            i += m.end()
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1:]
            col += 1
            assert col <= width, f"a line wrapped: {lines[row]!r}"
        i += 1
    return lines


def test_bars_on_a_terminal_redraw_in_place(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    master, slave = pty.openpty()
    width = 160
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, cwd=str(tmp_path),
                            env=NO_DEDUP)
    os.close(slave)
    chunks = []
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            r, _, _ = select.select([master], [], [], 1.0)
            if not r:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        rc = proc.wait(timeout=60)
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert rc == 0, raw[-3000:]
    assert "\x1b[" in raw               # bars were redrawn in place
    shown = "\n".join(screen(raw, width))
    expect_bars(shown)
    # nothing half-done is left on the screen: the open bars were erased each time
    assert not re.search(r"\b0%\|", shown), shown
    for name in ("task-1", "task-2"):
        assert re.search(rf"^\(work pid=\d+\) starting {name}$", shown, re.M), shown
        assert re.search(rf"^\(work pid=\d+\) DONE {name}$", shown, re.M), shown
    assert re.search(r"^between the bars$", shown, re.M)
    assert re.search(r"^END$", shown, re.M)


def test_format_bar():
    bar = _Bar("u", "(f pid=1) ", 1, now=100.0)
    bar.desc, bar.x, bar.total, bar.unit = "load", 5, 10, "it"
    line = format_bar(bar, 102.0, 200)
    assert line == "(f pid=1) load:  50%|" + "\u2588" * 10 + " " * 10 + \
        "| 5/10 [00:02<00:02, 2.50it/s]"
    assert format_bar(bar, 102.0, 200, ascii_only=True).count("#") == 10
    assert len(format_bar(bar, 102.0, 30)) <= 30
    bar.total = None
    assert format_bar(bar, 102.0, 200) == "(f pid=1) load: 5it [00:02, 2.50it/s]"
