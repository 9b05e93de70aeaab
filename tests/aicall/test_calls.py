"""Whole calls through aicall: fake Twilio -> aicall -> fakertzr / fake LLM / fake TTS, all in-process."""

from __future__ import annotations

import logging
import subprocess
import sys

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from aicall import twilio
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer, load_fixture
from harness.fakes.llm import FakeLlm, FakeLlmConfig
from harness.fakes.tts import FakeTts, FakeTtsConfig
from harness.fakes.twilio_line import TwilioLine

from ..support.aicall_stack import SEED, TEST_CALL_SID, Stack, env_for, running_stack

TEXTS = ["안녕하세요 반갑습니다", "그냥 잘 지냅니다", "아직 안 먹었어요"]
SCRIPT = load_fixture(SEED)


def audio(start_ms: float, end_ms: float) -> np.ndarray:
    return SCRIPT.audio[int(start_ms * 8) : int(end_ms * 8)]


def turn_audio(k: int) -> np.ndarray:
    """Caller audio from where turn k's speech may start to 700 ms after it ends (epd 0.5 s)."""
    start = 0 if k == 0 else SCRIPT.utterances[k - 1].end_ms + 700
    return audio(start, SCRIPT.utterances[k].end_ms + 700)


@pytest_asyncio.fixture
async def stack(tmp_path, request):
    marker = request.node.get_closest_marker("stack")
    async with running_stack(tmp_path, **(marker.kwargs if marker else {})) as running:
        yield running


async def talk(call: TwilioLine, turns: int) -> None:
    for k in range(turns):
        await call.play(turn_audio(k))
        await call.wait_for(lambda c: f"t{k + 1}s1" in c.marks())


def asked(stack: Stack) -> list[str]:
    return [r.last_user for r in stack.llm.requests]


async def test_a_three_turn_call(stack, caplog):
    caplog.set_level(logging.INFO, logger="aicall")
    async with stack.driver() as call:
        await talk(call, 3)
        await call.dtmf("5")
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
    assert asked(stack) == TEXTS, "every final given to the LLM exactly once, in order"
    assert [r.text for r in stack.tts.requests][:2] == ["네, 말씀하신 '안녕하세요 반갑습니다' 잘 들었습니다.", "더 도와드릴까요?"]
    assert len(call.events("media")) > 0 and call.marks()[:2] == ["t1s0", "t1s1"]
    assert call.after_stop() == [], "nothing is sent after the call ends"
    summary, lines = stack.store.call(TEST_CALL_SID)
    assert [l.text for l in lines if l.role == "caller"] == TEXTS
    assert len([l for l in lines if l.role == "bot"]) == 3 and any(l.text == "DTMF 5" for l in lines)
    assert summary.end_reason == "caller hung up"
    connections = stack.rtzr.journal.connections
    assert len(connections) == 1 and connections[0].text_frames == ["EOS"], "one RTZR stream for the whole call"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    firsts = [r.getMessage() for r in caplog.records if "event=first_media" in r.getMessage()]
    assert len(firsts) == 3 and all("final_to_first_media_ms=" in m for m in firsts)


async def test_recognizer_closing_1000_after_the_first_final_is_survived(stack):
    """Failure 2: the stream ends normally after one utterance; the caller is still heard."""
    stack.rtzr.add_fault({"type": "close", "code": 1000, "after_finals": 1})
    async with stack.driver() as call:
        await talk(call, 3)
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
    assert asked(stack) == TEXTS
    assert len(stack.rtzr.journal.accepted()) == 2


