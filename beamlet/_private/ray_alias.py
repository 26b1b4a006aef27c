"""`import ray` as beamlet, for Ray programs run unchanged by `beamlet run SCRIPT`
or `python -m beamlet SCRIPT`.

The runner puts a meta path finder first on `sys.meta_path`: it resolves `ray`
to the module `beamlet` and `ray.X.Y` to `beamlet.X.Y` — the same module objects
(`sys.modules["ray"] is beamlet`, so `ray.ObjectRef is beamlet.ObjectRef`).  A
name beamlet does not have (`ray.serve`, `ray.rllib`) fails with an error that
says so.  Nothing named `ray` is installed anywhere: without the runner, `import
ray` behaves as before (it fails, or imports a real Ray).

Workers: a program's own modules (`import ray` at their top) and functions that
`import ray` when they run are imported in workers too.  The runner appends
JOB_MARKER to the driver's sys.path; the job record carries the driver's
sys.path to its workers (the `sys_path` field of `beamlet:job:<job>`), and a
worker that finds the marker there installs the same finder before it loads the
job's first function.  (Workers are shared by jobs: once a worker ran a task of
such a job, `ray` is beamlet in it for later jobs too.)
"""
import importlib
import importlib.util
import os
import sys
import traceback

ALIAS = "ray"
TARGET = "beamlet"
JOB_MARKER = "<beamlet: import ray as beamlet>"   # in a job's sys.path (not a directory)


class _AliasLoader:
    """Loads `ray.X` by importing `beamlet.X` and handing over that module."""

    def __init__(self, real_name):
        self.real_name = real_name
        self.real_spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.real_name)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module):
        # the import system set the alias spec on the module: give beamlet's back
        # (the module was executed when beamlet.X was imported)
        module.__spec__ = self.real_spec


class RayAliasFinder:
    """A meta path finder: `ray[.X]` is `beamlet[.X]`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == ALIAS or fullname.startswith(ALIAS + "."):
            real = TARGET + fullname[len(ALIAS):]
            if real not in sys.modules:
                try:
                    found = importlib.util.find_spec(real)
                except ModuleNotFoundError:
                    found = None
                if found is None:
                    raise _missing(fullname)
            return importlib.util.spec_from_loader(fullname, _AliasLoader(real))
        if fullname.startswith(TARGET + "."):
            # `from ray import serve` looks serve up as beamlet.serve (the module's
            # own name): find it as usual, or say clearly that it does not exist
            # (a ModuleNotFoundError named "beamlet.serve" would be turned into a
            # bare "cannot import name 'serve' from 'beamlet'")
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    return spec
            raise _missing(ALIAS + fullname[len(TARGET):])
        return None


def _missing(ray_name):
    real = TARGET + ray_name[len(ALIAS):]
    return ModuleNotFoundError(
        f"No module named {ray_name!r}: this program runs on beamlet (`import ray` is "
        f"beamlet), which has no {real}. beamlet implements Ray Core and ray.util / "
        f"ray.dag / ray.experimental.tqdm_ray (see docs/api.md); Ray's libraries "
        f"(Serve, Tune, RLlib, Data, Train) are not part of it.", name=ray_name)


def install():
    """Make `import ray` resolve to beamlet in this process (idempotent)."""
    if not any(isinstance(f, RayAliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, RayAliasFinder())


def run_program(script=None, module=None, args=()):
    """Run a Ray program (a script path, or a module as `python -m` would) with
    `ray` resolved to beamlet in it and in its workers; returns the exit status.
    SystemExit raised by the program propagates, as it would under python."""
    if (script is None) == (module is None):
        print("beamlet run: give a script (beamlet run SCRIPT [ARGS...]) or a module "
              "(beamlet run -m MODULE [ARGS...])", file=sys.stderr)
        return 2
    if script is not None and not os.path.isfile(script):
        print(f"beamlet run: can't open file {script!r}: no such file", file=sys.stderr)
        return 2
    import runpy   # (here: workers import this module for install() only)
    install()
    if JOB_MARKER not in sys.path:
        sys.path.append(JOB_MARKER)
    try:
        if script is not None:
            sys.argv = [script, *args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
        else:
            sys.argv = [module, *args]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        _print_program_traceback(e)
        return 1
    return 0


def _print_program_traceback(e):
    """The traceback as python would print it: without the runner's own frames."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in (__name__, "runpy"):
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb or e.__traceback__)
