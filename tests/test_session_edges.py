"""The streaming core's behaviour at its edges: framing, headers, rates, endpointing, EOS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fakertzr.actions import Close, SendResult
from callaudio.wavfile import riff_data_offset

from .support.core import CoreRun, new_session, stream
from .support.synth import SynthUtterance, synth_call

TWO_TURNS = [SynthUtterance(800, (300, 400)), SynthUtterance(1500, (500,))]


@pytest.fixture(scope="module")
def call():
    return synth_call(7, TWO_TURNS)


def test_one_byte_frames_and_odd_lengths_give_the_same_finals(call):
    run = stream(new_session(call), call.audio, "LINEAR16", chunk_bytes=1)
    assert run.final_texts == ["w0 w1", "w2"]


def wav_header(data_len: int) -> bytes:
    import struct

    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"LIST" + struct.pack("<I", 4) + b"INFO" + b"data" + struct.pack("<I", data_len))


def test_a_wav_header_before_the_audio_is_skipped_even_split_across_frames(call):
    pcm = call.audio.astype("<i2").tobytes()
    blob = wav_header(len(pcm)) + pcm
    session, run = new_session(call), CoreRun()
    for i in range(0, len(blob), 7):
        run.actions += session.receive_audio(blob[i : i + 7])
    run.actions += session.receive_text("EOS")
    assert run.final_texts == ["w0 w1", "w2"]
    assert session.audio_ms == pytest.approx(len(call.audio) / 8, abs=1)


def test_riff_offset_needs_enough_bytes_and_passes_plain_audio():
    header = wav_header(100)
    assert riff_data_offset(header[:10]) is None
    assert riff_data_offset(header) == len(header)
    assert riff_data_offset(b"\x01\x02" * 20) == 0


def test_16khz_audio_with_gain_aligns_by_correlation(call):
    """A client that upsamples and changes level is not sample-exact; speech still aligns."""
    up = np.interp(np.arange(len(call.audio) * 2) / 2, np.arange(len(call.audio)), call.audio) * 0.7
    session = new_session(call, sample_rate=16000)
    run = stream(session, up.astype(np.int16), "LINEAR16", chunk_bytes=640)
    assert run.final_texts == ["w0 w1", "w2"]
    aligned = [e for e in session.recognizer.alignment_log if e["event"] == "aligned"]
    assert aligned and aligned[0]["exact"] is False


def test_a_pause_shorter_than_epd_continues_the_same_utterance():
    call = synth_call(3, [SynthUtterance(800, (300,)), SynthUtterance(300, (300,))])
    assert stream(new_session(call, epd_ms=500), call.audio).final_texts == ["w0 w1"]
    assert stream(new_session(call, epd_ms=200), call.audio).final_texts == ["w0", "w1"]


def test_final_comes_epd_of_audio_after_speech_ends(call):
    run = stream(new_session(call, epd_ms=700), call.audio)
    finals = [a.result for a in run.actions if isinstance(a, SendResult) and a.result.final]
    ends = [u.end_ms for u in call.utterances]
    assert [r.audio_ms for r in finals] == pytest.approx([e + 700 for e in ends], abs=1)


def test_no_eos_means_no_final_for_the_open_utterance(call):
    cut = int((call.utterances[1].start_ms + 200) * 8)
    run = stream(new_session(call), call.audio[:cut], eos=False)
    assert run.final_texts == ["w0 w1"]
    assert not any(isinstance(a, Close) for a in run.actions)


def test_eos_mid_word_keeps_words_mostly_received(call):
    w2 = call.utterances[1].words[0]
    cut = int((w2.start_ms + 0.6 * (w2.end_ms - w2.start_ms)) * 8)
    run = stream(new_session(call), call.audio[:cut])
    assert run.final_texts == ["w0 w1", "w2"]
    assert isinstance(run.actions[-1], Close) and run.actions[-1].code == 1000


def test_finalize_finalizes_now_and_repeats_send_nothing(call):
    session = new_session(call)
    w1_end = int(call.utterances[0].words[1].end_ms * 8) + 8
    run = stream(session, call.audio[:w1_end], eos=False)
    run.actions += session.receive_text(json.dumps({"type": "Finalize"}))
    assert run.final_texts == ["w0 w1"]
    again = session.receive_text('{"type":"Finalize"}')
    assert again == []
    stream(session, call.audio[w1_end:], run=run)
    assert run.final_texts == ["w0 w1", "w2"]


def test_unknown_text_frames_are_ignored(call):
    session = new_session(call)
    for text in ("hello", "{}", '{"type":"Nope"}', "[1,2]", "\x00\xff"):
        assert session.receive_text(text) == []
    assert stream(session, call.audio).final_texts == ["w0 w1", "w2"]


def test_scripted_delays_travel_with_results():
    call = synth_call(5, [SynthUtterance(800, (300,))])
    session = new_session(call)
    session.builder.final_delay_ms, session.builder.partial_delay_ms = 250.0, 40.0
    run = stream(session, call.audio)
    delays = {(a.result.final, a.result.delay_ms) for a in run.actions if isinstance(a, SendResult)}
    assert delays == {(False, 40.0), (True, 250.0)}


def test_the_call_played_twice_is_placed_again_by_an_exact_search(call, monkeypatch):
    """A stream that restarts the call (a replay, a resend) is sample for sample the call again: it is placed
    by a byte search, not a cross-correlation, and every word is heard twice."""
    from fakertzr.align import AudioLocator

    monkeypatch.setattr(AudioLocator, "locate", lambda *_: pytest.fail("placed by cross-correlation"))
    session = new_session(call)
    run = stream(session, np.concatenate((call.audio, call.audio)), "LINEAR16")
    assert run.final_texts == ["w0 w1", "w2", "w0 w1", "w2"]
    aligned = [e for e in session.recognizer.alignment_log if e["event"] == "aligned"]
    assert [(e["call_ms"], e["exact"]) for e in aligned] == [(0.0, True), (0.0, True)]
    assert aligned[1]["conn_ms"] == pytest.approx(len(call.audio) / 8, abs=20)


def test_a_resend_from_mid_call_is_placed_exactly_where_it_came_from(call, monkeypatch):
    from fakertzr.align import AudioLocator

    monkeypatch.setattr(AudioLocator, "locate", lambda *_: pytest.fail("placed by cross-correlation"))
    start = int(len(call.audio) * 0.4) // 160 * 160
    session = new_session(call)
    stream(session, call.audio[start:], "LINEAR16")
    aligned = [e for e in session.recognizer.alignment_log if e["event"] == "aligned"]
    assert aligned[0]["exact"] is True and aligned[0]["call_ms"] == pytest.approx(start / 8, abs=1)


def test_audio_found_at_two_places_is_not_placed_by_the_exact_search():
    from fakertzr.align import AudioLocator
    from fakertzr.recognizer_script import _find_exact

    rng = np.random.default_rng(3)
    word = (rng.standard_normal(1600) * 3000).astype(np.int16)
    audio = np.concatenate((np.zeros(800, np.int16), word, np.zeros(800, np.int16), word))
    locator = AudioLocator(audio)
    assert _find_exact(word, locator) is None  # twice: ambiguous, left to the correlation's judgement
    assert _find_exact(audio[700:2500], locator) == 700  # the word with the pause after it: only the first
    assert _find_exact(np.zeros(400, np.int16), locator) is None  # silence is nowhere in particular
    shifted = audio[700:2500].copy()
    shifted[5] ^= 1  # one sample off: not exact
    assert _find_exact(shifted, locator) is None


def test_a_probe_whose_energy_is_one_loud_sample_is_placed_nowhere():
    """One sample of a word, then only the pause after the call's last word (found by hypothesis): the loud
    sample alone scored 0.85 against a word's edge elsewhere (runner-up 0.60), and the pause after it was
    taken for the call's there, so a word never received was transcribed."""
    from fakertzr.align import AudioLocator

    call = synth_call(21, [SynthUtterance(700, (402, 600, 600, 600)), SynthUtterance(700, (214, 600)),
                           SynthUtterance(700, (150, 150, 594, 600)), SynthUtterance(700, (150, 588))])
    locator = AudioLocator(call.audio)
    probe = np.concatenate((call.audio[59675:59676], call.audio[-800:]))  # a sample of w11; 100 ms of the tail
    match = locator.locate(probe)
    assert match is not None and match.spread < 2 and not match.is_confident(), match
    assert locator.locate(call.audio[-800:]).is_confident(), "the pause alone is placed (its noise is unique)"
    session = new_session(call)
    run = stream(session, np.concatenate((probe[:1], call.audio[-7160:])), "LINEAR16", 80)
    assert run.final_texts == [] and not [e for e in session.recognizer.alignment_log if e["event"] == "aligned"]
