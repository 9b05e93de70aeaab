"""What the caller heard: the bot's audio as Twilio would have played it, and the call as sound.

Sans-I/O over the caller side's record: each ``media`` message plays after the one before it has
finished (at the replay's pace), a ``clear`` drops whatever had not been played yet. ``spans`` does
it over a timeline's events (when each message played, how much of it); ``played_audio`` over the
received messages themselves, for ``call_audio``, which renders the call in its own time: the caller
on the left channel, what they heard on the right.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from callaudio.g711 import ulaw_to_pcm16
from harness.judge.events import Clear, EventBase, Media

RATE = 8000


@dataclass(frozen=True)
class Played:
    start: float  # wall time it began to play
    ulaw: bytes  # what was played of it (cut at a clear)
    cut: bool  # a clear stopped it before its end
    sent: int = 0  # bytes the handler sent for it

    @property
    def seconds(self) -> float:
        return len(self.ulaw) / RATE


@dataclass(frozen=True)
class Span:
    """One media message as it played: from ``start`` to ``end`` (wall), ``ms`` of its audio heard."""

    start: float
    end: float
    ms: float  # audio heard (at fast pace: all of it, in no time)
    sent_ms: float
    tts: int | None  # the TTS request it came from, when known
    cut: bool  # a clear stopped it before its end (the end of the call cuts it too, but is no clear)


def spans(events: Sequence[EventBase], pace: float | None, until: float = float("inf")) -> list[Span]:
    """The ``media`` events of a timeline as played at ``pace`` (None: no time at all), cut by ``clear`` and
    by the end of the call at ``until`` (nothing plays once the line is gone)."""
    scheduled: list[tuple[float, float, float, int | None]] = []  # start, end, ms, tts
    result: list[Span] = []
    playing_until = 0.0

    def settle(at: float, cleared: bool = True) -> None:
        for start, end, ms, tts in scheduled:
            if start >= at:
                result.append(Span(start, start, 0.0, ms, tts, cleared))  # never played
            elif end > at:
                heard = ms * (at - start) / (end - start)
                result.append(Span(start, at, heard, ms, tts, cleared))
            else:
                result.append(Span(start, end, ms, ms, tts, False))

    for event in events:
        if event.wall >= until:
            break
        if isinstance(event, Media):
            ms = float(event.ms)
            start = max(event.wall, playing_until)
            end = start + (ms / 1000 / pace if pace else 0.0)
            scheduled.append((start, end, ms, event.tts))
            playing_until = end
        elif isinstance(event, Clear):
            settle(event.wall)
            scheduled, playing_until = [], event.wall
    settle(until, cleared=False)
    return result


def played_audio(received: list[tuple[float, dict[str, Any]]], pace: float) -> list[Played]:
    """The bot's media as played, in order; ``pace`` > 0 (2.0: audio plays in half the wall time)."""
    queue: list[tuple[float, bytes]] = []  # (start, ulaw), scheduled
    played: list[Played] = []
    until = 0.0
    for wall, message in received:
        event = message.get("event")
        if event == "media":
            try:
                ulaw = base64.b64decode(message.get("media", {}).get("payload", ""), validate=False)
            except (ValueError, TypeError):
                continue
            start = max(wall, until)
            until = start + len(ulaw) / RATE / pace
            queue.append((start, ulaw))
        elif event == "clear":
            for start, ulaw in queue:
                if start >= wall:
                    played.append(Played(start, b"", True, len(ulaw)))  # never played
                    continue
                heard = int((wall - start) * pace * RATE)
                played.append(Played(start, ulaw[:heard], heard < len(ulaw), len(ulaw)))
            queue, until = [], wall
    played.extend(Played(start, ulaw, False, len(ulaw)) for start, ulaw in queue)
    return [p for p in played if p.ulaw or p.cut]


def call_audio(caller_pcm: np.ndarray, frame_sent: np.ndarray, played: list[Played], t0: float, pace: float) -> bytes:
    """The call as an MP3 (8 kHz stereo): the caller's audio up to the hang-up on the left, each 20 ms frame
    where it was sent (a caller who waited for the bot held silence there), the bot as heard on the right,
    on the call's own clock (wall time times ``pace``)."""
    import soundfile  # libsndfile in the wheel encodes MP3

    step = RATE // 50
    sent = np.flatnonzero(frame_sent == frame_sent)
    starts = [max(0, int(round((frame_sent[k] - t0) * pace * RATE))) for k in sent]
    ends = [int(((p.start - t0) * pace + p.seconds) * RATE) for p in played]
    length = max([*(s + step for s in starts), *ends, 1])
    stereo = np.zeros((length, 2), np.float32)
    for k, at in zip(sent, starts):
        frame = caller_pcm[k * step : (k + 1) * step].astype(np.float32) / 32768
        stereo[at : at + len(frame), 0] = frame
    for p in played:
        at = max(0, int((p.start - t0) * pace * RATE))
        bot = ulaw_to_pcm16(p.ulaw).astype(np.float32) / 32768
        stereo[at : at + len(bot), 1] += bot[: max(0, length - at)]
    out = io.BytesIO()
    soundfile.write(out, np.clip(stereo, -1, 1), RATE, format="MP3", subtype="MPEG_LAYER_III")
    return out.getvalue()
