"""Text to speech as 8 kHz mu-law chunks ready for Twilio: an OpenAI-compatible client and espeak-ng."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Protocol

import aiohttp
import numpy as np
import soxr

from callaudio.g711 import pcm16_to_ulaw
from callaudio.wavfile import parse_wav

from .errors import AicallError

CHUNK_BYTES = 800  # 100 ms of 8 kHz mu-law per media message


class TtsError(AicallError):
    """The TTS engine failed."""


class Tts(Protocol):
    def synthesize(self, text: str) -> AsyncIterator[bytes]: ...


class _ToUlaw8k:
    """Streaming PCM16 (any rate) -> 8 kHz mu-law, in chunks of ``CHUNK_BYTES``."""

    def __init__(self, rate: int) -> None:
        self._resampler = None if rate == 8000 else soxr.ResampleStream(rate, 8000, 1, dtype="int16")
        self._odd = b""
        self._out = b""

    def push(self, pcm: bytes, last: bool = False) -> list[bytes]:
        data = self._odd + pcm
        whole = len(data) // 2 * 2
        self._odd = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        self._out += pcm16_to_ulaw(samples)
        cut = len(self._out) if last else len(self._out) // CHUNK_BYTES * CHUNK_BYTES
        chunks = [self._out[i : i + CHUNK_BYTES] for i in range(0, cut, CHUNK_BYTES)]
        self._out = self._out[cut:]
        return chunks


class OpenAiTts:
    """``POST {base}/audio/speech`` with ``response_format=pcm`` (16-bit mono at ``sample_rate``)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str, model: str, voice: str,
                 sample_rate: int = 24000) -> None:
        self._session = session
        self._url = f"{base_url}/audio/speech"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._body = {"model": model, "voice": voice, "response_format": "pcm"}
        self.sample_rate = sample_rate

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        convert = _ToUlaw8k(self.sample_rate)
        try:
            async with self._session.post(self._url, json={**self._body, "input": text}, headers=self._headers,
                                          timeout=aiohttp.ClientTimeout(total=60)) as resp:
                if resp.status != 200:
                    raise TtsError(f"TTS endpoint answered HTTP {resp.status}")
                async for pcm in resp.content.iter_chunked(4096):
                    for chunk in convert.push(pcm):
                        yield chunk
        except aiohttp.ClientError as exc:
            raise TtsError(f"TTS endpoint unreachable: {type(exc).__name__}") from None
        for chunk in convert.push(b"", last=True):
            yield chunk


class EspeakTts:
    """Offline Korean speech for development: ``espeak-ng -v ko --stdout``."""

    def __init__(self, voice: str = "ko", speed: int = 160) -> None:
        self.voice, self.speed = voice, speed

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        try:
            proc = await asyncio.create_subprocess_exec(
                "espeak-ng", "-v", self.voice, "-s", str(self.speed), "--stdout", text,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        except FileNotFoundError:
            raise TtsError("espeak-ng is not installed (apt-get install espeak-ng)") from None
        wav_bytes, _ = await proc.communicate()
        if proc.returncode != 0 or not wav_bytes:
            raise TtsError(f"espeak-ng failed (exit {proc.returncode})")
        wav = parse_wav(_fix_stream_sizes(wav_bytes), source="espeak-ng")
        for chunk in _ToUlaw8k(wav.sample_rate).push(wav.data, last=True):
            yield chunk


def _fix_stream_sizes(blob: bytes) -> bytes:
    """espeak-ng writing to a pipe cannot seek back: its RIFF and data sizes are 0x7fffffff."""
    data_at = blob.find(b"data")
    if data_at < 0:
        return blob
    size = len(blob) - data_at - 8
    return (blob[:4] + (len(blob) - 8).to_bytes(4, "little") + blob[8 : data_at + 4]
            + size.to_bytes(4, "little") + blob[data_at + 8 :])
