"""Each harness check passes on a good timeline and fails on the bad one it exists to catch."""

from __future__ import annotations

import pytest

from fakertzr.journal import StreamEnd

from harness.judge.events import (Clear, Closed, Final, LlmRequest, Media, Partial, RtzrClosed, RtzrEnd, RtzrRefused, SpeechEnd,
                                  SpeechStart, Stop, TtsRequest)
from harness.judge.checks import (ERROR_WINDOW_S, CheckContext, barge_in, expectations, finals_persisted, finals_to_llm_once,
                            no_errors, recognition_continues, replies_in_order, stops_sending_after_hangup,
                            upstream_closed_after_hangup)
from harness.judge.handler_log import ErrorBlock
from harness.judge.timeline import CallTimeline
def ctx(*events: Event, expect=None, stored=None, errors=(), refused=False) -> CheckContext:
    return CheckContext(CallTimeline(sorted(events, key=lambda e: e.wall)), expect or {}, stored,
                        list(errors), refused)


FINAL_A = Final(1.0, connection=0, text="가나")
FINAL_B = Final(3.0, connection=0, text="다라")
STOP = Stop(10.0, how="stop")


def test_stops_sending_after_hangup():
    assert stops_sending_after_hangup(ctx(STOP, Media(10.1))).ok  # on the wire when the caller hung up
    bad = stops_sending_after_hangup(ctx(STOP, Media(12.0)))
    assert not bad.ok and bad.at == 12.0 and bad.message.startswith("failure 4:")


def test_finals_reach_the_llm_exactly_once():
    good = ctx(FINAL_A, LlmRequest(1.1, user="가나"), FINAL_B, LlmRequest(3.1, user="다라"), STOP)
    assert finals_to_llm_once(good).ok
    merged = ctx(FINAL_A, FINAL_B, LlmRequest(3.1, user="가나 다라"), STOP)
    assert finals_to_llm_once(merged).ok
    twice = ctx(FINAL_A, LlmRequest(1.1, user="가나"), LlmRequest(2.0, user="가나"), STOP)
    assert "2 times" in finals_to_llm_once(twice).message
    lost = ctx(FINAL_A, FINAL_B, LlmRequest(3.1, user="다라"), STOP)
    assert "never reached" in finals_to_llm_once(lost).message
    # a final held while the caller talks on, the request after it for the earlier one, then the hang-up: not lost
    held = ctx(FINAL_A, FINAL_B, LlmRequest(3.1, user="가나"), STOP)
    assert finals_to_llm_once(held).ok
    # whole words: a final "w1" is not in a request for "w12 w13" (a drawn call's words; "네" and "네요" alike)
    w1, w12 = Final(1.0, connection=0, text="w1"), Final(3.0, connection=0, text="w12 w13")
    apart = ctx(w1, LlmRequest(1.1, user="w1"), w12, LlmRequest(3.1, user="w12 w13"), STOP)
    assert finals_to_llm_once(apart).ok
    assert finals_to_llm_once(ctx(FINAL_A, LlmRequest(1.1, user="가나."), STOP)).ok  # punctuation aside


def test_finals_are_persisted():
    assert finals_persisted(ctx(FINAL_A, STOP, stored=["가나"])).ok
    assert not finals_persisted(ctx(FINAL_A, FINAL_B, STOP, stored=["가나"])).ok
    assert finals_persisted(ctx(FINAL_A, STOP, stored=None)).ok  # no store to look at
    # the stream dropped as its final went out, the handler never got it, resent the audio and got it again: one
    # recognition, stored once (a fuzzed call under load, 2026-12-06); the same words said twice are two
    first, again = Final(1.0, connection=0, text="가나", call_ms=2083.0), Final(1.1, connection=1, text="가나", call_ms=2083.0)
    assert finals_persisted(ctx(first, again, STOP, stored=["가나"])).ok
    said_twice = Final(4.0, connection=1, text="가나", call_ms=6000.0)
    assert not finals_persisted(ctx(first, said_twice, STOP, stored=["가나"])).ok


def test_recognition_continues_after_an_upstream_close():
    close = RtzrEnd(2.0, connection=0, how="server_closed", code=1000, reason="fault")
    speech = SpeechEnd(5.0, utterance=1, text="다라")
    resumed = Final(5.5, connection=1, text="다라")
    assert recognition_continues(ctx(FINAL_A, close, speech, resumed, STOP)).ok
    bad = recognition_continues(ctx(FINAL_A, close, speech, STOP))
    assert not bad.ok and "not recognised again" in bad.message
    eos = RtzrEnd(10.2, connection=0, how="server_closed", code=1000, reason="EOS")
    assert recognition_continues(ctx(FINAL_A, speech, STOP, eos)).ok


