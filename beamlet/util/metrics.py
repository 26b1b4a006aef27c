"""Application metrics, as Ray's `ray.util.metrics`: Counter, Gauge, Histogram.

Usable in drivers, tasks and actors.  Each node exports them, with beamlet's own
gauges, in the Prometheus text format from its metrics endpoint (the raylet's;
docs/observability.md says where it listens and how to scrape it).  A user
metric named "x" is exported as Ray exports it: `ray_x` (a counter as
`ray_x_total`).

    process ─ inc/set/observe: a dict update under a lock (no I/O) ─┐
      every METRICS_REPORT_S, a thread of this module sends what    │
      changed since its last batch, cumulative, as one METRICS      ▼
      message on the process's raylet connection ───────▶ raylet MetricTable
                                                          (_private/prometheus.py)
                                            GET /metrics ◀── Prometheus

Values recorded before the process is connected to a cluster are kept and sent
once it is; a process that connects again (a new init()) sends them all again.
"""
import atexit
import math
import threading
import time
import warnings

from .. import connection
from .._private import config, prometheus
from .._private import protocol as P
from ..worker import core_worker

__all__ = ["Counter", "Gauge", "Histogram", "Metric"]


class _Recorder:
    """This process's metric values, and the thread that reports them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.defs = {}        # name -> [kind, description, tag keys, boundaries]
        self.values = {}      # (name, tag values) -> cumulative value
        self.dirty = set()    # keys changed since the last batch
        self.sent_to = None   # the core worker the last batch went to
        self.thread = None

    def define(self, metric) -> None:
        d = [metric._kind, metric._description, list(metric._tag_keys),
             list(getattr(metric, "boundaries", ()))]
        with self.lock:
            old = self.defs.setdefault(metric._name, d)
            if [old[0], old[2], old[3]] != [d[0], d[2], d[3]]:
                raise ValueError(
                    f"a metric named {metric._name!r} already exists in this process "
                    f"as a {old[0]} with tag_keys={tuple(old[2])}"
                    + (f", boundaries={old[3]}" if old[3] else "") +
                    f"; a metric's kind, tag keys and boundaries cannot change: give "
                    f"this one another name.")
            if self.thread is None:
                self.thread = threading.Thread(target=self._report_loop, daemon=True,
                                               name="beamlet-metrics")
                self.thread.start()
                atexit.register(self.flush)
                connection.before_detach(self.flush)

    def counter_add(self, key, amount) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0.0) + amount
            self.dirty.add(key)

    def gauge_set(self, key, value) -> None:
        with self.lock:
            self.values[key] = [time.time(), value]
            self.dirty.add(key)

    def histogram_add(self, key, index, value, buckets) -> None:
        with self.lock:
            v = self.values.get(key)
            if v is None:
                v = self.values[key] = [[0] * buckets, 0.0, 0]
            v[0][index] += 1
            v[1] += value
            v[2] += 1
            self.dirty.add(key)

    def flush(self) -> None:
        """Send what changed to this process's raylet (if it has one)."""
        core = core_worker.global_worker
        if core is None or core.closed:
            return
        with self.lock:
            keys = self.values if core is not self.sent_to else self.dirty
            if not keys:
                return
            by_name = {}
            for key in keys:
                name, tags = key
                value = self.values[key]
                if isinstance(value, list):
                    value = [list(value[0]), value[1], value[2]] \
                        if isinstance(value[0], list) else list(value)
                by_name.setdefault(name, []).append([list(tags), value])
            batch = [[name, *self.defs[name], series] for name, series in by_name.items()]
            self.dirty = set()
            self.sent_to = core
        try:
            core.queue([P.METRICS, batch])
        except Exception:   # the raylet is gone: nothing to report to
            pass

    def _report_loop(self):
        while True:
            time.sleep(config.METRICS_REPORT_S)
            self.flush()


_recorder = None
_recorder_lock = threading.Lock()


def _the_recorder() -> _Recorder:
    global _recorder
    if _recorder is None:
        with _recorder_lock:
            if _recorder is None:
                _recorder = _Recorder()
    return _recorder


def _check_tag_value(key, value, what):
    if not isinstance(value, str):
        raise TypeError(f"{what}: the value of tag {key!r} must be a str, got "
                        f"{type(value).__name__} {value!r}.")


