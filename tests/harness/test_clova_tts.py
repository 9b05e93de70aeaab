"""The fake TTS's second dialect, Naver CLOVA Voice Premium (harness.fakes.clova_tts): asked as a CLOVA client
asks (form-encoded, the two NCP gateway headers), it answers mp3 or wav of the request's tone at the documented
rate, journals it beside OpenAI's requests, refuses in NCP's envelope, and keeps the scripts' stalls."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile

from harness.fakes.clova_tts import CLOVA_PATH, SPEAKERS, ClovaAsk, ClovaRefusal, parse_ask
from harness.fakes.tts import TONES_HZ, FakeTts, FakeTtsConfig

KEYS = {"X-NCP-APIGW-API-KEY-ID": "any-id", "X-NCP-APIGW-API-KEY": "any-secret"}
TEXT = "안녕하세요"  # 5 characters: 300 ms of tone at the fake's 60 ms a character


async def clova(tts: FakeTts, form: dict[str, str] | None, headers: dict[str, str] | None = None,
                **post: Any) -> tuple[int, str, bytes]:
    """POST ``form`` to the fake's CLOVA endpoint as a CLOVA client does; (status, content type, body)."""
    if form is not None:
        post["data"] = form
    async with tts.server() as server, aiohttp.ClientSession() as session:
        async with session.post(f"{server.base_url}{CLOVA_PATH}", headers=KEYS if headers is None else headers,
                                **post) as response:
            return response.status, response.content_type, await response.read()


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(float)))
    return float(np.argmax(spectrum) * rate / len(pcm))


@pytest.mark.parametrize("form, content_type, rate", [
    ({"format": "wav"}, "audio/wav", 24000),
    ({"format": "wav", "sampling-rate": "8000"}, "audio/wav", 8000),
    ({"format": "wav", "sampling-rate": "48000"}, "audio/wav", 48000),
    ({}, "audio/mpeg", 24000),  # mp3 by default
])
async def test_clova_speaks_the_requests_tone_at_the_asked_rate(form: dict[str, str], content_type: str,
                                                               rate: int) -> None:
    tts = FakeTts()
    status, got_type, body = await clova(tts, {"speaker": "nara", "text": TEXT, "volume": "0", **form})
    assert status == 200 and got_type == content_type, body[:200]
    pcm, got_rate = soundfile.read(io.BytesIO(body), dtype="int16")
    entry = tts.requests[0]
    assert got_rate == rate
    assert abs(len(pcm) / rate - 0.060 * len(TEXT)) < 0.06 and entry.audio_s == pytest.approx(0.3)
    assert abs(peak_hz(pcm, rate) - entry.tone_hz) < 8, "the caller hears the journaled request's tone"
    assert (entry.text, entry.dialect, entry.status, entry.completed) == (TEXT, "clova", 200, True)
    assert entry.response_format == form.get("format", "mp3") and entry.bytes_sent == len(body)


async def test_openai_and_clova_requests_share_one_journal_and_one_run_of_tones() -> None:
    tts = FakeTts()
    async with tts.server() as server, aiohttp.ClientSession() as session:
        speech = {"model": "tts-1", "voice": "alloy", "input": "네", "response_format": "pcm"}
        async with session.post(f"{server.base_url}/v1/audio/speech", json=speech) as r:
            assert r.status == 200 and r.content_type == "audio/pcm"
        async with session.post(f"{server.base_url}{CLOVA_PATH}", data={"speaker": "nminsang", "text": "네"},
                                headers=KEYS) as r:
            assert r.status == 200
    assert [(r.dialect, r.tone_hz) for r in tts.requests] == [("openai", TONES_HZ[0]), ("clova", TONES_HZ[1])]