def test_a_stream_opened_after_the_hangup_is_not_judged_as_recognition_of_the_caller():
    # a handler's reconnect after the caller hung up, ended where the call's audio was still going on: it
    # could not have heard the caller (a previous call's reconnect was judged so on the next call)
    stop = Stop(10.0, how="stop", audio_ms=9000.0)
    speech = SpeechEnd(5.0, utterance=1, text="다라", audio_ms=5000.0)
    late = {"connection": 2, "how": "server_closed", "code": 1000, "reason": "EOS", "call_ms": 2000.0}
    assert recognition_continues(ctx(FINAL_A, speech, stop, RtzrEnd(11.0, **late, opened=10.5))).ok
    during = recognition_continues(ctx(FINAL_A, speech, stop, RtzrEnd(11.0, **late, opened=1.5)))
    assert not during.ok and "not recognised again" in during.message  # opened while the caller talked: judged


def test_a_second_stream_the_handler_closes_while_its_first_recognises_the_caller_is_no_failure_2():
    # a fuzzed websockets call four at once: stream 2 opened at 6.5 s of the call, took 80 ms and was closed (EOS)
    # while stream 1 had already recognised the caller's later words
    speech = SpeechEnd(0.013, utterance=0, text="다라", audio_ms=18400.0)
    later = Final(0.305, connection=1, text="다라", call_ms=18900.0)
    eos = RtzrEnd(0.322, connection=2, how="server_closed", code=1000, reason="EOS", call_ms=6529.0, opened=0.31)
    stop = Stop(0.663, how="stop", audio_ms=19920.0)
    assert recognition_continues(ctx(speech, later, eos, stop)).ok
    earlier = Final(0.305, connection=1, text="가나", call_ms=6000.0)  # before where stream 2 ended
    assert not recognition_continues(ctx(speech, earlier, eos, stop)).ok


def test_upstream_connections_close_after_hangup():
    assert upstream_closed_after_hangup(ctx(STOP, RtzrEnd(10.3, connection=0))).ok
    assert not upstream_closed_after_hangup(ctx(STOP, RtzrEnd(30.0, connection=0))).ok
    assert not upstream_closed_after_hangup(ctx(STOP, LlmRequest(2.0, user="x", open=True))).ok
    # a stalled stream 'ended' at the stall, but its socket is what must be let go of
    stalled = RtzrEnd(5.0, connection=0, how="stalled")
    assert upstream_closed_after_hangup(ctx(stalled, STOP, RtzrClosed(10.4, connection=0, open=False))).ok
    assert not upstream_closed_after_hangup(ctx(stalled, STOP, RtzrClosed(25.0, connection=0, open=False))).ok
    still = upstream_closed_after_hangup(ctx(stalled, STOP, RtzrClosed(12.0, connection=0, open=True)))
    assert not still.ok and "still open" in still.message


def test_errors_fail_the_run_unless_they_come_with_a_failure_the_fixture_provokes():
    """Judged by when an error came, not by its wording: an error line while the provoked failure lasts is
    expected, whatever the handler calls it; one at another moment, or an exception nobody caught, is not."""
    assert no_errors(ctx()).ok
    assert not no_errors(ctx(errors=["call=CA1 event=tts_failed"])).ok
    refused = RtzrRefused(1.0, connection=0, status=401)
    said = ErrorBlock(1.2, ["ERROR: speech recognition is down, apologising"])
    assert no_errors(ctx(refused, errors=[said], expect={"call_refused": True}, refused=True)).ok
    assert not no_errors(ctx(refused, errors=[ErrorBlock(1.2, ["Task exception was never retrieved"])],
                             expect={"call_refused": True}, refused=True)).ok
    failed = LlmRequest(2.0, user="가나", status=500)
    worded_otherwise = ErrorBlock(2.3, ["2026-12-01 10:00:00 [ERROR] bot: the model is down (HTTP 500), sorry"])
    assert no_errors(ctx(failed, errors=[worded_otherwise])).ok
    later = ErrorBlock(2.0 + ERROR_WINDOW_S + 1.0, ["2026-12-01 10:00:05 [ERROR] bot: KeyError: 'CA1'"])
    assert not no_errors(ctx(failed, errors=[worded_otherwise, later])).ok
    assert not no_errors(ctx(errors=[worded_otherwise])).ok  # nothing failed: the same line is an error


