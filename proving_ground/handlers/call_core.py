"""What the two Python reference handlers decide, with no I/O (each wraps it in its own I/O style).

A team's call handler as a careful team would write it after reading the report: the caller's audio
is kept from the last final on, so a new RTZR stream (after a close, a drop or a stall) is sent what
was not transcribed yet; a stream that answers no speech for ``STALL_S`` has stalled; a final whose
next 100-300 ms of audio are still speech (RTZR cut a long utterance) is held and joined to the next;
one reply at a time, finals that come meanwhile queued for the next; the caller speaking over the bot
clears playback. ``Mutant`` names the one bug a run puts back (the proving ground's mutants).

It imports nothing from the project it is judged by: only numpy and soxr.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

FRAME_MS = 20
STALL_S = 2.5  # speech sent and nothing back this long: the stream has stalled
STALL_MIN_SPEECH_MS = 100
PROBE_FROM_MS, PROBE_TO_MS = 100, 300  # after a final's end: speech here means the caller talks on
EOS_WAIT_S = 5.0
DEBOUNCE_S = 2.5  # long-debounce: waits this long after a final, in case the caller goes on, before answering
SYSTEM = "간결하게 한국어로 답하세요."
APOLOGY = "죄송합니다. 지금은 음성 인식을 사용할 수 없습니다. 잠시 후 다시 걸어 주세요."
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")

MUTANTS = (
    "no-credential-check", "silent-refusal", "no-reconnect", "closes-after-first-final", "no-stall-watchdog",
    "resends-finalized-audio", "drops-queued-final", "answers-mid-utterance", "reply-outlives-call", "state-race",
    "swallowed-race", "send-after-close", "silent-send-after-close", "leaves-rtzr-open", "no-stream-sid",
    "binary-media", "wrong-sample-rate", "one-early-clear", "words-twice", "no-barge-in", "answers-after-hangup",
    "blocks-event-loop", "blocks-on-tts", "one-current-call", "shared-history",  # show only with several calls at once
    "pcm-payload", "audio-twice", "first-sentence-only", "sentences-as-tasks", "forgets-history", "token-once",
    "long-debounce", "deaf-while-speaking",
    "keeps-audio",  # shows over many calls (harness fuzz, harness load), not in one
)


PACING_ONLY = ("sleeps-through-reply",)  # a style, not a bug the matrix judges: it needs --pace realtime


def mutant() -> str:
    """The bug this run puts back (``MUTANT``), or "" for the correct handler."""
    name = os.environ.get("MUTANT", "")
    if name and name not in (*MUTANTS, *PACING_ONLY):
        raise SystemExit(f"MUTANT={name!r}: not one of {', '.join(MUTANTS)}")
    return name


MUTED = b"\xff" * 160  # deaf-while-speaking: 20 ms of mu-law silence, sent instead of the caller while the bot replies


BUSY_TRIES = 6  # a handshake RTZR refuses as busy (429) or failing (5xx) is tried again, with backoff, this many times


def handshake_retry(status: int, refusals: int, busy: int) -> float | None:
    """After RTZR refused a stream's handshake with ``status`` (``refusals`` 401s and ``busy`` 429/5xx so far, this
    one counted): the seconds to wait before trying again with a fresh token, or None to give up (credentials
    refused twice, a busy service past ``BUSY_TRIES``, or anything else)."""
    if status == 401:
        return 0.0 if refusals < 2 else None
    if status == 429 or status >= 500:
        return min(2.0, 0.1 * 2 ** busy) if busy < BUSY_TRIES else None
    return None


def parse_result(raw: str | bytes) -> dict | None:
    """An RTZR result message, or None for one that cannot be read (skipped, as aicall skips it: the stream
    is alive, it just said nothing useful)."""
    try:
        result = json.loads(raw)
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


# ------------------------------------------------------------------ G.711 mu-law
def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((codes & 0x0F) << 3) + 0x84) << ((codes >> 4) & 0x07)
    return np.where(codes & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


ULAW_TO_PCM = _ulaw_table()
SPEECH_POWER = (32768 * 10 ** (-40 / 20)) ** 2  # -40 dBFS


def pcm_to_ulaw(pcm: np.ndarray) -> bytes:
    x = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    x = np.abs(x) + 0x84
    exponent = np.floor(np.log2(x)).astype(np.int32) - 7
    mantissa = (x >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def is_speech(ulaw: bytes) -> bool:
    pcm = ULAW_TO_PCM[np.frombuffer(ulaw, dtype=np.uint8)].astype(np.float64)
    return len(pcm) > 0 and float(pcm @ pcm) > SPEECH_POWER * len(pcm)


class SpeechEncoder:
    """The TTS's ``pcm`` (24 kHz, 16-bit little-endian) as it streams in -> Twilio payloads (base64 mu-law at
    8 kHz); the wrong-sample-rate mutant sends the 24 kHz samples as they are, pcm-payload the 8 kHz samples
    without the mu-law step."""

    def __init__(self, bug: str = "") -> None:
        import soxr

        self.bug = bug
        self.resampler = soxr.ResampleStream(24000, 8000, 1, dtype="int16")
        self.left = b""

    def push(self, chunk: bytes) -> str | None:
        data = self.left + chunk
        cut = len(data) - len(data) % 2
        data, self.left = data[:cut], data[cut:]
        pcm = np.frombuffer(data, dtype="<i2")
        out = pcm if self.bug == "wrong-sample-rate" else self.resampler.resample_chunk(pcm)
        if not len(out):
            return None
        return base64.b64encode(out.astype("<i2").tobytes() if self.bug == "pcm-payload" else pcm_to_ulaw(out)).decode()


def delta_of(line: bytes) -> str | None:
    """The text an SSE line of a streamed chat completion adds (None: not a chunk with text)."""
    line = line.strip()
    if not line.startswith(b"data: ") or line == b"data: [DONE]":
        return None
    choices = json.loads(line[6:]).get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or None


def sentences(buffer: str) -> tuple[list[str], str]:
    """Whole sentences at the start of ``buffer``, and what is left of it."""
    parts = _SENTENCE_END.split(buffer)
    return [p for p in parts[:-1] if p.strip()], parts[-1]


# ------------------------------------------------------------------ recognition
@dataclass
class Final:
    text: str
    talks_on: bool


@dataclass
class Recognition:
    """The call's audio towards RTZR, stream after stream."""

    bug: str = ""
    frames: list[bytes] = field(default_factory=list)  # the whole call, 20 ms each
    base: int = 0  # the first frame no final has covered yet
    stream_base: int = 0  # the frame the current stream began with
    sent: int = 0  # frames sent on the current stream (from stream_base)
    pending: list[int] = field(default_factory=list)  # speech frames sent past what RTZR has answered (stream ms at their end)
    pending_since: float | None = None  # ... and since when nothing came back
    held: list[tuple[int, str]] = field(default_factory=list)  # finals waiting for the audio after them (end frame, text)

    def add(self, frame: bytes) -> None:
        self.frames.append(frame)

    def open_stream(self) -> None:
        """A new stream starts with what no final covered (the mutant sends the whole call again)."""
        self.stream_base = 0 if self.bug == "resends-finalized-audio" else self.base
        self.sent, self.pending, self.pending_since = 0, [], None

    def next_frames(self) -> list[bytes]:
        start = self.stream_base + self.sent
        out = self.frames[start:]
        self.sent += len(out)
        return out

    def note_sent(self, frames: list[bytes], now: float) -> None:
        """``frames`` went out on the stream (they are the last ``len(frames)`` of ``sent``)."""
        for k, frame in enumerate(frames):
            if is_speech(frame):
                self.pending.append((self.sent - len(frames) + k + 1) * FRAME_MS)
                if self.pending_since is None:
                    self.pending_since = now

    def stalled(self, now: float) -> bool:
        """Speech went out that RTZR has not answered, and nothing came back for ``STALL_S``."""
        if self.bug == "no-stall-watchdog":
            return False
        return (len(self.pending) * FRAME_MS >= STALL_MIN_SPEECH_MS and self.pending_since is not None
                and now - self.pending_since >= STALL_S)

    def result(self, message: dict, now: float) -> list[Final]:
        """A result from RTZR: the finals ready to hand on (a held one once the audio after it tells).
        RTZR has heard up to a final's end, or at least a partial's start: speech sent past that stays
        unanswered (audio sent faster than real time must not hide a stall behind one early partial)."""
        reach = message.get("start_at", 0) + (message.get("duration", 0) if message.get("final") else 0)
        self.pending = [end for end in self.pending if end > reach]
        self.pending_since = now if self.pending else None
        if not message.get("final"):
            return self.release()
        text = (message.get("alternatives") or [{}])[0].get("text", "").strip()
        end_frame = self.stream_base + int((message.get("start_at", 0) + message.get("duration", 0)) // FRAME_MS)
        self.base = max(self.base, min(end_frame, len(self.frames)))
        ready = self.release(another_final=True)
        if text:
            self.held.append((end_frame, text))
        return ready + self.release()

    def release(self, another_final: bool = False, finishing: bool = False) -> list[Final]:
        """Held finals whose following audio has arrived (speech there: the caller talks on)."""
        out = []
        while self.held:
            end, text = self.held[0]
            probe = self.frames[end + PROBE_FROM_MS // FRAME_MS: end + PROBE_TO_MS // FRAME_MS]
            if another_final or self.bug == "answers-mid-utterance":
                talks_on = another_final and self.bug != "answers-mid-utterance"
            elif any(is_speech(f) for f in probe):
                talks_on = True
            elif len(probe) >= (PROBE_TO_MS - PROBE_FROM_MS) // FRAME_MS or finishing:
                talks_on = False
            else:
                break  # the audio that tells has not come yet
            self.held.pop(0)
            out.append(Final(text, talks_on))
        return out


# ------------------------------------------------------------------ turn taking
@dataclass
class Conversation:
    """One reply at a time; finals meanwhile queued for the next; a final the caller talked on after held."""

    bug: str = ""
    history: list[dict[str, str]] = field(default_factory=lambda: [{"role": "system", "content": SYSTEM}])
    busy: bool = False
    queued: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    marks: set[str] = field(default_factory=set)  # sent, not yet echoed: the bot is speaking ...
    sending: int = 0  # ... and so it is while a sentence's audio is being sent
    cleared_once: bool = False
    ended: bool = False

    def final(self, final: Final) -> list[dict[str, str]] | None:
        """The messages to ask the LLM with now, or None (the answers-after-hangup mutant answers a final that came
        after the hang-up, as a handler whose results loop is never cancelled does)."""
        if self.ended and self.bug != "answers-after-hangup":
            return None
        if final.talks_on:
            self.held.append(final.text)
            return None
        text, self.held = " ".join([*self.held, final.text]), []
        if self.busy:
            if self.bug != "drops-queued-final":
                self.queued.append(text)
            return None
        return self._ask(text)

    def quiet(self) -> list[dict[str, str]] | None:
        """No result for a while after a held final: answer what was held."""
        if not self.held or self.busy or self.ended:
            return None
        text, self.held = " ".join(self.held), []
        return self._ask(text)

    def _ask(self, text: str) -> list[dict[str, str]]:
        self.history.append({"role": "user", "content": text})
        self.busy = True
        if self.bug == "forgets-history":  # the system prompt and the latest turn: the LLM never hears what came before
            return [dict(self.history[0]), {"role": "user", "content": text}]
        return [dict(m) for m in self.history]

    def replied(self, text: str) -> list[dict[str, str]] | None:
        """The reply is over (spoken, cut short or failed): the next queued turn, if any."""
        if text.strip():
            self.history.append({"role": "assistant", "content": text.strip()})
        self.busy = False
        if self.queued and not self.ended:
            text, self.queued = " ".join(self.queued), []
            return self._ask(text)
        return None

    def barges_in(self, partial: str) -> bool:
        """Caller speech while the bot speaks: clear playback (one-early-clear clears once, before its first reply;
        no-barge-in never clears, and so never cuts the reply short)."""
        if self.bug == "no-barge-in":
            return False
        if self.bug == "one-early-clear":
            first, self.cleared_once = not self.cleared_once, True
            return first
        return bool(partial.strip()) and bool(self.marks or self.sending)
