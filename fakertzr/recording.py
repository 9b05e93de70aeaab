"""One recorded RTZR stream, without I/O: the audio a client sent and every result the recognizer returned,
each placed at the audio received before it came, with its wall-clock lag; turned into a fixture.

The recording proxy (``fakertzr record``) feeds it; ``to_fixture`` gives the ``call.json`` document (a
recorded schedule, utterances from the finals) and the caller audio as 8 kHz mu-law. Nothing that
authenticates (tokens, keys, headers) is ever fed to it.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from callaudio.g711 import alaw_to_pcm16, pcm16_to_ulaw, ulaw_to_pcm16
from callaudio.wavfile import riff_data_offset

from .fixture import FIXTURE_RATE, FIXTURE_VERSION
from .params import StreamParams
from .redaction import KINDS, PARTIAL_DIGITS, hide_digits, redact_finals

REDACTIONS = KINDS  # what --redact can replace in recorded text (fakertzr.redaction)


RECORD_MODES = ("new_episodes", "once", "all", "none")  # VCR.py's words, for a recorder that names fixtures NAME, NAME-2, ...


def fixture_directory(out_dir: Path, name: str, mode: str) -> Path | None:
    """Where the next recording named ``name`` goes, or None when ``mode`` says not to record it:
    ``none`` never records; ``once`` records NAME only if it does not exist yet; ``all`` overwrites NAME;
    ``new_episodes`` keeps every call (NAME, then NAME-2, NAME-3, ...)."""
    first = out_dir / name
    if mode == "none" or (mode == "once" and first.exists()):
        return None
    if mode in ("all", "once") or not first.exists():
        return first
    return next(out_dir / f"{name}-{n}" for n in itertools.count(2) if not (out_dir / f"{name}-{n}").exists())


@dataclass
class _Heard:
    audio_bytes: int
    lag_s: float
    result: dict[str, Any]
    after_eos: bool = False


@dataclass
class StreamRecorder:
    """Feed it what passes through one streaming connection, in order; ask for the fixture at the end."""

    params: StreamParams
    clock: Any = time.monotonic
    _audio: bytearray = field(default_factory=bytearray)
    _arrivals: list[tuple[int, float]] = field(default_factory=list)  # (audio bytes so far, when they had arrived)
    _heard: list[_Heard] = field(default_factory=list)
    ended_by_upstream: dict[str, Any] | None = None  # the recognizer closed or dropped the stream first: a fault
    eos_sent: bool = False
    abandoned: bool = False  # the client closed it without EOS while the recognizer still had it open

    def client_eos(self) -> None:
        """The client said EOS: results from here on answer it (replayed at EOS, not at an audio position)."""
        self.eos_sent = True

    def upstream_ended(self, how: str, code: int | None = None) -> None:
        """The recognizer ended the stream before the client was done (``close`` with a code, or ``drop``)."""
        if self.ended_by_upstream is None:
            self.ended_by_upstream = {"type": how, "at_ms": round(self._ms(len(self._audio), self._header_bytes()), 1),
                                      **({"code": code} if how == "close" and code is not None else {})}

    def client_audio(self, data: bytes) -> None:
        self._audio += data
        self._arrivals.append((len(self._audio), self.clock()))

    def recognizer_message(self, text: str) -> None:
        """A text frame from the recognizer: a result is kept with where and when it came; anything else is not."""
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict) or not isinstance(message.get("alternatives"), list) or not message["alternatives"]:
            return
        received = len(self._audio)
        since = self._arrivals[-1][1] if self._arrivals else self.clock()
        self._heard.append(_Heard(received, max(0.0, self.clock() - since), message, self.eos_sent))

    @property
    def results(self) -> int:
        return len(self._heard)

    @property
    def audio_bytes(self) -> int:
        return len(self._audio)

    def client_abandoned(self) -> None:
        """The client closed the stream without EOS while the recognizer had it open: it gave up on it."""
        self.abandoned = self.ended_by_upstream is None and not self.eos_sent

    def faults(self, connection: int) -> list[dict[str, Any]]:
        """How this stream ended, as a fault that does the same to connection ``connection``: the recognizer's
        close or drop; or, for a stream the client abandoned (aicall does after 2.5 s of speech unanswered), a
        stall right after the last result it got, so a replay does not answer on it what the recording got on
        the next stream."""
        if self.ended_by_upstream:
            return [{**self.ended_by_upstream, "connection": connection}]
        if self.abandoned:
            last = self._ms(self._heard[-1].audio_bytes, self._header_bytes()) + 1.0 if self._heard else 0.0
            return [{"type": "stall", "at_ms": round(last, 1), "connection": connection}]
        return []

    # ------------------------------------------------------------ to a fixture
    def _header_bytes(self) -> int:
        if self.params.encoding != "LINEAR16":
            return 0
        return riff_data_offset(bytes(self._audio[:4096])) or 0

    def pcm8k(self, header: int | None = None) -> np.ndarray:
        """The audio received so far, as 8 kHz PCM (a WAV header skipped, resampled if need be)."""
        data = bytes(self._audio[self._header_bytes() if header is None else header :])
        if self.params.encoding == "MULAW":
            pcm = ulaw_to_pcm16(data)
        elif self.params.encoding == "ALAW":
            pcm = alaw_to_pcm16(data)
        else:
            pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
        if self.params.sample_rate != FIXTURE_RATE:
            resampled = soxr.resample(pcm.astype(np.float32), self.params.sample_rate, FIXTURE_RATE)
            pcm = np.clip(np.round(resampled), -32768, 32767).astype(np.int16)
        return pcm

    def _ms(self, audio_bytes: int, header: int) -> float:
        """Audio position (ms) after ``audio_bytes`` received, of which ``header`` were a WAV header."""
        samples = max(0, audio_bytes - header) / self.params.bytes_per_sample
        return samples * 1000.0 / self.params.sample_rate

    def _final_texts(self, kinds: tuple[str, ...], counts: dict[str, int]) -> tuple[dict[int, str], set[str]]:
        """Each final's text (by its place in ``_heard``), redacted as one run of consecutive finals, so that a
        number end-point detection cut in two is found across the cut; and the ``seq`` of each final that
        held one (its partials grew the number digit by digit)."""
        finals = [(k, heard.result) for k, heard in enumerate(self._heard) if heard.result.get("final")]
        texts = [str(r["alternatives"][0].get("text", "")) if isinstance(r["alternatives"][0], dict) else ""
                 for _, r in finals]
        out = redact_finals(texts, kinds, counts) if kinds else texts
        held = {str(r.get("seq")) for (_, r), said, text in zip(finals, texts, out) if text != said}
        return dict(zip((k for k, _ in finals), out)), held

    def to_fixture(self, name: str, *, redact_kinds: tuple[str, ...] = (), upstream: str = "") -> tuple[dict[str, Any], bytes]:
        """(``call.json`` document, caller audio as 8 kHz mu-law)."""
        header = self._header_bytes()  # once: every position below is counted after it
        pcm = self.pcm8k(header)
        duration_ms = len(pcm) * 1000.0 / FIXTURE_RATE
        counts: dict[str, int] = {}
        recorded, utterances = [], []
        final_texts, held_numbers = self._final_texts(redact_kinds, counts)
        for k, heard in enumerate(self._heard):
            message = heard.result
            best = message["alternatives"][0] if isinstance(message["alternatives"][0], dict) else {}
            final = bool(message.get("final"))
            at = min(duration_ms, round(self._ms(heard.audio_bytes, header), 1))
            start = min(at, max(0.0, float(_number(message.get("start_at")))))
            end = min(at, start + float(_number(message.get("duration")))) if final else at
            said = str(best.get("text", ""))
            if final or not redact_kinds:
                text = final_texts[k] if final else said
            else:
                text = hide_digits(said, counts, at_least=1 if str(message.get("seq")) in held_numbers else PARTIAL_DIGITS)
            hidden = bool(redact_kinds) and (text != said or not final)  # its words would give the number back
            entry: dict[str, Any] = {"call_ms": at, "lag_ms": round(min(heard.lag_s * 1000.0, 60_000.0), 1), "final": final,
                                     "text": text,
                                     "start_ms": round(start, 1), "end_ms": round(end, 1),
                                     "confidence": min(1.0, max(0.0, float(_number(best.get("confidence"), 0.9))))}
            words = []
            for w in () if hidden else best.get("words") or ():
                if isinstance(w, dict):
                    a = min(end, start + float(_number(w.get("start_at"))))
                    b = min(end, a + float(_number(w.get("duration"))))
                    words.append({"text": str(w.get("text", "")).lstrip("|"),
                                  "start_ms": round(a, 1), "end_ms": round(b, 1)})
            if words:
                entry["words"] = words
            if heard.after_eos:
                entry["after_eos"] = True
            recorded.append(entry)
            if final and entry["text"].strip():
                utterances.append(entry)
        doc = {
            "version": FIXTURE_VERSION,
            "name": name,
            "description": f"Recorded by fakertzr record{' from ' + upstream if upstream else ''}.",
            "audio": {"file": "caller.wav", "encoding": "MULAW", "sample_rate": FIXTURE_RATE, "duration_ms": round(duration_ms)},
            "utterances": utterances_from_finals(utterances, duration_ms),
            "recognizer": {"recorded": recorded},
            "faults": self.faults(connection=0),
            "authoring": {"tool": "fakertzr record", "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "stream": {"encoding": self.params.encoding, "sample_rate": self.params.sample_rate},
                          "redacted": {kind: counts.get(kind, 0) for kind in dict.fromkeys((*redact_kinds, *counts))}},
        }
        return doc, pcm16_to_ulaw(pcm)


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) else default


def utterances_from_finals(finals: list[dict[str, Any]], duration_ms: float) -> list[dict[str, Any]]:
    """The finals as the fixture's utterances: in order, not overlapping, inside the audio, at least 1 ms long."""
    out: list[dict[str, Any]] = []
    previous_end = 0.0
    for f in finals:
        start = max(f["start_ms"], previous_end)
        end = min(duration_ms, max(f["end_ms"], start + 1.0))
        if end <= start:
            continue
        utterance: dict[str, Any] = {"text": f["text"], "start_ms": round(start, 1), "end_ms": round(end, 1),
                                     "confidence": f["confidence"]}
        words = [w for w in f.get("words", ()) if start - 1 <= w["start_ms"] < w["end_ms"] <= end + 1]
        if words and len(words) == len(f.get("words", ())):
            utterance["words"] = words
        out.append(utterance)
        previous_end = end
    return out

