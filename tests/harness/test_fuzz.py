"""``harness fuzz`` finds a planted bug, shrinks it to a small call, writes it as a fixture that ``harness run``
fails the same way, and draws the same calls again from the same ``--seed``.

Two plantings: a judge that fails calls with a stall fault and a second utterance (no handler: the search,
its shrinking and its seed, at hypothesis's own speed), and the proving ground's
``MUTANT=closes-after-first-final`` in its plain ``websockets`` reference handler, launched by ``--cmd`` as
a user's handler would be (the handler ends its RTZR stream after the first final, so the caller's second
utterance is never heard; a call needs two utterances to show it, and nothing else).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.checks import CheckResult
from harness.cli import main
from harness.fixture import load_call
from harness.fuzz import FuzzOptions, search
from harness.runner import FixtureRun
from harness.strategies import DrawnCall
from harness.timeline import CallTimeline
from proving_ground.mutants import HANDLERS_DIR

HANDLER = f"{sys.executable} {HANDLERS_DIR / 'websockets_handler.py'} --port {{port}}"


class PlantedBug:
    """A session whose "handler" fails every call with a stall fault and at least two utterances."""

    def __init__(self) -> None:
        self.played: list[DrawnCall] = []

    def play(self, call: DrawnCall) -> FixtureRun:
        self.played.append(call)
        buggy = any(f["type"] == "stall" for f in call.doc["faults"]) and len(call.doc["utterances"]) >= 2
        check = CheckResult("recognition_continues", not buggy, "planted: a stall after the first utterance")
        return FixtureRun(None, [check], [], CallTimeline([]), 0.0)  # type: ignore[arg-type]


def test_a_planted_bug_is_shrunk_to_the_smallest_call_that_shows_it():
    session = PlantedBug()
    result = search(session, FuzzOptions(examples=200, seed=3, shrink_limit=500))  # type: ignore[arg-type]
    assert result.failure is not None and result.reproduced is True
    assert result.failure.call.size == (2, 1), result.failure.call  # two utterances, the stall: nothing else
    assert result.first_failure is not None and sum(result.first_failure.call.size) >= 3, "nothing was shrunk"
    scenario = result.failure.call.scenario
    assert scenario["dtmf"] == [] and scenario["hangup"] is None and not scenario["barge_in"]
    assert result.drawn < len(session.played)  # shrinking replayed calls of its own


def test_the_same_seed_draws_the_same_calls_and_finds_the_same_failure():
    runs = []
    for _ in range(2):
        session = PlantedBug()
        result = search(session, FuzzOptions(examples=200, seed=5))  # type: ignore[arg-type]
        runs.append(([c.key for c in session.played], result.failure.call.key if result.failure else None))
    assert runs[0] == runs[1] and runs[0][1] is not None
    other = PlantedBug()
    search(other, FuzzOptions(examples=200, seed=6))  # type: ignore[arg-type]
    assert [c.key for c in other.played] != runs[0][0]  # the seed is what decides


@pytest.mark.timeout(600)
def test_a_mutant_handler_fails_a_shrunk_call_that_harness_run_fails_the_same_way(tmp_path, capsys):
    command = f"MUTANT=closes-after-first-final {HANDLER}"
    code = main(["fuzz", "--cmd", command, "--path", "/media", "--seed", "7", "--examples", "20", "--faults", "none",
                 "--max-utterances", "2", "--no-barge-in", "--no-hangups", "--no-dtmf", "--shrink-limit", "4",
                 "--no-database", "--report-dir", str(tmp_path / "fuzz")])  # kept small: shrinking has its own test
    assert code == 1
    found = json.loads((tmp_path / "fuzz" / "fuzz.json").read_text(encoding="utf-8"))["searches"][0]
    failure = found["failure"]
    assert failure is not None, "the mutant's bug was not found"
    assert "recognition_continues" in [c["name"] for c in failure["checks"] if c["status"] == "failed"]
    assert failure["reproduced"] is True and failure["size"] == [2, 0], failure
    printed = capsys.readouterr().out
    assert f"--seed {found['seed']}" in printed and "harness run --fixtures" in printed
    fixture = Path(failure["fixture"])  # an ordinary fixture: harness run fails it the same way
    assert load_call(fixture).name == failure["name"]
    code = main(["run", "--fixtures", str(fixture.parent), "-k", failure["name"], "--cmd", command, "--path", "/media",
                 "--pace", "fast", "--report-dir", str(tmp_path / "run")])
    assert code == 1
    run = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))["runs"][0]
    assert "recognition_continues" in [c["name"] for c in run["checks"] if c["status"] == "failed"]
