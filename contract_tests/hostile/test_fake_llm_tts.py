"""The fake LLM and TTS hold hostile requests (issue 22, item 9): every body is checked before it is used
(a 400 in OpenAI's shape, never a 500 or a cut stream), and neither fake's memory grows with every request
it ever took; their journals are paged as fakertzr's is (``GET /_fake/journal?since=N&limit=N``)."""

from __future__ import annotations

import aiohttp
import pytest

from harness.fakes.llm import FakeLlm
from harness.fakes.tts import CACHED_SAMPLES, FakeTts, _cached_tone

NESTED = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


async def post(url: str, **kwargs) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, **kwargs) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": "include_usage"}, "stream_options"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": "yes"}},
     "stream_options"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ({"messages": "hi"}, "messages"),
])
async def test_the_fake_llm_refuses_a_body_of_the_wrong_shape_before_streaming(body, param):
    fake = FakeLlm()
    async with fake.server() as server:
        status, raw = await post(f"{server.base_url}/v1/chat/completions", json=body)
        assert status == 400 and f'"param": "{param}"'.encode() in raw, raw
        status, raw = await post(f"{server.base_url}/v1/chat/completions", data=NESTED,
                                 headers={"Content-Type": "application/json"})
        assert status == 400 and b"messages" in raw, (status, raw[:200])  # it was a 500


async def test_the_fake_tts_refuses_a_response_format_that_is_no_string():
    fake = FakeTts()
    async with fake.server() as server:
        for body in ({"input": "네", "response_format": {"type": "wav"}}, {"input": "네", "response_format": ["wav"]}):
            status, raw = await post(f"{server.base_url}/v1/audio/speech", json=body)
            assert status == 400 and b"response_format" in raw, (status, raw[:200])  # it was a 500
        status, raw = await post(f"{server.base_url}/v1/audio/speech", data=NESTED, headers={"Content-Type": "application/json"})
        assert status == 400, (status, raw[:200])


async def test_the_journals_keep_the_last_requests_and_count_what_they_let_go():
    fake = FakeLlm()
    fake.journal_limit = 50
    async with fake.server() as server, aiohttp.ClientSession() as session:
        for k in range(120):
            body = {"messages": [{"role": "user", "content": f"{k} " + "가" * 40_000}], "stream": False}
            async with session.post(f"{server.base_url}/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                await resp.read()
        async with session.get(f"{server.base_url}/_fake/journal", params={"since": 80, "limit": 20}) as resp:
            page = await resp.json()
        async with session.get(f"{server.base_url}/_fake/journal", headers={"Origin": "http://evil.example"}) as resp:
            assert resp.status == 403  # fakertzr's control guard: no web page reads the journal
    assert len(fake.requests) == 50 and fake.dropped == 70 and fake.received == 120
    assert [r["index"] for r in page["requests"]] == list(range(80, 100)) and page["next"] == 100
    assert (page["total"], page["dropped"]) == (120, 70)
    assert fake.requests[-1].last_user.startswith("119 ") and len(fake.requests[-1].last_user) == 16_000
    fake.clear()
    assert fake.requests == [] and fake.received == 0  # a fixture's "request 0" is the first after a clear


async def test_long_tts_answers_are_not_kept_after_they_are_sent():
    fake = FakeTts()
    fake.config.ms_per_char = 120  # 4096 characters: 8 minutes of speech, 23 MB of WAV
    _cached_tone.cache_clear()
    async with fake.server() as server, aiohttp.ClientSession() as session:
        for k in range(3):
            async with session.post(f"{server.base_url}/v1/audio/speech",
                                    json={"input": "네" * 4096, "response_format": "wav"}) as resp:
                assert resp.status == 200 and len(await resp.read()) > 20_000_000
    assert fake.samples_for("네" * 4096) > CACHED_SAMPLES and _cached_tone.cache_info().currsize == 0
