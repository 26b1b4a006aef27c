"""The progress line of a long get() on many refs (optional, off by default):
`beamlet.get(refs, progress=True)`, or BEAMLET_GET_PROGRESS=1 for every get of
at least GET_PROGRESS_MIN_REFS refs that takes more than GET_PROGRESS_DELAY_S.

    get: 412/1000 ready [#########...............]  41%  3.2 s

On a terminal the line is redrawn in place (at most every REDRAW_S); elsewhere
(a log file) a line is written at most every PLAIN_EVERY_S, and the last one
when the get ends.  `line()` is the pure part.
"""
import os

REDRAW_S = 0.1
PLAIN_EVERY_S = 10.0
BAR = 24


def enabled_by_env() -> bool:
    return os.environ.get("BEAMLET_GET_PROGRESS", "").strip() not in ("", "0")


def line(done: int, total: int, elapsed: float) -> str:
    frac = done / total if total else 1.0
    filled = int(round(frac * BAR))
    return (f"get: {done}/{total} ready [{'#' * filled}{'.' * (BAR - filled)}] "
            f"{frac:4.0%}  {elapsed:.1f} s")


class ProgressLine:
    """Draws `line()` on `stream` as the count of ready refs grows."""

    def __init__(self, total: int, stream, started: float, delay_s: float = 0.0):
        self.total = total
        self.stream = stream
        self.started = started
        self.delay_s = delay_s
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last_drawn = None      # when, or None: nothing drawn yet
        self.width = 0

    def update(self, done: int, now: float) -> None:
        if now - self.started < self.delay_s:
            return
        every = REDRAW_S if self.tty else PLAIN_EVERY_S
        if self.last_drawn is not None and now - self.last_drawn < every:
            return
        self._draw(done, now)

    def finish(self, done: int, now: float) -> None:
        """The get ended: the final count (unless the get ended before the
        delay, having drawn nothing)."""
        if self.last_drawn is None and now - self.started < self.delay_s:
            return
        self._draw(done, now)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, done, now):
        text = line(done, self.total, now - self.started)
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last_drawn = now
