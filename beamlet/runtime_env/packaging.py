"""Packages of a runtime_env: the local directories, zip files and modules of
`working_dir` and `py_modules`, as content-addressed zip files.

    submitter (driver, or a task)          GCS                    every node
    directory ──zip (excludes, .gitignore)──▶ beamlet:pkg:<sha1> ──▶ session/
    .zip / module / .py file                 (SET NX: once)         runtime_resources/<sha1>/
                                                                    (once per node: unpack)

A package is named by the SHA-1 of its zip, written `gcs://_beamlet_pkg_<sha1>.zip`
in the environment the workers get.  Zips are made deterministically (sorted
entries, fixed times), so the same files give the same name and are uploaded
and unpacked once.  The whole size of what a package holds is capped
(config.RUNTIME_ENV_MAX_BYTES, Ray's 100 MiB).

This module does file I/O only (no GCS): `resolve.py` uploads, `setup.py`
unpacks on the nodes.
"""
import hashlib
import io
import os
import stat
import zipfile

from .._private import config
from . import gitignore

URI_PREFIX = "gcs://_beamlet_pkg_"
URI_SUFFIX = ".zip"
# Ray's name for the switch that makes uploads ignore .gitignore files (ours too)
IGNORE_GITIGNORE_ENV = ("BEAMLET_RUNTIME_ENV_IGNORE_GITIGNORE",
                        "RAY_RUNTIME_ENV_IGNORE_GITIGNORE")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_MiB = 1024 * 1024


def uri(digest: str) -> str:
    return f"{URI_PREFIX}{digest}{URI_SUFFIX}"


def digest_of_uri(value: str):
    """The package digest a `gcs://_beamlet_pkg_<sha1>.zip` URI names, else None."""
    if isinstance(value, str) and value.startswith(URI_PREFIX) and \
            value.endswith(URI_SUFFIX):
        d = value[len(URI_PREFIX):-len(URI_SUFFIX)]
        if len(d) == 40 and all(c in "0123456789abcdef" for c in d):
            return d
    return None


def digest(blob: bytes) -> str:
    return hashlib.sha1(blob).hexdigest()


class TooLarge(ValueError):
    pass


def _too_large(what, path, size):
    limit = config.RUNTIME_ENV_MAX_BYTES
    return TooLarge(
        f"runtime_env {what} {path} holds {size / _MiB:.1f} MiB, more than the limit "
        f"of {limit / _MiB:.0f} MiB (BEAMLET_RUNTIME_ENV_MAX_BYTES): every node "
        f"downloads it. Leave out what the job does not need with "
        f"runtime_env['excludes'] (gitignore patterns, e.g. ['data/', '*.ckpt']) or a "
        f".gitignore file, or put large data elsewhere (put() it, or shared storage).")


def _use_gitignore() -> bool:
    return not any(os.environ.get(v, "").strip() == "1" for v in IGNORE_GITIGNORE_ENV)


def _read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def walk(top: str, excludes=(), what="working_dir"):
    """[(relative posix path, absolute path, is_dir, stat)] of what a package of
    directory `top` holds: `excludes` and the tree's .gitignore files honoured,
    symbolic links followed (as Ray does: the files they point to are packed),
    each real directory entered once.  Raises TooLarge past the size limit."""
    limit = config.RUNTIME_ENV_MAX_BYTES
    rules = gitignore.Rules()
    explicit = gitignore.Rules(excludes)
    use_gitignore = _use_gitignore()
    seen = set()
    out = []
    total = 0

    def ignored(rel, is_dir):
        return rules.ignored(rel, is_dir) or explicit.ignored(rel, is_dir)

    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:       # a link back up the tree
            dirnames[:] = []
            continue
        seen.add(real)
        rel_dir = os.path.relpath(dirpath, top).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        if use_gitignore and ".gitignore" in filenames:
            rules.add(_read_lines(os.path.join(dirpath, ".gitignore")), rel_dir)

        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if not ignored(rel, True):
                keep.append(d)
                path = os.path.join(dirpath, d)
                out.append((rel, path, True, os.stat(path)))
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if ignored(rel, False):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue    # a dangling link
            if not stat.S_ISREG(st.st_mode):
                continue    # sockets, fifos: nothing to ship
            total += st.st_size
            if total > limit:
                raise _too_large(what, top, total)
            out.append((rel, path, False, st))
    return out


