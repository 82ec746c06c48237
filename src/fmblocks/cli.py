"""`fmblocks <command>`: a thin dispatcher over library functions.

Each command lives in `fmblocks.commands.<name>` (a dash in the name is an underscore there) and
exposes `register(subparsers)`, which adds its parser and sets `func=` to a function of the parsed
arguments returning an exit code. Command modules import only the standard library at module level
(torch and the models load inside `func`), so `--help` and argument errors answer at once.

Errors are reported here, in one place: an `FmblocksError` or `OSError` becomes one line on stderr
and exit code 2 (`--debug` shows the traceback instead); Ctrl-C exits with 128 + the signal number,
after the trainer's one-line note of where it saved the run.
"""

import argparse
import importlib
import signal
import sys

from fmblocks import __version__
from fmblocks.errors import FmblocksError, TrainingInterrupted

COMMANDS = ["demo", "cost", "tokenize", "prepare", "train", "sample", "embed", "fill-mask", "convert", "vqvae", "mnist",
            "explain", "ddpm", "pair-demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmblocks", description="The building blocks of transformer foundation models: tokenize, build, train, "
        "sample, measure and look inside.")
    parser.add_argument("--version", action="version", version=f"fmblocks {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name in COMMANDS:
        importlib.import_module(f"fmblocks.commands.{name.replace('-', '_')}").register(subparsers)
    return parser


def describe(err: BaseException) -> str:
    """One line for an error: an OSError as 'reason: file', anything else as its message."""
    if isinstance(err, OSError) and not isinstance(err, FmblocksError) and err.strerror:
        files = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        return f"{err.strerror}: {files}" if files else err.strerror
    return str(err) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as stop:
        if args.debug:
            raise
        print(f"fmblocks {args.command}: {stop}", file=sys.stderr)
        return 128 + stop.signal
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"fmblocks {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except (FmblocksError, OSError) as err:
        if args.debug:
            raise
        print(f"fmblocks {args.command}: error: {describe(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
