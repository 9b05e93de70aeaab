"""What the caller heard, traced to the TTS request it came from (sans-I/O).

The fake TTS speaks each request as its own tone (``fake_tts.TONES_HZ``). The bot's media, decoded in
the order the handler sent it, is cut into short windows; a window that is one clear tone is matched
to the request that spoke it. A tone that matches no request is audio played at the wrong speed: a
600 Hz request heard at 200 Hz was 24 kHz audio sent as if it were 8 kHz, and the caller hears it
three times too slow. Audio that is no tone (a recorded prompt, speech from another TTS) is left
unattributed and judged by nothing here.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from callaudio.g711 import ulaw_to_pcm16
from harness.fakes.tts import TONES_HZ

RATE = 8000
WINDOW = 640  # 80 ms: the shortest sentence the fake speaks is ~120 ms
HOP = 320
PAD = 8192  # zero-padded FFT: ~1 Hz bins, a pure tone's peak found to well under 1 Hz
TOLERANCE = 0.006  # a tone within 0.6 % of a request's is that request's (the tones are 4-5 % apart)
MIN_POWER = (32768 * 10 ** (-45 / 20)) ** 2  # quieter windows are silence
MIN_PURITY = 0.6  # this share of a window's energy within a few Hz of its peak: a tone ...
STEADY = 0.005  # ... whose two halves peak within 0.5 % of each other (not the seam of two requests' tones)


@dataclass(frozen=True)
class Heard:
    """One window of the bot's audio that is a tone."""

    start: int  # sample offset in the bot's audio, in the order it was sent
    hz: float
    tone: float | None  # the request tone it matches, None: none (wrong speed)


@dataclass
class BotAudio:
    """The bot's media messages decoded, and each window that carries a tone."""

    message_index: list[int] = field(default_factory=list)  # for each media message: its place in ``received``
    offsets: list[int] = field(default_factory=list)  # each media message's first sample
    samples: int = 0
    heard: list[Heard] = field(default_factory=list)  # in order of their start

    def message_samples(self, k: int) -> int:
        return (self.offsets[k + 1] if k + 1 < len(self.offsets) else self.samples) - self.offsets[k]

    def tone_of_message(self, k: int) -> float | None:
        """The request tone the ``k``-th media message carries (None: no tone, or off every tone)."""
        lo = self.offsets[k]
        hi = lo + self.message_samples(k)
        starts = self._starts()
        votes: dict[float, int] = {}
        for h in self.heard[bisect.bisect_right(starts, lo - WINDOW): bisect.bisect_left(starts, hi)]:
            if h.tone is not None:
                votes[h.tone] = votes.get(h.tone, 0) + 1
        return max(votes, key=lambda t: votes[t]) if votes else None

    def _starts(self) -> list[int]:
        if getattr(self, "_cached", None) is None or len(self._cached) != len(self.heard):
            self._cached = [h.start for h in self.heard]
        return self._cached

    @property
    def off_tone(self) -> list[Heard]:
        return [h for h in self.heard if h.tone is None]


def _payload(message: dict[str, Any]) -> bytes:
    media = message.get("media")
    payload = media.get("payload") if isinstance(media, dict) else None
    if not isinstance(payload, str):
        return b""
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return b""


def peak(window: np.ndarray) -> tuple[float, float]:
    """The window's strongest frequency (Hz) and the share of its energy within a few Hz of it."""
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window)), PAD)) ** 2
    spectrum[: int(50 * PAD / RATE)] = 0.0  # below 50 Hz: hum and DC, never a tone of ours
    k = int(np.argmax(spectrum))
    total = float(spectrum.sum())
    if total <= 0.0 or k == 0 or k >= len(spectrum) - 1:
        return 0.0, 0.0
    a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    main_lobe = int(2.5 * PAD / len(window))  # a Hann window's main lobe, in padded bins
    purity = float(spectrum[max(0, k - main_lobe): k + main_lobe + 1].sum()) / total
    return (k + shift) * RATE / PAD, purity


def match_tone(hz: float, tones: Sequence[float] = TONES_HZ) -> float | None:
    nearest = min(tones, key=lambda t: abs(t - hz))
    return nearest if abs(nearest - hz) <= TOLERANCE * nearest else None


def analyse(received: list[tuple[float, dict[str, Any]]]) -> BotAudio:
    """Decode the media messages of ``received`` (in order) and find the tones in them."""
    found = BotAudio()
    chunks = []
    for i, (_, message) in enumerate(received):
        if message.get("event") != "media":
            continue
        ulaw = _payload(message)
        found.message_index.append(i)
        found.offsets.append(found.samples)
        found.samples += len(ulaw)
        chunks.append(ulaw)
    if found.samples < WINDOW:
        return found
    pcm = ulaw_to_pcm16(b"".join(chunks)).astype(np.float64)
    for start in range(0, len(pcm) - WINDOW + 1, HOP):
        window = pcm[start : start + WINDOW]
        if float(window @ window) < MIN_POWER * WINDOW:
            continue
        hz, purity = peak(window)
        if purity < MIN_PURITY:
            continue
        first, second = peak(window[: WINDOW // 2])[0], peak(window[WINDOW // 2 :])[0]
        if abs(first - second) <= STEADY * hz:
            found.heard.append(Heard(start, round(hz, 1), match_tone(hz)))
    return found
