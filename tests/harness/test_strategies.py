"""``harness.fuzz.strategies`` can draw each thing a bug class needs to show, as an ordinary fixture says it: a
handler started without credentials (failure 1), an utterance RTZR cuts at ``max_utter_duration`` while the
caller talks on, an LLM that never answers (failure 3's open request); and each shrinks away when not needed.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hypothesis import Phase, assume, find, given, settings

from harness.fixture import load_call
from harness.replay.runner import replay
from harness.fuzz.scenario import Reaction
from harness.fuzz.strategies import (CREDENTIALS, CUT_MS, TALK_OVER_MS, TURN_SLACK_MS, DrawnCall, as_call, refused,
                                     scenarios)
from harness.judge.checks import BARGE_IN_MAX_S

def drawn_call(condition, *, smallest: bool = False, **options) -> DrawnCall:
    """The call of a drawn scenario ``condition`` holds for (the smallest, shrunk, when asked: that takes
    seconds); the search is on the drawn ``Scenario`` (``options``: ``scenarios()``'s, to draw where a rare
    condition is common), the fixture, audio and all, made once for what the test checks."""
    phases = [Phase.generate, Phase.shrink] if smallest else [Phase.generate]
    return as_call(find(scenarios(**options), condition,
                        settings=settings(max_examples=1000, database=None, phases=phases)))


def test_a_handler_without_credentials_is_drawn_as_a_refused_call_of_one_fault(tmp_path):
    call = drawn_call(lambda s: s.without_credentials, smallest=True)
    assert call.doc["handler"] == {"without_env": list(CREDENTIALS)}
    assert call.doc["expect"] == {"call_refused": True}
    assert "hangup_ms" not in call.doc["caller"] and "hangup_after_turns" not in call.doc["caller"]
    assert call.size == (1, 1), call  # shrunk: one utterance, the missing credentials as its one fault
    assert all(f["type"] != "no_credentials" for f in call.doc["faults"])  # not an RTZR fault in the fixture
    assert load_call(call.save(tmp_path / "call")).handler_without == CREDENTIALS
    assert "the handler starts without RTZR credentials" in call.features()


def test_an_utterance_longer_than_rtzrs_cut_expects_no_reply_while_the_caller_talks_on():
    call = drawn_call(lambda s: any(sum(u.word_ms) > CUT_MS for u in s.utterances), smallest=True)
    assert call.doc["expect"]["no_reply_while_talking"] is True
    spans = [u["end_ms"] - u["start_ms"] for u in call.doc["utterances"]]
    assert len(spans) == 1 and CUT_MS < spans[0] <= 14_000, spans  # shrunk to the shortest that is cut
    assert call.size == (1, 0)
    short = drawn_call(lambda s: len(s.utterances) >= 3, smallest=True)
    assert not short.doc["expect"].get("no_reply_while_talking")  # shrunk away when not needed
    assert max(u["end_ms"] - u["start_ms"] for u in short.doc["utterances"]) < CUT_MS


def test_a_stalled_llm_request_is_drawn_into_the_fixture():
    call = drawn_call(lambda s: bool(s.llm.stall_requests))
    assert call.doc["llm"]["stall_requests"] in ([0], [1])
    assert "LLM stalls" in call.features()


def test_replaying_a_call_without_credentials_into_a_running_handler_is_skipped_not_judged(tmp_path):
    call = drawn_call(lambda s: s.without_credentials)
    fixture = load_call(call.save(tmp_path / "call"))
    run = asyncio.run(replay(fixture, "ws://127.0.0.1:9/never-dialled", rtzr=None, llm=None, tts=None))  # type: ignore[arg-type]
    [check] = run.checks
    assert check.name == "refuses_without_credentials" and check.status == "skipped"
    assert "cannot be started without its credentials" in check.message


def test_a_caller_who_reacts_to_the_bot_is_drawn_into_a_fixture_that_loads(tmp_path):
    call = drawn_call(lambda s: any(r and r.after == "bot_ends" for r in s.reacts)
                      and any(r and r.after == "bot_starts" for r in s.reacts))
    reacts = call.doc["caller"]["reacts"]
    assert {r["after"] for r in reacts} == {"bot_starts", "bot_ends"}
    assert all(r["turn"] == r["utterance"] - 1 for r in reacts)  # each reacts to the reply to the turn before it
    fixture = load_call(call.save(tmp_path / "call"))
    assert {(r.utterance + 1, r.after) for r in fixture.caller.reacts} == {(r["utterance"], r["after"]) for r in reacts}
    assert "the caller reacts to the bot" in call.features()


def test_a_barge_in_call_talks_over_the_first_reply_once_it_starts_and_shrinks_to_fixed_times_without_it():
    call = drawn_call(lambda s: s.barge_in)
    assert call.doc["caller"]["reacts"][0] == {"utterance": 2, "turn": 1, "after": "bot_starts",
                                               "ms": call.scenario.reacts[0].ms, "wait_ms": 4000}
    plain = drawn_call(lambda s: len(s.utterances) >= 2, smallest=True)
    assert "reacts" not in plain.doc["caller"]  # shrunk away when not needed


@settings(max_examples=200, database=None, deadline=None)
@given(scenario=scenarios())
def test_a_barge_in_call_talks_over_the_reply_longer_than_barge_ins_limit(scenario):
    """A handler that never clears playback is talked over for longer than ``barge_in`` allows on every barge-in
    call (the talk-over utterance once lasted 0.15-2.4 s, mostly under the 1.5 s limit, and such a call could not
    fail it); its words keep their drawn lengths, so the recognizer's partials come as often as before."""
    assume(scenario.barge_in)
    over = scenario.utterances[1]
    assert sum(over.word_ms) >= TALK_OVER_MS > BARGE_IN_MAX_S * 1000 + 500
    assert max(over.word_ms) <= 650  # a word of the drawn kind (a long utterance's are 500-650 ms)


