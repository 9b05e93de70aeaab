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
from dataclasses import replace
from pathlib import Path

import hypothesis
import pytest

from harness.judge.checks import CheckResult
from harness.cli import main
from harness.fixture import load_call
from harness.fuzz.search import FuzzOptions, HandlerSession, search, stages, wave_stages
from harness.replay.runner import FixtureRun
from harness.fuzz.scenario import Llm, Scenario, Tts
from harness.fuzz.strategies import FAULT_KINDS, DrawnCall, as_call, scenarios, waves
from harness.replay.targets import CommandTarget
from harness.judge.timeline import CallTimeline
from proving_ground.mutants import HANDLERS_DIR

HANDLER = f"{sys.executable} {HANDLERS_DIR / 'websockets_handler.py'} --port {{port}}"


class NoLoop:
    """A stand-in session has no event loop of its own: never late."""

    resources = None  # ... and launches no handler whose memory could be sampled

    def loop_late_ms(self) -> float:
        return 0.0

    def note_calls(self, calls: int) -> None:
        pass


class PlantedBug(NoLoop):
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
    assert scenario.dtmf == () and scenario.hangup is None and not scenario.barge_in
    assert result.drawn < len(session.played)  # shrinking replayed calls of its own


class LongWordsBug(NoLoop):
    """A session whose "handler" fails every call with an utterance of three words or more."""

    def __init__(self) -> None:
        self.played: list[DrawnCall] = []

    def play(self, call: DrawnCall) -> FixtureRun:
        self.played.append(call)
        buggy = any(len(u["words"]) >= 3 for u in call.doc["utterances"])
        return FixtureRun(None, [CheckResult("finals_to_llm_once", not buggy, "planted")], [], CallTimeline([]), 0.0)  # type: ignore[arg-type]


def test_without_hypothesis_shrinking_the_call_is_still_reduced_part_by_part():
    session = LongWordsBug()
    result = search(session, FuzzOptions(examples=200, seed=3, shrink_limit=1))  # type: ignore[arg-type]
    assert result.first_failure is not None and sum(result.first_failure.call.size) >= 2, result.first_failure.call
    assert result.failure is not None and result.failure.call.size == (1, 0), result.failure.call
    s = result.failure.call.scenario
    assert s.hangup is None and s.dtmf == () and not s.barge_in and len(s.utterances[0].word_ms) >= 3


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


class Passes(NoLoop):
    """A session whose "handler" passes every call: what the search draws, and nothing else."""

    def play(self, call: DrawnCall) -> FixtureRun:
        return FixtureRun(None, [CheckResult("expectations", True)], [], CallTimeline([]), 0.0)  # type: ignore[arg-type]


def test_every_fault_kind_is_drawn_in_the_first_calls_before_calls_are_drawn_freely():
    # hypothesis alone drew no "no_credentials" in 99 calls of seed 1: what its mutations copy it draws again
    assert [(s.label, s.examples) for s in stages(FuzzOptions(examples=30, fault_kinds=("stall", "drop")))] == [
        ("coverage: stall", 2), ("coverage: drop", 2), ("drawn freely", 26)]
    assert [s.examples for s in stages(FuzzOptions(examples=30))] == [1] * len(FAULT_KINDS) + [20]
    assert [s.label for s in stages(FuzzOptions(examples=19))] == ["drawn freely"]  # too few to cover every kind
    assert [s.label for s in stages(FuzzOptions(examples=50, max_faults=0))] == ["drawn freely"]
    result = search(Passes(), FuzzOptions(examples=100, seed=1))  # type: ignore[arg-type]
    assert 90 <= result.drawn <= 100  # a call drawn twice is judged once
    for kind in FAULT_KINDS:
        said = ("the handler starts without RTZR credentials" if kind == "no_credentials" else f"RTZR fault: {kind}")
        assert result.statistics[said] >= 2, (kind, result.statistics)


def test_no_long_utterances_draws_none():
    # for a handler that takes turns by its own VAD: the synthetic caller is noise, which it hears as silence
    drawn = search(Passes(), FuzzOptions(examples=60, seed=1))  # type: ignore[arg-type]
    assert any("cut by RTZR" in what for what in drawn.statistics)
    without = search(Passes(), FuzzOptions(examples=60, seed=1, long_utterances=False))  # type: ignore[arg-type]
    assert not any("cut by RTZR" in what for what in without.statistics)


