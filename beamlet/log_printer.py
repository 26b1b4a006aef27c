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
"""
import sys
import threading
import time

from ._private import config
from .experimental.tqdm_ray import process_log_line
from .gcs import keys

_DRAIN_MAX_S = 5.0


class LogPrinter:
    def __init__(self, host, port, password, job_id):
        self._where = (host, port, password)
        self._channels = (keys.logs_channel(job_id), keys.errors_channel(job_id))
        self._logs_channel = self._channels[0].encode()
        self._stop = threading.Event()       # end now
        self._closing = threading.Event()    # end when the connection drops
        self._last = 0.0                     # when the last message came
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
        finally:
            _close(ps)

    def _print(self, m):
        data = m["data"].decode("utf-8", "replace")
        if m["channel"] == self._logs_channel:
            stream = sys.stderr if data[:1] == "E" else sys.stdout
            if not process_log_line(data[1:], stream):   # tqdm_ray's bars draw themselves
                print(data[1:], file=stream, flush=True)
        else:
            print(f"beamlet warning: {data}", file=sys.stderr, flush=True)

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