@pytest.mark.parametrize("form, code", [
    ({"text": TEXT}, "VS01"),
    ({"speaker": "alloy", "text": TEXT}, "VS02"),
    ({"speaker": "nara"}, "VS05"),
    ({"speaker": "nara", "text": ""}, "VS05"),
    ({"speaker": "nara", "text": "  "}, "VS05"),
    ({"speaker": "nara", "text": "가" * 2001}, "VS06"),
    ({"speaker": "clara", "text": "a" * 3001}, "VS06"),
    ({"speaker": "nara", "text": TEXT, "volume": "6"}, "VS07"),
    ({"speaker": "nara", "text": TEXT, "speed": "11"}, "VS04"),
    ({"speaker": "nara", "text": TEXT, "pitch": "high"}, "VS08"),
    ({"speaker": "nara", "text": TEXT, "alpha": "-6"}, "VS09"),
    ({"speaker": "nara", "text": TEXT, "format": "ogg"}, "VSXX"),
    ({"speaker": "nara", "text": TEXT, "format": "wav", "sampling-rate": "44100"}, "VSXX"),
    ({"speaker": "nara", "text": TEXT, "emotion": "4"}, "VSXX"),
])
async def test_clova_refuses_in_its_own_shape(form: dict[str, str], code: str) -> None:
    tts = FakeTts()
    status, content_type, body = await clova(tts, form)
    error = json.loads(body)["error"]
    assert status == 400 and content_type == "application/json"
    assert error["errorCode"] == code and error["message"], error
    entry = tts.requests[0]
    assert (entry.status, entry.dialect, entry.tone_hz, entry.bytes_sent) == (400, "clova", 0.0, 0)
    assert code in entry.error and entry.ended_at is not None


@pytest.mark.parametrize("headers", [
    {},
    {"X-NCP-APIGW-API-KEY-ID": "id"},
    {"X-NCP-APIGW-API-KEY": "secret"},
    {"X-NCP-APIGW-API-KEY-ID": "", "X-NCP-APIGW-API-KEY": "secret"},
])
async def test_missing_credentials_get_the_gateways_401(headers: dict[str, str]) -> None:
    tts = FakeTts()
    status, _, body = await clova(tts, {"speaker": "nara", "text": TEXT}, headers)
    error = json.loads(body)["error"]
    assert status == 401 and (error["errorCode"], error["message"]) == ("200", "Authentication Failed")
    assert tts.requests[0].status == 401 and tts.requests[0].text == TEXT, "the refused request is journaled"


async def test_a_json_body_is_not_a_clova_form() -> None:
    tts = FakeTts()
    status, _, body = await clova(tts, None, json={"speaker": "nara", "text": TEXT})
    error = json.loads(body)["error"]
    assert status == 400 and error["errorCode"] == "VS01" and "x-www-form-urlencoded" in error["details"]


async def test_a_body_that_is_not_utf8_gets_the_gateways_400() -> None:
    tts = FakeTts()
    form = {"Content-Type": "application/x-www-form-urlencoded", **KEYS}
    status, _, body = await clova(tts, None, form, data=b"speaker=nara&text=\xff\xfe")
    assert status == 400 and json.loads(body)["error"]["errorCode"] == "100" and tts.requests[0].status == 400


async def test_a_scripted_stall_holds_a_clova_request() -> None:
    tts = FakeTts(FakeTtsConfig(stall_requests={0}, stall_s=0.3))
    started = time.monotonic()
    status, _, body = await clova(tts, {"speaker": "nara", "text": TEXT, "format": "wav"})
    assert status == 200 and soundfile.info(io.BytesIO(body)).samplerate == 24000
    assert time.monotonic() - started >= 0.3 and tts.requests[0].stalled_until is not None


async def test_a_clova_request_is_routed_to_its_calls_script() -> None:
    tts = FakeTts()

    def route(entry: Any) -> FakeTtsConfig:
        entry.lane = "CA-one"
        return FakeTtsConfig(ms_per_char=120.0)

    tts.route = route
    status, _, body = await clova(tts, {"speaker": "nara", "text": TEXT, "format": "wav", "sampling-rate": "16000"})
    info = soundfile.info(io.BytesIO(body))
    assert status == 200 and info.samplerate == 16000 and info.frames == 16000 * 0.120 * len(TEXT)
    assert tts.requests[0].lane == "CA-one" and tts.requests[0].audio_s == pytest.approx(0.6)


def test_parse_ask_fills_the_documented_defaults() -> None:
    ask = parse_ask({"speaker": "vara", "text": TEXT, "emotion": "2"})
    assert isinstance(ask, ClovaAsk) and (ask.format, ask.sample_rate) == ("mp3", 24000)
    assert ask.options == {"volume": 0, "speed": 0, "pitch": 0, "emotion": 2, "emotion-strength": 1, "alpha": 0,
                           "end-pitch": 0}
    assert isinstance(parse_ask({"speaker": "nara", "text": TEXT, "speed": "10"}), ClovaAsk), "speed runs to 10"
    assert isinstance(parse_ask({"speaker": "nara", "text": TEXT, "speed": "+1"}), ClovaRefusal)
    assert all(language in {"ko", "en", "ja", "zh", "es"} for language in SPEAKERS.values())
