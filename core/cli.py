"""Command line: ``python -m core COMMAND ...``.

Each command lives in ``core/commands/<name>.py`` with ``add_parser(subparsers)`` and
``run(args) -> int``. User errors print one ``error:`` line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from core.errors import StudioError

COMMANDS = ("ingest", "train", "runs", "predict", "evaluate", "export", "worker", "embeddings", "import_model")


def _load_commands():
    modules = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(f"core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"core.commands.{name}":
                raise
    return modules


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Transfer Studio command line.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in _load_commands().values():
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except StudioError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
