"""`fmblocks <command>`: a thin dispatcher over library functions.

Each command lives in `fmblocks.commands.<name>` and exposes `register(subparsers)`, which adds
its parser and sets `func=` to a function of the parsed arguments returning an exit code.
"""

import argparse
import importlib
import sys

from fmblocks.errors import FmblocksError

COMMANDS = ["demo", "cost", "tokenize", "train", "sample", "embed", "vqvae", "mnist", "explain", "ddpm"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmblocks", description="The building blocks of transformer foundation models: tokenize, build, train, "
        "sample, measure and look inside.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name in COMMANDS:
        importlib.import_module(f"fmblocks.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FmblocksError as err:
        print(f"fmblocks {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
