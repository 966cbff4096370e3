"""The ``giip`` command line. Each sub-command lives in its own module of this package and
provides ``add_parser(subparsers)``, which registers the command and sets ``func(args) -> int``."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings

from .. import __version__

SUBCOMMANDS = ("build", "info", "apply", "report", "interpret", "compare", "softness", "generate")


class CLIError(Exception):
    """An error whose message is shown to the user as is (no traceback)."""


def rebuild_command(args, words, positional, output, *, skip=(), zero_is_unset=()) -> str:
    """The command, rebuilt from the parsed options ``args`` (the same whether giip was run from a
    shell or through ``giip_plugin.cli.main([...])``): ``words`` (e.g. ``["giip", "build"]``), the
    positional arguments ``positional``, ``-o output``, then every option that was given (options in
    ``skip`` and those in ``zero_is_unset`` equal to 0 left out)."""
    import shlex

    parts = [*words, *positional, "-o", output]
    internal = {"func", "command", "debug", "no_progress", *skip}
    for key, value in vars(args).items():
        if key in internal or key.startswith("_"):
            continue
        if value is None or value is False or (key in zero_is_unset and value == 0):
            continue
        opt = "--" + key.replace("_", "-")
        parts += [opt] if value is True else [opt, str(value)]
    return " ".join(shlex.quote(str(p)) for p in parts)


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, SLURM) received: unwinds like Ctrl-C, so that outputs are
    left as they were, temporary files are removed and checkpoints are kept."""


@contextlib.contextmanager
def _terminate_like_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_as_messages(command: str):
    """Warnings printed as ``giip COMMAND: warning: ...`` (no Python source lines), each once."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        shown = set()

        def show(message, category, filename, lineno, file=None, line=None):
            text = str(message)
            if text in shown:
                return
            shown.add(text)
            print(f"giip {command}: warning: {text}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        yield


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _terminate_like_interrupt(), _warnings_as_messages(args.command):
            return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into head & co.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Terminated:
        print("giip: terminated (SIGTERM); outputs were left as they were", file=sys.stderr)
        return 143
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
