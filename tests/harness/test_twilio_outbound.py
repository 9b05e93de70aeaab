"""A call the handler places through the fake Calls API with the real twilio SDK (``calls.create(to=..., url=... or
twiml=...)``), dialled as Twilio dials it: queued, ringing, answered, its ``Url`` fetched with the outbound form (signed,
with its ``Method``) or its ``Twiml`` read, to the stream the caller's audio plays into. And a fixture's ``start``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from harness.errors import FixtureError, HarnessError
from harness.fakes.llm import FakeLlm
from harness.fakes.tts import FakeTts
from harness.fakes import twilio_outbound
from harness.fakes.twilio_call import PlaceStart, outbound_number
from harness.fakes.twilio_outbound import PlaceCall
from harness.fakes.twilio_player import TwilioPlayer, new_call_sid
from harness.fixture import CallerBehaviour, bundled_calls, load_call
from harness.judge.verdict import Verdict
from harness.replay.runner import replay
from tests.support.twilio_handler import OWN_NUMBER, small_handler

SEED = bundled_calls() / "seed-three-turns"


def short_call():
    """The seed call's caller, who hangs up after a second (no bot answers in these tests)."""
    return dataclasses.replace(load_call(SEED), caller=CallerBehaviour(hangup_ms=1000))


async def place(handler, fake, fixture=None):
    sid = new_call_sid()
    async with aiohttp.ClientSession() as session:
        player = TwilioPlayer(session, "ws://127.0.0.1:9/unused", fixture or short_call(), pace=None, call_sid=sid,
                              start=PlaceStart(PlaceCall(f"{handler.base}/call"), fake))
        record = await player.run()
    return sid, record


async def test_a_call_placed_with_inline_twiml_is_dialled_and_the_caller_streamed():
    async with small_handler(place_with="twiml") as (handler, fake):
        sid, record = await place(handler, fake)
        await handler.stream_closed.wait()
    call = fake.calls[sid]  # the SID the runner called it by from the start
    assert (call.direction, call.to, call.from_) == ("outbound-api", outbound_number(sid), OWN_NUMBER)
    assert [status for status, _ in call.history] == ["queued", "ringing", "in-progress", "completed"]
    times = dict(call.history)
    assert call.start_time == times["ringing"] and call.end_time == times["completed"]  # dialled, then hung up
    assert call.date_created == times["queued"] and call.date_updated == times["completed"]
    [stream] = handler.streams
    start = next(m for m in stream if m["event"] == "start")["start"]
    assert start["callSid"] == sid and start["customParameters"] == {"caller": outbound_number(sid)}
    assert sum(m["event"] == "media" for m in stream) == 50 and stream[-1]["event"] == "stop"  # 1 s of the caller
    assert record.hung_up_how == "stop" and handler.voice_forms == []  # nothing fetched: the TwiML came inline


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_call_placed_with_a_url_fetches_it_as_twilio_does(method):
    async with small_handler(place_with="url", method=method) as (handler, fake):
        sid, record = await place(handler, fake)
    [(used, form, signed)] = handler.voice_forms
    assert used == method and signed  # the Method given, signed as RequestValidator checks it
    assert {k: form[k] for k in ("CallSid", "Direction", "CallStatus", "From", "To")} == {
        "CallSid": sid, "Direction": "outbound-api", "CallStatus": "in-progress", "From": OWN_NUMBER,
        "To": outbound_number(sid)}
    assert fake.calls[sid].status == "completed" and record.frame_sent.size


async def test_a_handler_that_does_not_place_the_call_fails_naming_what_was_awaited(monkeypatch):
    monkeypatch.setattr(twilio_outbound, "PLACE_WAIT_S", 0.5)
    async with small_handler(place_with="nothing") as (handler, fake):
        with pytest.raises(HarnessError, match=r"no POST \.\.\./Calls\.json with To=\+8210\d{8} .* took no POST"):
            await place(handler, fake)
    async with small_handler(place_with="twiml", place_to="+821099999999") as (handler, fake):  # a wrong number
        with pytest.raises(HarnessError, match=r"the creates it took: To='\+821099999999' answered 201"):
            await place(handler, fake)
        assert fake.core.reserved == {}  # the reservation is let go of
        [wrong] = fake.calls.values()
        assert wrong.status == "queued"  # nobody dials a call the harness did not ask for


def test_the_number_can_go_in_the_endpoints_path_too():
    assert PlaceCall("http://127.0.0.1:8080/calls/{to}").url_for("+821012345678") == \
        "http://127.0.0.1:8080/calls/%2B821012345678"
    assert PlaceCall("http://127.0.0.1:8080/call").url_for("+821012345678") == "http://127.0.0.1:8080/call"


async def test_a_place_endpoint_that_fails_is_said_with_its_status():
    async with small_handler() as (handler, fake):
        async with aiohttp.ClientSession() as session:
            player = TwilioPlayer(session, "ws://127.0.0.1:9/unused", short_call(), pace=None,
                                  start=PlaceStart(PlaceCall(f"{handler.base}/no-such-route"), fake))
            with pytest.raises(HarnessError, match=r"place-call endpoint answered HTTP 404 for POST .*/no-such-route"):
                await player.run()


def _with_start(tmp_path: Path, start: object) -> Path:
    directory = tmp_path / f"seed-{start}"
    shutil.copytree(SEED, directory)
    doc = json.loads((directory / "call.json").read_text(encoding="utf-8"))
    doc["start"] = start
    (directory / "call.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return directory


def test_a_fixture_says_how_its_call_starts_and_a_wrong_value_is_named(tmp_path):
    assert load_call(SEED).start is None  # the run's options decide
    assert load_call(_with_start(tmp_path, "outbound")).start == "outbound"
    with pytest.raises(FixtureError, match=r"call\.json: start: 'inbound' is not one of "
                                           r"\['stream', 'webhook', 'outbound'\]"):
        load_call(_with_start(tmp_path, "inbound"))


@pytest.mark.parametrize("start, option", [("outbound", "--place"), ("webhook", "--voice")])
async def test_a_call_whose_start_the_run_cannot_give_is_not_judged_and_says_why(tmp_path, start, option):
    from fakertzr import FakeRtzrBackend

    fixture = load_call(_with_start(tmp_path, start))
    run = await replay(fixture, "ws://127.0.0.1:9/never-dialled", rtzr=FakeRtzrBackend(), llm=FakeLlm(), tts=FakeTts())
    assert run.verdict is Verdict.NOT_JUDGED
    assert f'"start": "{start}"' in run.not_judged_why and f"give {option} PATH|URL" in run.not_judged_why
