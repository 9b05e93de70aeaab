"""aicall's RTZR client against fakertzr: one connection per call, reconnects without losing words."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import pytest_asyncio
from freezegun import freeze_time

from aicall.errors import RtzrAuthError
from aicall.rtzr_client import RecognizerStream, RtzrTokens, StreamConfig
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer, load_fixture

SEED = "fixtures/calls/seed-three-turns"
TEXTS = ["안녕하세요 반갑습니다", "그냥 잘 지냅니다", "아직 안 먹었어요"]


@pytest_asyncio.fixture
async def fake():
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[SEED]))
    async with FakeRtzrServer(backend) as server, aiohttp.ClientSession() as session:
        server.session = session
        yield server


def tokens_for(fake, secret=None):
    cfg = fake.backend.config
    return RtzrTokens(fake.session, fake.base_url, cfg.client_id, secret or cfg.client_secret)


def frames():
    audio = load_fixture(SEED).audio.astype("<i2").tobytes()
    return [audio[i : i + 320] for i in range(0, len(audio), 320)]


async def recognise(fake, tokens=None, before_finish=None):
    finals: list[str] = []
    stream = RecognizerStream(StreamConfig(fake.ws_url), tokens or tokens_for(fake),
                              lambda r: finals.append(r["alternatives"][0]["text"]) if r["final"] else None)
    task = asyncio.create_task(stream.run())
    for frame in frames():
        stream.send_audio(frame)
        await asyncio.sleep(0)  # let the sender run, as a live call would
    if before_finish:
        await before_finish(stream, finals)
    stream.finish()
    await asyncio.wait_for(task, 30)
    return stream, finals


async def test_whole_call_on_one_connection_with_eos(fake):
    stream, finals = await recognise(fake)
    assert finals == TEXTS
    assert stream.connections == 1 and len(fake.backend.journal.accepted()) == 1
    assert fake.backend.journal.connections[0].text_frames == ["EOS"]


async def test_close_1000_after_the_first_final_loses_no_words(fake):
    """The report's failure 2, guarded: reconnect and resend what was not yet transcribed."""
    fake.backend.add_fault({"type": "close", "code": 1000, "after_finals": 1})
    stream, finals = await recognise(fake)
    assert finals == TEXTS
    assert stream.connections == 2
    second = fake.backend.journal.connections[1]
    assert second.alignment[0]["call_ms"] <= 3620, "the new connection starts where the first final ended"


async def test_a_drop_mid_utterance_is_recovered(fake):
    fake.backend.add_fault({"type": "drop", "at_ms": 6200})
    stream, finals = await recognise(fake)
    assert finals == TEXTS and stream.connections == 2


@pytest.mark.parametrize("code", [1001, 1011])
async def test_other_close_codes_reconnect_too(fake, code):
    fake.backend.add_fault({"type": "close", "code": code, "at_ms": 8000})
    _, finals = await recognise(fake)
    assert finals == TEXTS


async def test_handshake_401_drops_the_token_and_retries_once(fake):
    fake.backend.add_fault({"type": "reject_handshake", "status": 401, "connection": 0})
    tokens = tokens_for(fake)
    _, finals = await recognise(fake, tokens)
    assert finals == TEXTS and tokens.fetched == 2


async def test_handshake_401_twice_is_an_auth_error(fake):
    fake.backend.add_fault({"type": "reject_handshake", "status": 401, "times": 2})
    with pytest.raises(RtzrAuthError, match="twice with 401"):
        await recognise(fake)


async def test_wrong_secret_is_an_auth_error_without_the_secret_in_it(fake):
    with pytest.raises(RtzrAuthError) as info:
        await recognise(fake, tokens_for(fake, secret="wrong-secret"))
    assert "H0002" in str(info.value) and "wrong-secret" not in str(info.value)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_token_endpoint_that_fails_for_a_while_is_retried(fake, status):
    """Found by the end-to-end fuzzer: a 5xx from /v1/authenticate used to refuse the call."""
    fake.backend.add_fault({"type": "auth_failure", "status": status, "times": 2})
    tokens = tokens_for(fake)
    _, finals = await recognise(fake, tokens)
    assert finals == TEXTS and tokens.fetched == 1
    assert [a.status for a in fake.backend.journal.auth] == [status, status, 200]


async def test_a_token_endpoint_down_for_good_ends_in_an_auth_error(fake, monkeypatch):
    monkeypatch.setattr("aicall.rtzr_client.TOKEN_UNAVAILABLE_GIVE_UP_S", 0.3)
    fake.backend.add_fault({"type": "auth_failure", "status": 503, "times": 10_000})
    with pytest.raises(RtzrAuthError, match="no RTZR token for 0.3 s: .*HTTP 503"):
        await recognise(fake)


async def test_token_expiry_mid_call_is_survived(fake):
    fake.backend.add_fault({"type": "expire_tokens", "after_finals": 1})
    fake.backend.add_fault({"type": "close", "code": 1000, "after_finals": 1})
    tokens = tokens_for(fake)
    _, finals = await recognise(fake, tokens)
    assert finals == TEXTS and tokens.fetched == 2


