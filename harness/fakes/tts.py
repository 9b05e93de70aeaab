"""A fake OpenAI-compatible TTS: ``POST /v1/audio/speech`` streams a tone as long as the text, with a journal.

It answers as OpenAI's speech endpoint does for the SDKs that call it: ``response_format`` picks the
encoding (``mp3`` when absent, as OpenAI's default), with that format's content type, at OpenAI's 24 kHz
(``pcm`` is raw 16-bit little-endian mono at 24 kHz, as OpenAI's); an empty or over-long ``input`` is
refused with 400 and OpenAI's error shape.

Each request speaks its own tone (``TONES_HZ``, in turn): what the caller hears can be traced to the
request it came from, and a tone at the wrong pitch shows audio played at the wrong sample rate
(:mod:`harness.judge.bot_audio`). The tones lie within a ratio of 1.45 of each other, so audio played 1.5,
2 or 3 times too slow or fast never lands on another request's tone.

The same fake also answers Naver CLOVA Voice's ``POST /tts-premium/v1/tts`` (:mod:`harness.fakes.clova_tts`),
with the same tones, journal, scripts and routing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from aiohttp import web

from harness.fakes.clova_tts import add_clova_routes
from harness.fakes.journal import JournaledFake, json_body

MAX_INPUT_CHARS = 4096  # OpenAI's documented limit for ``input``
TONES_HZ = (600.0, 630.0, 660.0, 690.0, 720.0, 750.0, 780.0, 810.0, 840.0, 870.0)  # one call alone: request i speaks TONES_HZ[i % 10]

# response_format -> (content type, soundfile container, subtype); ``pcm`` is raw 16-bit little-endian mono.
FORMATS: dict[str, tuple[str, str | None, str | None]] = {
    "mp3": ("audio/mpeg", "MP3", "MPEG_LAYER_III"),
    "opus": ("audio/ogg", "OGG", "OPUS"),
    "flac": ("audio/flac", "FLAC", "PCM_16"),
    "wav": ("audio/wav", "WAV", "PCM_16"),
    "pcm": ("audio/pcm", None, None),
}
UNSUPPORTED = {"aac": "the fake TTS cannot encode aac without ffmpeg; ask for mp3, opus, flac, wav or pcm"}


@dataclass
class TtsRequest:
    text: str
    response_format: str = "mp3"
    at: float = field(default_factory=time.monotonic)
    status: int = 200
    error: str = ""
    bytes_sent: int = 0
    completed: bool = False
    abandoned: bool = False
    tone_hz: float = 0.0  # the tone its audio carries (0: refused, no audio)
    ended_at: float | None = None  # when the fake was done with it (answered, refused or abandoned)
    lane: str = ""  # the call it was told to (several calls at once: ``harness.replay.lanes``)
    given: bool = False  # ... not by its words but by the line that heard its tone (a greeting, an apology)
    audio_s: float = 0.0  # the seconds of speech it answers with (whole, however much of it was sent)
    stalled_until: float | None = None  # a scripted stall held it until then (inf: until the client let go)
    dialect: str = "openai"  # the API it came by: "openai" (/v1/audio/speech) or "clova" (harness.fakes.clova_tts)


@dataclass
class FakeTtsConfig:
    sample_rate: int = 24000  # OpenAI's TTS rate (its ``pcm`` is 24 kHz)
    ms_per_char: float = 60.0
    first_chunk_ms: float = 0.0
    chunk_ms: float = 100.0
    realtime: bool = False  # pace chunks at their playing speed (times time_scale)
    time_scale: float = 1.0
    stall_requests: set[int] = field(default_factory=set)  # held before the first audio until the client gives up ...
    stall_s: float | None = None  # ... or, if set, for this many wall seconds (a stall is no latency: unscaled)


def openai_error(message: str, status: int, param: str | None = None) -> web.Response:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": None}}, status=status)


def tone_for(index: int) -> float:
    """The tone of the fake's ``index``-th request."""
    return TONES_HZ[index % len(TONES_HZ)]


CACHED_SAMPLES = 24_000 * 10  # a reply up to 10 s at 24 kHz is kept for the next ask; a longer one is made anew


def tone(samples: int, rate: int, response_format: str, hz: float = TONES_HZ[0]) -> bytes:
    """The fake's speech: ``samples`` of a tone at ``hz`` in the asked format (cached while short: a load run
    asks for the same few replies thousands of times; a cache of long ones held 589 MB after 30 of them)."""
    if samples > CACHED_SAMPLES:
        return _make_tone(samples, rate, response_format, hz)
    return _cached_tone(samples, rate, response_format, hz)


def _make_tone(samples: int, rate: int, response_format: str, hz: float) -> bytes:
    pcm = (0.3 * np.sin(2 * np.pi * hz * np.arange(samples) / rate) * 32767).astype(np.int16)
    return encode(pcm, rate, response_format)


_cached_tone = functools.lru_cache(maxsize=256)(_make_tone)


def encode(pcm: np.ndarray, rate: int, response_format: str) -> bytes:
    """The tone in the asked format (``pcm``: raw int16; others through libsndfile, no external program)."""
    content_type, container, subtype = FORMATS[response_format]
    if container is None:
        return pcm.astype("<i2").tobytes()
    import soundfile  # libsndfile ships inside the wheel: WAV, FLAC, Ogg Opus and MP3 without ffmpeg

    out = io.BytesIO()
    soundfile.write(out, pcm, rate, format=container, subtype=subtype)
    return out.getvalue()