def test_a_barge_in_call_within_max_duration_is_not_stretched_past_it():
    scenario = find(scenarios(max_duration_ms=6000), lambda s: s.barge_in,
                    settings=settings(max_examples=2000, database=None, phases=[Phase.generate]))
    audio_ms = sum(u.pause_before_ms + sum(u.word_ms) for u in scenario.utterances)
    assert audio_ms <= 6000 and sum(scenario.utterances[1].word_ms) >= TALK_OVER_MS


def test_leaving_an_utterance_out_takes_its_own_timing_with_it():
    from harness.fuzz.search import smaller

    said = drawn_call(lambda s: len(s.utterances) == 3).scenario
    starts, ends = Reaction("bot_starts", 300), Reaction("bot_ends", 0)
    timed = replace(said, reacts=(starts, ends))
    smaller_ones = list(smaller(timed))
    by_count = [s for s in smaller_ones if len(s.utterances) == 2]
    # without the third: the second keeps its timing; without the second: the third's; without the first: the
    # second becomes the first, which reacts to nothing, and the third keeps its own
    assert [s.reacts for s in by_count] == [(starts,), (ends,), (ends,)]
    assert [s.reacts for s in smaller_ones if len(s.utterances) == 3][:2] == [(starts, None), (None, ends)]


def test_a_drawn_call_expects_each_utterance_answered_and_within_a_budget_where_nothing_drawn_slows_it():
    plain = drawn_call(lambda s: not s.faults and not s.tts.realtime and not s.llm.fail_requests
                       and not s.llm.stall_requests, smallest=True)
    assert plain.doc["expect"] == {"call_refused": False, "every_utterance": True,
                                   "max_turn_ms": 500 + TURN_SLACK_MS}  # RTZR's default end point and the slack
    slow = drawn_call(lambda s: len(s.utterances) == 1 and not s.faults and s.llm.first_token_ms > 500
                      and s.llm.token_ms > 10
                      and not s.tts.realtime and not s.llm.fail_requests and not s.llm.stall_requests,
                      max_utterances=1, max_faults=0)  # rare among all calls: run alone, 1000 draws found none
    llm = slow.scenario.llm
    assert slow.doc["expect"]["max_turn_ms"] >= llm.first_token_ms + llm.token_ms * 80 * llm.sentences + TURN_SLACK_MS
    for needs_more in (lambda s: bool(s.faults) and not refused(s), lambda s: s.tts.realtime,
                       lambda s: bool(s.llm.fail_requests),
                       lambda s: len(s.utterances) > 1 and s.utterances[1].pause_before_ms < 600):
        assert "max_turn_ms" not in drawn_call(needs_more).doc["expect"]
