"""The driver API is layered (issue 13): a core that imports no API module, then
remote functions and actors, then api.py, then util/.  An import may only go to
its own layer or a lower one, and no driver module imports another in a circle —
imports inside functions count as much as those at the top of a file (a lazy
import that runs upward is a circle that only shows up at run time).

Rule for the one way up: connection.py (core) reaches init() (api) through a hook
api.py registers at import (`connection.set_auto_init`), a call at run time, not
an import; this test does not see it, on purpose.
"""
import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parent.parent / "beamlet"

# lowest first; a module may import its own layer and the layers before it
LAYERS = [
    ("core", {"beamlet._private.*", "beamlet.exceptions", "beamlet.gcs.*",
              "beamlet.worker.core_worker", "beamlet.worker.hub",
              "beamlet.worker.direct", "beamlet.object_ref", "beamlet.connection",
              "beamlet.job_config", "beamlet.runtime_env", "beamlet.runtime_env.*",
              "beamlet.cloudpickle",
              "beamlet.node", "beamlet.log_printer", "beamlet.generator",
              "beamlet._raylet",
              # tqdm_ray's driver side is called by the log printer; it uses only
              # the core worker
              "beamlet.experimental", "beamlet.experimental.*"}),
    # dag/ imports nothing of beamlet: the bind() methods of tasks and actors
    # make its nodes, so it sits in their layer
    ("tasks and actors", {"beamlet.submission", "beamlet.remote_function",
                          "beamlet.actor", "beamlet.dag", "beamlet.dag.*"}),
    ("api", {"beamlet.api", "beamlet.runtime_context"}),
    ("util", {"beamlet.util", "beamlet.util.*"}),
    # entry points: the package (re-exports) and the worker process's main
    ("entry", {"beamlet", "beamlet.worker.main", "beamlet.worker.streaming"}),
]
# process roles and tools, not part of the driver API (tests/test_layering.py)
# (the dashboard is served by the monitor process; it reads the cluster through
# the state API of util/)
OUTSIDE = ("beamlet.raylet", "beamlet.scheduler", "beamlet.cli", "beamlet.cluster_utils",
           "beamlet.__main__", "beamlet.job_submission", "beamlet.dashboard")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports(path: pathlib.Path, known: set) -> list:
    """(module, line, in_function) for every beamlet module `path` imports; for
    `from X import a` where X.a is a module, that module."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else \
        module_name(path).rpartition(".")[0]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef,
                                                      ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for a in child.names:
                    out.append((a.name, child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[:len(up) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    out.append((sub if sub in known else base, child.lineno,
                                in_function))
            visit(child, inner)
    visit(tree, False)
    return [(m, line, f) for m, line, f in out if m == "beamlet" or
            m.startswith("beamlet.")]


def layer_of(module: str):
    for i, (_, patterns) in enumerate(LAYERS):
        for p in patterns:
            if module == p or (p.endswith(".*") and (module.startswith(p[:-1]) or
                                                      module == p[:-2])):
                return i
    return None


def driver_modules() -> dict:
    return {m: p for m, p in all_modules().items()
            if not m.startswith(OUTSIDE) and m != "beamlet.worker"}


def test_every_driver_module_has_a_layer():
    missing = [m for m in driver_modules() if layer_of(m) is None]
    assert not missing, f"modules with no layer in LAYERS: {missing}"


def test_imports_go_down_only():
    known = set(all_modules())
    bad = []
    for m, path in driver_modules().items():
        mine = layer_of(m)
        for target, line, in_function in imports(path, known):
            if target.startswith(OUTSIDE):
                bad.append(f"{m}:{line} imports {target} (a process role)")
                continue
            t = layer_of(target)
            if t is not None and t > mine:
                how = "inside a function" if in_function else "at the top"
                bad.append(f"{m}:{line} imports {target} {how}: layer "
                           f"{LAYERS[mine][0]!r} may not import {LAYERS[t][0]!r}")
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    known = set(all_modules())
    mods = driver_modules()
    graph = {m: sorted({t for t, _, _ in imports(p, known) if t in mods and t != m})
             for m, p in mods.items()}
    # the package's __init__ re-exports everything: it is the top, not a member
    # of any circle (every `from . import x` would otherwise point back at it)
    graph.pop("beamlet", None)
    for deps in graph.values():
        if "beamlet" in deps:
            deps.remove("beamlet")
    cycles = _cycles(graph)
    assert not cycles, f"import circles: {cycles}"


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_the_checks_can_fail():
    # the helpers find a circle and an upward import when there is one
    assert _cycles({"a": ["b"], "b": ["a"], "c": []}) == [["a", "b"]]
    assert layer_of("beamlet.api") > layer_of("beamlet.object_ref")
    assert layer_of("beamlet.util.queue") > layer_of("beamlet.api")