class FakeTts(JournaledFake[TtsRequest]):
    """State and journal; ``app()`` serves ``POST /v1/audio/speech`` and CLOVA Voice's ``POST /tts-premium/v1/tts``."""

    def __init__(self, config: FakeTtsConfig | None = None) -> None:
        super().__init__()
        self.config = config or FakeTtsConfig()
        self.route: Callable[[TtsRequest], FakeTtsConfig | None] | None = None  # several calls: each its own script
        self._tones = itertools.count()
        self._tone_given: dict[float, int] = {}  # tone -> when it was last given (a count)
        self._lane_tones: dict[str, list[float]] = {}  # call -> the tones of its last nine requests

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/speech", self._speech)
        add_clova_routes(app, self, TtsRequest)

    def _tone(self, lane: str) -> float:
        """The next request's tone: none of its call's last nine requests' (a call's own audio is never two
        requests' at once), of those the one longest unused by any call (calls at once told apart too). One
        call alone gets ``TONES_HZ`` in turn, as ``tone_for`` says."""
        mine = self._lane_tones.setdefault(lane, [])
        hz = min((t for t in TONES_HZ if t not in mine), key=lambda t: (self._tone_given.get(t, -1), TONES_HZ.index(t)))
        self._tone_given[hz] = next(self._tones)
        mine[:] = [*mine, hz][-(len(TONES_HZ) - 1):]
        return hz

    def samples_for(self, text: str, config: FakeTtsConfig | None = None) -> int:
        config = config or self.config
        return int(config.sample_rate * config.ms_per_char * max(1, len(text)) / 1000)

    def audio_for(self, text: str, response_format: str = "pcm", hz: float = TONES_HZ[0],
                  config: FakeTtsConfig | None = None) -> bytes:
        """The speech for ``text``: raw 16-bit PCM at ``sample_rate`` for ``pcm``, else encoded."""
        config = config or self.config
        return tone(self.samples_for(text, config), config.sample_rate, response_format, hz)

    def _refusal(self, body: object) -> tuple[TtsRequest, web.Response | None]:
        if not isinstance(body, dict):
            entry = TtsRequest("")
            return entry, openai_error("the request body must be a JSON object", 400)
        text, fmt = body.get("input"), body.get("response_format") or "mp3"
        entry = TtsRequest(text[:MAX_INPUT_CHARS] if isinstance(text, str) else "", fmt if isinstance(fmt, str) else repr(fmt)[:40])
        if not isinstance(fmt, str):
            return entry, openai_error(f"Invalid type for 'response_format': expected a string, got {type(fmt).__name__}",
                                       400, "response_format")
        if not isinstance(text, str) or not text.strip():
            return entry, openai_error("'input' must be a non-empty string", 400, "input")
        if len(text) > MAX_INPUT_CHARS:
            return entry, openai_error(f"'input' is longer than {MAX_INPUT_CHARS} characters", 400, "input")
        if fmt in UNSUPPORTED:
            return entry, openai_error(UNSUPPORTED[fmt], 400, "response_format")
        if fmt not in FORMATS:
            return entry, openai_error(f"'response_format' must be one of {', '.join([*FORMATS, *UNSUPPORTED])}, "
                                       f"got {fmt!r}", 400, "response_format")
        return entry, None

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        entry, refusal = self._refusal(await json_body(request))
        if refusal is not None:
            return self.refused(entry, refusal)
        return await self.speak(request, entry)

    def refused(self, entry: TtsRequest, refusal: web.Response) -> web.Response:
        """Journal ``entry`` as refused with ``refusal`` (no tone, no audio) and answer it."""
        entry.status, entry.error = refusal.status, refusal.text or ""
        entry.ended_at = time.monotonic()
        self.record(entry)
        return refusal

    async def speak(self, request: web.Request, entry: TtsRequest, *, sample_rate: int | None = None,
                    content_type: str | None = None) -> web.StreamResponse:
        """Journal ``entry`` and stream its tone in ``entry.response_format``, as its call's script says (stall,
        latency, pace); every dialect answers through here. ``sample_rate``: the rate the request asked for
        (else the script's); ``content_type``: the dialect's (else ``FORMATS``')."""
        index = self.record(entry)
        routed = self.route(entry) if self.route is not None else None
        entry.tone_hz = self._tone(entry.lane)
        config = routed or self.config
        if routed is not None:  # several calls at once: a stall is counted among its own call's requests
            index = sum(1 for r in self.requests if r.lane == entry.lane) - 1
        if sample_rate is not None and sample_rate != config.sample_rate:
            config = dataclasses.replace(config, sample_rate=sample_rate)
        audio = self.audio_for(entry.text, entry.response_format, entry.tone_hz, config)
        entry.audio_s = self.samples_for(entry.text, config) / config.sample_rate
        response = web.StreamResponse(headers={"Content-Type": content_type or FORMATS[entry.response_format][0]})
        step = max(2, int(len(audio) * config.chunk_ms / max(1.0, config.ms_per_char * len(entry.text))) // 2 * 2)
        scale = config.time_scale
        with self.answering(entry):  # the client may be gone before the headers go out
            await response.prepare(request)
            if index in config.stall_requests:
                await self.stall(entry, config.stall_s)
            if config.first_chunk_ms and scale:
                await asyncio.sleep(config.first_chunk_ms * scale / 1000)  # scripted latency
            for i in range(0, len(audio), step):
                await response.write(audio[i : i + step])
                entry.bytes_sent += len(audio[i : i + step])
                if config.realtime and scale:
                    await asyncio.sleep(config.chunk_ms * scale / 1000)  # scripted pacing
            await response.write_eof()
            entry.completed = True
        return response
