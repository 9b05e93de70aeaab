"""Every option and argument of the three commands says what it does in ``--help``, and no help text sends a
pip user to a file only a checkout of this repository has."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from aicall.cli import build_parser as aicall_parser
from fakertzr.cli import build_parser as fakertzr_parser
from harness.cli.main import build_parser as harness_parser

PARSERS = {"fakertzr": fakertzr_parser, "aicall": aicall_parser, "harness": harness_parser}
# Top-level folders of the repository that the wheel does not install: a path into one, given as where to
# look, is a path a pip user lacks. (A default output directory, such as fixtures/recorded, is created.)
CHECKOUT_ONLY = ("fixtures/calls/*", "fixtures/authoring", "tests/", "contract_tests/", "bench/", "proving_ground/",
                 "examples/", "docs/")


def commands(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from commands(subparser, f"{name} {sub}")


EVERY = [(name, parser) for tool, build in PARSERS.items() for name, parser in commands(build(), tool)]


@pytest.mark.parametrize("name,parser", EVERY, ids=[name for name, _ in EVERY])
def test_every_option_is_described(name, parser):
    silent = [action.option_strings[0] if action.option_strings else action.dest for action in parser._actions
              if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not action.help]
    assert not silent, f"{name}: options with no description: {silent}"


@pytest.mark.parametrize("name,parser", EVERY, ids=[name for name, _ in EVERY])
def test_no_help_names_a_file_of_the_checkout(name, parser):
    text = parser.format_help()
    paths = re.findall(r"[\w.*{}-]*/[\w./*{}-]*", text)
    named = [p for p in paths if any(p.startswith(root) or f"/{root}" in p for root in CHECKOUT_ONLY)]
    assert not named, f"{name} --help names {named}, which a pip install does not have"


def test_the_subcommands_say_what_they_do():
    for tool, build in PARSERS.items():
        for action in build()._actions:
            if isinstance(action, argparse._SubParsersAction):
                undescribed = [c.dest for c in action._choices_actions if not c.help]
                assert not undescribed, f"{tool}: subcommands without a line in --help: {undescribed}"
                assert {c.dest for c in action._choices_actions} == set(action.choices), tool
