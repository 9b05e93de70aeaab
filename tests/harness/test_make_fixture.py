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
