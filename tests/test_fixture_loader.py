"""Fixture loading: the bundled seed loads; bad fixtures fail naming the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fakertzr.errors import FakeRtzrError
from fakertzr.fixture import call_schema, load_fixture

SEED = Path("fixtures/calls/seed-three-turns")


def test_seed_fixture_matches_the_report_and_its_audio():
    script = load_fixture(SEED)
    assert [u.text for u in script.utterances] == ["안녕하세요 반갑습니다", "그냥 잘 지냅니다", "아직 안 먹었어요"]
    assert script.duration_ms == pytest.approx(json.loads((SEED / "call.json").read_text())["audio"]["duration_ms"])
    rms = [float((script.audio[int(u.start_ms * 8) : int(u.end_ms * 8)].astype(float) ** 2).mean() ** 0.5)
           for u in script.utterances]
    gaps = [float((script.audio[int(a.end_ms * 8) + 400 : int(b.start_ms * 8) - 400].astype(float) ** 2).mean() ** 0.5)
            for a, b in zip(script.utterances, script.utterances[1:])]
    assert min(rms) > 20 * max(gaps), "utterance times were measured from the audio: speech inside, quiet between"


def edited(tmp_path, change):
    target = tmp_path / "fx"
    shutil.copytree(SEED, target)
    doc = json.loads((target / "call.json").read_text())
    change(doc)
    (target / "call.json").write_text(json.dumps(doc, ensure_ascii=False))
    return target


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("version"), r"call.json: \(top level\): 'version' is a required property"),
        (lambda d: d.update(version=2), r"call.json: version: 1 was expected"),
        (lambda d: d["utterances"][1].update(start_ms="soon"), r"call.json: utterances\[1\].start_ms: 'soon' is not of type 'number'"),
        (lambda d: d["utterances"][0].update(end_ms=100), r"utterances\[0\]: end_ms must be after start_ms"),
        (lambda d: d["utterances"][2].update(end_ms=999999), r"utterances\[2\]: end_ms 999999 is past the audio"),
        (lambda d: d["utterances"][1].update(start_ms=900), r"utterances\[1\]: starts before the previous utterance ends"),
        (lambda d: d["audio"].update(file="missing.wav"), r"audio.file: missing.wav does not exist"),
        (lambda d: d.update(extra=1), r"Additional properties are not allowed \('extra' was unexpected\)"),
    ],
)
def test_bad_fixture_errors_name_file_and_field(tmp_path, change, message):
    with pytest.raises(FakeRtzrError, match=message):
        load_fixture(edited(tmp_path, change))


def test_not_a_fixture_directory(tmp_path):
    with pytest.raises(FakeRtzrError, match="no call.json"):
        load_fixture(tmp_path)


def test_invalid_json_names_the_line(tmp_path):
    target = edited(tmp_path, lambda d: None)
    (target / "call.json").write_text('{"version": 1,\n  oops}')
    with pytest.raises(FakeRtzrError, match="invalid JSON at line 2"):
        load_fixture(target)


def test_schema_is_published_with_a_version():
    schema = call_schema()
    assert schema["properties"]["version"] == {"const": 1, "description": schema["properties"]["version"]["description"]}
    assert Path("fakertzr/schemas/call.schema.json").is_file()


def test_unreadable_caller_audio_is_one_clear_error(tmp_path):
    target = edited(tmp_path, lambda d: None)
    (target / "caller.wav").write_bytes(b"ID3 this is an mp3, not a wav")
    with pytest.raises(FakeRtzrError, match=r"caller.wav: not a RIFF/WAVE file"):
        load_fixture(target)
