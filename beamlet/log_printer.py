"""The driver's printer of worker output: a thread that subscribes to the job's
log and error channels in the GCS and prints each line as it arrives.

Lines travel worker pipe -> raylet -> GCS (published every GCS_FLUSH_S) -> here,
so the last lines a task printed may still be on their way when the driver's
program ends.  `close()` waits for them:

- for a cluster the driver started, the caller stops the cluster first (the
  raylet publishes all it read from its workers before it exits, then Redis
  stops); the thread prints everything Redis delivered and ends when the
  connection drops;
- for a cluster it joined (which keeps running), until the channels have been
  quiet for LOG_DRAIN_QUIET_S (at most a few seconds).

The subscription uses a connection of its own that does not retry by itself:
the thread reconnects (once a second) while the printer is open, and ends at
once when the connection drops while it is closing.

Lines that several workers print alike are printed once, as Ray does
(`LogDeduplicator`, BEAMLET_DEDUP_LOGS=0 turns it off); tqdm_ray's bar lines
are never deduplicated: they go to experimental/tqdm_ray.py, which draws them.
"""
import os
import re
import sys
import threading
import time

from ._private import config
from .experimental.tqdm_ray import MAGIC, process_log_line
from .gcs import keys

_DRAIN_MAX_S = 5.0
_PREFIX = re.compile(r"^(\([^)]*\) )(.*)$", re.S)
_NUMBERS = re.compile(r"\d")


def _env(name, default=None):
    """BEAMLET_<name>, else Ray's RAY_<name> (programs written for Ray set it)."""
    v = os.environ.get("BEAMLET_" + name)
    if v is None:
        v = os.environ.get("RAY_" + name)
    return default if v is None else v


class LogDeduplicator:
    """Ray's log deduplication ("[repeated 9x across cluster]"), for the
    driver's printer.  A line is compared without its "(name pid=N) " prefix
    and without the words that have digits in them.  The first line of its
    kind is printed at once; another source (a prefix) printing the same kind
    within DEDUP_LOGS_AGG_WINDOW_S (5 s) makes it a repeat: repeats are counted,
    not printed, and when the window ends the last of them is printed once
    with "[repeated Nx across cluster]".  (The same source printing the same
    line again and again is printed every time.)  Lines matching
    DEDUP_LOGS_ALLOW_REGEX are never deduplicated; those matching
    DEDUP_LOGS_SKIP_REGEX are dropped.  Each setting is BEAMLET_<name> or
    RAY_<name>; BEAMLET_DEDUP_LOGS=0 (or RAY_DEDUP_LOGS=0) turns it off."""

    NOTE = (" (beamlet deduplicates logs by default. Set BEAMLET_DEDUP_LOGS=0 to "
            "disable log deduplication, or see docs/observability.md for more "
            "options.)")

    def __init__(self, window_s=None, allow=None, skip=None, clock=time.monotonic):
        self.window = float(_env("DEDUP_LOGS_AGG_WINDOW_S", 5) if window_s is None
                            else window_s)
        allow = _env("DEDUP_LOGS_ALLOW_REGEX") if allow is None else allow
        skip = _env("DEDUP_LOGS_SKIP_REGEX") if skip is None else skip
        self.allow = re.compile(allow) if allow else None
        self.skip = re.compile(skip) if skip else None
        self.clock = clock
        self.recent = {}     # (stream, key) -> [first seen, sources, repeats, last line]
        self.noted = False

    @staticmethod
    def enabled() -> bool:
        return _env("DEDUP_LOGS", "1").strip() != "0"

    def lines(self, line: str, stream) -> list:
        """What to print now for `line` (printed on `stream`): [(line, stream)]."""
        m = _PREFIX.match(line)
        source, text = (m.group(1), m.group(2)) if m else ("", line)
        if self.skip is not None and self.skip.search(text):
            return []
        key = " ".join(w for w in text.split() if not _NUMBERS.search(w))
        if not key or (self.allow is not None and self.allow.search(text)):
            return [(line, stream)]
        out = self.expired()
        entry = self.recent.get((stream, key))
        if entry is None:
            self.recent[(stream, key)] = [self.clock(), {source}, 0, line]
            out.append((line, stream))
            return out
        entry[1].add(source)
        if len(entry[1]) > 1:
            entry[2] += 1
            entry[3] = line
        else:
            out.append((line, stream))   # one source repeating itself: as it is
        return out

    def expired(self, now=None, everything=False) -> list:
        """The "[repeated Nx across cluster]" lines whose window ended (all of
        them with `everything`: the printer is closing)."""
        now = self.clock() if now is None else now
        out = []
        for k, (first, _sources, repeats, last) in list(self.recent.items()):
            if everything or now - first >= self.window:
                del self.recent[k]
                if repeats:
                    note = "" if self.noted else self.NOTE
                    self.noted = True
                    out.append((f"{last} [repeated {repeats}x across cluster]{note}",
                                k[0]))
        return out


