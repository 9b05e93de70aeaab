"""The fake Twilio's voice webhook: its form in Twilio's names, a signature twilio-python's RequestValidator accepts,
a request shaped as Twilio's, and errors that lead with their cause."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from fakertzr.appserver import AppServer
from harness.errors import HarnessError
from harness.fakes.twiml import ConnectStream, Hangup
from harness.fakes.twilio_webhook import (USER_AGENT, CallWebhook, WebhookError, fetch_twiml, request_for,
                                          signature)

TOKEN = "d41d8cd98f00b204e9800998ecf8427e"


def test_twilio_pythons_own_test_vector():
    """twilio/twilio-python tests/unit/test_request_validator.py: token 12345, this URL and these params."""
    params = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309", "To": "+18005551212",
              "Caller": "+14158675309"}
    assert signature("https://mycompany.com/myapp.php?foo=1&bar=2", params, "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


form_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,15}", fullmatch=True), form_values, max_size=8),
       path=st.from_regex(r"/[a-z0-9/]{0,20}", fullmatch=True))
def test_the_sdks_validator_accepts_every_signature_and_no_tampered_one(params: dict[str, str], path: str):
    url = "https://bot.example" + path
    validator = RequestValidator(TOKEN)
    sig = signature(url, params, TOKEN)
    assert validator.validate(url, params, sig)
    assert not validator.validate(url, {**params, "Injected": "1"}, sig)
    assert not RequestValidator(TOKEN + "x").validate(url, params, sig)


def test_the_form_in_twilios_names():
    incoming = CallWebhook.incoming("CA" + "1" * 32, "AC" + "2" * 32, "+821012345678", "+827012345678",
                                    caller_name="홍길동", extra={"FromCountry": "KR"})
    assert incoming.form() == {
        "CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "2" * 32, "From": "+821012345678", "To": "+827012345678",
        "Caller": "+821012345678", "Called": "+827012345678", "CallStatus": "ringing", "ApiVersion": "2010-04-01",
        "Direction": "inbound", "CallerName": "홍길동", "FromCountry": "KR"}
    outbound = CallWebhook.outbound_api("CA" + "1" * 32, "AC" + "2" * 32, "+15005550006", "+821012345678").form()
    assert (outbound["Direction"], outbound["CallStatus"]) == ("outbound-api", "in-progress")
    assert "ForwardedFrom" not in outbound  # only what is known


def test_a_get_webhook_signs_the_url_with_its_query():
    form = {"CallSid": "CA1", "From": "+1 2"}
    url, body, headers = request_for("https://bot.example/voice?x=1", form, TOKEN, method="GET")
    assert body is None and url == "https://bot.example/voice?x=1&CallSid=CA1&From=%2B1+2"
    assert RequestValidator(TOKEN).validate(url, {}, headers["X-Twilio-Signature"])


def _twiml() -> str:
    response = VoiceResponse()
    connect = Connect()
    connect.stream(url="wss://bot.example/media").parameter(name="caller", value="+821012345678")
    response.append(connect)
    response.hangup()
    return str(response)


class Handler:
    """A voice webhook that checks what it gets as a Twilio-validating app would, and answers as told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.answer: web.Response | None = None
        self.delay_s = 0.0

    async def voice(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.seen.append((str(request.url), form, dict(request.headers)))
        await asyncio.sleep(self.delay_s)
        if not RequestValidator(TOKEN).validate(str(request.url), form, request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=403, text="bad signature")
        return self.answer or web.Response(text=_twiml(), content_type="text/xml")


@pytest.fixture
async def handler():
    app, h = web.Application(), Handler()
    app.router.add_route("*", "/voice", h.voice)
    async with AppServer(app) as server:
        h.url = f"{server.base_url}/voice"
        yield h


FORM = CallWebhook.incoming("CA" + "a" * 32, "AC" + "b" * 32, "+821012345678", "+827012345678").form()


async def test_fetch_twiml_posts_as_twilio_does_and_returns_the_verbs(handler):
    async with aiohttp.ClientSession() as session:
        verbs = await fetch_twiml(session, handler.url, FORM, TOKEN)
    assert verbs == [ConnectStream("wss://bot.example/media", {"caller": "+821012345678"}), Hangup()]
    (url, form, headers), = handler.seen
    assert form == FORM and url == handler.url
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["User-Agent"] == USER_AGENT == "TwilioProxy/1.1"


async def test_fetch_twiml_by_get(handler):
    async with aiohttp.ClientSession() as session:
        assert await fetch_twiml(session, handler.url, FORM, TOKEN, method="GET")  # the handler validated it
    (url, form, _), = handler.seen
    assert "CallSid=CA" in url and form == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("answer, why", [
    (web.Response(status=404, text="Not Found"), r"^the voice webhook answered HTTP 404 .*11200.*'Not Found'"),
    (web.Response(status=500), r"^the voice webhook answered HTTP 500"),
    (web.json_response({"ok": True}), r"^the voice webhook answered Content-Type 'application/json'.*12300"),
    (web.Response(text="<Response><Gather/></Response>", content_type="application/xml"),
     r"^the voice webhook answered TwiML the fake Twilio cannot follow.*<Gather>"),
    (web.Response(text="", content_type="text/xml"), r"cannot follow.*empty"),
    (web.Response(text="<Response>" + "<Pause/>" * 10_000 + "</Response>", content_type="text/xml"), "64 kB.*11750"),
], ids=["404", "500", "json", "not-followed", "empty", "too-big"])
async def test_a_wrong_answer_is_named_by_its_cause(handler, answer: web.Response, why: str):
    handler.answer = answer
    async with aiohttp.ClientSession() as session:
        with pytest.raises(WebhookError, match=why):
            await fetch_twiml(session, handler.url, FORM, TOKEN)


async def test_a_bad_signature_reaches_the_handler_as_a_refusal(handler):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(WebhookError, match="HTTP 403.*bad signature"):
            await fetch_twiml(session, handler.url, FORM, "another-token")


async def test_a_webhook_that_is_too_slow_or_not_there(handler):
    handler.delay_s = 0.4
    async with aiohttp.ClientSession() as session:
        with pytest.raises(WebhookError, match=r"^the voice webhook did not answer within 0.1 s .*11205"):
            await fetch_twiml(session, handler.url, FORM, TOKEN, timeout_s=0.1)
        with pytest.raises(WebhookError, match=r"^the voice webhook could not be reached .*11205"):
            await fetch_twiml(session, f"http://127.0.0.1:{_free_port()}/voice", FORM, TOKEN)


def test_a_webhook_error_is_a_harness_error():
    assert issubclass(WebhookError, HarnessError)
