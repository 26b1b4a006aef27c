"""`python -m beamlet SCRIPT.py [ARGS...]` (or `-m MODULE`) runs a Ray program
unchanged, as `beamlet run` does; `python -m beamlet COMMAND ...` is the `beamlet`
command line (start, stop, status, ...)."""
import sys

from .cli import main


def _argv(argv):
    if argv and (argv[0] == "-m" or argv[0].endswith(".py")):
        return ["run", *argv]
    return argv


if __name__ == "__main__":
    sys.exit(main(_argv(sys.argv[1:])))
