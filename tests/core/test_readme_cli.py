"""The README's command-line synopsis against the real argparse parser: every option it shows exists, with the
default it shows, and every option of a command it shows is there."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from core.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
PREFIX = ".venv/bin/python -m core "
INTERNAL = {"worker"}  # started by the job manager, not by people


def _synopsis() -> dict[str, list[str]]:
    """``{command: tokens}`` from the first bash block of the README's "Command line" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Command line"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    block = block[:block.index("```")].replace("\\\n", " ")
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    assert all(line.startswith(PREFIX) for line in lines), lines
    found = {}
    for line in lines:
        command, *tokens = shlex.split(line[len(PREFIX):])
        found[command] = tokens
    return found


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser) -> dict[str, argparse.Action]:
    return {action.option_strings[0]: action for action in parser._actions
            if action.option_strings and not isinstance(action, argparse._HelpAction)}


def _shown(tokens: list[str]) -> tuple[dict[str, tuple[str | None, bool]], list[str]]:
    """``({option: (value shown or None, optional)}, positionals)``."""
    options, positionals, index = {}, [], 0
    while index < len(tokens):
        token = tokens[index]
        optional = token.startswith("[")
        word = token.strip("[]")
        if not word.startswith("--"):
            positionals.append(word)
            index += 1
            continue
        value = None
        if not token.endswith("]") and index + 1 < len(tokens) and not tokens[index + 1].startswith(("-", "[")):
            value = tokens[index + 1].rstrip("]")
            index += 1
        options[word] = (value, optional)
        index += 1
    return options, positionals


def _check_value(command: str, name: str, action: argparse.Action, value: str | None) -> None:
    where = f"README: {command} {name}"
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        assert value is None, f"{where} is a flag; the README shows a value {value!r}"
        return
    assert value is not None, f"{where} takes a value; the README shows none"
    if action.choices is not None:
        listed = value.split("|")
        assert set(listed) == set(action.choices), f"{where}: shows {listed}, the parser offers {action.choices}"
        if action.default is not None:
            assert listed[0] == action.default, f"{where}: the first choice shown must be the default"
        return
    if re.fullmatch(r"[A-Z][A-Z_]*", value):  # a placeholder such as DIR or PATH: no default claimed
        return
    convert = action.type or str
    assert convert(value) == action.default, f"{where}: shows {value!r}, the default is {action.default!r}"


def test_the_readme_shows_every_command_but_the_internal_worker():
    assert set(_synopsis()) == set(_subparsers()) - INTERNAL


@pytest.mark.parametrize("command", sorted(set(_subparsers()) - INTERNAL))
def test_every_option_shown_exists_with_the_default_shown(command):
    parser = _subparsers()[command]
    shown, positionals = _shown(_synopsis()[command])
    real = _options(parser)
    assert set(shown) - set(real) == set(), f"README shows options `{command}` does not have"
    assert set(real) - set(shown) == set(), f"README leaves out options of `{command}`"
    for name, (value, optional) in shown.items():
        action = real[name]
        assert optional == (not action.required), f"README: {command} {name} shown {'optional' if optional else 'required'}"
        _check_value(command, name, action, value)
    arguments = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert len(positionals) == len(arguments), f"README: {command} shows {positionals}"
    for word, action in zip(positionals, arguments, strict=True):
        assert word.endswith("...") == (action.nargs in ("+", "*")), f"README: {command} {word}"