@pytest.mark.timeout(600)
def test_a_mutant_handler_fails_a_shrunk_call_that_harness_run_fails_the_same_way(tmp_path, capsys):
    command = f"MUTANT=closes-after-first-final {HANDLER}"
    code = main(["fuzz", "--cmd", command, "--path", "/media", "--seed", "7", "--examples", "20", "--faults", "none",
                 "--max-utterances", "2", "--no-barge-in", "--no-hangups", "--no-dtmf", "--shrink-limit", "1",
                 "--no-database", "--report-dir", str(tmp_path / "fuzz")])  # kept small: shrinking has its own test
    assert code == 1
    found = json.loads((tmp_path / "fuzz" / "fuzz.json").read_text(encoding="utf-8"))["searches"][0]
    failure = found["failure"]
    assert failure is not None, "the mutant's bug was not found"
    assert "recognition_continues" in [c["name"] for c in failure["checks"] if c["status"] == "failed"]
    assert failure["reproduced"] is True and failure["size"] == [2, 0], failure
    printed = capsys.readouterr().out
    assert f"--seed {found['seed']}" in printed and "harness run --fixtures" in printed
    # the launched handler's memory and descriptors, sampled after each call drawn (harness.replay.resources)
    samples = found["handler_resources"]["samples"]
    assert [n for n, _, _ in samples] == list(range(1, found["drawn"] + 1)), samples
    assert all(rss > 5 and fds > 0 for _, rss, fds in samples) and "the handler's memory:" in printed
    fixture = Path(failure["fixture"])  # an ordinary fixture: harness run fails it the same way
    assert load_call(fixture).name == failure["name"]
    code = main(["run", "--fixtures", str(fixture.parent), "-k", failure["name"], "--cmd", command, "--path", "/media",
                 "--pace", "fast", "--report-dir", str(tmp_path / "run")])
    assert code == 1
    run = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))["runs"][0]
    assert "recognition_continues" in [c["name"] for c in run["checks"] if c["status"] == "failed"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mutant, verdict", [("no-credential-check", "failed"), ("", "passed")])
def test_a_drawn_call_without_credentials_gets_a_handler_started_without_them(mutant, verdict):
    # the shared handler has its credentials: a call that needs a handler without them is given one of its own
    call = as_call(drawn_scenarios(seed=2, faults=("no_credentials",))[0])
    assert call.doc["handler"]["without_env"]
    target = CommandTarget((f"MUTANT={mutant} " if mutant else "") + HANDLER, path="/media")
    with HandlerSession(target, pace=None) as session:
        run = session.play(call)
        again = session.play(call)
    assert target.started == 3  # the shared handler, then one without credentials per call
    for played in (run, again):
        [check] = [c for c in played.checks if c.name == "refuses_without_credentials"]
        assert check.status == verdict, check


def drawn_scenarios(seed: int, faults: tuple[str, ...]) -> list[Scenario]:
    """A few scenarios drawn from ``calls()``' parts, with at least one fault of these kinds."""
    drawn: list[Scenario] = []

    @hypothesis.seed(seed)
    @hypothesis.settings(max_examples=3, database=None)
    @hypothesis.given(scenarios(fault_kinds=faults, min_faults=1, max_utterances=1))
    def collect(s: Scenario) -> None:
        drawn.append(s)

    collect()
    return drawn


@pytest.mark.timeout(300)
def test_calls_at_once_find_a_failure_that_needs_a_neighbour_and_cut_it_down_to_one(tmp_path, capsys):
    """One history shared by every call: each call alone passes; in flight with others, a call's LLM is given a
    neighbour's words. The search replays the failing call alone first (it passes), then cuts the calls beside
    it down to the one it needs, and the two are written as one group that harness run replays at once."""
    command = f"MUTANT=shared-history {HANDLER}"
    code = main(["fuzz", "--cmd", command, "--path", "/media", "--pace", "fast", "--examples", "4", "--seed", "3",
                 "--calls-at-once", "2", "--faults", "none", "--max-utterances", "2", "--no-barge-in", "--fixed-times",
                 "--no-database", "--report-dir", str(tmp_path)])
    assert code == 1
    failure = json.loads((tmp_path / "fuzz.json").read_text(encoding="utf-8"))["searches"][0]["failure"]
    assert failure["alone_passed"] is True and len(failure["neighbours"]) == 1, failure
    assert "replies_reach_own_caller" in [c["name"] for c in failure["checks"] if c["status"] == "failed"]
    assert failure["reproduced"] is True
    out = capsys.readouterr().out
    assert "--calls-at-once 2" in out
    assert "the harness's own event loop ran at most" in out  # how much of the timings could be the machine's
    assert json.loads((tmp_path / "fuzz.json").read_text(encoding="utf-8"))["searches"][0]["loop_late_ms"] >= 0
    group = Path(failure["fixture"]).parent
    assert len(list(group.glob("*/call.json"))) == 2
    code = main(["run", "--fixtures", str(group), "--calls-at-once", "2", "--cmd", command, "--path", "/media",
                 "--pace", "fast", "--report-dir", str(tmp_path / "run")])
    assert code == 1
    runs = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))["runs"]
    assert any(c["name"] == "replies_reach_own_caller" and c["status"] == "failed" for r in runs for c in r["checks"])


