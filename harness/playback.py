"""What the caller heard: the bot's audio as Twilio would have played it, and the call as sound.

Sans-I/O over the caller side's record: each ``media`` message plays after the one before it has
finished (at the replay's pace), a ``clear`` drops whatever had not been played yet. ``call_audio``
renders the call in its own time: the caller on the left channel, what they heard on the right.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from callaudio.g711 import ulaw_to_pcm16

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


def played_audio(received: list[tuple[float, dict]], pace: float) -> list[Played]:
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


def call_audio(caller_pcm: np.ndarray, frames_sent: int, played: list[Played], t0: float, pace: float) -> bytes:
    """The call as an MP3 (8 kHz stereo): the caller's audio up to the hang-up on the left, the bot as
    heard on the right, on the call's own clock (wall time times ``pace``)."""
    import soundfile  # libsndfile in the wheel encodes MP3

    caller = caller_pcm[: frames_sent * RATE // 50].astype(np.float32) / 32768
    ends = [int(((p.start - t0) * pace + p.seconds) * RATE) for p in played]
    length = max([len(caller), *ends, 1])
    stereo = np.zeros((length, 2), np.float32)
    stereo[: len(caller), 0] = caller
    for p in played:
        at = max(0, int((p.start - t0) * pace * RATE))
        bot = ulaw_to_pcm16(p.ulaw).astype(np.float32) / 32768
        stereo[at : at + len(bot), 1] += bot[: max(0, length - at)]
    out = io.BytesIO()
    soundfile.write(out, np.clip(stereo, -1, 1), RATE, format="MP3", subtype="MPEG_LAYER_III")
    return out.getvalue()
