"""The ``giip`` command line. Each sub-command lives in its own module of this package and
provides ``add_parser(subparsers)``, which registers the command and sets ``func(args) -> int``."""
from __future__ import annotations

import argparse
import os
import importlib
import sys

from .. import __version__

SUBCOMMANDS = ("build", "info", "apply", "report", "interpret", "compare")


class CLIError(Exception):
    """An error whose message is shown to the user as is (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="giip",
        description="GIIP structure analysis of disordered materials (Hardin et al. 2022): build a "
        "reference map from training trajectories, then classify and map every atom of new structures.",
    )
    parser.add_argument("--version", action="version", version=f"giip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # sub-command not part of this build
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into head & co.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print("giip: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, OSError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"giip {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
