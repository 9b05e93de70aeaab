"""A call the handler places (``POST .../Calls.json``), dialled as Twilio dials it.

The harness asks the handler to place a call to the caller's number (``PlaceCall``: a POST to the handler's own
endpoint, form-encoded ``To=<number>``, ``{to}`` in its URL filled in too), then waits for the handler's create
whose ``To`` is that number (``PLACE_WAIT_S``). Twilio then dials: the call leaves ``queued`` for ``ringing``
(its ``start_time``: "Empty if the call has not yet been dialed", http://www.twilio.com/docs/api/rest/call) and,
the caller answering at once, ``in-progress``. With ``Url``, Twilio requests it "when the call connects", with
the ``Method`` given (``POST`` by default), and the request "is identical to the request Twilio sends when receiving
a phone call" but for ``Direction=outbound-api`` (https://www.twilio.com/docs/voice/api/call-resource,
https://support.twilio.com/hc/en-us/articles/223132247); with ``Twiml``, the document is read as given. Either is
followed to its ``<Connect><Stream>`` (``twilio_dial.follow``).

Not done: answering machine detection, ``StatusCallback`` requests (kept, never sent), ``ApplicationSid`` (the
fake keeps no TwiML Apps: refused with a message), a caller who does not answer (busy, no-answer).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from harness.errors import HarnessError
from harness.fakes.twilio_dial import Dialled, VoiceWebhook, follow
from harness.fakes.twilio_rest import FakeCall, FakeTwilioRest, RestRequest
from harness.fakes.twilio_webhook import CallWebhook

PLACE_WAIT_S = 10.0  # after the handler's endpoint answered, how long it has to create the call
TRIGGER_TIMEOUT_S = 15.0  # how long the handler's endpoint has to answer


@dataclass(frozen=True)
class PlaceCall:
    """The handler's endpoint that places a call (``--place``): POSTed ``To=<number>``; ``{to}`` in the URL is
    filled in with the number (URL-encoded) for handlers that take it in the path or query."""

    url: str

    def url_for(self, to: str) -> str:
        return self.url.replace("{to}", quote(to, safe=""))


async def trigger(session: aiohttp.ClientSession, place: PlaceCall, to: str) -> int:
    """Ask the handler to place a call to ``to``; its HTTP status (a ``HarnessError`` when it refuses or fails)."""
    url = place.url_for(to)
    try:
        async with session.post(url, data={"To": to},
                                timeout=aiohttp.ClientTimeout(total=TRIGGER_TIMEOUT_S)) as response:
            if response.status >= 400:
                start = (await response.content.read(200)).decode("utf-8", "replace").strip()
                raise HarnessError(f"the handler's place-call endpoint answered HTTP {response.status} for POST {url} "
                                   f"(To={to})" + (f"; the answer began {start!r}" if start else ""))
            return response.status
    except asyncio.TimeoutError:
        raise HarnessError(f"the handler's place-call endpoint did not answer POST {url} within "
                           f"{TRIGGER_TIMEOUT_S:g} s") from None
    except aiohttp.ClientError as exc:
        raise HarnessError(f"the handler's place-call endpoint could not be reached (POST {url}): "
                           f"{str(exc) or type(exc).__name__}") from None


def _near_misses(creates: list[RestRequest], to: str) -> str:
    """What the fake took instead, WireMock-style: every create, with its To and how it was answered."""
    if not creates:
        return ("the fake Twilio's REST API took no POST .../Calls.json (is the handler's twilio client pointed at it: "
                "TWILIO_API_BASE, or --steer for api.twilio.com?)")
    seen = "; ".join(f"To={r.form.get('To', '')!r} answered {r.status}" + (f" (Twilio error {r.code})" if r.code else "")
                     for r in creates[-5:])
    return f"the creates it took: {seen}"


async def placed(twilio: FakeTwilioRest, place: PlaceCall, to: str, sid: str, timeout: float | None = None) -> FakeCall:
    """The call the handler created to ``to`` (given ``sid`` by ``expect_outbound``), once it exists; a
    ``HarnessError`` naming what was waited for, and what came instead, after ``timeout`` (``PLACE_WAIT_S``)."""
    timeout = PLACE_WAIT_S if timeout is None else timeout
    try:
        await twilio.wait_for(lambda fake: sid in twilio.calls, timeout)
    except asyncio.TimeoutError:
        raise HarnessError(f"the handler did not place the call: no POST .../Calls.json with To={to} reached the fake "
                           f"Twilio within {timeout:g} s of POST {place.url_for(to)} answering; "
                           f"{_near_misses(twilio.creates(), to)}") from None
    return twilio.calls[sid]


async def answer(session: aiohttp.ClientSession, twilio: FakeTwilioRest, call: FakeCall, *, pace: float | None,
                 local_to: str) -> Dialled:
    """Dial the placed call (ringing, then answered) and follow its ``Url`` or ``Twiml`` to its stream."""
    core = twilio.core
    instructions = call.current
    if instructions is None or not (instructions.url or instructions.twiml):
        core.advance(call.sid, "failed")
        raise HarnessError(f"the handler placed call {call.sid} with ApplicationSid={call.application_sid}: the fake "
                           "Twilio keeps no TwiML Apps to read a voice URL from; place it with url= or twiml=")
    core.advance(call.sid, "ringing")
    core.advance(call.sid, "in-progress")
    webhook = CallWebhook.outbound_api(call.sid, core.account_sid, call.from_, call.to)
    start = VoiceWebhook(instructions.url, instructions.method) if instructions.url else str(instructions.twiml)
    return await follow(session, start, webhook, core.auth_token, pace=pace, local_to=local_to)
