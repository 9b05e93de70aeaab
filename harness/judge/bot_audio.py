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

from callaudio.g711 import alaw_to_pcm16, ulaw_to_pcm16
from harness.fakes.tts import TONES_HZ

RATE = 8000
WINDOW = 640  # 80 ms: the shortest sentence the fake speaks is ~120 ms
HOP = 320
OWN_MIN = 320  # a media message at least this long (40 ms) is told by its own tone ...
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
    encoding: str = ""  # when no window is a tone: what the bytes look like instead (:func:`encoding_guess`)
    own_tones: dict[int, float | None] = field(default_factory=dict)  # a short message's own steady tone, by message

    def message_samples(self, k: int) -> int:
        return (self.offsets[k + 1] if k + 1 < len(self.offsets) else self.samples) - self.offsets[k]

    def tone_of_message(self, k: int) -> float | None:
        """The request tone the ``k``-th media message carries (None: no tone, or off every tone): its own tone
        when it is long enough to have one (two sentences' audio sent interleaved in 100 ms messages leaves few
        windows within one message), else the tone of the windows over it."""
        if k in self.own_tones:
            return self.own_tones[k]
        lo = self.offsets[k]
        hi = lo + self.message_samples(k)
        starts = self._starts()
        votes: dict[float, int] = {}
        for h in self.heard[bisect.bisect_right(starts, lo - WINDOW): bisect.bisect_left(starts, hi)]:
            if h.tone is not None:
                votes[h.tone] = votes.get(h.tone, 0) + 1
        return max(votes, key=lambda t: votes[t]) if votes else None

    def _starts(self) -> list[int]:
        cached: list[int] | None = getattr(self, "_cached", None)
        if cached is None or len(cached) != len(self.heard):
            cached = self._cached = [h.start for h in self.heard]
        return cached

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


def tones(pcm: np.ndarray, window_len: int = WINDOW) -> list[tuple[int, float]]:
    """Each window of ``pcm`` (8 kHz) that is one steady tone: (its first sample, the tone's Hz)."""
    found = []
    for start in range(0, len(pcm) - window_len + 1, max(HOP, window_len // 2)):
        window = pcm[start : start + window_len]
        window = window - window.mean()  # a constant offset is no sound (bytes of 0x00 read as mu-law are one)
        if float(window @ window) < MIN_POWER * window_len:
            continue
        hz, purity = peak(window)
        if purity < MIN_PURITY:
            continue
        first, second = peak(window[: window_len // 2])[0], peak(window[window_len // 2 :])[0]
        if abs(first - second) <= STEADY * hz:
            found.append((start, round(hz, 1)))
    return found


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
    found.heard = [Heard(start, hz, match_tone(hz)) for start, hz in tones(pcm)]
    if not found.heard:
        found.encoding = encoding_guess(chunks)
        return found
    for k, offset in enumerate(found.offsets):  # a message between 40 and 160 ms: its own tone, if it is one
        n = found.message_samples(k)
        if OWN_MIN <= n < 2 * WINDOW:
            own = tones(pcm[offset : offset + n], n - n % 2)
            if own:
                found.own_tones[k] = match_tone(own[0][1])
    return found


HEADERS = ((b"RIFF", "a WAV file, header and all"), (b"ID3", "MP3"), (b"OggS", "Ogg (Opus)"), (b"fLaC", "FLAC"),
           (b"\x1aE\xdf\xa3", "WebM"))


def _mpeg_frame(payload: bytes) -> bool:
    """``payload`` begins with a valid MPEG audio frame header (sync, version, layer, bitrate, rate)."""
    if len(payload) < 4 or payload[0] != 0xFF or payload[1] & 0xE0 != 0xE0:
        return False
    version, layer = (payload[1] >> 3) & 3, (payload[1] >> 1) & 3
    bitrate, rate = payload[2] >> 4, (payload[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _decodes_as_mp3(data: bytes) -> bool:
    """libsndfile reads the start of ``data`` as MP3 audio (a header by chance in noise does not)."""
    import io

    import soundfile

    try:
        audio, _ = soundfile.read(io.BytesIO(data), frames=4096)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return False
    return len(audio) > 0


def encoding_guess(payloads: list[bytes]) -> str:
    """What the bot's media bytes are, when they are no tone as mu-law: a file's header left in, another
    G.711 law, 16-bit linear PCM (read at 8 kHz: its tone tells the rate it was meant for), or silence."""
    for payload in payloads:
        for magic, name in HEADERS:
            if payload.startswith(magic):
                return f"{name}: a payload begins with {magic!r}"
    joined = b"".join(payloads)
    as_ulaw = ulaw_to_pcm16(joined).astype(np.float64)
    as_ulaw -= as_ulaw.mean()
    if float(as_ulaw @ as_ulaw) < MIN_POWER * len(as_ulaw):
        return "silence: no sound in it"
    readings = {"A-law (G.711a)": alaw_to_pcm16(joined),
                "16-bit linear PCM, little-endian": np.frombuffer(joined[: len(joined) // 2 * 2], "<i2"),
                "16-bit linear PCM, big-endian": np.frombuffer(joined[: len(joined) // 2 * 2], ">i2")}
    best, share, hz = "", 0.0, 0.0
    for name, pcm in readings.items():
        pcm = pcm.astype(np.float64)
        windows = max(1, (len(pcm) - WINDOW) // HOP + 1)
        found = tones(pcm)
        if len(found) / windows > share:
            best, share, hz = name, len(found) / windows, float(np.median([h for _, h in found]))
    if share < 0.2:
        start = next((i for i, payload in enumerate(payloads) if _mpeg_frame(payload)), None)
        if start is not None and _decodes_as_mp3(b"".join(payloads[start:])):
            return "MP3: a payload begins an MPEG audio stream"
        return "noise: no tone in it read as mu-law, A-law or 16-bit PCM"
    rate = ""
    if best.startswith("16-bit"):  # samples read at 8 kHz: the tone's pitch tells the rate they were made at
        rate = (" at 8 kHz" if match_tone(hz) is not None else
                f" at another rate than 8 kHz (its tone read at 8 kHz is {hz:.0f} Hz, not {TONES_HZ[0]:.0f}-{TONES_HZ[-1]:.0f})")
    return f"{best}{rate}: {share:.0%} of it is a steady tone read that way"
