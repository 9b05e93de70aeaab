"""Bad input never takes the fake down or leaks a task."""

from __future__ import annotations

import asyncio

import aiohttp

from . import client
from .test_streaming import SEED_TEXTS, pcm


async def test_junk_text_frames_and_odd_bytes_do_not_disturb_the_stream(rtzr, seed):
    ws = await rtzr.connect()
    for junk in ("hello", "{", "[]", '{"type":"Nope"}', "null", "\u0000"):
        await ws.send_str(junk)
    await ws.send_bytes(b"\x01")  # half a LINEAR16 sample: carried to the next frame
    await ws.send_bytes(b"\x00")
    outcome = await client.stream(ws, pcm(seed))
    assert outcome.finals == SEED_TEXTS[: len(outcome.finals)] and outcome.close_code == 1000
    if not rtzr.live:
        assert outcome.finals == SEED_TEXTS
        assert rtzr.fake.journal.connections[-1].text_frames[:2] == ["hello", "{"]


async def test_a_frame_over_the_size_limit_closes_that_stream_only(rtzr, seed):
    rtzr.fake.update_config({"max_frame_bytes": 64 * 1024})
    ws = await rtzr.connect()
    await ws.send_bytes(b"\0" * (64 * 1024 + 2))
    msg = await ws.receive(timeout=10)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    outcome = await client.stream(await rtzr.connect(), pcm(seed))
    assert outcome.finals == SEED_TEXTS


async def test_a_client_vanishing_mid_utterance_is_recorded_and_released(rtzr, seed):
    fake = rtzr.fake
    ws = await rtzr.connect()
    await ws.send_bytes(pcm(seed, 0, 2000))
    await fake.wait_for(lambda j: j.connections[-1].audio_ms >= 2000)
    ws._response.connection.transport.abort()  # no close frame, no FIN handshake
    await fake.wait_for(lambda j: j.connections[-1].ended is not None)
    assert fake.journal.connections[-1].ended["how"] == "client_vanished"
    assert fake.active_streams() == 0
    await ws.close()


async def test_thousands_of_connects_and_disconnects_leak_nothing(rtzr, seed):
    fake = rtzr.fake
    fake.update_config({"max_streams": 10_000})
    baseline = len(asyncio.all_tasks())
    token = await rtzr.token()
    frame = pcm(seed, 1000, 1020)

    async def one(i: int) -> None:
        ws = await rtzr.connect(token=token)
        if i % 3:
            await ws.send_bytes(frame)
        if i % 5 == 0:
            ws._response.connection.transport.abort()
        await ws.close()

    total = 0
    for batch in range(20):
        await asyncio.gather(*(one(batch * 100 + i) for i in range(100)))
        total += 100
    await fake.wait_for(lambda j: sum(c.ended is not None for c in j.connections) == total, timeout=60)
    assert fake.active_streams() == 0
    assert len(fake.journal.connections) == total
    assert len(asyncio.all_tasks()) <= baseline + 1, [t.get_name() for t in asyncio.all_tasks()]
    outcome = await client.stream(await rtzr.connect(token=token), pcm(seed))
    assert outcome.finals == SEED_TEXTS
