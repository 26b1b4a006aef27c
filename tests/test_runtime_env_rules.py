"""The pure parts of runtime_env: gitignore patterns, packages (zips made from
directories, zips and modules, unpacked again), checks, and how environments
merge.  No cluster."""
import os
import zipfile

import pytest

from beamlet._private import config
from beamlet.runtime_env import RuntimeEnv, gitignore, packaging, resolve


@pytest.mark.parametrize("pattern,path,is_dir,ignored", [
    ("*.log", "a.log", False, True),
    ("*.log", "sub/deep/a.log", False, True),        # no slash: any depth
    ("*.log", "a.log.txt", False, False),
    ("/top.txt", "top.txt", False, True),
    ("/top.txt", "sub/top.txt", False, False),        # anchored at the root
    ("sub/x.txt", "sub/x.txt", False, True),
    ("sub/x.txt", "a/sub/x.txt", False, False),       # a middle slash anchors too
    ("build/", "build", True, True),
    ("build/", "build", False, False),                # directories only
    ("**/cache", "a/b/cache", True, True),
    ("**/cache", "cache", True, True),
    ("a/**/z", "a/z", False, True),
    ("a/**/z", "a/b/c/z", False, True),
    ("data/**", "data/x/y", False, True),
    ("data/**", "data", True, False),
    ("file?.txt", "file1.txt", False, True),
    ("file?.txt", "file10.txt", False, False),
    ("[ab].py", "a.py", False, True),
    ("[!ab].py", "a.py", False, False),
    ("[!ab].py", "c.py", False, True),
    ("# comment", "# comment", False, False),
    ("\\#hash", "#hash", False, True),
])
def test_gitignore_patterns(pattern, path, is_dir, ignored):
    assert gitignore.Rules([pattern]).ignored(path, is_dir) is ignored


def test_gitignore_last_rule_wins_and_rules_are_scoped_to_their_directory():
    rules = gitignore.Rules(["*.txt", "!keep.txt"])
    assert rules.ignored("a.txt", False) and not rules.ignored("keep.txt", False)
    scoped = gitignore.Rules(["*.tmp", "/only_here"], base="sub")
    assert scoped.ignored("sub/x.tmp", False) and scoped.ignored("sub/d/x.tmp", False)
    assert not scoped.ignored("x.tmp", False)
    assert scoped.ignored("sub/only_here", False)
    assert not scoped.ignored("sub/d/only_here", False)