def test_calls_at_once_cover_every_fault_kind_in_batches_and_play_one_of_hypothesis_s_simplest_calls():
    """Hypothesis's first example is its simplest: a batch of 32 such calls was 32 copies of the shortest call
    (a 40-call search eight at once drew nothing but one-utterance calls). The coverage part is one batch of
    one call per fault kind, twice; of the free part's first batch, two calls are played."""
    coverage, free = wave_stages(FuzzOptions(examples=40, calls_at_once=8), 8)
    assert coverage.covering == FAULT_KINDS and coverage.batch == len(FAULT_KINDS) and coverage.batches == 2
    assert coverage.calls == 2 * len(FAULT_KINDS) and not coverage.simplest_first
    assert free.calls == 20 and free.simplest_first and free.batch == 18 and free.batches == 2  # 2 + 18
    (only,) = wave_stages(FuzzOptions(examples=4, calls_at_once=2), 2)  # too few calls to cover the kinds
    assert only.calls == 4 and only.batch == 2 and only.batches == 2
    features = []

    @hypothesis.settings(max_examples=1, database=None)
    @hypothesis.given(waves(len(FAULT_KINDS), covering=FAULT_KINDS))
    def one_per_kind(batch):
        features.extend(" ".join(c.features()) for c in batch)

    one_per_kind()
    assert [f"RTZR fault: {kind}" in f for kind, f in zip(FAULT_KINDS[:-1], features)] == [True] * 9
    assert "without RTZR credentials" in features[-1]


def test_a_cross_call_failure_is_cut_down_to_the_neighbour_it_needs_in_replays_of_two_calls():
    """A call fed among others may have dozens beside it; leaving one out at a time replayed them all, once per
    call. Most such failures need one neighbour: each is tried alone beside the failing call first (two calls a
    replay); a failure that needs two is then cut down halves first (delta debugging)."""
    from harness.fuzz.search import cut_down
    from harness.fuzz.synthetic import SynthUtterance

    quiet = Scenario(seed=0, utterances=(SynthUtterance(400, (150,)),), llm=Llm(0, 0, 1), tts=Tts(False, 20, 0))
    calls = [as_call(replace(quiet, seed=k, lane=k)) for k in range(17)]
    failing, beside = calls[0], calls[1:]
    one_at_a_time = sum(range(2, len(beside) + 2))  # each left out in turn: 16 replays of 17 down to 2 calls
    for needed in ({calls[11].name}, {calls[3].name, calls[11].name}):
        tries: list[int] = []

        def judged_together(group):
            tries.append(len(group))
            ok = not needed <= {c.name for c in group}
            return [FixtureRun(None, [CheckResult("replies_reach_own_caller", ok, "planted")], [],  # type: ignore[arg-type]
                               CallTimeline([]), 0.0) for _ in group]

        first = judged_together([failing, *beside])[0]
        tries.clear()
        found, others = cut_down(failing, first, beside, judged_together, limit=60)
        assert {c.name for c in others} == needed and not found.run.ok
        if len(needed) == 1:
            assert sum(tries) <= 17 + 2 * 11 < one_at_a_time / 3, tries
        else:
            assert sum(tries) < one_at_a_time * 2, tries  # the singles first, then the halves
