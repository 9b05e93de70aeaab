"""``expect.every_utterance`` (harness.judge.each_utterance): each utterance the caller finished is recognised,
asked and answered, unless the call gave the handler no time for it; each failure named for what was missing."""

from __future__ import annotations

from dataclasses import replace

from harness.judge.events import Final, LlmRequest, Media, RtzrEnd, SpeechEnd, SpeechStart, Stop, TtsRequest
from harness.judge.checks import expectations
from harness.judge.context import CheckContext
from harness.judge.each_utterance import unanswered_utterance
from harness.judge.timeline import CallTimeline
REPLY = "네 w0 w1 답변입니다."


def said(start: float = 1.0, end: float = 2.0, ready: float | None = 2.3) -> list[Event]:
    return [SpeechStart(start, utterance=0, text="w0 w1", audio_ms=start * 1000),
            SpeechEnd(end, utterance=0, text="w0 w1", audio_ms=end * 1000, end_point_sent=ready)]


def final(at: float = 2.5) -> Event:
    return Final(at, text="w0 w1", call_ms=2000.0, connection=0)


def asked(at: float = 2.6, ended: float = 2.7, status: int = 200) -> Event:
    return LlmRequest(at, index=0, user="w0 w1", reply=REPLY, status=status, ended=ended)


def spoken(at: float = 2.7, ended: float = 2.75, index: int = 0) -> Event:
    return TtsRequest(at, index=index, text=REPLY, status=200, ended=ended, audio_s=1.0)


def heard(at: float = 2.8, tts: int = 0) -> Event:
    return Media(at, ms=100.0, tts=tts)


def stop(at: float) -> Event:
    return Stop(at, how="stop")


def judge(*events: Event, recognised_s: float = 0.0):
    ctx = CheckContext(CallTimeline(sorted(events, key=lambda e: e.wall)), {"every_utterance": True}, None, [],
                       audio_plays=False, pace=None, recognised_s=recognised_s)
    return unanswered_utterance(ctx), expectations(ctx)


def test_an_utterance_recognised_asked_and_answered_passes():
    found, result = judge(*said(), final(), asked(), spoken(), heard(), stop(8.0))
    assert found is None and result.ok


def test_an_utterance_never_recognised_fails_naming_it():
    found, result = judge(*said(), stop(8.0))
    assert found is not None and not result.ok and "utterance 1 ('w0 w1'), which ended at 2.0 s of the call, was never recognised" in result.message


def test_a_final_never_asked_fails():
    found, _ = judge(*said(), final(), stop(8.0))
    assert found is not None and "never reached the LLM" in found.message and "idle 5.5 s" in found.message


def test_a_reply_never_heard_fails():
    found, _ = judge(*said(), final(), asked(), spoken(), stop(8.0))
    assert found is not None and "no audio of it was heard" in found.message


def test_nothing_is_owed_without_time_for_it():
    assert judge(*said(), stop(3.2))[0] is None  # hung up 0.9 s after the end point: no final due yet
    assert judge(*said(ready=None), stop(8.0))[0] is None  # hung up before the end point was sent
    assert judge(*said(), final(), stop(5.5))[0] is None  # 3 s idle after the final: not yet dropped
    assert judge(*said(), final(), asked(), spoken(), stop(4.5))[0] is None  # 1.75 s after the reply ended
    assert judge(*said(), stop(8.0), recognised_s=5.0)[0] is None  # RTZR's own delay (a delay_finals fault)


def test_a_fault_of_the_call_ends_what_is_owed():
    dropped = RtzrEnd(2.4, connection=0, how="dropped", code=1006)
    assert judge(*said(), dropped, stop(8.0))[0] is None
    failed = asked(status=500)
    assert judge(*said(), final(), failed, replace(failed, wall=2.8, index=1), stop(8.0))[0] is None


def test_words_queued_while_the_handler_answers_are_owed_only_once_it_is_idle():
    busy = spoken(at=2.0, ended=6.0, index=1)  # another reply's speech still being made when the final came
    later = [asked(at=6.5, ended=6.6), spoken(at=6.6, ended=6.7), heard(at=6.8)]
    assert judge(*said(), final(), busy, stop(9.0))[0] is None  # idle 3 s since: not yet owed
    assert judge(*said(), final(), busy, *later, stop(12.0))[0] is None
    found, _ = judge(*said(), final(), busy, stop(10.0))
    assert found is not None and "idle 4.0 s" in found.message


def test_a_caller_who_speaks_again_first_is_owed_no_answer():
    again = [SpeechStart(3.0, utterance=1, text="w2", audio_ms=3000.0)]
    assert judge(*said(), final(), asked(), spoken(), *again, stop(8.0))[0] is None


def test_an_utterance_recognised_with_the_next_is_judged_with_it():
    second = [SpeechStart(2.2, utterance=1, text="w2", audio_ms=2200.0),
              SpeechEnd(3.0, utterance=1, text="w2", audio_ms=3000.0, end_point_sent=3.3)]
    both = Final(3.4, text="w0 w1 w2", call_ms=3000.0, connection=0)
    one = LlmRequest(3.5, index=0, user="w0 w1 w2", reply=REPLY, status=200, ended=3.6)
    assert judge(*said(), *second, both, one, spoken(3.6, 3.65), heard(3.7), stop(9.0))[0] is None
    found, _ = judge(*said(), *second, stop(9.0))
    assert found is not None and "utterance 1" in found.message
