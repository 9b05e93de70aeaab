"""Script mode's two halves on their own: the aligner (where a connection's audio lies in the call) and the
schedule (what falls due there), and the recognizer that composes them answering as the single class it
was split from did (its answers for a few streams, recorded before the split, are kept below)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakertzr.align import AudioLocator
from fakertzr.events import HeardWord, RecognizerEvent, ScriptedPartialText, SpeechEnd, SpeechStart
from fakertzr.recognizer_script import ScriptRecognizer
from fakertzr.script_aligner import Placement, ScriptAligner, samples_at
from fakertzr.script_schedule import (PartialDue, ReceivedAudio, ScriptSchedule, UtteranceEnds, UtteranceStarts,
                                      WordEnds, marks_of)

from .support.budget import examples
from .support.synth import SynthUtterance, synth_call

TWO_TURNS = synth_call(7, [SynthUtterance(800, (300, 400)), SynthUtterance(1500, (500,))])
PARTIALS = synth_call(11, [SynthUtterance(500, (200, 300)), SynthUtterance(900, (250, 250, 250))], partial_every_ms=120)
LOCATORS = {TWO_TURNS.name: AudioLocator(TWO_TURNS.audio), PARTIALS.name: AudioLocator(PARTIALS.audio)}
FRAME = 160


def short(event: RecognizerEvent) -> str:
    match event:
        case HeardWord():
            return f"W {event.text} {event.start_ms:g}-{event.end_ms:g}"
        case SpeechStart():
            return f"S {event.at_ms:g}"
        case SpeechEnd():
            return f"E {event.at_ms:g}"
        case ScriptedPartialText():
            return f"P {event.text} {event.at_ms:g}"
    raise AssertionError(event)


def recognize(script, parts: list[np.ndarray], chunk: int = FRAME) -> tuple[list[str], list[tuple]]:
    """What the recognizer hears in ``parts`` streamed in ``chunk``-sample frames, then EOS; and where it
    placed them (the alignment journal)."""
    recognizer = ScriptRecognizer([script], [LOCATORS[script.name]])
    events: list[RecognizerEvent] = []
    for part in parts:
        for i in range(0, len(part), chunk):
            events += recognizer.feed(part[i : i + chunk])
    events += recognizer.flush(recognizer.conn_samples / 8)
    return [short(e) for e in events], [(a["event"], a.get("conn_ms"), a.get("call_ms")) for a in recognizer.alignment_log]


def block(x: float) -> int:
    return int(x) // FRAME * FRAME


A = TWO_TURNS.audio
GAP, HOLD, BACK = block(len(A) * 0.3), block(len(A) * 0.45), block(len(A) * 0.5)
# What ScriptRecognizer said before it was split in two (/tmp/golden_before.json of issue 36, in short).
BEFORE_THE_SPLIT = {
    "500 ms dropped": (
        [A[:GAP], A[GAP + 4000 :]],
        ["S 800", "W w0 800-1100", "W w1 1100-1500", "E 1500", "S 2500", "W w2 2500-3000", "E 3000"],
        [("aligned", 0.0, 0.0), ("discontinuity", 1500.0, None), ("aligned", 1500.0, 2000.0)],
    ),
    "a gap off the block grid": (
        [A[: GAP + 37], A[GAP + 4091 :]],
        ["S 800", "W w0 800-1100", "W w1 1100-1500", "E 1500", "S 2493.25", "W w2 2493.25-2993.25", "E 2993.25"],
        [("aligned", 0.0, 0.0), ("discontinuity", 1504.625, None), ("aligned", 1504.625, 2011.375)],
    ),
    "3 s of digital silence held": (
        [A[:HOLD], np.zeros(24000, np.int16), A[HOLD:]],
        ["S 800", "W w0 800-1100", "W w1 1100-1500", "E 1500", "S 6000", "W w2 6000-6500", "E 6500"],
        [("aligned", 0.0, 0.0), ("discontinuity", 2240.0, None), ("aligned", 5240.0, 2240.0)],
    ),
    "a reconnect from 40 %": (
        [A[block(len(A) * 0.4) :]],
        ["S 1000", "W w2 1000-1500", "E 1500"],
        [("aligned", 0.0, 2000.0)],
    ),
    "a resend of audio heard before": (
        [A[:BACK], A[GAP:]],
        ["S 800", "W w0 800-1100", "W w1 1100-1500", "E 1500", "S 4000", "W w2 4000-4500", "E 4500"],
        [("aligned", 0.0, 0.0), ("discontinuity", 2500.0, None), ("aligned", 2500.0, 1500.0)],
    ),
}


@pytest.mark.parametrize("case", list(BEFORE_THE_SPLIT))
def test_the_recognizer_answers_as_it_did_before_the_split(case):
    parts, events, alignment = BEFORE_THE_SPLIT[case]
    assert recognize(TWO_TURNS, parts) == (events, alignment)


def test_scripted_partials_come_between_the_words_as_before_the_split():
    events, alignment = recognize(PARTIALS, [PARTIALS.audio])
    assert events == ["S 500", "P w0 620", "W w0 500-700", "P w0 w1 740", "P w0 w1 860", "P w0 w1 980",
                      "W w1 700-1000", "E 1000", "S 1900", "P w2 2020", "P w2 2140", "W w2 1900-2150", "P w2 w3 2260",
                      "P w2 w3 2380", "W w3 2150-2400", "P w2 w3 w4 2500", "P w2 w3 w4 2620", "W w4 2400-2650", "E 2650"]
    assert alignment == [("aligned", 0.0, 0.0)]


# ------------------------------------------------------------------ the aligner
def placements(parts: list[np.ndarray], chunk: int = FRAME) -> tuple[list[Placement], ScriptAligner]:
    selected: list = []
    aligner = ScriptAligner([TWO_TURNS], [LOCATORS[TWO_TURNS.name]], on_select=selected.append)
    placed: list[Placement] = []
    for part in parts:
        for i in range(0, len(part), chunk):
            placed += aligner.feed(part[i : i + chunk])
    placed += aligner.flush()
    assert selected == ([TWO_TURNS] if placed else [])
    return placed, aligner


def test_a_whole_call_is_placed_where_it_is_frame_after_frame():
    placed, aligner = placements([A])
    assert placed[0].conn_start == 0 and placed[-1].conn_end == len(A)
    assert all(p.offset == 0 for p in placed)
    assert all(a.conn_end == b.conn_start for a, b in zip(placed, placed[1:])), "contiguous"
    assert aligner.script is TWO_TURNS and aligner.conn_samples == len(A)


def test_nothing_is_placed_before_there_is_enough_audio_to_search_with():
    aligner = ScriptAligner([TWO_TURNS], [LOCATORS[TWO_TURNS.name]])
    assert aligner.feed(A[:640]) == [] and aligner.script is None  # 80 ms: less than the probe
    assert aligner.feed(A[640:800]) == [Placement(0, 800, 0)]  # 100 ms: found, all of it


def test_a_dropped_stretch_moves_the_offset_by_its_length():
    placed, aligner = placements([A[:GAP], A[GAP + 4000 :]])
    assert {p.offset for p in placed if p.conn_start < GAP} == {0}
    assert {p.offset for p in placed if p.conn_start >= GAP} == {4000}
    assert [e["event"] for e in aligner.alignment_log] == ["aligned", "discontinuity", "aligned"]


def test_held_digital_silence_is_placed_nowhere():
    placed, _ = placements([A[:HOLD], np.zeros(8000, np.int16), A[HOLD:]])
    assert not any(p.conn_start < HOLD + 8000 and p.conn_end > HOLD for p in placed)
    assert sum(p.conn_end - p.conn_start for p in placed) == len(A)


def test_a_remainder_shorter_than_a_block_waits_for_eos():
    aligner = ScriptAligner([TWO_TURNS], [LOCATORS[TWO_TURNS.name]])
    placed = aligner.feed(A[:1650])
    assert placed[-1].conn_end == 1600 and aligner.conn_samples == 1600
    assert aligner.flush() == [Placement(1600, 1650, 0)]


stretches = st.lists(st.tuples(st.integers(0, len(A) - 1600), st.integers(1000, 12000)), min_size=1, max_size=4)


@examples(150)
@given(stretches=stretches, chunk=st.sampled_from([160, 320, 80, 1000]) | st.integers(1, 2000))
def test_placed_audio_is_the_call_audio_where_it_is_placed(stretches, chunk):
    """Stretches of the call in any order, framed any way: every sample placed is the call's there, in
    connection order, and nearly all of it is placed (a few samples at a seam may continue the call by chance
    before it is found to jump)."""
    parts = [A[a : a + n] for a, n in stretches]
    sent = np.concatenate(parts)
    placed, _ = placements(parts, chunk)
    assert all(a.conn_end <= b.conn_start for a, b in zip(placed, placed[1:])), "in connection order, no overlap"
    for p in placed:
        assert np.array_equal(sent[p.conn_start : p.conn_end], A[p.call_start : p.call_end])
    assert sum(p.conn_end - p.conn_start for p in placed) >= len(sent) - 40 * len(parts)


# ------------------------------------------------------------------ the schedule
def test_marks_at_one_position_come_start_word_partial_end():
    marks = marks_of(PARTIALS)
    assert [m.call for m in marks] == sorted(m.call for m in marks)
    first = PARTIALS.utterances[0]
    assert marks[0] == UtteranceStarts(samples_at(first.start_ms), 0)
    assert marks[1] == PartialDue(samples_at(first.partials[0].at_ms), 0, 0)
    at_end = [m for m in marks if m.call == samples_at(first.end_ms)]
    assert [type(m) for m in at_end] == [WordEnds, UtteranceEnds]


def test_received_audio_merges_spans_and_counts_what_arrived():
    received = ReceivedAudio()
    for a, b in [(100, 200), (300, 400), (200, 250), (0, 50), (390, 500)]:
        received.add(a, b)
    assert received.spans == [[0, 50], [100, 250], [300, 500]]
    assert received.covered(0, 1000) == 50 + 150 + 200 and received.covered(250, 300) == 0
    assert received.first_in(240, 400) == 240 and received.first_in(260, 300) is None


def reference_heard(script, call_spans: list[tuple[int, int]]) -> list[str]:
    """Straight from the rule: a word is heard when at least half of its audio arrived."""
    received = ReceivedAudio()
    for a, b in call_spans:
        received.add(max(0, a), b)
    words = [w for u in script.utterances for w in u.words]
    return [w.text for w in words
            if received.covered(samples_at(w.start_ms), samples_at(w.end_ms)) >= 0.5 * (samples_at(w.end_ms) - samples_at(w.start_ms))]


def test_a_whole_call_placed_at_once_is_heard_as_scripted():
    schedule = ScriptSchedule(TWO_TURNS)
    events = schedule.hear(Placement(0, len(A), 0)) + schedule.flush(len(A) / 8)
    expected = []
    for u in TWO_TURNS.utterances:
        expected += [f"S {u.start_ms:g}"] + [f"W {w.text} {w.start_ms:g}-{w.end_ms:g}" for w in u.words] + [f"E {u.end_ms:g}"]
    assert [short(e) for e in events] == expected


@examples(300)
@given(cuts=st.lists(st.integers(0, len(A)), min_size=2, max_size=12, unique=True).map(sorted),
       keep=st.lists(st.booleans(), min_size=11, max_size=11))
def test_the_schedule_hears_exactly_the_words_mostly_received(cuts, keep):
    """The call cut into stretches, some dropped (the connection's audio skips them): the words heard, in
    order and once each, are those at least half of whose audio arrived, as the rule computed directly says."""
    kept = [(a, b) for (a, b), k in zip(zip(cuts, cuts[1:]), keep) if k and b > a]
    schedule, conn, events = ScriptSchedule(TWO_TURNS), 0, []
    for a, b in kept:
        events += schedule.hear(Placement(conn, conn + b - a, a - conn))
        conn += b - a
    events += schedule.flush(conn / 8)
    assert [e.text for e in events if isinstance(e, HeardWord)] == reference_heard(TWO_TURNS, kept)
    opened = [e for e in events if isinstance(e, (SpeechStart, SpeechEnd))]
    assert all(isinstance(e, SpeechStart) for e in opened[::2]) and all(isinstance(e, SpeechEnd) for e in opened[1::2])
    assert all(0 <= e.at_ms <= conn / 8 for e in events)
