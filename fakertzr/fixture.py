"""Call fixtures (``fixtures/calls/<name>/call.json`` + caller audio): model and loader.

The loader validates against the published JSON Schema, then checks what a schema cannot
(times in order, words inside their utterance, audio matching the declared format), and
names the file and field in every error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import numpy as np

from .errors import FakeRtzrError
from .params import DEFAULT_EPD_TIME
from callaudio.g711 import alaw_to_pcm16, ulaw_to_pcm16
from callaudio import AudioFormatError
from callaudio.wavfile import WavAudio, parse_wav

from .validation import large_number, loads_strict, message, non_finite_path, number_text, where

FIXTURE_VERSION = 1
FIXTURE_RATE = 8000
MAX_AUDIO_BYTES = 64 << 20  # over an hour of 8 kHz mu-law, half an hour of PCM16
MAX_CALL_JSON_BYTES = 4 << 20
MAX_NUMBER = 10**15  # no number in call.json comes near it (the schema bounds each field); exact as a float


@dataclass(frozen=True)
class Word:
    text: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class ScriptedPartial:
    at_ms: float
    text: str


@dataclass(frozen=True)
class Utterance:
    """One thing the caller says, timed in the call's audio."""

    text: str
    start_ms: float
    end_ms: float
    words: tuple[Word, ...]
    partials: tuple[ScriptedPartial, ...] = ()
    confidence: float = 0.93


@dataclass(frozen=True)
class RecordedResult:
    """One result the real recognizer sent, placed in the call's audio (``fakertzr record``)."""

    call_ms: float  # call audio received before it came
    final: bool
    text: str
    start_ms: float
    end_ms: float
    lag_ms: float = 0.0  # wall time from that audio's arrival to the result
    confidence: float = 0.9
    words: tuple[Word, ...] = ()
    after_eos: bool = False  # it answered the client's EOS


@dataclass(frozen=True)
class RecognizerBehaviour:
    """How the scripted recognizer behaves beyond the words: endpointing and delays, or a recorded schedule."""

    epd_time: float | None = None
    max_utter_duration: float | None = None
    processing_delay_ms: float = 0.0
    partial_delay_ms: float = 0.0
    partials: bool = True
    recorded: tuple[RecordedResult, ...] = ()

    @property
    def end_point_ms(self) -> float:
        """The silence after the last word before the utterance ends: its ``epd_time``, or RTZR's default."""
        return 1000.0 * (self.epd_time if self.epd_time is not None else DEFAULT_EPD_TIME)


@dataclass(frozen=True)
class CallScript:
    """A whole fixture: what was said, the caller audio it was said in, and the faults."""

    name: str
    utterances: tuple[Utterance, ...]
    audio: np.ndarray  # int16 at 8 kHz: the call's caller-side audio
    recognizer: RecognizerBehaviour = RecognizerBehaviour()
    faults: tuple[dict[str, Any], ...] = ()
    source: str = "<memory>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def duration_ms(self) -> float:
        return len(self.audio) * 1000.0 / FIXTURE_RATE


