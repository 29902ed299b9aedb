"""Every argument of missedcall-admin and missedcall-agi says what it is for, and both print their version.

The parser is walked as argparse builds it, verbs and their actions included, so an argument added later
without ``help=`` fails here by name.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from missedcall import __version__
from missedcall.admin import agiscript, cli


def _walk(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _walk(sub)
        else:
            yield parser.prog, action


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


@pytest.mark.parametrize("build", [cli.build_parser, agiscript.build_parser], ids=["admin", "agi"])
def test_every_argument_has_help(build: object) -> None:
    parser = build()  # type: ignore[operator]
    missing = [
        f"{prog} {'/'.join(action.option_strings) or action.dest}"
        for prog, action in _walk(parser)
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert not missing, f"arguments without help text: {missing}"
    assert len(list(_walk(parser))) > (40 if build is cli.build_parser else 2)


def test_every_verb_has_help_and_renders_it(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            named = {choice.dest for choice in action._choices_actions}
            assert named == set(action.choices), f"verbs without help: {set(action.choices) - named}"
    for sub in _parsers(parser):
        sub.format_help()  # a bad %-sequence in a help text raises here, not in a user's terminal


@pytest.mark.parametrize("program", ["missedcall.admin.cli", "missedcall.admin.agiscript"])
def test_version(program: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", program, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.split()[-1] == __version__, done


def _options(prog: str) -> set[str]:
    parser = cli.build_parser()
    return {
        option for where, action in _walk(parser) if where == prog for option in action.option_strings
    }


@pytest.mark.parametrize(
    "verb", ["log", "recipients list", "queues", "queues list", "doctor", "retry", "sweep", "report", "resolve"]
)
def test_every_verb_that_prints_records_or_checks_takes_json(verb: str) -> None:
    assert "--json" in _options(f"missedcall-admin {verb}")


def test_config_is_taken_before_and_after_every_verb() -> None:
    parser = cli.build_parser()
    leaves = [p for p in _parsers(parser) if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    assert len(leaves) > 10
    missing = [p.prog for p in [parser, *leaves] if "--config" not in {o for a in p._actions for o in a.option_strings}]
    assert not missing, f"no --config here: {missing}"
