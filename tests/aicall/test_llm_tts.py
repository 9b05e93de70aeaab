"""LLM and TTS clients against the harness's fake LLM and fake TTS."""

from __future__ import annotations

import shutil

import aiohttp
import numpy as np
import pytest

from aicall.llm import ChatClient, LlmError
from aicall.tts import CHUNK_BYTES, EspeakTts, OpenAiTts, TtsError
from callaudio.g711 import ulaw_to_pcm16
from fakertzr.appserver import AppServer
from harness.fakes.llm import FakeLlm, FakeLlmConfig
from harness.fakes.tts import TONES_HZ, FakeTts


async def test_chat_stream_yields_the_reply_and_is_journaled():
    llm = FakeLlm(FakeLlmConfig(reply=lambda r: "안녕하세요. 반갑습니다!"))
    async with llm.server() as server, aiohttp.ClientSession() as session:
        client = ChatClient(session, f"{server.base_url}/v1", "sk-test", "m")
        deltas = [d async for d in client.stream([{"role": "user", "content": "안녕"}])]
    assert "".join(deltas) == "안녕하세요. 반갑습니다!" and len(deltas) > 1
    assert llm.requests[0].last_user == "안녕" and llm.requests[0].completed


async def test_chat_errors_are_llm_errors_without_the_key():
    llm = FakeLlm(FakeLlmConfig(fail_requests={0: 503}))
    async with llm.server() as server, aiohttp.ClientSession() as session:
        client = ChatClient(session, f"{server.base_url}/v1", "sk-very-secret", "m")
        with pytest.raises(LlmError, match="HTTP 503") as info:
            [d async for d in client.stream([{"role": "user", "content": "x"}])]
    assert "sk-very-secret" not in str(info.value)


async def test_openai_tts_streams_8khz_mulaw_of_the_right_length():
    tts = FakeTts()
    async with tts.server() as server, aiohttp.ClientSession() as session:
        client = OpenAiTts(session, f"{server.base_url}/v1", "k", "tts-1", "alloy", sample_rate=24000)
        chunks = [c async for c in client.synthesize("네 알겠습니다")]
    audio = b"".join(chunks)
    expected_ms = 60.0 * len("네 알겠습니다")
    assert abs(len(audio) / 8 - expected_ms) <= 5
    assert all(len(c) == CHUNK_BYTES for c in chunks[:-1])
    pcm = ulaw_to_pcm16(audio).astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * 8000 / len(pcm) - TONES_HZ[0]) < 10, "the tone survives resampling"


async def test_tts_failure_is_a_tts_error():
    async with AppServer(FakeLlm().app()) as server, aiohttp.ClientSession() as session:  # no /audio/speech
        client = OpenAiTts(session, f"{server.base_url}/v1", "k", "tts-1", "alloy")
        with pytest.raises(TtsError, match="HTTP 404"):
            [c async for c in client.synthesize("x")]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (only the offline engine needs it)")
async def test_espeak_engine_speaks_korean():
    audio = b"".join([c async for c in EspeakTts().synthesize("안녕하세요")])
    assert 300 < len(audio) / 8 < 3000
    assert np.abs(ulaw_to_pcm16(audio).astype(float)).max() > 1000


async def test_an_unreachable_llm_is_named_by_its_url():
    from harness.replay.targets import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    async with aiohttp.ClientSession() as session:
        with pytest.raises(LlmError, match=rf"LLM endpoint {url}/chat/completions unreachable"):
            async for _ in ChatClient(session, url, "sk-secret", "m").stream([{"role": "user", "content": "x"}]):
                pass
