"""The stuck get()/wait() watchdog: a get or wait that has waited
STUCK_WARNING_S (BEAMLET_STUCK_WARNING_S, default 10 s; 0: off) without its
objects coming asks the raylet what it waits for (the CALL "explain": a chain
of tasks and actors ending in its root cause, raylet/introspection.py) and,
unless that chain ends in work that runs (a long task that runs is progress),
prints the diagnosis once to this process's stderr.  In a worker, stderr
reaches the driver like any output of the task.

Cost on the fast path: none for a get answered from this process's cache or
mappings; a get or wait that goes to the raylet registers itself in a dict
(and leaves it when answered).  One daemon thread per process, started by the
first wait that can last long enough, looks at the registered waits once a
second; it is the only one that talks to the raylet about them.
"""
import itertools
import sys
import threading
import time

from . import config

_EXPLAIN_TIMEOUT_S = 15.0


def ref_text(oids) -> str:
    first = f"ObjectRef({oids[0].hex()[:16]}..)"
    return first if len(oids) == 1 else f"[{first}, ... {len(oids)} refs]"


class StuckWatch:
    """The waits of one process that are blocked in its raylet."""

    def __init__(self, core):
        self.core = core
        self.waits = {}          # token -> [since, oids, what, printed]
        self.tokens = itertools.count(1).__next__
        self.thread = None
        self.lock = threading.Lock()

    def begin(self, oids, call, timeout):
        """A `call` ("get" or "wait") of `oids` goes to the raylet; returns a
        token for `end` (None when it cannot last long enough to be watched)."""
        limit = config.STUCK_WARNING_S
        if limit <= 0 or (timeout is not None and timeout < limit):
            return None
        token = self.tokens()
        self.waits[token] = [time.monotonic(), oids, call, False]
        if self.thread is None:
            self._start()
        return token

    def end(self, token) -> None:
        if token is not None:
            self.waits.pop(token, None)

    def _start(self):
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="beamlet-stuck-watch")
                self.thread.start()

    def explain(self, oids, timeout=_EXPLAIN_TIMEOUT_S):
        """The raylet's diagnosis of a wait on `oids` ({"stuck", "text", ...}),
        or None if it did not answer."""
        try:
            ans = self.core.call("explain", list(oids), timeout=timeout)
        except Exception:
            return None
        return ans if isinstance(ans, dict) and "text" in ans else None

    def _run(self):
        limit = config.STUCK_WARNING_S
        tick = min(1.0, limit / 4)
        while not self.core.closed:
            time.sleep(tick)
            now = time.monotonic()
            for token, w in list(self.waits.items()):
                since, oids, call, printed = w
                if printed or now - since < limit:
                    continue
                ans = self.explain(oids)
                if token not in self.waits:
                    continue        # answered meanwhile
                if ans is None or not ans.get("stuck"):
                    # progress (or no answer): look again after another period
                    w[0] = time.monotonic()
                    continue
                w[3] = True
                self.report(f"{call}({ref_text(oids)}) has waited {now - since:.0f} s: "
                            f"{ans['text']}")

    @staticmethod
    def report(text):
        try:
            print(f"beamlet: {text}", file=sys.stderr, flush=True)
        except Exception:
            pass
