"""Hostile fixtures and authoring input: each is refused in one line (exit 2), never a traceback, never a huge
allocation, never a file read that the spec did not name as its own."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from harness.authoring import make_fixture
from harness.errors import FixtureError
from harness.cli.main import main
from harness.fixture import load_call

SEED = Path("fixtures/calls/seed-three-turns")
HAS_ESPEAK = bool(shutil.which("espeak-ng") and shutil.which("sox"))


def one_line_error(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("harness: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def fake_tone(ms: int = 300) -> np.ndarray:
    """What the fake espeak-ng says: a tone loud enough for the VAD."""
    t = np.arange(ms * 8) / 8000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


@pytest.fixture
def no_espeak(monkeypatch):
    """Speech without espeak-ng: a short tone per call (so a spec that got past validation is fast, not a long run)."""
    spoken: list[str] = []
    monkeypatch.setattr(make_fixture, "speak", lambda text, voice, speed, workdir: spoken.append(text) or fake_tone())
    monkeypatch.setattr(make_fixture.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return spoken


# ------------------------------------------------------------------ 8: the text is data, never an option
def test_speak_passes_the_text_on_stdin_never_as_an_argument(tmp_path, monkeypatch):
    calls: list[tuple[list[str], object]] = []

    def run(argv, check=False, input=None, **kwargs):  # noqa: A002 - subprocess.run's own name
        calls.append((list(argv), input))
        if argv[0] == "sox":  # the 8 kHz file speak() reads back
            with wave.open(str(argv[-1]), "wb") as w:
                w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(fake_tone().tobytes())

    monkeypatch.setattr(make_fixture.subprocess, "run", run)
    text = "-f/etc/passwd"
    make_fixture.speak(text, "ko", 150, tmp_path)
    espeak = [(argv, data) for argv, data in calls if argv[0] == "espeak-ng"]
    assert len(espeak) == 1
    argv, data = espeak[0]
    assert all(text not in arg for arg in argv), argv
    assert data in (text, text.encode()), "the text goes in on stdin"


@pytest.mark.skipif(not HAS_ESPEAK, reason="a real run needs espeak-ng and sox")
def test_a_text_that_looks_like_an_option_is_spoken_not_obeyed(tmp_path, capsys):
    secret = tmp_path / "long.txt"
    secret.write_text("hello there " * 150)  # a minute or more if espeak-ng read it aloud
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "dash", "lead_in_ms": 100, "utterances": [{"text": f"-f{secret}",
                                                                                   "pause_after_ms": 100}]}))
    assert main(["make-fixture", "--script", str(spec), "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    made = load_call(tmp_path / "out")
    spoken = made.script.utterances[0]
    assert spoken.end_ms - spoken.start_ms < 15000, "espeak-ng read the file the text named"


@pytest.mark.parametrize("voice", ["-f/etc/passwd", "ko -w /tmp/x", "../../x", "", 5])
def test_a_voice_that_is_not_a_plain_name_is_refused(tmp_path, capsys, no_espeak, voice):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "v", "voice": voice, "utterances": [{"text": "가"}]}))
    code = main(["make-fixture", "--script", str(spec), "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, "spec.json: voice must be")
    assert no_espeak == []


def test_espeak_failing_is_one_line_naming_the_voice(tmp_path, capsys, monkeypatch):
    import subprocess

    def run(argv, **kwargs):
        raise subprocess.CalledProcessError(1, argv, b"", b"Error: The specified espeak-ng voice does not exist.\n")

    monkeypatch.setattr(make_fixture.subprocess, "run", run)
    monkeypatch.setattr(make_fixture.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "v", "voice": "xx-none", "utterances": [{"text": "가"}]}))
    code = main(["make-fixture", "--script", str(spec), "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, "espeak-ng failed (exit 1): Error: The specified espeak-ng voice does not exist.",
                   "'xx-none'")


# ------------------------------------------------------------------ 9: every number of a spec has a type and a range
TWO = [{"text": "가 나", "pause_after_ms": 100}, {"text": "다", "pause_after_ms": 100}]
BIG = "1" + "0" * 400


def spec_text(**fields) -> str:
    return json.dumps({"name": "hostile", "utterances": TWO, **fields}, ensure_ascii=False)


HOSTILE_SPECS = [
    (spec_text(lead_in_ms=1e12), "lead_in_ms must be a number of milliseconds from 0 to 60000, got 1e+12"),
    (spec_text(lead_in_ms=-1), "lead_in_ms must be a number of milliseconds from 0 to 60000, got -1"),
    (spec_text(lead_in_ms="x").replace('"x"', BIG),
     "lead_in_ms must be a number of milliseconds from 0 to 60000, got a 401-digit number"),
    (spec_text(speed="fast"), "speed must be a whole number of words a minute from 80 to 450, got 'fast'"),
    (spec_text(speed=True), "speed must be a whole number of words a minute from 80 to 450, got true"),
    (spec_text(speed=5000), "speed must be a whole number of words a minute from 80 to 450, got 5000"),
    (spec_text(noise_dbfs="loud"), "noise_dbfs must be a number of dBFS from -120 to 0, got 'loud'"),
    (spec_text(noise_dbfs="x").replace('"x"', "NaN"), "noise_dbfs must be a number of dBFS from -120 to 0, got nan"),
    (spec_text(noise_dbfs=10), "noise_dbfs must be a number of dBFS from -120 to 0, got 10"),
    (spec_text(seed=-1), "seed must be a whole number from 0 to 4294967295, got -1"),
    (spec_text(seed="x"), "seed must be a whole number"),
    (spec_text(utterances=[TWO[0], {"text": "다", "pause_after_ms": 1e12}]),
     "utterances[1].pause_after_ms must be a number of milliseconds from 0 to 60000, got 1e+12"),
    (spec_text(utterances=[TWO[0], {"text": "다", "pause_after_ms": -5}]),
     "utterances[1].pause_after_ms must be a number of milliseconds from 0 to 60000, got -5"),
    (spec_text(utterances=[{"text": "가"}] * 101), "'utterances' has 101 items; at most 100"),
    (spec_text(utterances=[{"text": "가" * 501}]), "utterances[0].text has 501 characters; at most 500"),
    (spec_text(utterances=[{"text": "가 " * 250}] * 21),
     "the utterances' texts add up to 10500 characters; at most 10000"),
    (spec_text(lead_in_ms=60000, utterances=[{"text": "가", "pause_after_ms": 60000}] * 30),
     "the lead-in and the pauses add up to 1860000 ms"),
    (spec_text(faults=[{"type": "close", "at_ms": 0}]).replace('"at_ms": 0', '"at_ms": 1e400'),
     "faults[0].at_ms: must be a finite number"),
    (spec_text(faults=[{"type": "close", "at_ms": 0}]).replace('"at_ms": 0', f'"at_ms": {BIG}'),
     "faults[0].at_ms: a 401-digit number is greater than the maximum of 86400000"),
    (spec_text(name="Not A Name"), "spec.json: name: 'Not A Name' does not match"),
]


@pytest.mark.parametrize("text,words", HOSTILE_SPECS, ids=[w[:50] for _, w in HOSTILE_SPECS])
def test_a_hostile_spec_is_one_line_naming_the_field(tmp_path, capsys, no_espeak, text, words):
    spec = tmp_path / "spec.json"
    spec.write_text(text, encoding="utf-8")
    code = main(["make-fixture", "--script", str(spec), "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, f"{spec}: ", words)
    assert no_espeak == [], "refused before anything is spoken"


def test_the_spoken_call_is_capped_while_it_is_built(tmp_path, capsys, monkeypatch):
    """Speech the spec cannot bound in advance (espeak-ng's length) is counted as it comes."""
    monkeypatch.setattr(make_fixture, "speak", lambda text, voice, speed, workdir: np.full(8000 * 610, 8000, np.int16))
    monkeypatch.setattr(make_fixture.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "long", "utterances": [{"text": "가"}] * 3}))
    code = main(["make-fixture", "--script", str(spec), "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, "utterances[2]", "over the 30 minutes")


# ------------------------------------------------------------------ 10: audio length judged from the header
def silent_flac(path: Path, seconds: float, rate: int = 8000, channels: int = 1) -> Path:
    import soundfile

    block = np.zeros((rate * 10, channels), np.int16)
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(seconds // 10)):
            f.write(block)
    return path


@pytest.mark.parametrize("option", ["--audio", "--twilio-recording"])
def test_audio_longer_than_30_minutes_is_refused_before_decoding(tmp_path, capsys, monkeypatch, option):
    import soundfile

    long = silent_flac(tmp_path / "long.flac", 31 * 60, channels=1 if option == "--audio" else 2)
    lines = tmp_path / "lines.txt"
    lines.write_text("가\n")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded the audio before checking its length")

    monkeypatch.setattr(soundfile, "read", no_decoding)
    code = main(["make-fixture", option, str(long), "--transcript", str(lines), "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, "long.flac: 31 minutes of audio; make-fixture takes at most 30")


def test_audio_too_big_to_decode_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    """Short, but at 384 kHz on 8 channels: more samples than a fixture's half hour of telephone audio."""
    import soundfile

    wide = silent_flac(tmp_path / "wide.flac", 30, rate=384000, channels=8)
    lines = tmp_path / "lines.txt"
    lines.write_text("가\n")
    monkeypatch.setattr(soundfile, "read", lambda *a, **k: pytest.fail("decoded before checking its size"))
    code = main(["make-fixture", "--audio", str(wide), "--transcript", str(lines), "--name", "w",
                 "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, "wide.flac:", "8 channel(s) at 384000 Hz", "sox")


# ------------------------------------------------------------------ 11: every number of call.json has a maximum
MARK = "@@hostile@@"


def raw_edit(tmp_path: Path, change, raw: str) -> Path:
    """The seed fixture with one value of its call.json written as raw text (json.dumps cannot write 1e400):
    ``change`` puts a marker where it goes."""
    target = tmp_path / "calls" / "hostile"
    shutil.copytree(SEED, target)
    doc = json.loads((target / "call.json").read_text(encoding="utf-8"))
    change(doc)
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    assert text.count(f'"{MARK}"') == 1
    (target / "call.json").write_text(text.replace(f'"{MARK}"', raw), encoding="utf-8")
    return target


def put(*path):
    """A change that sets ``doc[path...]`` to the marker, making the dicts and one-item lists on the way."""
    def change(doc):
        node = doc
        for key, following in zip(path, path[1:]):
            if isinstance(key, int):
                node = node[key]
                continue
            node = node.setdefault(key, [{}] if isinstance(following, int) else {})
        node[path[-1]] = MARK
    return change


HOSTILE_CALLS = [
    (put("utterances", 0, "start_ms"), "1e400", "utterances[0].start_ms: 1e400 is too large for a number"),
    (put("utterances", 0, "start_ms"), "-1e400", "utterances[0].start_ms: -1e400 is too large for a number"),
    (put("recognizer", "processing_delay_ms"), BIG, "recognizer.processing_delay_ms: a 401-digit number"),
    (put("recognizer", "processing_delay_ms"), "1e300", "recognizer.processing_delay_ms: 1e+300 is greater"),
    (put("recognizer", "epd_time"), "1e300", "recognizer.epd_time: 1e+300 is greater than the maximum of 10"),
    (put("caller", "hangup_ms"), "1e300", "caller.hangup_ms: 1e+300 is greater"),
    (put("caller", "hangup_after_turns"), BIG, "caller.hangup_after_turns: a 401-digit number"),
    (put("caller", "dtmf"), '[{"at_ms": 1e300, "digit": "1"}]', "caller.dtmf[0].at_ms: 1e+300"),
    (put("caller", "reacts"), '[{"utterance": 2, "after": "bot_ends", "turn": 1, "wait_ms": 1e300}]',
     "caller.reacts[0].wait_ms: 1e+300"),
    (put("llm", "first_token_ms"), "1e300", "llm.first_token_ms: 1e+300 is greater"),
    (put("llm", "token_ms"), "1e300", "llm.token_ms: 1e+300 is greater"),
    (put("llm", "fail_requests", "0"), "1e300", "llm.fail_requests.0:"),
    (put("llm", "fail_requests", "first"), "500", "llm.fail_requests:"),
    (put("llm", "stall_requests"), f"[{BIG}]", "llm.stall_requests[0]: a 401-digit number"),
    (put("tts", "ms_per_char"), "1e300", "tts.ms_per_char: 1e+300 is greater"),
    (put("tts", "first_chunk_ms"), "1e300", "tts.first_chunk_ms: 1e+300 is greater"),
    (put("faults"), '[{"type": "close", "after_finals": 1e300}]', "faults[0].after_finals:"),
    (put("faults"), '[{"type": "stall", "at_ms": 0, "times": 1e300}]', "faults[0].times:"),
    (put("faults"), f'[{{"type": "drop", "connection": {BIG}, "after_finals": 1}}]', "faults[0].connection:"),
    (put("expect", "llm_turns"), "1e300", "expect.llm_turns:"),
    (put("audio", "duration_ms"), BIG, "audio.duration_ms: a 401-digit number"),
    (put("authoring", "seed"), BIG, "authoring.seed: a 401-digit number"),
    (put("utterances", 0, "start_ms"), "NaN", "utterances[0].start_ms: NaN is not a JSON number"),
]


@pytest.mark.parametrize("change,raw,words", HOSTILE_CALLS, ids=[w[:50] for _, _, w in HOSTILE_CALLS])
def test_a_hostile_number_in_call_json_is_refused_naming_the_field(tmp_path, change, raw, words):
    fixture = raw_edit(tmp_path, change, raw)
    with pytest.raises(FixtureError) as caught:  # fakertzr's refusal, handed on as the harness's
        load_call(fixture)
    message = str(caught.value)
    assert message.startswith(f"{fixture / 'call.json'}: ") and words in message and "\n" not in message, message
    assert len(message) < 300, message


def test_harness_run_with_a_timing_of_10_to_the_400_is_one_line(tmp_path, capsys):
    fixture = raw_edit(tmp_path, put("recognizer", "processing_delay_ms"), BIG)
    code = main(["run", "--fixtures", str(fixture.parent), "--pace", "fast", "--report-dir", str(tmp_path / "report")])
    one_line_error(capsys, code, str(fixture / "call.json"), "recognizer.processing_delay_ms")


def test_harness_run_with_a_timing_of_1e400_is_one_line(tmp_path, capsys):
    fixture = raw_edit(tmp_path, put("utterances", 0, "end_ms"), "1e400")
    code = main(["run", "--fixtures", str(fixture.parent), "--pace", "fast", "--report-dir", str(tmp_path / "report")])
    one_line_error(capsys, code, str(fixture / "call.json"), "utterances[0].end_ms")


def test_every_bundled_fixture_is_within_the_maxima():
    from harness.fixture import default_fixtures_dir, discover

    directories = discover(default_fixtures_dir(), None)
    assert len(directories) >= 20
    for directory in directories:
        load_call(directory)