class Metric:
    """What every metric has: a name, a description, tag keys and default tags."""
    _kind = None

    def __init__(self, name: str, description: str = "", tag_keys=None):
        if not isinstance(name, str):
            raise TypeError(f"a metric's name must be a str, got {type(name).__name__}.")
        if not name:
            raise ValueError("Empty name is not allowed: give the metric a name.")
        if not isinstance(description, str):
            raise TypeError(f"metric {name!r}: description must be a str, got "
                            f"{type(description).__name__}.")
        if tag_keys is None:
            tag_keys = ()
        if not isinstance(tag_keys, (tuple, list)):
            raise TypeError(f"metric {name!r}: tag_keys should be a tuple of str, got "
                            f"{type(tag_keys).__name__}.")
        for k in tag_keys:
            if not isinstance(k, str):
                raise TypeError(f"metric {name!r}: tag keys must be str, got "
                                f"{type(k).__name__} {k!r}.")
            if not prometheus.LABEL_RE.match(k) or k == "le":
                raise ValueError(f"metric {name!r}: tag key {k!r} is not a valid "
                                 f"Prometheus label name (letters, digits and _, not "
                                 f"starting with a digit; 'le' is reserved).")
        if len(set(tag_keys)) != len(tag_keys):
            raise ValueError(f"metric {name!r}: tag_keys {tuple(tag_keys)} repeat a key.")
        self._name = name
        self._description = description
        self._tag_keys = tuple(tag_keys)
        self._default_tags = {}
        self._default_values = None if tag_keys else ()
        # As Ray: an invalid name is warned about and the metric records nothing.
        self._discard = not prometheus.NAME_RE.match(name)
        if self._discard:
            warnings.warn(f"Invalid metric name: {name!r}. The metric will be "
                          f"discarded and nothing it records exported: metric names "
                          f"can only contain letters, digits, _ and :, and cannot "
                          f"start with a digit.", UserWarning, stacklevel=3)
        else:
            _the_recorder().define(self)

    def set_default_tags(self, default_tags: dict):
        """Tags used by every record call that does not give them; returns self."""
        if not isinstance(default_tags, dict):
            raise TypeError(f"metric {self._name!r}: default tags must be a dict, got "
                            f"{type(default_tags).__name__}.")
        for k, v in default_tags.items():
            if k not in self._tag_keys:
                raise ValueError(f"metric {self._name!r}: unrecognized tag key {k!r}; "
                                 f"its tag_keys are {self._tag_keys}.")
            _check_tag_value(k, v, f"metric {self._name!r}")
        self._default_tags = dict(default_tags)
        missing = [k for k in self._tag_keys if k not in self._default_tags]
        self._default_values = None if missing else \
            tuple(self._default_tags[k] for k in self._tag_keys)
        return self

    @property
    def info(self) -> dict:
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": dict(self._default_tags)}

    def _key(self, tags):
        """(name, tag values in tag_keys order) for a record call's `tags`."""
        if tags is None and self._default_values is not None:
            return self._name, self._default_values
        if tags is not None and not isinstance(tags, dict):
            raise TypeError(f"metric {self._name!r}: tags must be a dict of str to "
                            f"str, got {type(tags).__name__}.")
        final = {**self._default_tags, **(tags or {})}
        unknown = [k for k in final if k not in self._tag_keys]
        if unknown:
            raise ValueError(f"metric {self._name!r}: unrecognized tag key(s) "
                             f"{unknown}; its tag_keys are {self._tag_keys}.")
        missing = [k for k in self._tag_keys if k not in final]
        if missing:
            raise ValueError(f"metric {self._name!r}: missing value for tag key(s) "
                             f"{', '.join(missing)} (give them in tags=, or with "
                             f"set_default_tags).")
        for k, v in final.items():
            _check_tag_value(k, v, f"metric {self._name!r}")
        return self._name, tuple(final[k] for k in self._tag_keys)

    def _check_number(self, value, what):
        if type(value) is bool or not isinstance(value, (int, float)):
            raise TypeError(f"metric {self._name!r}: {what} must be a number, got "
                            f"{type(value).__name__} {value!r}.")
        if math.isnan(value):
            raise ValueError(f"metric {self._name!r}: {what} is NaN.")

    def __repr__(self):
        return f"<{type(self).__name__} {self._name}>"


class Counter(Metric):
    """A cumulative metric that only goes up (Prometheus' counter)."""
    _kind = prometheus.COUNTER

    def inc(self, value=1.0, tags: dict = None) -> None:
        """Add `value` (> 0, default 1) to the series of `tags`."""
        self._check_number(value, "the increment")
        if value <= 0:
            raise ValueError(f"metric {self._name!r}: value must be >0, got {value}.")
        key = self._key(tags)
        if not self._discard:
            _the_recorder().counter_add(key, float(value))


class Gauge(Metric):
    """The last value recorded (Prometheus' gauge): it may go up and down."""
    _kind = prometheus.GAUGE

    def set(self, value, tags: dict = None) -> None:
        """Set the series of `tags` to `value`."""
        self._check_number(value, "the value")
        key = self._key(tags)
        if not self._discard:
            _the_recorder().gauge_set(key, float(value))


class Histogram(Metric):
    """How many values fell in each bucket, their sum and count (Prometheus'
    histogram); `boundaries` are the buckets' upper bounds, increasing, > 0."""
    _kind = prometheus.HISTOGRAM

    def __init__(self, name: str, description: str = "", boundaries=None,
                 tag_keys=None):
        if not boundaries:
            raise ValueError(
                f"metric {name!r}: a Histogram needs boundaries, e.g. "
                f"Histogram({name!r}, boundaries=[1.0, 10.0, 100.0]).")
        if not isinstance(boundaries, (list, tuple)):
            raise TypeError(f"metric {name!r}: boundaries must be a list of numbers, "
                            f"got {type(boundaries).__name__}.")
        for i, b in enumerate(boundaries):
            if type(b) is bool or not isinstance(b, (int, float)) or not b > 0:
                raise ValueError(f"metric {name!r}: invalid boundaries argument at "
                                 f"index {i}, {b!r}: use positive numbers.")
            if i and not b > boundaries[i - 1]:
                raise ValueError(f"metric {name!r}: boundaries must increase; "
                                 f"{b!r} at index {i} follows {boundaries[i - 1]!r}.")
        self.boundaries = [float(b) for b in boundaries]
        super().__init__(name, description, tag_keys)

    def observe(self, value, tags: dict = None) -> None:
        """Count `value` in its bucket of the series of `tags`."""
        self._check_number(value, "the value")
        key = self._key(tags)
        if not self._discard:
            b = self.boundaries
            _the_recorder().histogram_add(key, prometheus.bucket_index(b, value),
                                          float(value), len(b) + 1)

    @property
    def info(self) -> dict:
        return {**super().info, "boundaries": list(self.boundaries)}
