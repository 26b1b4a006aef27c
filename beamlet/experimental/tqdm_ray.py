"""tqdm_ray: progress bars from tasks and actors, drawn by the driver (Ray's
`ray.experimental.tqdm_ray`).

    from beamlet.experimental.tqdm_ray import tqdm

    @ray.remote
    def work(name):
        for x in tqdm(range(100), desc=name):
            ...

A bar in a task or actor draws nothing itself: it prints its state as one line,
`MAGIC` + JSON, on the worker's stdout (at most every `flush_interval_s`, and at
once on close or a new description).  That line reaches the driver with the
worker's other output; the driver's log printer hands every line carrying MAGIC
to `process_log_line` instead of printing it, and the driver draws the bars:

- on a terminal (stderr is a TTY): the open bars stay at the bottom, one line
  each, redrawn in place; other output (worker prints, `safe_print`) is written
  above them, so bars and lines never mix; a closed bar's last state stays in
  the scroll-back;
- otherwise (a pipe or a log file): no redrawing — each bar is written as one
  whole line when it closes (and at most every NON_TTY_INTERVAL_S while open).

A bar made in the driver itself goes to the same display directly.
"""
import json
import os
import sys
import threading
import time
import uuid

MAGIC = "__beamlet_tqdm_magic__"
NON_TTY_INTERVAL_S = 30.0     # how often an open bar is written when not on a TTY
BAR_WIDTH = 20


class tqdm:
    """A progress bar: `tqdm(iterable, desc=..., total=...)` to wrap an iterable,
    or `tqdm(total=n)` with `update()`; `set_description()`, `close()`."""

    def __init__(self, iterable=None, desc=None, total=None, unit=None, position=None,
                 flush_interval_s=None):
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._position = position
        self._x = 0
        self._closed = False
        self._uuid = uuid.uuid4().hex
        self._flush_interval_s = 1.0 if flush_interval_s is None else flush_interval_s
        self._last_flush = 0.0
        self._emit()

    @property
    def n(self):
        return self._x

    @property
    def total(self):
        return self._total

    @property
    def desc(self):
        return self._desc

    def set_description(self, desc):
        self._desc = desc or ""
        self._emit()

    def update(self, n=1):
        self._x += n
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            self._emit()

    def refresh(self):
        self._emit()

    def close(self):
        if not self._closed:
            self._closed = True
            self._emit()

    def __iter__(self):
        if self._iterable is None:
            raise TypeError("this tqdm was made without an iterable: call update()")
        try:
            for x in self._iterable:
                yield x
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _state(self):
        return {"uuid": self._uuid, "desc": self._desc, "x": self._x,
                "total": self._total, "unit": self._unit, "pos": self._position,
                "closed": self._closed, "pid": os.getpid()}

    def _emit(self):
        self._last_flush = time.monotonic()
        state = self._state()
        if _in_worker():
            # the line reaches the driver through the worker's output; the
            # driver's log printer renders it (process_log_line)
            print(MAGIC + json.dumps(state), flush=True)
        else:
            _display.update(state, "")


def _in_worker() -> bool:
    from ..worker import core_worker
    core = core_worker.global_worker
    return core is not None and core.role == "worker"


def safe_print(*args, **kwargs):
    """print() that does not mix with the bars drawn on the driver's terminal."""
    if _in_worker():
        print(*args, **kwargs)
        return
    _display.write(lambda: print(*args, **kwargs))


def process_log_line(line: str, stream) -> bool:
    """The driver's log printer calls this for each worker line it would print
    on `stream`; True when it was handled here (a bar's state, or a line written
    above the bars on a terminal)."""
    i = line.find(MAGIC)
    if i < 0:
        if not _display.drawn:
            return False
        _display.write(lambda: print(line, file=stream, flush=True))
        return True
    try:
        state = json.loads(line[i + len(MAGIC):])
        state["uuid"]
    except (ValueError, TypeError, KeyError):
        return False                # not one of ours after all: print it as it is
    _display.update(state, line[:i])
    return True


# ------------------------------------------------------------------ the bars' state
class _Bar:
    __slots__ = ("uuid", "prefix", "desc", "x", "total", "unit", "pos", "closed",
                 "order", "first_seen", "last_written")

    def __init__(self, uuid_, prefix, order, now):
        self.uuid = uuid_
        self.prefix = prefix
        self.order = order
        self.first_seen = now
        self.last_written = now
        self.desc, self.x, self.total, self.unit, self.pos, self.closed = \
            "", 0, None, "it", None, False