@pytest.mark.parametrize("expect,ok", [
    ({"finals": ["가나", "다라"]}, True), ({"finals": ["다라"]}, False),
    ({"llm_turns": 0}, True), ({"llm_turns": 1}, False),
    ({"answered_turns": 1}, True), ({"answered_turns": 2}, False),
    ({"call_refused": True}, False),
])
def test_fixture_expectations(expect, ok):
    speech = SpeechEnd(0.5, utterance=0, text="가나")
    closed = Closed(11.0, by_handler=False)
    assert expectations(ctx(speech, FINAL_A, FINAL_B, Media(1.5), STOP, closed, expect=expect)).ok is ok


def _reply_audio(start: float, seconds: float) -> list[Event]:
    """``seconds`` of bot audio sent at ``start`` (20 ms frames, all at once: Twilio buffers and plays them)."""
    return [Media(start, ms=20.0) for _ in range(int(seconds * 50))]


def test_barge_in_needs_playback_cleared_while_the_caller_talks_over_the_bot():
    talks_over = [SpeechStart(4.0, utterance=1, text="다라", audio_ms=4000),
                  SpeechEnd(7.0, utterance=1, text="다라", audio_ms=7000)]
    reply = _reply_audio(3.0, 6.0)  # plays from 3 s to 9 s: the caller speaks over it from 4 s
    assert barge_in(ctx(*talks_over, *reply, Clear(4.4), STOP, expect={"barge_in": True})).status == "passed"
    never = barge_in(ctx(*talks_over, *reply, STOP, expect={"barge_in": True}))
    assert never.status == "failed" and "never cleared" in never.message and "3.0 s" in never.message
    early = barge_in(ctx(Clear(1.0), *talks_over, *reply, STOP, expect={"barge_in": True}))
    assert early.status == "failed" and "only before it" in early.message  # one clear, before the reply: not barge-in
    late = barge_in(ctx(*talks_over, *reply, Clear(6.0), STOP, expect={"barge_in": True}))
    assert late.status == "failed" and "in time" in late.message


def test_talk_over_while_rtzr_had_stalled_the_stream_is_not_held_against_the_handler():
    """A caller who talks over the bot while RTZR answers nothing: the handler cannot know until its watchdog has a
    new stream (wall seconds, whatever the pace); from the first result there, barge-in is judged again."""
    talks_over = [SpeechStart(4.0, utterance=1, text="다라", audio_ms=4000),
                  SpeechEnd(7.0, utterance=1, text="다라", audio_ms=7000)]
    reply = _reply_audio(3.0, 6.0)
    stalled = RtzrEnd(3.5, connection=0, how=StreamEnd.STALLED)
    deaf = barge_in(ctx(stalled, *talks_over, *reply, STOP, expect={"barge_in": True}))
    assert deaf.status == "skipped" and "stalled" in deaf.message
    recovered = [stalled, Partial(5.0, connection=1, text="다")]  # heard again from 5 s: 2 s of talk-over, no clear
    late = barge_in(ctx(*recovered, *talks_over, *reply, STOP, expect={"barge_in": True}))
    assert late.status == "failed" and "2.0 s" in late.message
    cleared = barge_in(ctx(*recovered, *talks_over, *reply, Clear(5.5), STOP, expect={"barge_in": True}))
    assert cleared.status == "passed"
    closed = RtzrEnd(3.5, connection=0, how=StreamEnd.SERVER_CLOSED, code=1000)  # a close is no stall: judged whole
    assert barge_in(ctx(closed, *talks_over, *reply, STOP, expect={"barge_in": True})).status == "failed"


def test_barge_in_is_skipped_at_fast_pace_and_when_the_bot_never_spoke_over_the_caller():
    speech = [SpeechStart(0.5, utterance=0, text="가나", audio_ms=500),
              SpeechEnd(2.0, utterance=0, text="가나", audio_ms=2000)]
    fast = ctx(*speech, STOP, expect={"barge_in": True})
    fast.audio_plays = False
    assert barge_in(fast).status == "skipped" and "fast pace" in barge_in(fast).message
    slow = barge_in(ctx(*speech, *_reply_audio(2.5, 3.0), STOP, expect={"barge_in": True}))  # its reply came after
    assert slow.status == "skipped" and "never played while the caller spoke" in slow.message


def test_replies_are_spoken_in_order():
    asks = [LlmRequest(1.0, user="a", reply="첫째 답. 둘째 문장."),
            LlmRequest(2.0, user="b", reply="다음 답.")]
    good = [TtsRequest(1.1, text="첫째 답."), TtsRequest(1.2, text="둘째 문장."),
            TtsRequest(2.1, text="다음 답."), TtsRequest(2.2, text="죄송합니다.")]
    assert replies_in_order(ctx(*asks, *good)).ok
    bad = [TtsRequest(1.1, text="다음 답."), TtsRequest(2.1, text="둘째 문장.")]
    assert not replies_in_order(ctx(*asks, *bad)).ok
