"""runtime_env applied on real clusters: env_vars, working_dir (a directory or a
zip, excludes and .gitignore honoured), py_modules, on init, tasks and actors,
merged as Ray merges them; workers pooled by environment; code shipped to
another node (test_runtime_env_cluster.py); setup failures reported at get()."""
import os
import sys
import zipfile

import pytest

import beamlet as ray
from beamlet._private import config


def _tree(root, files):
    for rel, text in files.items():
        path = os.path.join(str(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return str(root)


@ray.remote
def environ(*names):
    return {n: os.environ.get(n) for n in names}


@ray.remote
def where():
    return {"cwd": os.getcwd(), "path0": sys.path[0], "pid": os.getpid(),
            "pythonpath": os.environ.get("PYTHONPATH", "")}


@ray.remote
def files_here():
    out = []
    for d, _, names in os.walk("."):
        out += [os.path.relpath(os.path.join(d, n), ".") for n in names]
    return sorted(out)


@ray.remote
def call(module, fn="f"):
    import importlib
    return getattr(importlib.import_module(module), fn)()


@ray.remote
class EnvActor:
    def read(self, name):
        return os.environ.get(name), os.getcwd()

    def child_sees(self, name):
        return ray.get(environ.remote(name))[name]


# ---------------------------------------------------------------- env_vars
def test_env_vars_reach_tasks_and_actors_and_only_them(shared_cluster):
    env = {"env_vars": {"BL_X": "1", "BL_PATHISH": "${HOME}:/extra",
                        "BL_NONE": "${BL_NOT_SET_ANYWHERE}/x"}}
    got = ray.get(environ.options(runtime_env=env).remote("BL_X", "BL_PATHISH", "BL_NONE"))
    assert got == {"BL_X": "1", "BL_PATHISH": os.environ["HOME"] + ":/extra",
                   "BL_NONE": "/x"}
    assert ray.get(environ.remote("BL_X")) == {"BL_X": None}   # a plain worker
    a = EnvActor.options(runtime_env={"env_vars": {"BL_A": "actor"}}).remote()
    assert ray.get(a.read.remote("BL_A"))[0] == "actor"
    # a task the actor submits inherits its environment
    assert ray.get(a.child_sees.remote("BL_A")) == "actor"
    ray.kill(a)


def test_workers_are_pooled_by_environment(shared_cluster):
    a = {"env_vars": {"BL_POOL": "a"}}
    b = {"env_vars": {"BL_POOL": "b"}}
    pa1 = ray.get(where.options(runtime_env=a).remote())["pid"]
    pa2 = ray.get(where.options(runtime_env=a).remote())["pid"]
    pb = ray.get(where.options(runtime_env=b).remote())["pid"]
    plain = {ray.get(where.remote())["pid"] for _ in range(3)}
    assert pa1 == pa2                        # reused for its own environment
    assert pb != pa1 and not ({pa1, pb} & plain)   # never for another one


@ray.remote(runtime_env={"env_vars": {"BL_P": "parent", "BL_SHARED": "p"}})
def parent_task():
    inherited = ray.get(environ.remote("BL_P", "BL_SHARED"))
    merged = ray.get(environ.options(runtime_env={"env_vars": {"BL_SHARED": "child"}})
                     .remote("BL_P", "BL_SHARED"))
    return inherited, merged


def test_nested_tasks_inherit_and_merge_env_vars(shared_cluster):
    inherited, merged = ray.get(parent_task.remote())
    assert inherited == {"BL_P": "parent", "BL_SHARED": "p"}
    assert merged == {"BL_P": "parent", "BL_SHARED": "child"}


# ---------------------------------------------------------------- working_dir
def test_working_dir_is_the_workers_cwd_and_first_on_sys_path(shared_cluster, tmp_path):
    wd = _tree(tmp_path / "wd", {"data.txt": "payload", "wdmod.py": "def f():\n    return 7\n"})
    env = {"working_dir": wd}
    w = ray.get(where.options(runtime_env=env).remote())
    assert w["cwd"] == w["path0"] and w["cwd"] != wd      # the node's copy
    assert os.path.basename(w["cwd"]) != "wd"
    assert w["pythonpath"].split(os.pathsep)[0] == w["cwd"]   # for subprocesses too
    assert ray.get(call.options(runtime_env=env).remote("wdmod")) == 7

    @ray.remote
    def read():
        return open("data.txt").read()
    assert ray.get(read.options(runtime_env=env).remote()) == "payload"
    with pytest.raises(ModuleNotFoundError):
        ray.get(call.remote("wdmod"))        # a plain worker does not have it


def test_excludes_and_gitignore_are_not_uploaded(shared_cluster, tmp_path):
    wd = _tree(tmp_path / "wd", {
        "main.py": "", "weights.ckpt": "big", "logs/run.log": "", "sub/keep.txt": "",
        "sub/scratch.tmp": "", ".gitignore": "*.tmp\n/logs/\n"})
    got = ray.get(files_here.options(runtime_env={
        "working_dir": wd, "excludes": ["*.ckpt"]}).remote())
    assert got == [".gitignore", "main.py", "sub/keep.txt"]


def test_a_zip_working_dir_with_one_top_directory(shared_cluster, tmp_path):
    z = tmp_path / "proj.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("proj/zipmod.py", "def f():\n    return 'zipped'\n")
    assert ray.get(call.options(runtime_env={"working_dir": str(z)}).remote(
        "zipmod")) == "zipped"


def test_too_large_a_working_dir_is_refused_at_the_call(shared_cluster, tmp_path,
                                                       monkeypatch):
    wd = _tree(tmp_path / "wd", {"blob.bin": "x" * 5000})
    monkeypatch.setattr(config, "RUNTIME_ENV_MAX_BYTES", 4096)
    with pytest.raises(ValueError, match=r"working_dir .* more than the limit"):
        where.options(runtime_env={"working_dir": wd}).remote()
    with pytest.raises(ValueError, match="no such directory"):
        where.options(runtime_env={"working_dir": str(tmp_path / "missing")}).remote()


# ---------------------------------------------------------------- py_modules
def test_py_modules_directories_files_zips_and_module_objects(shared_cluster, tmp_path):
    src = tmp_path / "src"
    _tree(src, {"pkg_a/__init__.py": "def f():\n    return 'pkg_a'\n",
                "single_b.py": "def f():\n    return 'single_b'\n",
                "pkg_c/__init__.py": "def f():\n    return 'pkg_c'\n"})
    z = tmp_path / "d.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("root/pkg_d/__init__.py", "def f():\n    return 'pkg_d'\n")
    sys.path.insert(0, str(src))
    try:
        import pkg_c
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("pkg_c", None)
    env = {"py_modules": [str(src / "pkg_a"), str(src / "single_b.py"), str(z), pkg_c]}
    got = ray.get([call.options(runtime_env=env).remote(m)
                   for m in ("pkg_a", "single_b", "pkg_c", "pkg_d")])
    assert got == ["pkg_a", "single_b", "pkg_c", "pkg_d"]
    with pytest.raises(ValueError, match="wheel"):
        where.options(runtime_env={"py_modules": [str(tmp_path / "x-1.0-py3-none-any.whl")]}
                      ).remote()


# ---------------------------------------------------------------- refused fields
@pytest.mark.parametrize("field,value", [("pip", ["requests"]), ("conda", "myenv"),
                                         ("uv", ["requests"]),
                                         ("container", {"image": "x"})])
def test_package_managers_and_containers_are_refused_clearly(field, value):
    with pytest.raises(ValueError, match=f"{field}.*not supported by beamlet"):
        ray.remote(runtime_env={field: value})(lambda: 1)
    with pytest.raises(ValueError, match=f"{field}.*not supported by beamlet"):
        where.options(runtime_env={field: value})
    with pytest.raises(ValueError, match=f"{field}.*not supported by beamlet"):
        ray.init(num_cpus=1, runtime_env={field: value})   # checked before anything
