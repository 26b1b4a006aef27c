"""inspect_serializability: find what keeps an object from being serialized (Ray's
`ray.util.inspect_serializability`).

It tries to serialize the object as beamlet would (cloudpickle, protocol 5); if
that fails it walks into what the object holds — a function's globals and
closure variables, an object's attributes, a container's items — down to `depth`
levels, and reports the innermost members that fail by themselves.  The walk is
printed as an indented tree, as Ray prints it.
"""
import inspect

from .._private import serialization

_RULE_MAX = 80


class FailureTuple:
    """A member that cannot be serialized: the object, the name it has in its
    parent, and the parent."""

    def __init__(self, obj, name, parent):
        self.obj = obj
        self.name = name
        self.parent = parent

    def __repr__(self):
        return f"FailTuple({self.name} [obj={self.obj!r}, parent={self.parent!r}])"


class _Printer:
    def __init__(self, file):
        self.file = file
        self.level = 0

    def line(self, text):
        print("    " * self.level + text, file=self.file)


def _serialization_error(obj):
    """None if `obj` serializes, else the reason."""
    try:
        serialization.serialize(obj)
        return None
    except Exception as e:
        cause = e.__cause__ or e
        return f"{type(cause).__name__}: {cause}"


def _members(obj):
    """(kind, [(name, member)]) of what `obj` holds that pickling it would pickle."""
    if inspect.isfunction(obj):
        closure = inspect.getclosurevars(obj)
        return [("global", sorted(closure.globals.items())),
                ("nonlocal", sorted(closure.nonlocals.items()))]
    if isinstance(obj, dict):
        return [("item", [(repr(k), v) for k, v in obj.items()])]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [("item", [(f"[{i}]", v) for i, v in enumerate(obj)])]
    out = []
    try:
        members = inspect.getmembers(obj)
    except Exception:
        members = list(getattr(obj, "__dict__", {}).items())
    for name, value in members:
        if name.startswith("__") and name.endswith("__"):
            continue
        if inspect.isbuiltin(value) or inspect.ismethod(value) and value.__self__ is obj:
            continue   # bound methods of obj pickle as obj itself
        out.append((name, value))
    return [("member", out)]


class _Inspector:
    def __init__(self, printer):
        self.p = printer
        self.failures = set()

    def check(self, obj, name, parent, depth) -> bool:
        """True if `obj` serializes; else records its failing parts."""
        reason = _serialization_error(obj)
        if reason is None:
            return True
        self.p.line(f"!!! FAIL serialization: {reason}")
        if depth > 0 and self._check_members(obj, depth):
            return False
        # nothing inside it fails by itself (or we may not look deeper): it is the
        # culprit
        self.failures.add(FailureTuple(obj, name, parent))
        return False

    def _check_members(self, obj, depth) -> bool:
        """Check what `obj` holds; True if some member failed."""
        found = looked = False
        for kind, members in _members(obj):
            if not members:
                continue
            if kind in ("global", "nonlocal"):
                self.p.line(f"Detected {len(members)} {kind} variables. "
                            f"Checking serializability...")
            looked = True
            self.p.level += 1
            try:
                for name, value in members:
                    self.p.line(f"Serializing {name!r} {_short(value)}...")
                    if not self.check(value, name, obj, depth - 1):
                        found = True
            finally:
                self.p.level -= 1
        if looked and not found:
            self.p.line(f"WARNING: Did not find non-serializable object in "
                        f"{_short(obj)}. This may be an oversight.")
        return found


def _short(obj):
    try:
        r = repr(obj)
    except Exception:
        r = object.__repr__(obj)
    return r if len(r) <= 100 else r[:97] + "..."


def inspect_serializability(base_obj, name=None, depth=3, print_file=None):
    """Find the members of `base_obj` that cannot be serialized.

    name: a name for base_obj in the report.  depth: how many levels of members
    to walk into (default 3).  print_file: where to print the report (default
    stdout).  Returns (serializable, failures): True and an empty set when
    base_obj serializes, else False and a set of FailureTuple (obj, name,
    parent), the innermost members found that fail.
    """
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an int >= 0, got {depth!r}.")
    p = _Printer(print_file)
    title = f"Checking Serializability of {_short(base_obj)}"
    rule = "=" * min(len(title), _RULE_MAX)
    p.line(rule)
    p.line(title)
    p.line(rule)
    inspector = _Inspector(p)
    ok = inspector.check(base_obj, name, None, depth)
    if not ok:
        p.line(rule)
        listed = "\n".join(f"\t{f!r}" for f in inspector.failures)
        p.line(f"Variable: \n\n{listed}\n\nwas found to be non-serializable. There may "
               f"be multiple other undetected variables that were non-serializable. ")
        p.line("Consider either removing the instantiation/imports of these variables "
               "or moving the instantiation into the scope of the function/class. ")
        p.line(rule)
    return ok, inspector.failures