@cache
def call_schema() -> dict[str, Any]:
    """The published JSON Schema of ``call.json``."""
    text = resources.files("fakertzr").joinpath("schemas/call.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_call_json(doc: Any, source: str) -> None:
    """Raise :class:`FakeRtzrError` naming the file and field of the first schema violation."""
    if (bad := non_finite_path(doc, "")) is not None:
        raise FakeRtzrError(f"{source}: {bad.lstrip('.') or '(top level)'}: must be a finite number")
    validator = jsonschema.Draft202012Validator(call_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        place = where(errors[0], "").lstrip(".") or "(top level)"
        raise FakeRtzrError(f"{source}: {place}: {message(errors[0])}")
    if (big := large_number(doc, "", MAX_NUMBER)) is not None:  # where the schema sets no maximum (authoring)
        raise FakeRtzrError(f"{source}: {big[0].lstrip('.')}: {number_text(big[1])} is too large (at most 10^15)")


def _split_words(text: str, start_ms: float, end_ms: float) -> tuple[Word, ...]:
    """Word spans in proportion to character counts, when a fixture gives none."""
    tokens = text.split()
    if not tokens:
        return ()
    total = sum(len(t) for t in tokens)
    words, cursor = [], start_ms
    for token in tokens:
        end = cursor + (end_ms - start_ms) * len(token) / total
        words.append(Word(token, cursor, end))
        cursor = end
    return tuple(words)


def decode_caller_audio(wav: WavAudio, source: str) -> np.ndarray:
    """Caller audio as int16 samples at 8 kHz, from a parsed WAV (mu-law, A-law or PCM16)."""
    if wav.channels != 1 or wav.sample_rate != FIXTURE_RATE:
        raise FakeRtzrError(
            f"{source}: caller audio must be mono {FIXTURE_RATE} Hz, "
            f"got {wav.channels} channel(s) at {wav.sample_rate} Hz"
        )
    if wav.encoding == "MULAW":
        return ulaw_to_pcm16(wav.data)
    if wav.encoding == "ALAW":
        return alaw_to_pcm16(wav.data)
    return np.frombuffer(wav.data[: len(wav.data) // 2 * 2], dtype="<i2").astype(np.int16)


def script_from_dict(doc: dict[str, Any], audio: np.ndarray, source: str = "<memory>") -> CallScript:
    """Build a :class:`CallScript` from a parsed ``call.json`` and its decoded audio."""
    validate_call_json(doc, source)
    duration_ms = len(audio) * 1000.0 / FIXTURE_RATE
    utterances: list[Utterance] = []
    previous_end = -1.0
    for i, u in enumerate(doc["utterances"]):
        where = f"{source}: utterances[{i}]"
        if u["end_ms"] <= u["start_ms"]:
            raise FakeRtzrError(f"{where}: end_ms must be after start_ms")
        if u["start_ms"] < previous_end:
            raise FakeRtzrError(f"{where}: starts before the previous utterance ends")
        if u["end_ms"] > duration_ms + 1:
            raise FakeRtzrError(f"{where}: end_ms {u['end_ms']} is past the audio ({duration_ms:.0f} ms)")
        previous_end = u["end_ms"]
        if "words" in u:
            words = tuple(Word(w["text"], w["start_ms"], w["end_ms"]) for w in u["words"])
            for j, w in enumerate(words):
                if not (u["start_ms"] - 1 <= w.start_ms < w.end_ms <= u["end_ms"] + 1):
                    raise FakeRtzrError(f"{where}.words[{j}]: span must lie inside the utterance")
        else:
            words = _split_words(u["text"], u["start_ms"], u["end_ms"])
        partials = tuple(ScriptedPartial(p["at_ms"], p["text"]) for p in u.get("partials", ()))
        utterances.append(
            Utterance(u["text"], u["start_ms"], u["end_ms"], words, partials, u.get("confidence", 0.93))
        )
    rec = doc.get("recognizer", {})
    recorded = tuple(
        RecordedResult(r["call_ms"], r["final"], r["text"], r["start_ms"], r["end_ms"], r.get("lag_ms", 0.0),
                       r.get("confidence", 0.9), tuple(Word(w["text"], w["start_ms"], w["end_ms"]) for w in r.get("words", ())),
                       r.get("after_eos", False))
        for r in rec.get("recorded", ())
    )
    for i, r in enumerate(recorded):
        where = f"{source}: recognizer.recorded[{i}]"
        if not r.start_ms <= r.end_ms <= r.call_ms + 1:
            raise FakeRtzrError(f"{where}: needs start_ms <= end_ms <= call_ms (a result comes after its audio)")
        if i and r.call_ms < recorded[i - 1].call_ms:
            raise FakeRtzrError(f"{where}: call_ms goes back in time")
        if r.call_ms > duration_ms + 1:
            raise FakeRtzrError(f"{where}: call_ms {r.call_ms} is past the audio ({duration_ms:.0f} ms)")
    behaviour = RecognizerBehaviour(
        epd_time=rec.get("epd_time"),
        max_utter_duration=rec.get("max_utter_duration"),
        processing_delay_ms=rec.get("processing_delay_ms", 0.0),
        partial_delay_ms=rec.get("partial_delay_ms", 0.0),
        partials=rec.get("partials", True),
        recorded=recorded,
    )
    return CallScript(
        name=doc["name"],
        utterances=tuple(utterances),
        audio=audio,
        recognizer=behaviour,
        faults=tuple(doc.get("faults", ())),
        source=source,
        raw=doc,
    )


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    """A file's bytes, refusing (before reading) one larger than ``limit``."""
    size = path.stat().st_size
    if size > limit:
        raise FakeRtzrError(f"{path}: {what} is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.0f} MiB")
    return path.read_bytes()


def audio_path_inside(directory: Path, name: str, call_path: Path) -> Path:
    """Where ``audio.file`` points: a file in the fixture's directory, or (derived fixtures share their base's
    audio) ``../<sibling>/<file>`` in a sibling fixture of the same collection. Anything else (absolute, deeper
    ``..``, a symlink leading out) is refused without saying whether what it named exists."""
    parts = PurePosixPath(name).parts
    plain = len(parts) == 1
    sibling = len(parts) == 3 and parts[0] == ".."
    root = directory.resolve()
    home = root if plain else root.parent
    path = (root / name).resolve()
    if (not (plain or sibling) or "\\" in name or any(p in (".", "..") for p in parts[-2:])
            or not path.is_relative_to(home) or (sibling and not (home / parts[1] / "call.json").is_file())):
        raise FakeRtzrError(f"{call_path}: audio.file: {name[:80]!r} must name a file in the fixture's directory "
                            "(or ../<fixture>/<file> in a sibling fixture)")
    if not path.is_file():
        raise FakeRtzrError(f"{call_path}: audio.file: {name} does not exist")
    return path


def load_fixture(directory: str | Path) -> CallScript:
    """Load ``<directory>/call.json`` and the caller audio it names (which must lie in that directory)."""
    directory = Path(directory)
    call_path = directory / "call.json"
    if not call_path.is_file():
        raise FakeRtzrError(f"{directory}: no call.json (is this a fixture directory?)")
    doc = loads_strict(_read_limited(call_path, MAX_CALL_JSON_BYTES, "call.json"), str(call_path))
    validate_call_json(doc, str(call_path))
    audio_path = audio_path_inside(directory, doc["audio"]["file"], call_path)
    try:
        wav = parse_wav(_read_limited(audio_path, MAX_AUDIO_BYTES, "the audio file"), source=str(audio_path))
    except AudioFormatError as exc:
        raise FakeRtzrError(str(exc)) from None
    return script_from_dict(doc, decode_caller_audio(wav, str(audio_path)), str(call_path))
