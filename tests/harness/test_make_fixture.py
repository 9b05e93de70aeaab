"""`harness make-fixture`: from a recording plus transcript, and from a text script (espeak-ng)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
import soxr

from fakertzr.fixture import load_fixture
from harness.fixture import load_call

SEED = load_fixture("fixtures/calls/seed-three-turns")


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "make-fixture", *args], capture_output=True, text=True, timeout=120)


def test_from_a_stereo_16khz_recording_and_its_transcript(tmp_path):
    up = soxr.resample(SEED.audio.astype(np.float32), 8000, 16000)
    stereo = np.stack([up, up * 0.5], axis=1).clip(-32768, 32767).astype("<i2")
    recording = tmp_path / "call.wav"
    with wave.open(str(recording), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000), w.writeframes(stereo.tobytes())
    transcript = tmp_path / "lines.txt"
    transcript.write_text("\n".join(u.text for u in SEED.utterances) + "\n", encoding="utf-8")
    done = make("--audio", str(recording), "--transcript", str(transcript), "--out", str(tmp_path / "recorded"))
    assert done.returncode == 0, done.stderr
    made = load_call(tmp_path / "recorded")
    assert made.name == "recorded" and made.expect["finals"] == [u.text for u in SEED.utterances]
    for got, want in zip(made.script.utterances, SEED.utterances):
        assert abs(got.start_ms - want.start_ms) <= 60 and abs(got.end_ms - want.end_ms) <= 60


def dual_recording(tmp_path, caller_channel: int):
    """A Twilio-style dual-channel call recording: the caller on one channel, the bot's two replies (noise
    bursts at 4.0-5.0 s and 8.0-9.5 s) on the other."""
    rng = np.random.default_rng(3)
    bot = rng.normal(0, 30, len(SEED.audio))
    for a, b in ((4000, 5000), (8000, 9500)):
        bot[a * 8 : b * 8] = rng.normal(0, 6000, (b - a) * 8)
    channels = [SEED.audio.astype(np.float64), bot] if caller_channel == 1 else [bot, SEED.audio.astype(np.float64)]
    recording = tmp_path / "dual.wav"
    with wave.open(str(recording), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.stack(channels, axis=1).clip(-32768, 32767).astype("<i2").tobytes())
    return recording


@pytest.mark.parametrize("caller_channel", [1, 2])
def test_from_a_twilio_dual_channel_recording(tmp_path, caller_channel):
    recording = dual_recording(tmp_path, caller_channel)
    transcript = tmp_path / "lines.txt"
    transcript.write_text("\n".join(u.text for u in SEED.utterances) + "\n", encoding="utf-8")
    done = make("--twilio-recording", str(recording), "--caller-channel", str(caller_channel), "--transcript",
                str(transcript), "--out", str(tmp_path / "with"))
    assert done.returncode == 0, done.stderr
    made = load_call(tmp_path / "with")
    assert [u.text for u in made.script.utterances] == [u.text for u in SEED.utterances]
    assert np.array_equal(made.script.audio[: len(SEED.audio)] // 256, SEED.audio // 256), "the caller's channel, not a mix"
    bot = json.loads((tmp_path / "with" / "call.json").read_text())["authoring"]["bot_speech_ms"]
    assert [[round(a, -2), round(b, -2)] for a, b in bot] == [[4000, 5000], [8000, 9500]]
    done = make("--twilio-recording", str(recording), "--caller-channel", str(caller_channel), "--name", "without",
                "--out", str(tmp_path / "without"))
    assert done.returncode == 0, done.stderr
    made = load_call(tmp_path / "without")
    assert [u.text for u in made.script.utterances] == ["발화 1", "발화 2", "발화 3"] and made.expect == {}


def test_a_transcript_that_does_not_fit_the_audio_says_so(tmp_path):
    recording = tmp_path / "call.wav"
    with wave.open(str(recording), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(SEED.audio.astype("<i2").tobytes())
    transcript = tmp_path / "lines.txt"
    transcript.write_text("한 줄뿐\n", encoding="utf-8")
    done = make("--audio", str(recording), "--transcript", str(transcript), "--name", "x", "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "found 3 stretch(es) of speech but 1 transcript line(s)" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="authoring needs espeak-ng and sox")
def test_from_a_text_script(tmp_path):
    spec = tmp_path / "source.json"
    spec.write_text(json.dumps({"name": "spoken", "seed": 5, "utterances": [{"text": "여보세요", "pause_after_ms": 800}],
                                "faults": [{"type": "close", "code": 1011, "after_finals": 1}],
                                "expect": {"finals": ["여보세요"]}}, ensure_ascii=False), encoding="utf-8")
    done = make("--script", str(spec))
    assert done.returncode == 0, done.stderr
    made = load_call(tmp_path)
    assert [u.text for u in made.script.utterances] == ["여보세요"] and made.script.faults[0]["code"] == 1011
    assert 200 < made.script.utterances[0].end_ms - made.script.utterances[0].start_ms < 2000


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="authoring needs espeak-ng and sox")
def test_the_spec_make_fixture_help_shows_makes_a_fixture(tmp_path):
    from harness.cli.main import SPEC_EXAMPLE

    example = json.loads(SPEC_EXAMPLE.split("\n", 1)[1])
    spec = tmp_path / "source.json"
    spec.write_text(json.dumps(example, ensure_ascii=False), encoding="utf-8")
    done = make("--script", str(spec))
    assert done.returncode == 0, done.stderr
    made = load_call(tmp_path)
    assert [u.text for u in made.script.utterances] == example["expect"]["finals"]
    assert made.script.faults[0]["type"] == "close"
