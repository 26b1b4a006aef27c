"""The tree shows the architecture: the core (beamlet/_private) imports no process
role, and the pure state modules do no I/O."""
import ast
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
