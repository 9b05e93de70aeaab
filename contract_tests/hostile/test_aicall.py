"""aicall holds every hostile input of issue 11: malformed Twilio messages, sockets that never start or go
silent, forged callSids, repeated callSids. The caller never hears a crash and every call is persisted."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys

import aiohttp
import pytest

from aicall import twilio
from aicall.app import wait_for_calls_to_end
from tests.aicall.test_calls import TEXTS, asked, talk, turn_audio
from tests.support.aicall_stack import TEST_CALL_SID, TEST_STREAM_SID, running_stack

START = {"streamSid": TEST_STREAM_SID, "accountSid": "AC" + "0" * 32, "callSid": TEST_CALL_SID, "tracks": ["inbound"],
         "customParameters": {"caller": "+821012345678"},
         "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}


def start_with(**changes) -> str:
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": TEST_STREAM_SID,
                       "start": {**START, **changes}})


HOSTILE = {  # each one killed a call before (traceback, close 1006)
    "stop as a string": '{"event": "stop", "stop": "x"}',
    "sampleRate 1e999": start_with(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 1e999}),
    "media timestamp 1e999": '{"event": "media", "media": {"payload": "/w==", "timestamp": 1e999}}',
    "nested JSON": "[" * 100_000,
    "callSid an object": start_with(callSid={"a": 1}),
    "customParameters a list": start_with(customParameters=["caller"]),
    "mediaFormat a string": start_with(mediaFormat="audio/x-mulaw"),
    "start a list": '{"event": "start", "start": ["x"]}',
    "mark name an object": '{"event": "mark", "mark": {"name": {"a": 1}}}',
    "media payload not base64": '{"event": "media", "media": {"payload": "!!!"}}',
    "dtmf digit a list": '{"event": "dtmf", "dtmf": {"digit": ["1"]}}',
    "NaN timestamp": '{"event": "media", "media": {"payload": "/w==", "timestamp": NaN}}',
    "event a number": '{"event": 5}',
    "not an object": "null",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_codec_turns_each_hostile_message_into_unknown(text):
    event = twilio.parse_message(text)
    assert isinstance(event, twilio.Unknown), event
    assert event.why.isprintable() and len(event.why) < 300


async def test_malformed_messages_mid_call_are_logged_once_and_the_call_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="aicall")
    async with running_stack(tmp_path) as stack, stack.driver() as call:
        tasks_before = len(asyncio.all_tasks())
        await talk(call, 1)
        for text in HOSTILE.values():
            await call.ws.send_str(text)
        await call.ws.send_bytes(b"\x00" * 160)
        await talk_turn(call, 1)
        await call.stop()
        await call.wait_for(lambda c: c.closed.is_set())
        assert await wait_for_calls_to_end(stack.app, 10)
        assert asked(stack) == TEXTS[:2], "the turn after the junk was answered"
        summary, lines = stack.store.call(TEST_CALL_SID)
        assert summary.end_reason == "caller hung up" and [l.text for l in lines if l.role == "caller"] == TEXTS[:2]
        assert call.ws.close_code != 1006
        await call.wait_for(lambda c: c.closed.is_set())
        assert len(asyncio.all_tasks()) <= tasks_before, [t.get_coro() for t in asyncio.all_tasks()]
    bad = [r.getMessage() for r in caplog.records if "twilio_bad_message" in r.getMessage()]
    assert len(bad) == 2 and f"count={len(HOSTILE) + 1}" in bad[1], bad  # the first, then a count
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def talk_turn(call, k: int) -> None:
    """The caller says turn ``k`` (0-based) and hears its answer."""
    await call.play(turn_audio(k))
    await call.wait_for(lambda c: f"t{k + 1}s1" in c.marks())


async def test_sockets_that_never_send_a_valid_start_are_closed(tmp_path):
    async with running_stack(tmp_path, env={"AICALL_START_TIMEOUT_S": "0.3"}) as stack:
        async with stack.session.get(f"{stack.base}/healthz") as resp:  # its keep-alive connection: in the baseline
            assert (await resp.json())["sockets"] == 0
        tasks_before = len(asyncio.all_tasks())
        starts = [None, start_with(callSid=None), start_with(callSid={"a": 1}), HOSTILE["start a list"],
                  start_with(callSid="CA" + "0" * 31 + "\n")]
        sockets = []
        for i in range(40):
            ws = await stack.session.ws_connect(f"{stack.url}/twilio/media")
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            if starts[i % len(starts)]:
                await ws.send_str(starts[i % len(starts)])
            sockets.append(ws)
        async with stack.session.get(f"{stack.base}/healthz") as resp:
            health = await resp.json()
        assert health["calls"] == 0, "a socket that has not started is not a call"
        for ws in sockets:
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 1008
        assert await wait_for_calls_to_end(stack.app, 10)
        assert stack.store.recent() == [] and stack.rtzr.journal.total == 0, "no call, no RTZR stream"
        for ws in sockets:
            await ws.close()
        assert len(asyncio.all_tasks()) <= tasks_before, [t.get_coro() for t in asyncio.all_tasks()]


async def test_a_call_whose_twilio_side_goes_silent_is_ended_and_persisted(tmp_path):
    async with running_stack(tmp_path, env={"AICALL_TWILIO_SILENCE_S": "1"}) as stack, stack.driver() as call:
        await talk(call, 1)
        await call.wait_for(lambda c: c.closed.is_set(), timeout=15)  # nothing more sent: aicall ends it
        assert await wait_for_calls_to_end(stack.app, 10)
        summary, lines = stack.store.call(TEST_CALL_SID)
        assert summary.end_reason == "twilio went silent" and [l.text for l in lines if l.role == "caller"] == TEXTS[:1]
        await stack.rtzr.wait_for(lambda j: all(c.closed for c in j.connections))


async def test_a_call_that_keeps_sending_outlives_the_silence_limit(tmp_path):
    """The silence watchdog looks at when Twilio last sent: a call twice as long as the limit, a frame every
    50 ms as Twilio paces them (20 ms), is not ended by it."""
    async with running_stack(tmp_path, env={"AICALL_TWILIO_SILENCE_S": "1"}) as stack, stack.driver() as call:
        silence = base64.b64encode(b"\xff" * 160).decode()
        for _ in range(40):
            assert await call.send_media(silence), "aicall ended the call"
            await asyncio.sleep(0.05)  # pacing the caller's frames in real time, not waiting for anything
        await call.stop()
        assert await wait_for_calls_to_end(stack.app, 10)
        summary, _ = stack.store.call(TEST_CALL_SID)
        assert summary.end_reason == "caller hung up"


async def test_forged_values_reach_no_log_line_or_terminal_raw(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="aicall")
    forged = "CA" + "0" * 32 + "\n2026-01-01 ERROR aicall call=CAx event=forged \x1b[31m\x1b]0;pwned\x07"
    async with running_stack(tmp_path, env={"AICALL_START_TIMEOUT_S": "0.3"}) as stack:
        for call_sid in (forged, "CA" + "f" * 900_000):
            ws = await stack.session.ws_connect(f"{stack.url}/twilio/media")
            await ws.send_str(start_with(callSid=call_sid))
            await ws.receive(timeout=10)
            assert ws.close_code == 1008, "a start with a callSid of the wrong shape starts no call"
        caller = "+8210\n\x1b[2J\x1b]0;pwned\x07\u202e"
        async with stack.driver(caller=caller) as call:
            await talk(call, 1)
            await call.stop()
            await call.wait_for(lambda c: c.closed.is_set())
        assert await wait_for_calls_to_end(stack.app, 10)
    logged = [r.getMessage() for r in caplog.records]
    assert all(m.isprintable() for m in logged), [m for m in logged if not m.isprintable()]
    assert sum(map(len, logged)) < 20_000, "a 900 KB callSid must not make a 900 KB log"
    env = {"AICALL_DB": str(tmp_path / "calls.db"), "PATH": "/usr/bin:/bin"}
    for command in (["calls"], ["show", TEST_CALL_SID], ["show", "CA\x1b[31m"]):
        out = subprocess.run([sys.executable, "-m", "aicall.cli", *command], capture_output=True, text=True, env=env)
        assert "\x1b" not in out.stdout + out.stderr and "\x07" not in out.stdout and "\u202e" not in out.stdout
    assert "+8210\\n\\x1b[2J" in subprocess.run([sys.executable, "-m", "aicall.cli", "calls"], capture_output=True,
                                                 text=True, env=env).stdout


async def test_a_repeated_call_sid_never_merges_two_callers(tmp_path):
    async with running_stack(tmp_path) as stack:
        async with stack.driver(caller="+821011111111") as first:
            await talk(first, 1)
            await first.stop()
            await first.wait_for(lambda c: c.closed.is_set())

        async def second_and_third(caller: str) -> None:
            async with stack.driver(caller=caller) as call:
                await talk(call, 1)
                await call.stop()
                await call.wait_for(lambda c: c.closed.is_set())

        await asyncio.gather(second_and_third("+821022222222"), second_and_third("+821033333333"))
        assert await wait_for_calls_to_end(stack.app, 10)
        streams = stack.store.streams(TEST_CALL_SID)
        assert sorted(s.caller for s, _ in streams) == ["+821011111111", "+821022222222", "+821033333333"]
        for summary, lines in streams:
            assert [l.text for l in lines if l.role == "caller"] == TEXTS[:1], summary
            assert summary.end_reason == "caller hung up"
