"""Auto mode: a VAD finds utterances in any audio; texts come from a list, in order."""

from __future__ import annotations

from fakertzr.fixture import load_fixture
from fakertzr.params import parse_stream_params
from fakertzr.recognizer_auto import AutoRecognizer
from fakertzr.results import ResultBuilder
from fakertzr.session import StreamSession

from .support.core import stream
from .support.synth import SynthUtterance, synth_call

SEED = "fixtures/calls/seed-three-turns"


def auto_session(texts, epd_ms=500.0):
    params = parse_stream_params({"sample_rate": "8000", "encoding": "LINEAR16"})
    return StreamSession(params, AutoRecognizer(texts, epd_ms=epd_ms), ResultBuilder(epd_ms))


def test_vad_finds_the_three_seed_utterances_and_uses_the_texts_in_order():
    script = load_fixture(SEED)
    texts = [u.text for u in script.utterances]
    run = stream(auto_session(texts), script.audio)
    assert run.final_texts == texts
    for final, utt in zip(run.finals, script.utterances):
        assert abs(final["start_at"] - utt.start_ms) <= 100
        assert abs(final["start_at"] + final["duration"] - utt.end_ms) <= 100


def test_numbered_placeholders_when_texts_run_out():
    call = synth_call(2, [SynthUtterance(800, (300,)), SynthUtterance(900, (300,)), SynthUtterance(900, (300,))])
    run = stream(auto_session(["하나"]), call.audio)
    assert run.final_texts == ["하나", "발화 2", "발화 3"]


def test_partials_grow_word_by_word_before_the_final():
    call = synth_call(4, [SynthUtterance(800, (1500,))])
    run = stream(auto_session(["가 나 다 라"]), call.audio)
    partials = [r["alternatives"][0]["text"] for r in run.results if not r["final"]]
    assert partials[:3] == ["가", "가 나", "가 나 다"]
    assert run.final_texts == ["가 나 다 라"]


def test_finalize_in_auto_mode_closes_the_utterance():
    """After Finalize, speech that resumes within epd_time is a new utterance with the next text."""
    call = synth_call(6, [SynthUtterance(800, (400,)), SynthUtterance(300, (400,))])  # pause < epd
    session = auto_session(["첫 번째", "두 번째", "세 번째"])
    run = stream(session, call.audio[: int(8 * 1250)], eos=False)
    run.actions += session.receive_text('{"type":"Finalize"}')
    assert run.final_texts == ["첫 번째"]
    stream(session, call.audio[int(8 * 1250) :], run=run)
    assert run.final_texts == ["첫 번째", "두 번째"]