class _Board:
    """The open bars (no I/O): states in, bars to draw out."""

    def __init__(self):
        self.bars = {}
        self._counter = 0

    def apply(self, state, prefix, now) -> _Bar:
        """Record a bar's new state; a closed bar leaves the board (it is returned
        for its last drawing)."""
        bar = self.bars.get(state["uuid"])
        if bar is None:
            self._counter += 1
            bar = _Bar(state["uuid"], prefix, self._counter, now)
            if not state.get("closed"):
                self.bars[bar.uuid] = bar
        bar.desc = str(state.get("desc") or "")
        bar.x = state.get("x") or 0
        bar.total = state.get("total")
        bar.unit = state.get("unit") or "it"
        bar.pos = state.get("pos")
        bar.closed = bool(state.get("closed"))
        if bar.closed:
            self.bars.pop(bar.uuid, None)
        return bar

    def open_bars(self) -> list:
        """In display order: by process (first seen first), then position."""
        first = {}
        for b in sorted(self.bars.values(), key=lambda b: b.order):
            first.setdefault(b.prefix, b.order)
        return sorted(self.bars.values(), key=lambda b: (
            first[b.prefix], b.pos if isinstance(b.pos, int) else 1 << 30, b.order))


def _clock(seconds) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_bar(bar, now, width, ascii_only=False) -> str:
    """One line for a bar, at most `width` characters."""
    elapsed = max(now - bar.first_seen, 0.0)
    rate = bar.x / elapsed if elapsed > 0 else 0.0
    head = f"{bar.prefix}{bar.desc}: " if bar.desc else bar.prefix
    if bar.total:
        frac = min(max(bar.x / bar.total, 0.0), 1.0)
        filled = int(frac * BAR_WIDTH)
        full, empty = ("#", "-") if ascii_only else ("\u2588", " ")
        remaining = (bar.total - bar.x) / rate if rate > 0 else 0.0
        text = (f"{head}{int(frac * 100):3d}%|{full * filled}{empty * (BAR_WIDTH - filled)}"
                f"| {bar.x}/{bar.total} [{_clock(elapsed)}<{_clock(remaining)}, "
                f"{rate:.2f}{bar.unit}/s]")
    else:
        text = f"{head}{bar.x}{bar.unit} [{_clock(elapsed)}, {rate:.2f}{bar.unit}/s]"
    return text if len(text) <= width else text[:max(width - 1, 1)]


# ------------------------------------------------------------------ drawing
class _Display:
    """Draws the board on the driver's stderr (the I/O around _Board)."""

    def __init__(self):
        self.board = _Board()
        self.lock = threading.RLock()
        self.drawn = 0                 # bar lines now drawn at the terminal's bottom

    def update(self, state, prefix):
        with self.lock:
            now = time.monotonic()
            bar = self.board.apply(state, prefix, now)
            out = sys.stderr
            if _is_tty(out):
                self._clear(out)
                if bar.closed:
                    out.write(self._line(bar, now, out) + "\n")
                self._draw(out, now)
            elif bar.closed or now - bar.last_written >= NON_TTY_INTERVAL_S:
                bar.last_written = now
                out.write(self._line(bar, now, out) + "\n")
            out.flush()

    def write(self, do_print):
        """Run `do_print` (a print of whole lines) above the bars."""
        with self.lock:
            out = sys.stderr
            if not self.drawn:
                do_print()
                return
            now = time.monotonic()
            self._clear(out)
            out.flush()
            do_print()
            self._draw(out, now)
            out.flush()

    def _clear(self, out):
        if self.drawn:
            out.write(f"\x1b[{self.drawn}A\r\x1b[J")
            self.drawn = 0

    def _draw(self, out, now):
        bars = self.board.open_bars()
        for b in bars:
            out.write(self._line(b, now, out) + "\n")
        self.drawn = len(bars)

    @staticmethod
    def _line(bar, now, out):
        encoding = (getattr(out, "encoding", None) or "").lower()
        # on a terminal a line must not wrap (the redraw counts lines); in a file
        # it is kept whole
        width = _width(out) - 1 if _is_tty(out) else 1 << 16
        return format_bar(bar, now, width, ascii_only=not encoding.startswith("utf"))


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except Exception:
        return False


def _width(stream) -> int:
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (OSError, AttributeError, ValueError):
        cols = 0
    return cols if cols > 0 else 80


_display = _Display()
