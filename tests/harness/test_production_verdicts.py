"""Verdicts on handlers as teams write them: post-call work is no turn, a reply to a final that came after
the hang-up is a reply to nobody, the same words twice in one request are given twice, and a caller who
times their words on the bot (barge-in that a slow handler cannot dodge). Judged here on timelines (the
sans-I/O core) and end to end against aicall; the proving ground runs each against four handler styles."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from harness.errors import FixtureError
from harness.judge.events import (Final, LlmPostcall, LlmRequest, Media, RtzrForeign, SpeechEnd, SpeechStart, Stop,
                                  TtsRequest)
from harness.fixture import bundled_calls, load_call
from harness.judge.checks import CheckContext, expectations, finals_to_llm_once, stops_sending_after_hangup
from harness.judge.timeline import ON_ITS_WAY_S, CallTimeline, post_call
from harness.judge.words import occurrences
from harness.replay.runner import ErrorLog, run_fixture


def final(at: float, text: str) -> Event:
    return Final(at, text=text, connection=0)


def asked(at: float, user: str, index: int = 0) -> Event:
    return LlmRequest(at, user=user, index=index, status=200, ended=at + 0.1)


STOP = Stop(10.0, how="stop", audio_ms=10000)
SUMMARY = "다음 통화를 요약하세요.\n어르신: 안녕하세요 반갑습니다\nAI: 네, 반갑습니다.\n어르신: 그냥 잘 지냅니다"


def judged(*events: Event, expect: dict | None = None) -> CheckContext:
    return CheckContext(CallTimeline(post_call(sorted(events, key=lambda e: e.wall))), expect or {}, None)


# 1. Post-call work is its own thing; a reply to a final that came after the hang-up is a reply to nobody.
def test_a_summary_after_the_hang_up_is_post_call_work_not_a_delivery_nor_a_turn():
    ctx = judged(final(1.0, "안녕하세요 반갑습니다"), asked(1.1, "안녕하세요 반갑습니다"),
                 final(5.0, "그냥 잘 지냅니다"), asked(5.1, "그냥 잘 지냅니다", 1), STOP, asked(10.004, SUMMARY, 2),
                 expect={"llm_turns": 2})
    assert [type(e) for e in ctx.timeline.of(LlmRequest, LlmPostcall)] == [LlmRequest, LlmRequest, LlmPostcall]
    assert finals_to_llm_once(ctx).ok and expectations(ctx).ok and stops_sending_after_hangup(ctx).ok
    assert ctx.timeline.of(LlmPostcall)[0].late_final is None


def test_a_final_that_came_after_the_hang_up_answered_is_a_reply_to_nobody():
    ctx = judged(final(1.0, "안녕하세요 반갑습니다"), asked(1.1, "안녕하세요 반갑습니다"), STOP,
                 Final(10.01, text="그냥 잘", connection=0, after_eos=True), asked(10.02, "그냥 잘", 1),
                 expect={"llm_turns": 1})
    result = stops_sending_after_hangup(ctx)
    assert not result.ok and "reply to nobody" in result.message and "'그냥 잘'" in result.message
    assert expectations(ctx).ok, "the late request is no turn of the call: the check named for it says what it is"


@pytest.mark.parametrize("came, after_eos, nobody", [
    (10.0, False, False),  # on its way as the line dropped: the handler could not know yet (a race, not failure 4)
    (10.15, False, False),
    (10.0, True, True),  # drawn out by the handler's own EOS: it knew the call was over
    (10.0 + ON_ITS_WAY_S, False, True),  # long enough after the hang-up to have been told
])
def test_a_final_that_met_the_hang_up_on_its_way_is_no_reply_to_nobody(came, after_eos, nobody):
    gone = Stop(10.0, how="vanished", audio_ms=10000)
    ctx = judged(final(1.0, "안녕하세요"), asked(1.1, "안녕하세요"), gone,
                 Final(came, text="그냥 잘", connection=1, after_eos=after_eos), asked(came + 0.001, "그냥 잘", 1))
    assert stops_sending_after_hangup(ctx).ok is not nobody


def test_a_summary_that_quotes_a_late_final_too_is_still_post_call_work():
    ctx = judged(final(1.0, "안녕하세요 반갑습니다"), asked(1.1, "안녕하세요 반갑습니다"), STOP, final(10.01, "그냥 잘"),
                 asked(10.5, "요약하세요.\n어르신: 안녕하세요 반갑습니다\n어르신: 그냥 잘", 1))
    assert stops_sending_after_hangup(ctx).ok


# 3. The same words twice in one request are two deliveries; the same words said twice are not one too many.
def test_words_given_twice_in_one_request_are_given_twice():
    ctx = judged(final(1.0, "안녕하세요 반갑습니다"), asked(1.1, "안녕하세요 반갑습니다\n안녕하세요 반갑습니다"), STOP)
    result = finals_to_llm_once(ctx)
    assert not result.ok and "2 times in one request" in result.message


@pytest.mark.parametrize("events", [
    [final(1.0, "네"), asked(1.1, "네"), final(3.0, "네"), asked(3.1, "네", 1)],  # said twice, given twice
    [final(1.0, "네"), final(1.2, "네"), asked(1.3, "네\n네")],  # said twice, given together
    [final(1.0, "네"), asked(1.1, "네"), final(3.0, "네 알겠습니다"), asked(3.1, "네 알겠습니다", 1)],  # inside a later final
])
def test_words_the_caller_said_as_often_as_given_pass(events):
    assert finals_to_llm_once(judged(*events, STOP)).ok


def test_occurrences_are_whole_words_not_overlapping():
    assert occurrences("X\nX", "X") == 2 and occurrences("w12 w13", "w1") == 0 and occurrences("a a a", "a a") == 1


# 4. A caller who reacts: speaks a set time after the bot's reply starts, wherever that lands.
def _slow_barge_in(tmp_path, first_token_ms: float):
    directory = tmp_path / "barge-in-slow"
    shutil.copytree(bundled_calls() / "barge-in", directory)
    doc = json.loads((directory / "call.json").read_text(encoding="utf-8"))
    doc["llm"] = {"first_token_ms": first_token_ms}
    (directory / "call.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return load_call(directory)


@pytest.mark.parametrize("first_token_ms", [0, 3000])
async def test_the_caller_talks_over_the_reply_800_ms_after_it_starts_however_late_it_comes(tmp_path, first_token_ms):
    fixture = _slow_barge_in(tmp_path, first_token_ms)
    with ErrorLog() as errors:
        run = await run_fixture(fixture, pace=4.0, errors=errors)
    assert run.ok, run.failures()
    (reaction,) = run.record.reactions
    assert not reaction["waited_out"]
    assert 800 <= reaction["spoke_at_ms"] - reaction["bot_ms"] < 800 + 20, reaction  # in the caller's audio, any pace
    if first_token_ms:
        assert run.record.silence_ms > 0 and reaction["spoke_at_ms"] > reaction["fixture_ms"]  # held: the bot was late
    else:
        assert run.record.skipped_ms > 0 and reaction["spoke_at_ms"] < reaction["fixture_ms"]  # the pause cut short
    assert [e.text for e in run.timeline.of(Final)] == fixture.expect["finals"], "heard wherever it landed"
    barge = next(c for c in run.checks if c.name == "barge_in")
    assert barge.status == "passed", barge.message  # talked over, and aicall cleared


def test_a_reaction_names_an_utterance_and_an_earlier_turn(tmp_path):
    directory = tmp_path / "bad"
    shutil.copytree(bundled_calls() / "barge-in", directory)
    doc = json.loads((directory / "call.json").read_text(encoding="utf-8"))
    for reacts, says in (([{"utterance": 3, "after": "bot_starts", "turn": 1}], "has 2 utterance(s)"),
                         ([{"utterance": 2, "after": "bot_starts", "turn": 2}], "must come before"),
                         ([{"utterance": 2, "after": "bot_speaks", "turn": 1}], "after")):
        doc["caller"] = {"reacts": reacts}
        (directory / "call.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        with pytest.raises(FixtureError, match=re.escape(says)):
            load_call(directory)


# 5. A handler paced by the wall clock, judged at fast pace: the failure says what it saw and names --pace realtime.
def _paced_call(asked_late: bool) -> CheckContext:
    reply = [Media(1.2 + 0.001 * i, ms=20.0) for i in range(150)]  # 3 s of audio, sent at once
    events = [final(1.0, "안녕하세요"), asked(1.05, "안녕하세요"), *reply,
              SpeechEnd(1.4, utterance=1, audio_ms=4000), final(1.5, "잘 지내요"),
              *([asked(4.8, "잘 지내요", 1)] if asked_late else []), Stop(5.0, how="stop")]
    ctx = judged(*events, expect={"llm_turns": 3})
    ctx.audio_plays, ctx.pace = False, None
    return ctx


@pytest.mark.parametrize("asked_late", [True, False])
def test_at_fast_pace_a_final_left_waiting_through_the_last_replys_playback_names_realtime(asked_late):
    result = expectations(_paced_call(asked_late))
    assert not result.ok and "--pace realtime" in result.message and "paced by the wall clock" in result.message
    assert ("asked 3.4 s later" if asked_late else "not asked again before the hang-up") in result.message


def test_the_hint_is_not_given_when_the_llm_was_at_work_or_at_another_pace():
    busy = _paced_call(True)
    busy.timeline.events.insert(3, TtsRequest(1.4, text="x", ended=4.0, index=0))
    assert "--pace realtime" not in expectations(busy).message  # late because the TTS was slow, not a clock
    realtime = _paced_call(True)
    realtime.audio_plays, realtime.pace = True, 1.0
    assert "--pace realtime" not in expectations(realtime).message


# Found by harness fuzz against the production-style handler at x2: RTZR closes the first stream at once, the
# handler's second stream hears the first word, and the second utterance waits for the bot. The first word's
# final fires in the silence held meanwhile (end-point detection counts it as audio after the word); placed
# by the old alignment past the discontinuity, it lay in audio not yet sent, and the stream was judged
# another call's ("foreign"): every final lost, recognition_continues failed.
def test_a_position_past_a_discontinuity_is_where_the_placed_audio_ended():
    from harness.judge.timeline import _call_position

    log = [{"conn_ms": 0.0, "call_ms": 0.0, "event": "aligned"}, {"conn_ms": 840.0, "event": "discontinuity"},
           {"conn_ms": 1300.0, "event": "no_match"}, {"conn_ms": 1200.0, "call_ms": 850.0, "event": "aligned"}]
    assert [_call_position(log, ms) for ms in (500.0, 840.0, 1050.0, 1250.0)] == [500.0, 840.0, 840.0, 900.0]
    assert _call_position([{"conn_ms": 0.0, "event": "discontinuity"}], 100.0) is None


async def test_a_final_in_the_silence_held_for_a_reacting_caller_is_this_calls(tmp_path):
    from harness.fuzz.strategies import as_call
    from harness.fuzz.synthetic import SynthUtterance

    said = [SynthUtterance(pause_before_ms=400, word_ms=(150,)), SynthUtterance(pause_before_ms=400, word_ms=(150,))]
    call = as_call({"seed": 0, "utterances": said, "recognizer": {}, "partial_every_ms": None,
                    "faults": [{"type": "close", "code": 1000, "at_ms": 0}], "hangup": None, "vanish": False, "dtmf": [],
                    "barge_in": False, "llm": {"first_token_ms": 0, "token_ms": 0, "sentences": 1},
                    "tts": {"realtime": False, "ms_per_char": 20, "first_chunk_ms": 0},
                    "reacts": [{"after": "bot_starts", "ms": 200}]})
    with ErrorLog() as errors:
        run = await run_fixture(call.fixture(tmp_path / "call"), pace=2.0, errors=errors)
    assert run.record.silence_ms > 0, "the caller held silence for the bot"
    assert not run.timeline.of(RtzrForeign), "the handler's second stream is this call's"
    assert run.ok, run.failures()


async def test_a_fast_caller_who_waits_on_the_bot_first_sends_the_silence_that_ends_the_utterance(tmp_path):
    """Found by ``harness fuzz --calls-at-once 8`` (then alone): the caller holds its audio ``LEAD_MS`` before its
    reacting words, 100 ms before the recognizer's end point of the utterance before (epd_time 0.8 s, the next
    words 812 ms after the last): at fast pace nothing is sent while held, so RTZR could not end the utterance,
    the bot could not start, and the caller waited its 3 s and talked on, with the first final unanswered. A
    line carries audio all the time: the held caller first sends the silence that reaches the end point."""
    from harness.fuzz.strategies import as_call
    from harness.fuzz.synthetic import SynthUtterance

    said = [SynthUtterance(pause_before_ms=400, word_ms=(516,)), SynthUtterance(pause_before_ms=812, word_ms=(556, 506))]
    call = as_call({"seed": 15113731, "utterances": said, "recognizer": {"epd_time": 0.8}, "partial_every_ms": None,
                    "faults": [], "hangup": None, "vanish": False, "dtmf": [], "barge_in": False,
                    "llm": {"first_token_ms": 0, "token_ms": 0, "sentences": 1},
                    "tts": {"realtime": False, "ms_per_char": 20, "first_chunk_ms": 0},
                    "reacts": [{"after": "bot_starts", "ms": 300}]})
    with ErrorLog() as errors:
        run = await run_fixture(call.fixture(tmp_path / "call"), pace=None, errors=errors)
    (reaction,) = run.record.reactions
    assert not reaction["waited_out"], "the bot answered the first utterance while the caller waited"
    first_final = run.timeline.of(Final)[0]
    talks_on = run.timeline.of(SpeechStart)[1]
    assert first_final.wall < talks_on.wall and first_final.text == call.doc["utterances"][0]["text"]
    assert run.ok, run.failures()


def test_post_call_work_is_reported_in_the_console_json_junit_and_html(tmp_path):
    import io
    from xml.etree import ElementTree

    from harness.judge.checks import CheckResult
    from harness.replay.runner import FixtureRun
    from harness.reports.html import write_html
    from harness.reports.results import console_table, write_json, write_junit

    ctx = judged(final(1.0, "안녕하세요 반갑습니다"), asked(1.1, "안녕하세요 반갑습니다"), STOP, asked(10.004, SUMMARY, 1))
    run = FixtureRun(load_call(bundled_calls() / "seed-three-turns"), [CheckResult("expectations", True)], [],
                     ctx.timeline, 1.0)
    assert run.post_call == [{"after_hangup_s": 0.004, "asked": SUMMARY}]
    out = io.StringIO()
    console_table([run], out)
    assert "post-call work (not a turn): the LLM was asked 0.00 s after the hang-up: '다음 통화를 요약하세요." in out.getvalue()
    write_json([run], tmp_path / "report.json", "fast")
    assert json.loads((tmp_path / "report.json").read_text())["runs"][0]["post_call"] == run.post_call
    write_junit([run], tmp_path / "junit.xml")
    assert "post-call work" in ElementTree.parse(tmp_path / "junit.xml").getroot().find("system-out").text
    write_html([run], tmp_path / "report.html", "fast")
    assert "<b>post-call work</b>" in (tmp_path / "report.html").read_text(encoding="utf-8")