@pytest.mark.stack(llm=FakeLlmConfig(first_token_ms=30_000))
async def test_hang_up_while_the_reply_is_generated(stack, caplog):
    """Failure 3: the call's state goes away while the LLM task still runs - no KeyError, nothing lost."""
    async with stack.driver() as call:
        await call.play(turn_audio(0))
        await stack.llm.wait_for(lambda llm: len(llm.requests) == 1)
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
    assert call.after_stop() == []
    await stack.llm.wait_for(lambda llm: llm.requests[0].abandoned)  # aicall cancelled its request
    assert not stack.llm.requests[0].completed
    _, lines = stack.store.call(TEST_CALL_SID)
    assert [(l.role, l.text, l.note) for l in lines] == [
        ("caller", TEXTS[0], ""), ("bot", "", "call ended while generating")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.stack(tts=FakeTtsConfig(realtime=True, chunk_ms=100))
async def test_hang_up_while_tts_audio_streams(stack, caplog):
    """Failure 4: TTS audio still flowing when the caller hangs up - nothing is sent after close."""
    async with stack.driver() as call:
        await call.play(turn_audio(0))
        await call.wait_for(lambda c: len(c.events("media")) >= 2)
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
    assert call.after_stop() == []
    await stack.tts.wait_for(lambda tts: any(r.abandoned for r in tts.requests))  # TTS work cancelled
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_recognition_refused_mid_call_apologises_and_ends_cleanly(stack, caplog):
    stack.rtzr.add_fault({"type": "close", "code": 1000, "after_finals": 1})
    stack.rtzr.add_fault({"type": "reject_handshake", "status": 401, "times": 2})
    async with stack.driver() as call:
        await call.play(turn_audio(0))
        await call.wait_for(lambda c: "apology" in c.marks() and c.closed.is_set())
    summary, lines = stack.store.call(TEST_CALL_SID)
    assert summary.end_reason == "speech recognition unavailable"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "rtzr_auth_failed" in errors[0] and "fakertzr-secret" not in errors[0]
    apology = sum(len(m["media"]["payload"]) for m in call.events("media")[-5:])
    assert apology > 0
    kinds = [m.get("event") for _, m in call.record.received]
    last_media = len(kinds) - 1 - kinds[::-1].index("media")
    assert all(i < last_media for i, k in enumerate(kinds) if k == "clear"), \
        f"a clear after the apology empties Twilio's buffer before the caller hears it: {kinds[-6:]}"


@pytest.mark.stack(tts=FakeTtsConfig(realtime=True, chunk_ms=100, ms_per_char=200))
async def test_barge_in_clears_playback_and_answers_the_new_words(stack):
    async with stack.driver(hold_marks=True) as call:
        await call.play(turn_audio(0))
        await call.wait_for(lambda c: len(c.events("media")) >= 1)
        await call.play(turn_audio(1))  # the caller talks over the reply
        await call.wait_for(lambda c: len(c.events("clear")) >= 1)
        await stack.llm.wait_for(lambda llm: len(llm.requests) == 2)
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
    assert asked(stack) == TEXTS[:2]
    _, lines = stack.store.call(TEST_CALL_SID)
    assert any("interrupted" in l.note or "playback cleared" in l.text for l in lines)


@pytest.mark.stack(env={"TWILIO_AUTH_TOKEN": "tw-secret", "PUBLIC_URL": "https://calls.example.com"})
async def test_unsigned_requests_are_refused_and_signed_ones_served(stack):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stack.session.ws_connect(f"{stack.url}/twilio/media")
    assert refused.value.status == 403
    signature = twilio.compute_signature("tw-secret", "wss://calls.example.com/twilio/media")
    async with stack.driver(headers={"X-Twilio-Signature": signature}) as call:
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
    form = {"CallSid": "CA1", "From": "+821012345678"}
    voice_sig = twilio.compute_signature("tw-secret", "https://calls.example.com/twilio/voice", form)
    async with stack.session.post(f"{stack.base}/twilio/voice", data=form) as resp:
        assert resp.status == 403
    async with stack.session.post(f"{stack.base}/twilio/voice", data=form, headers={"X-Twilio-Signature": voice_sig}) as resp:
        xml = await resp.text()
    assert resp.status == 200 and 'url="wss://calls.example.com/twilio/media"' in xml and 'value="+821012345678"' in xml


async def test_more_calls_than_an_http_pool_holds_each_get_their_rtzr_stream(stack):
    """Every call holds one RTZR WebSocket for its whole length: 110 calls at once each get theirs. (An uplink on
    aiohttp's default session, a pool of 100 connections, starved the 101st call: found by harness load.)"""
    from harness.fakes.twilio_line import TwilioLine

    stack.rtzr.update_config({"max_streams": 1000})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as twilio:  # Twilio has no such pool
        calls = [TwilioLine(twilio, f"{stack.url}/twilio/media", call_sid=f"CA{i:032x}", stream_sid=f"MZ{i:032x}",
                            pace=None) for i in range(110)]
        opened = []
        try:
            for call in calls:
                opened.append(await call.open())
            await stack.rtzr.wait_for(lambda j: sum(1 for c in j.connections if c.accepted and not c.closed) == 110, 30)
        finally:
            for call in opened:
                await call.stop()
            for call in opened:
                await call.wait_for(lambda c: c.closed.is_set())


async def test_calls_and_show_read_the_store(stack, tmp_path):
    async with stack.driver() as call:
        await talk(call, 1)
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
    env = {"AICALL_DB": str(tmp_path / "calls.db"), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([sys.executable, "-m", "aicall.cli", "calls"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and TEST_CALL_SID in listed.stdout and "caller hung up" in listed.stdout
    shown = subprocess.run([sys.executable, "-m", "aicall.cli", "show", TEST_CALL_SID], capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and TEXTS[0] in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "aicall.cli", "show", "CAnope"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_missing_credentials_stop_serve_before_the_port_opens(tmp_path):
    """Failure 1 shows at deploy time, never mid-call."""
    result = subprocess.run([sys.executable, "-m", "aicall.cli", "serve", "--port", "0"], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "k"}, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("aicall: error: not set: RTZR_CLIENT_ID (the client id from the RTZR developer console); "
                                     "RTZR_CLIENT_SECRET (the client secret from the RTZR developer console)")
    assert result.stdout == ""


async def test_check_says_what_works_and_what_does_not(tmp_path):
    import asyncio

    rtzr = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0))
    llm, tts = FakeLlm(), FakeTts()
    async with FakeRtzrServer(rtzr) as r, llm.server() as l, tts.server() as t:
        async def check(**extra: str) -> tuple[int, str]:
            env = {"PATH": "/usr/bin:/bin", **env_for(r.base_url, l.base_url, t.base_url, **extra)}
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "aicall.cli", "check", env=env, cwd=tmp_path,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode, out.decode()

        code, out = await check()
        assert code == 0 and out.count(" ok: ") == 3, out
        code, out = await check(RTZR_CLIENT_SECRET="wrong")
        assert code == 1 and "RTZR   FAILED: RTZR token request refused: HTTP 401 H0002" in out and "wrong" not in out
        assert "LLM    ok" in out
