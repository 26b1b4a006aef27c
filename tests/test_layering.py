"""The tree shows the architecture: the core (beamlet/_private) imports no process
role, and the pure state modules do no I/O."""
import ast
import importlib.util
import pathlib

PKG = pathlib.Path(__file__).resolve().parent.parent / "beamlet"
ROLES = ("gcs", "raylet", "scheduler", "worker")


def imports_of(path):
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                # resolve relative to the file's package
                parts = path.relative_to(PKG.parent).with_suffix("").parts[:-node.level]
                mod = ".".join(parts + ((mod,) if mod else ()))
            out.add(mod)
    return out


def test_core_imports_no_role():
    for path in (PKG / "_private").glob("*.py"):
        for mod in imports_of(path):
            for role in ROLES:
                assert not mod.startswith(f"beamlet.{role}"), f"{path.name} imports {mod}"


def test_pure_state_modules_do_no_io():
    io_modules = {"asyncio", "socket", "subprocess", "redis", "os", "mmap", "threading"}
    for name in ("raylet/scheduler.py", "raylet/object_store.py",
                 "raylet/placement_groups.py"):
        mods = imports_of(PKG / name)
        assert not (mods & io_modules), f"{name} imports {mods & io_modules}"


def test_public_init_only_reexports():
    tree = ast.parse((PKG / "__init__.py").read_text())
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.Expr)), \
            f"beamlet/__init__.py should only re-export, found {type(node).__name__}"


# ------------------------------------------------------------------ the raylet's components
# Each concern of the raylet is a component class that owns its state and lists, in
# INTERFACE, what the other components may use of it (methods, and a few read-only
# attributes); the shell (raylet/raylet.py) creates them and wires them together.
# The rule kept here: a component reaches another only through that list -- never
# writes its attributes, never mutates what it exposes -- and holds no Raylet.
# bench/coupling.py has the analysis (and prints the numbers).
RAYLET = PKG / "raylet"
SHELL = "raylet"
PURE = ("scheduler", "object_store", "placement_groups", "common")
NOT_COMPONENTS = ("peers", "__init__")


def _coupling():
    spec = importlib.util.spec_from_file_location(
        "coupling", PKG.parent / "bench" / "coupling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _component_modules():
    return [p for p in sorted(RAYLET.glob("*.py"))
            if p.stem not in PURE + NOT_COMPONENTS + (SHELL,)]


def _classes_with_interface(path):
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == "INTERFACE"
                        for t in stmt.targets):
                    out[node.name] = (node, ast.literal_eval(stmt.value))
    return out


def test_raylet_components_reach_each_other_only_through_their_interfaces():
    coupling = _coupling()
    comps = coupling.interfaces()
    # every component of the shell's drawing declares its interface
    for name in ("ObjectStore", "LocalScheduler", "Actors", "Constraints",
                 "ObjectManager", "ClusterScheduler", "NodeTable", "WorkerPool",
                 "GcsWriter", "ResourceSet", "PlacementGroups"):
        assert name in comps, f"{name} declares no INTERFACE"
    bad = [r for reaches in coupling.analyse().values() for r in reaches
           if coupling.outside_interface(r, comps)]
    assert not bad, ("reaches into another component outside its INTERFACE "
                     "(add a method to that component, or declare it):\n" +
                     "\n".join(map(repr, bad)))


def test_the_analysis_sees_a_reach_outside_an_interface(tmp_path):
    """The rule above can fail: a module that reads another component's field,
    writes one, or mutates an exposed attribute is caught."""
    coupling = _coupling()
    (tmp_path / "a.py").write_text(
        "class A:\n"
        "    INTERFACE = ('ok', 'items')\n"
        "    def __init__(self):\n"
        "        self.items = []\n"
        "        self.secret = 1\n"
        "    def ok(self):\n"
        "        return 1\n")
    (tmp_path / "b.py").write_text(
        "class B:\n"
        "    INTERFACE = ()\n"
        "    def wire(self, a: 'A'):\n"
        "        self.a = a\n"
        "    def f(self):\n"
        "        self.a.ok()\n"
        "        x = self.a.secret\n"
        "        self.a.secret = 2\n"
        "        self.a.items.append(x)\n"
        "        a = self.a\n"
        "        return a.secret\n"
        "class C:\n"
        "    def __init__(self, raylet):\n"
        "        self.r = raylet\n"
        "    def g(self):\n"
        "        return self.r.store\n")
    paths = sorted(tmp_path.glob("*.py"))
    comps = coupling.interfaces(paths)
    reaches = coupling.analyse(paths)["b"]
    bad = sorted((r.target, r.name, r.kind) for r in reaches
                 if coupling.outside_interface(r, comps))
    assert bad == [("A", "items", "mutate"), ("A", "secret", "read"),
                   ("A", "secret", "read"), ("A", "secret", "write"),
                   ("raylet", "store", "read")]


def test_interfaces_name_real_members():
    for path in sorted(RAYLET.glob("*.py")):
        coupling = _coupling()
        for name, (cls, iface) in _classes_with_interface(path).items():
            members = coupling.class_members(cls)
            missing = [m for m in iface if m not in members]
            assert not missing, f"{path.name}: {name}.INTERFACE names {missing}, " \
                                f"which {name} does not define"


def test_component_modules_import_no_other_component():
    """Components get each other from the shell (wire), so their modules import
    only records, pure state and helpers from the raylet package at run time
    (imports under TYPE_CHECKING are for annotations only)."""
    components = set()
    for path in sorted(RAYLET.glob("*.py")):
        if path.stem not in PURE:
            components.update(_classes_with_interface(path))
    for path in _component_modules() + [RAYLET / f"{m}.py" for m in PURE]:
        tree = ast.parse(path.read_text())
        for node in tree.body:      # top level only: TYPE_CHECKING blocks are If nodes
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                named = {a.name for a in node.names} & components
                assert not named, f"{path.name} imports the component(s) {named}"


def test_only_the_shell_creates_components_and_none_holds_the_raylet():
    components = set()
    for path in _component_modules():
        components.update(_classes_with_interface(path))
    for path in sorted(RAYLET.glob("*.py")):
        if path.stem == SHELL:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in components, \
                    f"{path.name}:{node.lineno} creates a {node.func.id}"
            if isinstance(node, ast.arg):
                assert node.arg != "raylet" and not (
                    isinstance(node.annotation, ast.Constant)
                    and node.annotation.value == "Raylet"), \
                    f"{path.name}:{node.lineno} takes the Raylet"


def test_component_files_say_what_they_own_use_and_handle():
    for path in _component_modules() + [RAYLET / f"{SHELL}.py"]:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        for part in ("Owns:", "Uses:", "Messages:"):
            assert part in doc, f"{path.name}'s docstring does not say {part!r}"


def test_placement_policy_is_pure():
    io_modules = {"asyncio", "socket", "subprocess", "redis", "os", "mmap", "threading"}
    for name in ("scheduler/placement.py",):
        mods = imports_of(PKG / name)
        assert not (mods & io_modules), f"{name} imports {mods & io_modules}"
