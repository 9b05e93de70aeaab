"""Each harness check passes on a good timeline and fails on the bad one it exists to catch."""

from __future__ import annotations

import pytest

from harness.checks import (CheckContext, barge_in, expectations, finals_persisted, finals_to_llm_once, no_errors,
                            recognition_continues, replies_in_order, stops_sending_after_hangup,
                            upstream_closed_after_hangup)
from harness.timeline import CallTimeline, Event


def ctx(*events: Event, expect=None, stored=None, errors=(), refused=False) -> CheckContext:
    return CheckContext(CallTimeline(sorted(events, key=lambda e: e.wall)), expect or {}, stored,
                        list(errors), refused)


FINAL_A = Event(1.0, "final", {"connection": 0, "text": "가나"})
FINAL_B = Event(3.0, "final", {"connection": 0, "text": "다라"})
STOP = Event(10.0, "stop", {"how": "stop"})


def test_stops_sending_after_hangup():
    assert stops_sending_after_hangup(ctx(STOP, Event(10.5, "media"))).ok  # in flight when the caller hung up
    bad = stops_sending_after_hangup(ctx(STOP, Event(12.0, "media")))
    assert not bad.ok and bad.at == 12.0


def test_finals_reach_the_llm_exactly_once():
    good = ctx(FINAL_A, Event(1.1, "llm_request", {"user": "가나"}), FINAL_B, Event(3.1, "llm_request", {"user": "다라"}), STOP)
    assert finals_to_llm_once(good).ok
    merged = ctx(FINAL_A, FINAL_B, Event(3.1, "llm_request", {"user": "가나 다라"}), STOP)
    assert finals_to_llm_once(merged).ok
    twice = ctx(FINAL_A, Event(1.1, "llm_request", {"user": "가나"}), Event(2.0, "llm_request", {"user": "가나"}), STOP)
    assert "2 times" in finals_to_llm_once(twice).message
    lost = ctx(FINAL_A, FINAL_B, Event(3.1, "llm_request", {"user": "다라"}), STOP)
    assert "never reached" in finals_to_llm_once(lost).message


def test_finals_are_persisted():
    assert finals_persisted(ctx(FINAL_A, STOP, stored=["가나"])).ok
    assert not finals_persisted(ctx(FINAL_A, FINAL_B, STOP, stored=["가나"])).ok
    assert finals_persisted(ctx(FINAL_A, STOP, stored=None)).ok  # no store to look at


def test_recognition_continues_after_an_upstream_close():
    close = Event(2.0, "rtzr_end", {"connection": 0, "how": "server_closed", "code": 1000, "reason": "fault"})
    speech = Event(5.0, "speech_end", {"utterance": 1, "text": "다라"})
    resumed = Event(5.5, "final", {"connection": 1, "text": "다라"})
    assert recognition_continues(ctx(FINAL_A, close, speech, resumed, STOP)).ok
    bad = recognition_continues(ctx(FINAL_A, close, speech, STOP))
    assert not bad.ok and "not recognised again" in bad.message
    eos = Event(10.2, "rtzr_end", {"connection": 0, "how": "server_closed", "code": 1000, "reason": "EOS"})
    assert recognition_continues(ctx(FINAL_A, speech, STOP, eos)).ok


def test_upstream_connections_close_after_hangup():
    assert upstream_closed_after_hangup(ctx(STOP, Event(10.3, "rtzr_end", {"connection": 0}))).ok
    assert not upstream_closed_after_hangup(ctx(STOP, Event(30.0, "rtzr_end", {"connection": 0}))).ok
    assert not upstream_closed_after_hangup(ctx(STOP, Event(2.0, "llm_request", {"user": "x", "open": True}))).ok
    # a stalled stream 'ended' at the stall, but its socket is what must be let go of
    stalled = Event(5.0, "rtzr_end", {"connection": 0, "how": "stalled"})
    assert upstream_closed_after_hangup(ctx(stalled, STOP, Event(10.4, "rtzr_closed", {"connection": 0, "open": False}))).ok
    assert not upstream_closed_after_hangup(ctx(stalled, STOP, Event(25.0, "rtzr_closed", {"connection": 0, "open": False}))).ok
    still = upstream_closed_after_hangup(ctx(stalled, STOP, Event(12.0, "rtzr_closed", {"connection": 0, "open": True})))
    assert not still.ok and "still open" in still.message


def test_errors_fail_the_run_unless_the_fixture_expects_refusal():
    assert no_errors(ctx()).ok
    assert not no_errors(ctx(errors=["call=CA1 event=tts_failed"])).ok
    assert no_errors(ctx(errors=["call=CA1 event=rtzr_auth_failed error=..."], refused=True)).ok
    assert not no_errors(ctx(errors=["unhandled: Task exception"], refused=True)).ok
    llm_down = ["call=CA1 turn=1 event=llm_failed error=HTTP 500"]
    assert no_errors(ctx(errors=llm_down, expect={"errors_allowed": ["llm_failed"]})).ok
    assert not no_errors(ctx(errors=llm_down + ["call=CA1 event=tts_failed"], expect={"errors_allowed": ["llm_failed"]})).ok


@pytest.mark.parametrize("expect,ok", [
    ({"finals": ["가나", "다라"]}, True), ({"finals": ["다라"]}, False),
    ({"llm_turns": 0}, True), ({"llm_turns": 1}, False),
    ({"answered_turns": 1}, True), ({"answered_turns": 2}, False),
    ({"call_refused": True}, False),
])
def test_fixture_expectations(expect, ok):
    speech = Event(0.5, "speech_end", {"utterance": 0, "text": "가나"})
    closed = Event(11.0, "closed", {"by_handler": False})
    assert expectations(ctx(speech, FINAL_A, FINAL_B, Event(1.5, "media"), STOP, closed, expect=expect)).ok is ok


def test_barge_in_needs_a_clear_and_is_skipped_not_passed_at_fast_pace():
    speech = Event(0.5, "speech_end", {"utterance": 0, "text": "가나"})
    assert barge_in(ctx(speech, Event(2.0, "clear"), STOP, expect={"barge_in": True})).status == "passed"
    assert barge_in(ctx(speech, STOP, expect={"barge_in": True})).status == "failed"
    fast = ctx(speech, STOP, expect={"barge_in": True})
    fast.audio_plays = False
    assert barge_in(fast).status == "skipped" and "fast pace" in barge_in(fast).message


def test_replies_are_spoken_in_order():
    asks = [Event(1.0, "llm_request", {"user": "a", "reply": "첫째 답. 둘째 문장."}),
            Event(2.0, "llm_request", {"user": "b", "reply": "다음 답."})]
    good = [Event(1.1, "tts_request", {"text": "첫째 답."}), Event(1.2, "tts_request", {"text": "둘째 문장."}),
            Event(2.1, "tts_request", {"text": "다음 답."}), Event(2.2, "tts_request", {"text": "죄송합니다."})]
    assert replies_in_order(ctx(*asks, *good)).ok
    bad = [Event(1.1, "tts_request", {"text": "다음 답."}), Event(2.1, "tts_request", {"text": "둘째 문장."})]
    assert not replies_in_order(ctx(*asks, *bad)).ok
