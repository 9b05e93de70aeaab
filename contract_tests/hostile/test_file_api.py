"""The file API holds uploads built to hurt it (issue 22, items 6-7): a small WAV whose header claims hours
is refused from the header before a sample is decoded, and uploads racing past the concurrency limit are
each counted the moment they are accepted."""

from __future__ import annotations

import asyncio
import io
import struct

import aiohttp
import numpy as np
import pytest
import soundfile

from callaudio import AudioTooLong
from callaudio.decode import read_channels
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer

from .conftest import SEED_DIR


def wav_claiming(rate: int, samples: int = 48_000) -> bytes:
    """A 16-bit mono WAV of ``samples`` whose header says ``rate`` Hz (1 Hz: 97 KB that last 13 hours)."""
    data = (np.sin(np.arange(samples) / 5) * 8000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


async def upload(session: aiohttp.ClientSession, base: str, token: str, data: bytes) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="call.wav", content_type="application/octet-stream")
    form.add_field("config", "{}")
    async with session.post(f"{base}/v1/transcribe", data=form, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json(content_type=None)


async def token_of(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(f"{base}/v1/authenticate", data={"client_id": "fakertzr-client",
                                                             "client_secret": "fakertzr-secret"}) as resp:
        return (await resp.json())["access_token"]


def test_a_header_that_claims_hours_is_refused_before_decoding(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("decoded a file its header already refused")

    monkeypatch.setattr(soundfile, "read", never)
    with pytest.raises(AudioTooLong) as refused:
        read_channels(wav_claiming(1), "bomb.wav", max_seconds=4 * 3600)
    assert refused.value.seconds == 48_000  # 48,000 samples at 1 Hz


async def test_the_file_api_answers_a_rate_bomb_with_h0006_and_an_odd_rate_with_h0010():
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(SEED_DIR)]))
    async with aiohttp.ClientSession() as session, FakeRtzrServer(backend) as server:
        token = await token_of(session, server.base_url)
        status, body = await upload(session, server.base_url, token, wav_claiming(1))  # 13 h: over 4 h
        assert (status, body.get("code")) == (413, "H0006"), body
        status, body = await upload(session, server.base_url, token, wav_claiming(20))  # 40 min at 20 Hz
        assert (status, body.get("code")) == (400, "H0010") and "20 Hz" in body["msg"], body
        status, body = await upload(session, server.base_url, token, wav_claiming(16_000))
        assert status == 200, body


async def test_uploads_at_once_past_the_limit_are_refused_each_counted_when_accepted():
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=1.0, fixtures=[str(SEED_DIR)], batch_max_jobs=10))
    audio = io.BytesIO()
    soundfile.write(audio, (np.sin(np.arange(8000 * 20) / 7) * 8000).astype(np.int16), 8000, format="WAV")
    async with aiohttp.ClientSession() as session, FakeRtzrServer(backend) as server:
        token = await token_of(session, server.base_url)
        answers = await asyncio.gather(*(upload(session, server.base_url, token, audio.getvalue()) for _ in range(50)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 10 + [429] * 40, statuses  # all 50 were let in: the check raced the decoding
    assert {body["code"] for status, body in answers if status == 429} == {"A0002"}
    assert backend.batch.decoding == {}  # every place taken while decoding was given back
