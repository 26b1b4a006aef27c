"""Metrics as a node exports them: the table of what processes reported, and the
Prometheus text exposition format (version 0.0.4) it is rendered in.

Pure (no I/O): the raylet's metrics endpoint (raylet/metrics.py) feeds it the
METRICS batches of its clients (protocol.py) and asks it for the text.

What a batch carries, per metric: its definition (kind, description, tag keys,
histogram boundaries) and the series that changed since the process's last
batch, each with its *cumulative* value in that process: a counter's total, a
gauge's last value (and when it was set), a histogram's bucket counts, sum and
count.  Cumulative values make a batch idempotent (a lost or repeated one does
no harm) and let the table tell processes apart: a counter is the sum over the
processes that reported it, and when a process goes its totals are kept (folded
into `retired`), so a counter never goes down while the node runs.  A gauge is
the value set last by any process.
"""
import math
import re

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
KINDS = (COUNTER, GAUGE, HISTOGRAM)

# Prometheus' rule for metric and label names.
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Users' metrics are exported as Ray exports them: "ray_" + the name (a counter
# also gets Prometheus' "_total" suffix), so queries written for Ray keep working.
USER_PREFIX = "ray_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Definition:
    __slots__ = ("kind", "description", "tag_keys", "boundaries")

    def __init__(self, kind, description, tag_keys, boundaries):
        self.kind = kind
        self.description = description
        self.tag_keys = tuple(tag_keys)
        self.boundaries = tuple(boundaries or ())

    def same(self, other) -> bool:
        return (self.kind, self.tag_keys, self.boundaries) == \
            (other.kind, other.tag_keys, other.boundaries)


class MetricTable:
    """The user metrics of one node, as its processes reported them."""

    def __init__(self):
        self.defs = {}        # name -> Definition (the first one reported wins)
        self.live = {}        # source -> {(name, tag values): cumulative value}
        self.retired = {}     # (name, tag values) -> value summed from gone sources
        self.gauges = {}      # (name, tag values) -> (time set, value)
        self.conflicts = set()   # names reported again with another definition

    def update(self, source, batch) -> list:
        """Apply one METRICS batch of process `source`; returns the names whose
        definition conflicted with an earlier one (their series are dropped)."""
        bad = []
        mine = self.live.setdefault(source, {})
        for name, kind, description, tag_keys, boundaries, series in batch:
            d = Definition(kind, description, tag_keys, boundaries)
            known = self.defs.setdefault(name, d) \
                if kind in KINDS and NAME_RE.match(name) else None
            if known is None or not known.same(d):
                if name not in self.conflicts:
                    self.conflicts.add(name)
                    bad.append(name)
                continue
            width = len(known.tag_keys)
            for tags, value in series:
                if len(tags) != width:
                    continue
                key = (name, tuple(tags))
                if kind == GAUGE:
                    at, v = value
                    old = self.gauges.get(key)
                    if old is None or at >= old[0]:
                        self.gauges[key] = (at, float(v))
                else:
                    mine[key] = value
        return bad

    def retire(self, source) -> None:
        """`source` is gone: keep what it counted."""
        for key, value in self.live.pop(source, {}).items():
            self.retired[key] = _add(self.defs[key[0]].kind, self.retired.get(key), value)

    def totals(self) -> dict:
        """(name, tag values) -> value over every process, live or gone."""
        out = dict(self.retired)
        for series in self.live.values():
            for key, value in series.items():
                out[key] = _add(self.defs[key[0]].kind, out.get(key), value)
        for key, (_, v) in self.gauges.items():
            out[key] = v
        return out

    def families(self) -> list:
        """The user metrics as Family objects, ready to render."""
        fams = {}
        for (name, tags), value in sorted(self.totals().items()):
            d = self.defs[name]
            fam = fams.get(name)
            if fam is None:
                fam = fams[name] = Family(USER_PREFIX + name, d.kind, d.description,
                                          boundaries=d.boundaries)
            fam.add(dict(zip(d.tag_keys, tags)), value)
        return list(fams.values())


def _add(kind, a, b):
    if a is None:
        return b
    if kind == HISTOGRAM:
        counts_a, sum_a, n_a = a
        counts_b, sum_b, n_b = b
        return [[x + y for x, y in zip(counts_a, counts_b)], sum_a + sum_b, n_a + n_b]
    return a + b


class Family:
    """One metric with all its samples, as the text format writes it."""

    def __init__(self, name, kind, description="", boundaries=()):
        self.name = name
        self.kind = kind
        self.description = description
        self.boundaries = tuple(boundaries)
        self.samples = []     # (labels dict, value)

    def add(self, labels, value):
        self.samples.append((labels, value))
        return self

    def render(self, out: list) -> None:
        name = self.name + ("_total" if self.kind == COUNTER else "")
        out.append(f"# HELP {name} {_escape_help(self.description or self.name)}")
        out.append(f"# TYPE {name} {self.kind}")
        for labels, value in self.samples:
            if self.kind != HISTOGRAM:
                out.append(f"{name}{_labels(labels)} {_number(value)}")
                continue
            counts, total, n = value
            running = 0
            for bound, c in zip(self.boundaries + (math.inf,), counts):
                running += c
                out.append(f"{name}_bucket{_labels(labels, le=_number(bound))} "
                           f"{_number(running)}")
            out.append(f"{name}_sum{_labels(labels)} {_number(total)}")
            out.append(f"{name}_count{_labels(labels)} {_number(n)}")


def render(families) -> str:
    out = []
    for fam in families:
        fam.render(out)
    return "\n".join(out) + "\n"


def _escape_help(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _labels(labels: dict, le=None) -> str:
    parts = [f'{k}="{_escape_value(v)}"' for k, v in labels.items()]
    if le is not None:
        parts.append(f'le="{le}"')
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(v) -> str:
    v = float(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(v)


def bucket_index(boundaries, value) -> int:
    """Which bucket `value` falls in: the first boundary it does not exceed
    (Prometheus buckets are upper-inclusive), else the +Inf one."""
    lo, hi = 0, len(boundaries)
    while lo < hi:
        mid = (lo + hi) // 2
        if value <= boundaries[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo
