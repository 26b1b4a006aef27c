"""How coupled the raylet's modules are: for each module of beamlet/raylet/, the
distinct attributes it reaches on objects it does not own, and how many of those
are outside the declared interface of the component they belong to.

    python bench/coupling.py            # one line per module
    python bench/coupling.py -v         # and every attribute reached

What counts as "an object it does not own" (read from the source, no import):
  - `self.X` where X is neither a method of the class nor assigned on `self` in
    it: state of a shared object (a mixin reading the class it is mixed into);
  - `dep.X`, `self.dep.X` or an alias of it (`d = self.dep; d.X`), where `dep`
    is a component handed in: a parameter annotated with a component class (one
    that declares INTERFACE), or -- the layout before the components -- the
    Raylet itself handed in as `raylet` (`self.r = raylet`, `self.om = raylet.om`).
Records passed between components (Task, Obj, Worker, Actor, a connection as a
holder of refs) are data, not components, and are not counted.

A component declares what others may use as a class attribute INTERFACE (method
names, and a few read-only attributes); tests/test_layering.py keeps every reach
inside those declarations, using the analysis below.
"""
import argparse
import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RAYLET = ROOT / "beamlet" / "raylet"
# calls that change a container: never on another component's attribute
MUTATORS = {"append", "appendleft", "extend", "extendleft", "pop", "popleft", "remove",
            "clear", "add", "discard", "update", "setdefault", "insert", "sort"}


def _root_name(node):
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _annotation(arg):
    a = arg.annotation
    if isinstance(a, ast.Constant) and isinstance(a.value, str):
        return a.value
    if isinstance(a, ast.Name):
        return a.id
    return None


def interfaces(paths=None) -> dict:
    """class name -> (module name, set of INTERFACE names) for every class of the
    raylet package that declares INTERFACE."""
    out = {}
    for path in paths or sorted(RAYLET.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for stmt in node.body:
                if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                        and isinstance(stmt.targets[0], ast.Name)
                        and stmt.targets[0].id == "INTERFACE"):
                    names = ast.literal_eval(stmt.value)
                    out[node.name] = (path.stem, set(names))
    return out


def class_members(cls) -> set:
    """Methods, class-level names and attributes assigned on self in `cls`."""
    own = set()
    for stmt in cls.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            own.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            own.add(stmt.target.id)
    for node in ast.walk(cls):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for e in ast.walk(t):
                if (isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                        and e.value.id == "self"):
                    own.add(e.attr)
    return own


class Reach:
    """One access of a foreign attribute."""
    __slots__ = ("module", "cls", "target", "name", "line", "kind")

    def __init__(self, module, cls, target, name, line, kind):
        self.module, self.cls, self.target = module, cls, target
        self.name, self.line, self.kind = name, line, kind

    def __repr__(self):
        return f"{self.module}.py:{self.line} {self.cls}: {self.kind} {self.target}.{self.name}"


def _functions(cls):
    return [n for n in ast.walk(cls) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def analyse_class(module, cls, comps) -> list:
    """Every reach of `cls` into objects it does not own (a list of Reach)."""
    own = class_members(cls)
    refs = {}       # self attribute -> component class name ("Raylet" if unknown)
    for f in _functions(cls):
        params = {a.arg: _annotation(a) for a in f.args.args + f.args.kwonlyargs}
        for node in ast.walk(f):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            t, v = node.targets[0], node.value
            if not (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                    and t.value.id == "self"):
                continue
            if isinstance(v, ast.Name) and params.get(v.id) in comps:
                refs[t.attr] = params[v.id]
            elif (isinstance(v, ast.Call) and isinstance(v.func, ast.Name)
                  and v.func.id in comps and v.func.id != cls.name):
                refs[t.attr] = v.func.id    # a component it creates (the shell)
            elif isinstance(v, (ast.Name, ast.Attribute)) and _root_name(v) == "raylet":
                refs[t.attr] = ast.unparse(v)     # the Raylet, or a part of it
    out = []
    for f in _functions(cls):
        params = {a.arg: _annotation(a) for a in f.args.args + f.args.kwonlyargs}
        local = {p: c for p, c in params.items() if c in comps}   # name -> class
        if "raylet" in params:
            local["raylet"] = "raylet"
        # aliases: x = self.dep (and x, y = self.dep, self.other)
        for node in ast.walk(f):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            t, v = node.targets[0], node.value
            pairs = [(t, v)]
            if isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple) and \
                    len(t.elts) == len(v.elts):
                pairs = zip(t.elts, v.elts)
            for t, v in pairs:
                if (isinstance(t, ast.Name) and isinstance(v, ast.Attribute)
                        and isinstance(v.value, ast.Name) and v.value.id == "self"
                        and v.attr in refs):
                    local[t.id] = refs[v.attr]
        parents = {}
        for node in ast.walk(f):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(f):
            if not isinstance(node, ast.Attribute):
                continue
            base = node.value
            target = None
            if isinstance(base, ast.Name) and base.id in local:
                target = local[base.id]
            elif (isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
                  and base.value.id == "self" and base.attr in refs):
                target = refs[base.attr]
            elif (isinstance(base, ast.Name) and base.id == "self"
                  and node.attr not in own and node.attr not in refs):
                target = "self"     # state of a shared object (mixin style)
            if target is None:
                continue
            kind = "read"
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                kind = "write"
            else:
                p = parents.get(node)
                if isinstance(p, ast.Attribute) and p.attr in MUTATORS and \
                        isinstance(parents.get(p), ast.Call):
                    kind = "mutate"
                elif isinstance(p, ast.Subscript) and isinstance(p.ctx, (ast.Store, ast.Del)):
                    kind = "mutate"
                elif isinstance(p, ast.AugAssign) and p.target is node:
                    kind = "write"
            out.append(Reach(module, cls.name, target, node.attr, node.lineno, kind))
    return out


def analyse(paths=None) -> dict:
    """module name -> list of Reach, for every module of the raylet package."""
    paths = paths or sorted(RAYLET.glob("*.py"))
    comps = interfaces(paths)
    out = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        reaches = []
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                reaches += analyse_class(path.stem, node, comps)
        out[path.stem] = reaches
    return out


def outside_interface(reach, comps) -> bool:
    if reach.kind != "read":
        return True
    entry = comps.get(reach.target)
    return entry is None or reach.name not in entry[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="list every attribute reached, per module")
    ap.add_argument("--root", default=str(ROOT),
                    help="the checkout to measure (default: this one)")
    args = ap.parse_args()
    global RAYLET
    RAYLET = pathlib.Path(args.root) / "beamlet" / "raylet"
    comps = interfaces()
    report = analyse()
    print(f"{'module':22s} {'reached':>8s} {'outside interface':>18s}")
    total = bad_total = 0
    for module, reaches in report.items():
        names = {(r.target, r.name) for r in reaches}
        bad = {(r.target, r.name) for r in reaches if outside_interface(r, comps)}
        total += len(names)
        bad_total += len(bad)
        print(f"{module:22s} {len(names):8d} {len(bad):18d}")
        if args.verbose:
            for target, name in sorted(names):
                mark = " (outside)" if (target, name) in bad else ""
                print(f"    {target}.{name}{mark}")
    print(f"{'all':22s} {total:8d} {bad_total:18d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