def signature(entries) -> tuple:
    """What tells whether a directory changed since it was packed (sizes, times,
    modes), read without opening any file."""
    return tuple((rel, is_dir, st.st_size, st.st_mtime_ns, st.st_mode)
                 for rel, _, is_dir, st in entries)


def _info(name, mode, is_dir):
    zi = zipfile.ZipInfo(name + ("/" if is_dir else ""), date_time=_FIXED_TIME)
    zi.external_attr = (stat.S_IMODE(mode) | (stat.S_IFDIR if is_dir else stat.S_IFREG)) << 16
    zi.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    return zi


def zip_entries(entries, prefix: str = "") -> bytes:
    """A deterministic zip of walk() entries, each under `prefix/` if given."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel, path, is_dir, st in sorted(entries, key=lambda e: e[0]):
            name = f"{prefix}/{rel}" if prefix else rel
            if is_dir:
                z.writestr(_info(name, st.st_mode, True), b"")
            else:
                with open(path, "rb") as f:
                    z.writestr(_info(name, st.st_mode, False), f.read())
    return buf.getvalue()


def zip_single_file(path: str) -> bytes:
    """A package holding one module file (`py_modules=["/x/mod.py"]`)."""
    st = os.stat(path)
    if st.st_size > config.RUNTIME_ENV_MAX_BYTES:
        raise _too_large("py_modules entry", path, st.st_size)
    return zip_entries([(os.path.basename(path), path, False, st)])


def repack_zip(path: str, what: str) -> bytes:
    """A user's .zip as a package: when everything in it is under one top-level
    directory, that directory's contents (as Ray reads such zips); checked to
    unpack below the size limit and inside its directory."""
    try:
        src = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"runtime_env {what} {path} is not a readable zip file: {e}.") \
            from None
    with src:
        infos = [i for i in src.infolist() if not i.filename.startswith("__MACOSX/")]
        total = sum(i.file_size for i in infos)
        if total > config.RUNTIME_ENV_MAX_BYTES:
            raise _too_large(what, path, total)
        names = [i.filename for i in infos]
        for n in names:
            parts = n.split("/")
            if n.startswith("/") or ".." in parts:
                raise ValueError(f"runtime_env {what} {path}: the entry {n!r} would "
                                 f"unpack outside its directory.")
        tops = {n.split("/", 1)[0] for n in names if n}
        strip = ""
        if len(tops) == 1 and all("/" in n for n in names):
            strip = tops.pop() + "/"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for i in sorted(infos, key=lambda i: i.filename):
                name = i.filename[len(strip):]
                if not name or name == "/":
                    continue
                is_dir = name.endswith("/")
                mode = (i.external_attr >> 16) or (0o755 if is_dir else 0o644)
                z.writestr(_info(name.rstrip("/"), mode, is_dir),
                           b"" if is_dir else src.read(i))
    return buf.getvalue()


def unpack(blob: bytes, dest: str) -> None:
    """Unpack package `blob` into the new directory `dest` (file modes kept)."""
    os.makedirs(dest, mode=0o700)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for i in z.infolist():
            target = os.path.realpath(os.path.join(dest, i.filename))
            if not target.startswith(os.path.realpath(dest) + os.sep):
                raise ValueError(f"package entry {i.filename!r} is outside its directory")
            if i.filename.endswith("/"):
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(z.read(i))
            mode = stat.S_IMODE(i.external_attr >> 16)
            if mode:
                os.chmod(target, mode)