def _tree(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def _names(blob):
    return sorted(n for n in zipfile.ZipFile(__import__("io").BytesIO(blob)).namelist()
                  if not n.endswith("/"))


def test_walk_honours_excludes_and_gitignore_files(tmp_path, monkeypatch):
    _tree(tmp_path, {"keep.py": "", "big.dat": "x", "sub/skip.log": "", "sub/keep.txt": "",
                     ".gitignore": "git_ignored.txt\n", "git_ignored.txt": "",
                     "sub/.gitignore": "local_only\n", "sub/local_only": "",
                     "local_only": "", "node_modules/a.js": ""})
    entries = packaging.walk(str(tmp_path), ["*.dat", "/sub/*.log", "node_modules/"])
    files = sorted(rel for rel, _, is_dir, _ in entries if not is_dir)
    assert files == [".gitignore", "keep.py", "local_only", "sub/.gitignore",
                     "sub/keep.txt"]
    # Ray's switch to upload what .gitignore files name
    monkeypatch.setenv("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "1")
    files = sorted(rel for rel, _, is_dir, _ in packaging.walk(str(tmp_path), [])
                   if not is_dir)
    assert "git_ignored.txt" in files and "sub/local_only" in files


def test_same_files_make_the_same_package_and_a_change_another(tmp_path):
    _tree(tmp_path, {"a.py": "1", "d/b.py": "2"})
    one = packaging.zip_entries(packaging.walk(str(tmp_path)))
    two = packaging.zip_entries(packaging.walk(str(tmp_path)))
    assert packaging.digest(one) == packaging.digest(two)
    (tmp_path / "a.py").write_text("changed")
    three = packaging.zip_entries(packaging.walk(str(tmp_path)))
    assert packaging.digest(three) != packaging.digest(one)


def test_package_size_is_capped_with_advice(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUNTIME_ENV_MAX_BYTES", 1000)
    _tree(tmp_path, {"small.txt": "x" * 10, "large.bin": "x" * 2000})
    with pytest.raises(ValueError, match=r"more than the limit.*excludes"):
        packaging.walk(str(tmp_path))
    # excluded files do not count
    assert packaging.walk(str(tmp_path), ["*.bin"])


def test_user_zip_with_one_top_directory_is_that_directory(tmp_path):
    z = tmp_path / "proj.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("proj/main.py", "print(1)")
        f.writestr("proj/pkg/__init__.py", "")
    blob = packaging.repack_zip(str(z), "working_dir")
    assert _names(blob) == ["main.py", "pkg/__init__.py"]
    dest = tmp_path / "out"
    packaging.unpack(blob, str(dest))
    assert (dest / "main.py").read_text() == "print(1)"
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as f:
        f.writestr("../escape.py", "")
    with pytest.raises(ValueError, match="outside"):
        packaging.repack_zip(str(bad), "working_dir")


def test_package_uris():
    d = "a" * 40
    assert packaging.digest_of_uri(packaging.uri(d)) == d
    assert packaging.digest_of_uri("gcs://other.zip") is None
    assert packaging.digest_of_uri("/local/dir") is None


@pytest.mark.parametrize("env,error,match", [
    ({"pip": ["requests"]}, ValueError, "pip.*not supported.*installs no packages"),
    ({"conda": "env"}, ValueError, "conda.*not supported"),
    ({"uv": ["x"]}, ValueError, "uv.*not supported"),
    ({"container": {"image": "x"}}, ValueError, "container.*not supported"),
    ({"image_uri": "x"}, ValueError, "image_uri.*not supported"),
    ({"pip": ["x"], "conda": "y"}, ValueError, "pip.*conda"),
    ({"working_dir": "s3://bucket/code.zip"}, ValueError, "remote URIs"),
    ({"py_modules": ["https://x/y.zip"]}, ValueError, "remote URIs"),
    ({"env_vars": {"A": 1}}, TypeError, "env_vars"),
    ({"working_dir": 3}, TypeError, "working_dir"),
    ({"py_modules": "mod"}, TypeError, "py_modules"),
    ({"excludes": "*.log"}, TypeError, "excludes"),
    ({"config": {"setup_timeout_seconds": 0}}, ValueError, "setup_timeout_seconds"),
    ({"config": {"nope": 1}}, ValueError, "unknown fields"),
    ({"plugin_x": 1}, ValueError, "unknown field 'plugin_x'"),
])
def test_what_beamlet_cannot_apply_is_refused_with_the_reason(env, error, match):
    with pytest.raises(error, match=match):
        resolve.validate(env)
    with pytest.raises(error, match=match):
        RuntimeEnv(**env)


def test_children_inherit_as_ray_documents():
    parent = {"working_dir": "gcs://p", "env_vars": {"A": "a", "B": "b"}}
    child = {"env_vars": {"B": "new", "C": "c"}, "py_modules": ["gcs://m"]}
    assert resolve.inherit(parent, child) == {
        "working_dir": "gcs://p", "py_modules": ["gcs://m"],
        "env_vars": {"A": "a", "B": "new", "C": "c"}}
    assert resolve.inherit(parent, {"working_dir": "gcs://q"})["working_dir"] == "gcs://q"
    assert resolve.inherit(None, child) == child


def test_job_and_driver_environments_merge_or_conflict(monkeypatch):
    job = {"env_vars": {"A": "a"}, "working_dir": "gcs://w"}
    assert resolve.merge_job(job, {"env_vars": {"C": "c"}}) == {
        "env_vars": {"A": "a", "C": "c"}, "working_dir": "gcs://w"}
    with pytest.raises(ValueError, match="env var 'A'"):
        resolve.merge_job(job, {"env_vars": {"A": "other"}})
    with pytest.raises(ValueError, match="working_dir"):
        resolve.merge_job(job, {"working_dir": "gcs://x"})
    monkeypatch.setenv("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
    assert resolve.merge_job(job, {"env_vars": {"A": "other"}})["env_vars"]["A"] == "other"


def test_env_var_references_expand_from_the_node():
    out = resolve.expand_env_vars({"P": "${BASE}:/opt", "Q": "${MISSING}x", "R": "plain"},
                                  {"BASE": "/usr"})
    assert out == {"P": "/usr:/opt", "Q": "x", "R": "plain"}


def test_environment_keys_name_content():
    a = {"env_vars": {"A": "1"}}
    assert resolve.env_key(a) == resolve.env_key({"env_vars": {"A": "1"}})
    assert resolve.env_key(a) != resolve.env_key({"env_vars": {"A": "2"}})
    assert resolve.env_key({}) is None
