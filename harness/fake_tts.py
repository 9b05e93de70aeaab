"""A fake OpenAI-compatible TTS: ``POST /v1/audio/speech`` streams a tone as long as the text, with a journal."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
from aiohttp import web

from .journaled_fake import JournaledFake


@dataclass
class TtsRequest:
    text: str
    at: float = field(default_factory=time.monotonic)
    bytes_sent: int = 0
    completed: bool = False
    abandoned: bool = False


@dataclass
class FakeTtsConfig:
    sample_rate: int = 24000
    ms_per_char: float = 60.0
    first_chunk_ms: float = 0.0
    chunk_ms: float = 100.0
    realtime: bool = False  # pace chunks at their playing speed (times time_scale)
    time_scale: float = 1.0


class FakeTts(JournaledFake[TtsRequest]):
    """State and journal; ``app()`` serves ``POST /v1/audio/speech``."""

    def __init__(self, config: FakeTtsConfig | None = None) -> None:
        super().__init__()
        self.config = config or FakeTtsConfig()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/speech", self._speech)

    def audio_for(self, text: str) -> bytes:
        rate = self.config.sample_rate
        n = int(rate * self.config.ms_per_char * max(1, len(text)) / 1000)
        tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(n) / rate)
        return (tone * 32767).astype("<i2").tobytes()

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        entry = TtsRequest(body.get("input", ""))
        self.requests.append(entry)
        self.changes.notify()
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        audio = self.audio_for(entry.text)
        step = int(self.config.sample_rate * self.config.chunk_ms / 1000) * 2
        scale = self.config.time_scale
        with self.answering(entry):  # the client may be gone before the headers go out
            await response.prepare(request)
            if self.config.first_chunk_ms and scale:
                await asyncio.sleep(self.config.first_chunk_ms * scale / 1000)  # scripted latency
            for i in range(0, len(audio), step):
                await response.write(audio[i : i + step])
                entry.bytes_sent += len(audio[i : i + step])
                if self.config.realtime and scale:
                    await asyncio.sleep(self.config.chunk_ms * scale / 1000)  # scripted pacing
            await response.write_eof()
            entry.completed = True
        return response