class LogPrinter:
    def __init__(self, host, port, password, job_id):
        self._where = (host, port, password)
        self._channels = (keys.logs_channel(job_id), keys.errors_channel(job_id))
        self._logs_channel = self._channels[0].encode()
        self._stop = threading.Event()       # end now
        self._closing = threading.Event()    # end when the connection drops
        self._last = 0.0                     # when the last message came
        self._dedup = LogDeduplicator() if LogDeduplicator.enabled() else None
        self._ps = self._subscribe()         # (at once: a failure shows in init)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="beamlet-logs")
        self._thread.start()

    def _subscribe(self):
        import redis  # drivers only: workers never load the redis client
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        host, port, password = self._where
        client = redis.Redis(host=host, port=port, password=password,
                             retry=Retry(NoBackoff(), 0), socket_connect_timeout=10)
        ps = client.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(*self._channels)
        return ps

    def _run(self):
        ps = self._ps
        try:
            while not self._stop.is_set():
                if ps is None:
                    if self._closing.is_set():
                        return
                    try:
                        ps = self._subscribe()
                    except Exception:
                        self._stop.wait(1.0)
                        continue
                try:
                    m = ps.get_message(timeout=0.2)
                except Exception:
                    _close(ps)
                    ps = None       # Redis stopped or is unreachable
                    continue
                if m:
                    self._last = time.monotonic()
                    self._print(m)
                elif self._dedup is not None:
                    self._emit(self._dedup.expired())
        finally:
            _close(ps)
            if self._dedup is not None:
                self._emit(self._dedup.expired(everything=True))

    def _print(self, m):
        data = m["data"].decode("utf-8", "replace")
        if m["channel"] == self._logs_channel:
            stream = sys.stderr if data[:1] == "E" else sys.stdout
            line = data[1:]
            if self._dedup is None or MAGIC in line:   # (tqdm_ray's bar states)
                self._emit([(line, stream)])
            else:
                self._emit(self._dedup.lines(line, stream))
        else:
            print(f"beamlet warning: {data}", file=sys.stderr, flush=True)

    @staticmethod
    def _emit(lines):
        for line, stream in lines:
            if not process_log_line(line, stream):   # tqdm_ray's bars draw themselves
                # one write (print writes the newline apart: the driver's own
                # prints could land between them)
                stream.write(line + "\n")
                stream.flush()

    def closing(self) -> None:
        """The GCS is about to stop: end once its connection drops."""
        self._closing.set()

    def drain(self) -> None:
        """Wait until no output has come for LOG_DRAIN_QUIET_S (bounded)."""
        start = time.monotonic()
        while time.monotonic() - start < _DRAIN_MAX_S:
            if time.monotonic() - max(self._last, start) >= config.LOG_DRAIN_QUIET_S:
                return
            time.sleep(0.01)

    def close(self) -> None:
        if self._closing.is_set():
            # the cluster stopped: what it published last may still be on the
            # way; the thread ends when the connection drops (bounded)
            self._thread.join(_DRAIN_MAX_S)
        self._stop.set()
        self._thread.join(5)


def _close(ps):
    if ps is None:
        return
    try:
        ps.close()
        ps.connection_pool.disconnect()
    except Exception:
        pass
