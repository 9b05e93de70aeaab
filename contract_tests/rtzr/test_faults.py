"""Faults over real sockets: what a client sees, and what the journal says."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from . import client
from .test_streaming import SEED_TEXTS, pcm


async def test_close_1000_after_the_first_final_then_a_reconnect_goes_on(rtzr, seed):
    """The report's failure 2: the recognizer ends the stream normally after one final."""
    rtzr.fake.add_fault({"type": "close", "code": 1000, "after_finals": 1})
    first = await client.stream(await rtzr.connect(), pcm(seed), eos=False)
    assert first.finals == SEED_TEXTS[:1] and first.close_code == 1000
    resumed = seed.utterances[0].end_ms + 600
    second = await client.stream(await rtzr.connect(), pcm(seed, resumed))
    assert second.finals == SEED_TEXTS[1:]
    ends = [c.ended["how"] for c in rtzr.fake.journal.connections]
    assert ends == ["server_closed", "server_closed"]


@pytest.mark.parametrize("code", [1000, 1001, 1011])
async def test_close_with_a_code_at_an_audio_point(rtzr, seed, code):
    rtzr.fake.add_fault({"type": "close", "code": code, "at_ms": 4500})
    outcome = await client.stream(await rtzr.connect(), pcm(seed), eos=False)
    assert outcome.close_code == code
    assert outcome.finals == SEED_TEXTS[:1]
    assert rtzr.fake.journal.connections[-1].faults_fired[0]["type"] == "close"


async def test_drop_closes_without_a_close_frame(rtzr, seed):
    rtzr.fake.add_fault({"type": "drop", "after_finals": 1})
    outcome = await client.stream(await rtzr.connect(), pcm(seed), eos=False)
    assert outcome.finals == SEED_TEXTS[:1]
    assert outcome.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE
    assert rtzr.fake.journal.connections[-1].ended["how"] == "dropped"


async def test_stall_keeps_the_socket_open_and_sends_nothing(rtzr, seed):
    rtzr.fake.add_fault({"type": "stall", "after_finals": 1})
    ws = await rtzr.connect()
    outcome = client.StreamOutcome()
    reader = asyncio.create_task(client.collect(ws, outcome))
    await ws.send_bytes(pcm(seed))
    await ws.send_str("EOS")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(reader), 1.0)  # no final, no close: the stall
    assert outcome.finals == SEED_TEXTS[:1] and not ws.closed
    await ws.close()
    await reader
    assert rtzr.fake.journal.connections[-1].ended["how"] == "stalled"


async def test_delayed_finals_wait_their_delay(rtzr, seed):
    rtzr.fake.update_config({"time_scale": 1.0})
    rtzr.fake.add_fault({"type": "delay_finals", "delay_ms": 150})
    outcome = await client.stream(await rtzr.connect(), pcm(seed))
    assert outcome.finals == SEED_TEXTS
    for message in rtzr.fake.journal.connections[-1].finals:
        assert message.delay_ms == 150
        assert message.sent_wall - message.due_wall >= 0.150 - 0.002  # never early


async def test_malformed_message_reaches_the_client(rtzr, seed):
    rtzr.fake.add_fault({"type": "malformed", "at_ms": 1000, "payload": "{oops"})
    outcome = await client.stream(await rtzr.connect(), pcm(seed))
    assert "{oops" in outcome.messages
    assert outcome.finals == SEED_TEXTS


async def test_token_expiry_mid_call_refuses_the_next_handshake_until_reauth(rtzr, seed):
    rtzr.fake.add_fault({"type": "expire_tokens", "after_finals": 1})
    token = await rtzr.token()
    await client.stream(await rtzr.connect(token=token), pcm(seed))
    status, body = await client.handshake(rtzr.session, rtzr.url(), f"Bearer {token}")
    assert (status, body["code"]) == (401, "H0002")
    assert (await client.handshake(rtzr.session, rtzr.url(), f"Bearer {await rtzr.token()}"))[0] == 101


async def test_faults_from_the_fixture_script_apply(rtzr, seed, tmp_path):
    import json
    import shutil

    from .conftest import SEED_DIR

    target = tmp_path / "closing"
    shutil.copytree(SEED_DIR, target)
    doc = json.loads((target / "call.json").read_text())
    doc["faults"] = [{"type": "close", "code": 1000, "after_finals": 1}]
    (target / "call.json").write_text(json.dumps(doc, ensure_ascii=False))
    rtzr.fake.clear_scripts()
    rtzr.fake.load_fixture(target)
    outcome = await client.stream(await rtzr.connect(), pcm(seed), eos=False)
    assert outcome.finals == SEED_TEXTS[:1] and outcome.close_code == 1000


async def test_a_server_close_waits_for_the_clients_close(rtzr, seed):
    """RFC 6455's closing handshake: after its Close the fake keeps reading (and dropping audio) until the
    client's Close, then closes TCP. Closing TCP at once resets a client that is still sending, and it
    loses what it had not read yet (hardening issue, item 1). Here the client answers late, after more audio."""
    fake = rtzr.require_fake()
    fake.add_fault({"type": "close", "code": 1000, "after_finals": 1})
    ws = await rtzr.session.ws_connect(rtzr.url(), headers={"Authorization": f"Bearer {await rtzr.token()}"},
                                       autoclose=False)
    await ws.send_bytes(pcm(seed))
    finals = []
    async for msg in ws:  # with autoclose off, the server's Close comes up as a message
        if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("final"):
            finals.append(json.loads(msg.data)["alternatives"][0]["text"])
        if msg.type == aiohttp.WSMsgType.CLOSE:
            break
    await fake.wait_for(lambda j: j.connections[0].ended is not None, timeout=10)
    for _ in range(5):
        await ws.send_bytes(b"\x00\x00" * 160)  # still sending when the Close arrived
    await ws.close()  # the late answer
    await fake.wait_for(lambda j: j.connections[0].client_close_code is not None, timeout=10)
    assert finals == SEED_TEXTS[:1]
    assert fake.journal.connections[0].client_close_code == 1000, "the server did not wait for the client's Close"
