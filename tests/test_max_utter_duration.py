"""RTZR cuts unbroken speech at ``max_utter_duration`` (12 s by default in its gRPC proto): a final while the
caller is still talking, and the words after it open the next utterance."""

from __future__ import annotations

from fakertzr.events import HeardWord, SpeechEnd, SpeechStart
from fakertzr.results import ResultBuilder


def words(start_ms: float, end_ms: float, every_ms: float = 500.0) -> list[HeardWord]:
    out, at = [], start_ms
    while at < end_ms:
        out.append(HeardWord(f"w{len(out)}", at, min(at + every_ms, end_ms)))
        at += every_ms
    return out


def drive(builder: ResultBuilder, events) -> list:
    """As the session does: advance to each event's position, then apply it."""
    results = []
    for event in events:
        results += builder.advance(event.at_ms)
        results += builder.apply(event)
    return results


def finals(results) -> list:
    return [r for r in results if r.final]


def test_twenty_seconds_of_speech_give_a_final_at_twelve_and_one_at_the_end():
    speech = words(1000, 21000)
    builder = ResultBuilder(500, max_utter_ms=12000)
    results = drive(builder, [SpeechStart(1000), *speech, SpeechEnd(21000)]) + builder.advance(21500)
    got = finals(results)
    assert [r.audio_ms for r in got] == [13000, 21500], "cut at start + 12 s, while the caller still talks"
    first, second = (r.payload for r in got)
    assert first["start_at"] == 1000 and first["start_at"] + first["duration"] <= 13000
    assert second["start_at"] >= first["start_at"] + first["duration"]
    texts = [p["alternatives"][0]["text"].split() for p in (first, second)]
    assert texts[0] + texts[1] == [w.text for w in speech], "every word once, in order"
    assert [first["seq"], second["seq"]] == [0, 1]


def test_speech_shorter_than_the_limit_is_one_utterance():
    builder = ResultBuilder(500, max_utter_ms=12000)
    results = drive(builder, [SpeechStart(0), *words(0, 11900), SpeechEnd(11900)]) + builder.advance(12400)
    assert [r.audio_ms for r in finals(results)] == [12400]


def test_a_pause_before_the_limit_ends_the_utterance_at_epd_not_at_the_cut():
    """Speech stops at 11.8 s: the final is epd after that (12.3 s), not a cut at 12 s of silence."""
    builder = ResultBuilder(500, max_utter_ms=12000)
    results = drive(builder, [SpeechStart(0), *words(0, 11800), SpeechEnd(11800)]) + builder.advance(13000)
    assert [r.audio_ms for r in finals(results)] == [12300]


def test_no_limit_no_cut():
    builder = ResultBuilder(500)
    results = drive(builder, [SpeechStart(0), *words(0, 30000), SpeechEnd(30000)]) + builder.advance(30500)
    assert [r.audio_ms for r in finals(results)] == [30500]