async def test_token_is_cached_and_refreshed_before_it_expires(fake):
    tokens = tokens_for(fake)
    with freeze_time(real_asyncio=True) as clock:
        first = await tokens.get()
        clock.tick(3 * 3600)
        assert await tokens.get() == first and tokens.fetched == 1
        clock.tick(3 * 3600 - 200)  # within the refresh margin of the 6 h expiry
        assert await tokens.get() != first and tokens.fetched == 2


async def test_idle_audio_gets_keepalive_silence(fake, monkeypatch):
    import aicall.rtzr_client as rc

    monkeypatch.setattr(rc, "KEEPALIVE_AFTER_S", 0.05)
    fake.backend.update_config({"idle_timeout_s": 0.5})
    backend = fake.backend

    async def pause(stream, finals):
        await backend.wait_for(lambda j: j.connections[-1].audio_frames >= len(frames()) + 3, timeout=10)

    stream, finals = await recognise(fake, before_finish=pause)
    assert finals == TEXTS and stream.connections == 1


async def test_a_stalled_stream_is_abandoned_and_reopened(fake):
    """Found by contract_tests/fuzz: the socket stays open but nothing comes back."""
    fake.backend.add_fault({"type": "stall", "at_ms": 300})
    stream, finals = await recognise(fake)
    assert finals == TEXTS
    assert stream.stalls == 1 and stream.connections == 2
    # the abandoned stream is closed, not left open on RTZR's side (it counts against the key's streams); found
    # on aiohttp's client, whose reader stops at the sender's close(): cancelling the sender then left it open
    stalled = fake.backend.journal.connections[0]
    await fake.backend.wait_for(lambda j: stalled.closed, timeout=5)


async def test_a_long_pause_before_a_word_is_not_a_stall(fake, monkeypatch):
    """Found with the stall-then-line-drops fixture: silence while the caller listens used to count
    towards a stall, so the first word after a pause (its partial comes when it ends) reopened a
    healthy stream. Now only the time since unanswered speech went out counts.

    The line is paced at 2x with STALL_WAIT_S at 0.7 s (1.4 s of audio): the caller is silent for
    2.5 s after the first final, then says a 0.57 s word whose partial comes at its end. (The longest
    gap between two partials of this call is 1.21 s of audio, 0.61 s here: 0.6 s was too close.)
    """
    monkeypatch.setattr("aicall.rtzr_client.STALL_WAIT_S", 0.7)
    finals: list[str] = []
    stream = RecognizerStream(StreamConfig(fake.ws_url), tokens_for(fake),
                              lambda r: finals.append(r["alternatives"][0]["text"]) if r["final"] else None)
    task = asyncio.create_task(stream.run())
    for k, frame in enumerate(frames()[: 7600 // 20]):  # through the second utterance
        stream.send_audio(frame)
        if k % 5 == 4:
            await asyncio.sleep(0.05)  # the simulated line's pace: 100 ms of audio per 50 ms
    stream.finish()
    await asyncio.wait_for(task, 30)
    assert finals == TEXTS[:2]
    assert stream.stalls == 0 and stream.connections == 1


async def test_a_stall_after_an_early_partial_is_noticed_when_audio_outruns_real_time(fake, monkeypatch):
    """Found with the stall-then-line-drops fixture at ``fast`` pace: every frame went out before the
    first partial came back, and that partial reset the whole count, so the speech after the point it
    reached was never counted and the stall never noticed (the second utterance was lost). Speech past
    what a result reached stays unanswered."""
    monkeypatch.setattr("aicall.rtzr_client.STALL_WAIT_S", 0.5)
    fake.backend.add_fault({"type": "stall", "at_ms": 6300})  # inside the second utterance, after its first word
    finals: list[str] = []
    stream = RecognizerStream(StreamConfig(fake.ws_url), tokens_for(fake),
                              lambda r: finals.append(r["alternatives"][0]["text"]) if r["final"] else None)
    task = asyncio.create_task(stream.run())
    for frame in frames()[: 7600 // 20]:  # as fast as it goes: all of it before any result is back
        stream.send_audio(frame)
    await fake.backend.wait_for(lambda j: any(m.kind == "partial" and "그냥" in m.text
                                              for c in j.connections for m in c.messages), timeout=10)
    stream.finish()
    await asyncio.wait_for(task, 30)
    assert stream.stalls == 1 and finals == TEXTS[:2]


async def test_a_final_cut_mid_speech_says_the_caller_talks_on():
    """fakertzr cuts long-utterance at max_utter_duration (12 s): the first final comes while the caller is
    still talking, the second after it stops; the seed's finals all end turns."""
    long = "fixtures/calls/long-utterance"
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[long, SEED]))
    async with FakeRtzrServer(backend) as server, aiohttp.ClientSession() as session:
        for fixture, wanted in ((long, [True, False]), (SEED, [False, False, False])):
            flags: list[bool] = []
            stream = RecognizerStream(StreamConfig(server.ws_url), RtzrTokens(session, server.base_url, backend.config.client_id,
                                      backend.config.client_secret), lambda r: flags.append(stream.caller_talks_on) if r["final"] else None)
            task = asyncio.create_task(stream.run())
            audio = load_fixture(fixture).audio.astype("<i2").tobytes()
            for i in range(0, len(audio), 320):
                stream.send_audio(audio[i : i + 320])
                await asyncio.sleep(0)
            stream.finish()
            await asyncio.wait_for(task, 30)
            assert flags == wanted, fixture
