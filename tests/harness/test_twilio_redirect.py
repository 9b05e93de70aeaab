"""New TwiML given to a live call through the fake Calls API with the real twilio SDK (``calls(sid).update(twiml=...)``
or ``url=``), followed as Twilio follows it: the stream gets ``stop`` and is closed, the new TwiML is followed to
the call's end, the record says the call was redirected, and the judge does not take it for the caller hanging up."""

from __future__ import annotations

import asyncio
import dataclasses
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException

from harness.fakes.twilio_call import WebhookStart
from harness.fakes.twilio_dial import VoiceWebhook
from harness.fakes.twilio_line import PlayerRecord
from harness.fakes.twilio_player import TwilioPlayer, new_call_sid
from harness.fakes.twilio_rest import FakeTwilioRest
from harness.fixture import CallerBehaviour, bundled_calls, load_call
from harness.judge.checks import (CheckContext, expectations, refuses_without_credentials, run_checks,
                                  stops_sending_after_hangup)
from harness.judge.events import Closed, Media, Redirected, Stop
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import Status
from tests.support.twilio_handler import SmallHandler, small_handler

FAREWELL = "<Response><Say>안녕히 계세요</Say><Hangup/></Response>"


@asynccontextmanager
async def redirected_call(redirect: dict[str, str]) -> AsyncIterator[tuple[SmallHandler, FakeTwilioRest, str,
                                                                            PlayerRecord]]:
    """An incoming call (its webhook's TwiML to the stream) that the handler redirects as soon as its stream starts
    (``{base}`` in a URL: the handler's); the caller would talk for 13 s."""
    fixture = dataclasses.replace(load_call(bundled_calls() / "seed-three-turns"), caller=CallerBehaviour())
    async with small_handler() as (handler, fake):
        handler.redirect = {k: v.replace("{base}", handler.base) for k, v in redirect.items()}
        sid = new_call_sid()
        async with aiohttp.ClientSession() as session:
            player = TwilioPlayer(session, "ws://127.0.0.1:9/unused", fixture, pace=None, call_sid=sid,
                                  start=WebhookStart(VoiceWebhook(f"{handler.base}/voice"), fake))
            record = await player.run()
        await asyncio.wait_for(handler.stream_closed.wait(), 5)
        yield handler, fake, sid, record


async def test_a_redirect_to_say_and_hangup_stops_the_stream_and_completes_the_call():
    async with redirected_call({"twiml": FAREWELL}) as (handler, fake, sid, record):
        assert handler.redirect_error is None  # the update was taken: the call was in progress
        [stream] = handler.streams
        assert stream[-1]["event"] == "stop" and stream[-1]["stop"]["callSid"] == sid  # Twilio's stop, then the close
        assert sum(m["event"] == "media" for m in stream) < 650  # the caller's 13 s were cut short by the redirect
        assert record.hung_up_how == "redirect" and not record.ended_by_api
        assert record.closed_how == "twilio after stop" and record.redirect is not None
        assert (record.redirect.by, record.redirect.said, record.redirect.outcome) == ("twiml", ("안녕히 계세요",),
                                                                                       "hangup")
        call = fake.calls[sid]
        assert [i.by for i in call.instructions] == ["incoming", "update"]
        assert call.status == "completed" and call.ended_by == "runner"  # Twilio ended it at <Hangup/>, not the API
        with pytest.raises(TwilioRestException) as caught:  # a redirect of the call now over
            await asyncio.to_thread(lambda: handler.client().calls(sid).update(twiml=FAREWELL))
        assert (caught.value.status, caught.value.code) == (400, 21220)


async def test_a_redirect_to_a_url_is_fetched_signed_and_its_redirects_followed():
    async with redirected_call({"url": "{base}/farewell"}) as (handler, fake, sid, record):
        assert [(form["CallSid"], form["CallStatus"], signed) for _, form, signed in handler.voice_forms[1:]] == [
            (sid, "in-progress", True)] * 2  # the update's Url, then the <Redirect> it answered
        assert record.redirect is not None and record.redirect.by == "url"
        assert (record.redirect.said, record.redirect.outcome) == (("안녕히 계세요",), "end of TwiML")
        assert fake.calls[sid].status == "completed"


async def test_a_redirect_to_a_new_stream_ends_the_call_and_says_the_rest_was_not_judged():
    new_stream = "<Response><Connect><Stream url='wss://elsewhere.example/agent'/></Connect></Response>"
    async with redirected_call({"twiml": new_stream}) as (handler, fake, sid, record):
        assert record.redirect is not None and record.redirect.outcome == "stream"
        assert record.redirect.stream_url == "wss://elsewhere.example/agent" and len(handler.streams) == 1
        assert fake.calls[sid].status == "completed"
    timeline = CallTimeline([Stop(1.0, how="redirect"), Redirected(1.0, outcome="stream"), Closed(1.5)])
    [said] = [c for c in run_checks(CheckContext(timeline, {}, None, [])) if c.name == "replay"]
    assert said.status == Status.SKIPPED and "one stream per call" in said.message and "not judged" in said.message


def ctx(*events, expect=None) -> CheckContext:
    return CheckContext(CallTimeline(sorted(events, key=lambda e: e.wall)), expect or {}, None, [])


SORRY = ("죄송합니다, 지금은 받을 수 없어요",)  # a refusal Twilio speaks after the redirect
REDIRECT = (Stop(5.0, how="redirect"), Redirected(5.0, outcome="hangup", said=SORRY), Closed(5.5))


def test_a_refusal_by_redirect_is_the_handler_ending_the_call_audibly():
    """A handler that refuses a call by redirecting it to <Say>...</Say><Hangup/> has refused it audibly and ended
    it; a caller who hung up on silence was not refused."""
    refused = refuses_without_credentials(ctx(*REDIRECT, expect={"call_refused": True}))
    assert refused.ok and "Twilio said" in refused.message
    assert expectations(ctx(*REDIRECT, expect={"call_refused": True})).ok
    silent = refuses_without_credentials(ctx(Stop(5.0, how="stop"), Closed(5.5), expect={"call_refused": True}))
    assert not silent.ok and "left the caller on a dead line" in silent.message
    assert not expectations(ctx(Stop(5.0, how="stop"), Closed(5.5), expect={"call_refused": True})).ok
    ended = expectations(ctx(Stop(5.0, how="api"), Closed(5.5), expect={"call_refused": False}))
    assert not ended.ok and "ended the call itself" in ended.message  # ending through the REST API is ending it


def test_audio_sent_after_a_redirect_stopped_the_stream_is_said_as_such():
    late = stops_sending_after_hangup(ctx(*REDIRECT, Media(6.0)))
    assert not late.ok and "after the handler redirected the call" in late.message
    assert "Twilio has ended the stream" in late.message
    assert stops_sending_after_hangup(ctx(*REDIRECT, Media(5.1))).ok  # on the wire when stop went out
