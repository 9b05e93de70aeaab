"""A handler of a few lines that drives calls with the real twilio SDK (its ``Client`` pointed at the fake Calls API),
for the fake Twilio's own tests (tests/harness/test_twilio_outbound.py, test_twilio_redirect.py): it places calls
(``POST /call``), answers its voice URL (``/voice``, checked with ``RequestValidator``), may redirect a call as soon
as its stream starts, and keeps every message its stream got."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Connect, VoiceResponse

from fakertzr.appserver import AppServer
from harness.fakes.twilio_rest import FakeTwilioRest

OWN_NUMBER = "+8215880000"


@dataclass
class SmallHandler:
    """What it does is set per test: how it places calls, what it redirects a call to once its stream starts."""

    twilio: FakeTwilioRest
    rest_url: str
    place_with: str = "twiml"  # "twiml", "url", or "nothing" (answers the trigger and places no call)
    place_to: str | None = None  # a number to call instead of the one it is asked to (a wrong number)
    method: str = "POST"  # the Url's Method
    redirect: dict[str, str] | None = None  # update(**redirect) when the stream starts
    base: str = ""
    voice_forms: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)  # (method, form, signature ok)
    streams: list[list[dict[str, Any]]] = field(default_factory=list)  # each stream's messages, in order
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    redirect_error: Exception | None = None

    def client(self) -> Client:
        sdk = Client(self.twilio.core.account_sid, self.twilio.core.auth_token)
        sdk.api.base_url = self.rest_url
        return sdk

    def stream_twiml(self, caller: str) -> VoiceResponse:
        response, connect = VoiceResponse(), Connect()
        connect.stream(url=self.base.replace("http://", "wss://") + "/media").parameter(name="caller", value=caller)
        response.append(connect)
        return response

    async def call(self, request: web.Request) -> web.Response:
        to = str((await request.post())["To"])
        if self.place_with == "nothing":
            return web.json_response({}, status=202)
        how: dict[str, Any] = ({"url": f"{self.base}/voice", "method": self.method} if self.place_with == "url"
                               else {"twiml": self.stream_twiml(to)})
        call = await asyncio.to_thread(lambda: self.client().calls.create(to=self.place_to or to, from_=OWN_NUMBER,
                                                                           **how))
        return web.json_response({"sid": call.sid}, status=201)

    async def voice(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)} if request.method == "POST" \
            else {}
        valid = RequestValidator(self.twilio.core.auth_token).validate(
            str(request.url), form, request.headers.get("X-Twilio-Signature", ""))
        self.voice_forms.append((request.method, form or dict(request.query), valid))
        caller = (form or dict(request.query)).get("To", "")
        return web.Response(text=str(self.stream_twiml(caller)), content_type="text/xml")

    async def farewell(self, request: web.Request) -> web.Response:
        """A redirect's URL: it redirects once more, then says goodbye."""
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        valid = RequestValidator(self.twilio.core.auth_token).validate(
            str(request.url), form, request.headers.get("X-Twilio-Signature", ""))
        self.voice_forms.append(("POST", form, valid))
        if request.query.get("step") != "2":
            return web.Response(text="<Response><Redirect>/farewell?step=2</Redirect></Response>",
                                content_type="text/xml")
        return web.Response(text="<Response><Say>안녕히 계세요</Say></Response>", content_type="text/xml")

    async def media(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seen: list[dict[str, Any]] = []
        self.streams.append(seen)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            seen.append(message)
            if message["event"] == "start" and self.redirect is not None:
                sid, change = message["start"]["callSid"], self.redirect
                try:
                    await asyncio.to_thread(lambda: self.client().calls(sid).update(**change))
                except Exception as exc:  # noqa: BLE001 - the test reads it
                    self.redirect_error = exc
        self.stream_closed.set()
        return ws


@asynccontextmanager
async def small_handler(**settings: Any) -> AsyncIterator[tuple[SmallHandler, FakeTwilioRest]]:
    """The fake Calls API and the small handler, both served on this loop."""
    fake = FakeTwilioRest()
    async with AppServer(fake.app()) as rest:
        handler = SmallHandler(fake, rest.base_url, **settings)
        app = web.Application()
        app.router.add_post("/call", handler.call)
        app.router.add_route("*", "/voice", handler.voice)
        app.router.add_post("/farewell", handler.farewell)
        app.router.add_get("/media", handler.media)
        async with AppServer(app) as server:
            handler.base = server.base_url
            yield handler, fake
