"""Command line: ``python -m core COMMAND ...``.

Each command lives in ``core/commands/<name>.py`` with ``add_parser(subparsers)`` and
``run(args) -> int``. User errors print one ``error:`` line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile

from core.errors import StudioError

COMMANDS = ("ingest", "train", "runs", "predict", "evaluate", "export", "worker", "embeddings", "check",
            "import_model")


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


@contextlib.contextmanager
def _native_stderr_captured():
    """Send what native code writes to file descriptor 2 into a buffer; replay it if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            buffer.seek(0)
            os.write(2, buffer.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Imports TensorFlow with its native start-up lines ("Could not find cuda drivers", absl's "All log
    messages before absl::InitializeLog()") kept off the terminal; TF_CPP_MIN_LOG_LEVEL cannot silence them,
    because they are written before TensorFlow reads it."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import only; find the real spec with the other finders
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's ``exec_module`` with native stderr captured."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            with _native_stderr_captured():
                self._loader.exec_module(module)
        finally:
            _quiet_absl()


def _quiet_absl() -> None:
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up noise off the terminal for this process (call before TensorFlow is imported).

    ``TF_CPP_MIN_LOG_LEVEL=3`` hides its C++ warnings and errors (on a CPU machine "failed call to cuInit"),
    the import itself runs with native stderr captured, and absl's Python logging shows errors only.
    Variables the user set win.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        _quiet_absl()
    elif not any(isinstance(finder, _QuietTensorFlow) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())


def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except StudioError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
