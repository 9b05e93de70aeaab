"""The control API under /_fake/: the same state the in-process fixture offers, over HTTP."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from callaudio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from callaudio.wavfile import mulaw_wav_bytes

from . import client
from .conftest import SEED_DIR
from .test_streaming import SEED_TEXTS, pcm


async def call(rtzr, method, path, body=None):
    async with rtzr.session.request(method, f"{rtzr.base_url}/_fake{path}", json=body) as resp:
        return resp.status, await resp.json()


async def test_state_faults_reset_and_journal_over_http(rtzr, seed):
    rtzr.require_fake()
    status, state = await call(rtzr, "GET", "/state")
    assert status == 200 and state["mode"] == "script" and state["scripts"] == ["seed-three-turns"]
    status, fault = await call(rtzr, "POST", "/faults", {"type": "close", "code": 1011, "after_finals": 2})
    assert status == 200 and fault == {"id": 0, "type": "close", "code": 1011, "after_finals": 2, "times": 1, "fired": 0, "reason": ""}
    outcome = await client.stream(await rtzr.connect(), pcm(seed), eos=False)
    assert outcome.finals == SEED_TEXTS[:2] and outcome.close_code == 1011
    status, journal = await call(rtzr, "GET", "/journal")
    connection = journal["connections"][0]
    assert connection["finals"] == SEED_TEXTS[:2]
    assert connection["ended"]["code"] == 1011 and connection["faults_fired"][0]["type"] == "close"
    assert (await call(rtzr, "DELETE", "/faults/0"))[0] == 200
    assert (await call(rtzr, "DELETE", "/faults/0"))[0] == 400
    assert (await call(rtzr, "POST", "/reset"))[0] == 200
    _, state = await call(rtzr, "GET", "/state")
    assert state["connections"] == 0 and state["faults"] == [] and state["scripts"] == ["seed-three-turns"]


async def test_bad_control_requests_say_why(rtzr):
    rtzr.require_fake()
    status, body = await call(rtzr, "POST", "/faults", {"type": "explode"})
    assert status == 400 and "unknown fault 'explode'" in body["error"]
    status, body = await call(rtzr, "POST", "/scripts", {"fixture_dir": "/nope"})
    assert status == 400 and "no call.json" in body["error"]
    status, body = await call(rtzr, "POST", "/config", {"colour": "red"})
    assert status == 400 and "cannot be changed" in body["error"]
    async with rtzr.session.post(f"{rtzr.base_url}/_fake/faults", data="not json",
                                 headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400 and "invalid JSON" in (await resp.json())["error"]


async def test_streams_are_matched_to_the_fixture_whose_audio_they_carry(rtzr, seed):
    """Two calls at once against one fake: each stream finds its own script by its audio."""
    rng = np.random.default_rng(9)
    other = np.concatenate([rng.normal(0, 30, 8000), rng.normal(0, 5000, 6000), rng.normal(0, 30, 12000)])
    other_ulaw = pcm16_to_ulaw(np.clip(other, -32768, 32767).astype(np.int16))
    doc = {"version": 1, "name": "other-call", "audio": {"file": "caller.wav"},
           "utterances": [{"text": "다른 전화 입니다", "start_ms": 1000, "end_ms": 1750}]}
    wav = base64.b64encode(mulaw_wav_bytes(other_ulaw)).decode()
    status, body = await call(rtzr, "POST", "/scripts", {"call": doc, "audio_b64": wav})
    assert status == 200 and body["scripts"] == ["seed-three-turns", "other-call"]
    other_as_sent = ulaw_to_pcm16(other_ulaw).astype("<i2").tobytes()  # as a handler decodes the call
    a, b = await rtzr.connect(), await rtzr.connect()
    one, two = await asyncio.gather(client.stream(a, pcm(seed)), client.stream(b, other_as_sent))
    assert one.finals == SEED_TEXTS and two.finals == ["다른 전화 입니다"]
    assert sorted(c.script for c in rtzr.fake.journal.connections) == ["other-call", "seed-three-turns"]


async def test_fixture_dir_over_http(rtzr, seed):
    rtzr.fake.clear_scripts()
    status, body = await call(rtzr, "POST", "/scripts", {"fixture_dir": str(SEED_DIR), "replace": True})
    assert status == 200 and body["scripts"] == ["seed-three-turns"]
    assert (await client.stream(await rtzr.connect(), pcm(seed))).finals == SEED_TEXTS
