"""What ``harness load`` counts: turn outcomes from what a caller saw, step figures, the knee search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from harness.fixture import load_call
from harness.load.stats import (ANSWER_WAIT_S, Criteria, StepResult, TurnOutcome, end_frames, knee, next_callers,
                                percentile, summarise, turn_outcomes)
from harness.fakes.twilio_line import PlayerRecord

SEED = load_call("fixtures/calls/seed-three-turns")  # utterances end at 3120, 7380, 11310 ms


def record_with(spoken_until: int, media_at: list[float], closed_at: float | None = None) -> PlayerRecord:
    """A caller who sent frames 0..spoken_until-1, frame k at 100 + k * 0.02 s, and got bot media at ``media_at``."""
    sent = np.full(666, np.nan)
    sent[:spoken_until] = 100 + np.arange(spoken_until) * 0.02
    return PlayerRecord(frame_sent=sent, received=[(t, {"event": "media"}) for t in media_at], closed_at=closed_at)


def spoke(turn: int) -> float:
    return 100 + end_frames(SEED)[turn] * 0.02


def test_end_frames_are_the_frames_completing_each_utterance():
    assert end_frames(SEED) == [155, 368, 565]  # ceil(3120 / 20) - 1, ...


def test_a_turn_is_answered_by_the_first_bot_media_after_it_and_timed_from_its_last_frame():
    rec = record_with(666, [spoke(0) + 0.5, spoke(0) + 0.6, spoke(1) + 0.7], closed_at=spoke(2) + 8)
    out = turn_outcomes(SEED, rec, spoke(2) + 9, final=True)
    assert [o.latency_ms for o in out] == [500.0, 700.0, None]
    assert out[0].spoke_at == pytest.approx(spoke(0))


def test_media_that_arrives_after_the_next_utterance_answers_that_one_not_the_earlier():
    rec = record_with(666, [spoke(1) + 0.3], closed_at=spoke(2) + 8)
    out = turn_outcomes(SEED, rec, spoke(2) + 9, final=True)
    assert [o.latency_ms for o in out] == [None, 300.0, None]


def test_an_answer_later_than_the_wait_does_not_count():
    rec = record_with(200, [spoke(0) + ANSWER_WAIT_S + 0.1])
    assert turn_outcomes(SEED, rec, spoke(0) + ANSWER_WAIT_S + 1, final=False)[0] == TurnOutcome(spoke(0), None)


def test_a_live_call_leaves_unspoken_and_still_answerable_turns_open():
    rec = record_with(200, [])  # the first utterance spoken, the second not yet
    assert turn_outcomes(SEED, rec, spoke(0) + 1, final=False) == [None, None, None]
    assert turn_outcomes(SEED, rec, spoke(0) + ANSWER_WAIT_S, final=False)[0] == TurnOutcome(spoke(0), None)


def test_a_call_that_ended_settles_its_spoken_turns():
    rec = record_with(200, [], closed_at=spoke(0) + 0.2)  # the handler hung up right after the caller spoke
    assert turn_outcomes(SEED, rec, spoke(0) + 0.3, final=False) == [TurnOutcome(spoke(0), None), None, None]


def test_percentile_is_nearest_rank():
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_summarise_counts_only_the_given_turns():
    step = summarise(StepResult(callers=3, window_s=10), [TurnOutcome(1, 500), TurnOutcome(2, None), TurnOutcome(3, 700)],
                     [2.0, 4.0], [0.1] * 99 + [35.0], {"final_to_llm": [0.2, 0.3], "first_tts_audio": [80.0]})
    assert (step.turns, step.answered, step.answered_share) == (3, 2, 2 / 3)
    assert step.latency_ms == {"p50": 500, "p95": 700, "p99": 700, "max": 700}
    assert step.handler_ms["p99"] == 4.0
    assert step.harness_late_ms == {"p50": 0.1, "p99": 0.1, "max": 35.0}
    assert step.handler_steps_p99_ms == {"final_to_llm": 0.3, "first_tts_audio": 80.0}


def judged(callers: int, p95: float, answered: int = 100, turns: int = 100) -> StepResult:
    step = StepResult(callers=callers, window_s=10, calls_started=10, turns=turns, answered=answered,
                      latency_ms={"p95": p95})
    return Criteria(max_p95_ms=1000).judge(step)


def test_criteria_break_on_latency_answered_share_and_failed_calls():
    assert judged(10, 999).held
    assert "p95 1001 ms > 1000 ms" in judged(10, 1001).why_not
    assert "98/100 turns answered" in judged(10, 500, answered=98).why_not
    failing = StepResult(callers=10, window_s=10, calls_started=10, calls_failed=1, turns=100, answered=100,
                         latency_ms={"p95": 500})
    assert "1/10 calls failed" in Criteria(1000).judge(failing).why_not
    assert "no turn was spoken" in judged(10, 0, answered=0, turns=0).why_not


def search(capacity: int, start: int = 10, limit: int = 2000) -> tuple[list[int], dict]:
    steps: list[StepResult] = []
    while (n := next_callers(steps, start=start, limit=limit)) is not None:
        assert n not in [s.callers for s in steps], "the search measured a step twice"
        steps.append(judged(n, 500 if n <= capacity else 5000))
    return [s.callers for s in steps], knee(steps)


def test_the_search_doubles_then_bisects_to_within_a_tenth():
    tried, found = search(300)
    assert tried[:6] == [10, 20, 40, 80, 160, 320]
    assert found["held"] <= 300 < found["broke"] and found["broke"] - found["held"] <= max(1, 0.1 * found["held"])
    assert "p95" in found["why"]


@given(st.integers(1, 3000), st.integers(1, 50))
def test_the_search_always_ends_and_brackets_the_capacity(capacity, start):
    tried, found = search(capacity, start=start, limit=2000)
    assert len(tried) < 40
    if capacity >= 2000:
        assert found == {"held": max(tried), "broke": None, "why": ""} and max(tried) == 2000
    elif capacity < start:
        assert found["held"] is None or found["held"] <= capacity
        assert found["broke"] is not None and found["broke"] > capacity
    else:
        assert found["held"] <= capacity < found["broke"]
        assert found["broke"] - found["held"] <= max(1, math.floor(0.1 * found["held"])) + 1
