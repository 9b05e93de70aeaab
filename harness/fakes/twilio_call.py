"""One call at the fake Twilio, beside its Media Stream: how it starts, what the REST API asks of it while it lasts,
and how its resource ends. The player (``twilio_player``) plays the audio; this keeps the call's Twilio side.

- **Start**: at the handler's voice webhook (``WebhookStart``: an incoming call, ``twilio_dial.dial``), or a call
  the handler places (``PlaceStart``: ``twilio_outbound``), each followed to its ``<Connect><Stream>``.
- **While it lasts** (``watch``): ``Status=completed`` ends it (the caller stops, ``stop`` goes out); new ``Twiml``
  or ``Url`` redirect it. "Realtime call modification allows you to interrupt an in-progress call and terminate it
  or have it begin processing TwiML from a new URL ... Twilio will immediately redirect the call to the new TwiML"
  (http://www.twilio.com/docs/api/rest/change-call-state): the TwiML it was on, the ``<Connect><Stream>``, is
  interrupted, so the stream gets ``stop`` and is closed (as vocode's maintainers saw Twilio do on a redirect:
  https://github.com/vocodedev/vocode-core/issues/276), and then the new TwiML is followed (``follow_redirect``):
  ``<Say>`` and ``<Pause>`` then ``<Hangup>`` or the document's end complete the call; ``<Redirect>`` is fetched.
  A ``Url`` is requested with the call's form (``CallStatus=in-progress``), signed.
- **Not followed**: a redirect whose TwiML opens a new ``<Connect><Stream>``. Twilio would open a second stream
  (a new streamSid, the same callSid) and the caller would talk on into it; the fake Twilio ends the call there and
  the record says so (``RedirectFollowed.outcome == "stream"``), and the verdict says the rest was not judged.
  A second update while the first redirect is followed is kept, not followed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

import aiohttp

from harness.errors import HarnessError
from harness.fakes.twilio_dial import Dialled, VoiceWebhook, dial, follow
from harness.fakes.twilio_line import RedirectFollowed
from harness.fakes.twilio_outbound import PlaceCall, answer, placed, trigger
from harness.fakes.twilio_rest import FakeCall, FakeTwilioRest, Instructions
from harness.fakes.twilio_webhook import CallWebhook

CALLED_NUMBER = "+8215880000"  # the handler's own number, as an incoming call's To


@dataclass(frozen=True)
class WebhookStart:
    """Start the call at the handler's voice webhook, kept in this fake REST API."""

    webhook: VoiceWebhook
    twilio: FakeTwilioRest


@dataclass(frozen=True)
class PlaceStart:
    """Have the handler place the call (``--place``) to the caller's number, dialled as Twilio dials it."""

    place: PlaceCall
    twilio: FakeTwilioRest


CallStart = WebhookStart | PlaceStart


def outbound_number(call_sid: str) -> str:
    """A Korean mobile number of the call's own (``+8210`` and 8 digits from its SID), so that calls placed at once
    are told apart by their ``To``."""
    return f"+8210{int(call_sid[2:], 16) % 10**8:08d}"


class TwilioCall:
    """The Twilio side of one call: ``connect`` it, ``watch`` the REST API while it lasts, ``follow_redirect``
    once its stream has stopped for one, ``close`` at the end (its resource completed unless already ended)."""

    def __init__(self, start: CallStart, session: aiohttp.ClientSession, call_sid: str, caller: str,
                 pace: float | None) -> None:
        self.start, self.session, self.sid, self.caller, self.pace = start, session, call_sid, caller, pace
        self.twilio = start.twilio
        self.local_to = start.webhook.url if isinstance(start, WebhookStart) else start.place.url
        self._seen = 0  # instructions given before the stream opened: the TwiML that opened it
        self._watching: asyncio.Task[None] | None = None

    @property
    def call(self) -> FakeCall | None:
        return self.twilio.calls.get(self.sid)

    async def connect(self) -> Dialled:
        """The call started and its TwiML followed to its stream; a ``HarnessError`` when it ends without one."""
        core = self.twilio.core
        if isinstance(self.start, PlaceStart):
            call = await self._place(self.start.place)
            self._seen = len(call.instructions)
            dialled = await answer(self.session, self.twilio, call, pace=self.pace, local_to=self.local_to)
            what = f"the placed call's TwiML ({call.instructions[0].url or 'given inline'})"
        else:
            core.add_incoming(self.caller, CALLED_NUMBER, url=self.start.webhook.url, sid=self.sid)
            self._seen = 1
            form = CallWebhook.incoming(self.sid, core.account_sid, self.caller, CALLED_NUMBER)
            dialled = await dial(self.session, self.start.webhook, form, core.auth_token, pace=self.pace)
            what = f"the voice webhook's TwiML ({self.start.webhook.url})"
        if dialled.stream_url is None:
            self.close()
            raise HarnessError(f"{what} ended the call without a Media Stream ({dialled.ended_by}): no "
                               "<Connect><Stream> to play the caller into")
        if isinstance(self.start, WebhookStart):
            core.advance(self.sid, "in-progress")
        return dialled

    async def _place(self, place: PlaceCall) -> FakeCall:
        """The handler asked to place the call to the caller, and the call it created."""
        self.twilio.expect_outbound(self.caller, self.sid)
        try:
            await trigger(self.session, place, self.caller)
            return await placed(self.twilio, place, self.caller, self.sid)
        finally:
            self.twilio.forget_outbound(self.caller)

    def watch(self, ended: Callable[[], None], redirected: Callable[[], None]) -> None:
        """Call ``ended()`` when the handler ends the call through the REST API, or ``redirected()`` when it gives
        the call new TwiML (once, whichever comes first)."""
        async def watching() -> None:
            call = self.call
            assert call is not None
            while not call.ended and len(call.instructions) <= self._seen:
                await self.twilio.next_change()
            (redirected if not call.ended else ended)()

        self._watching = asyncio.create_task(watching())

    @property
    def redirect(self) -> Instructions | None:
        """The new TwiML the handler gave the call while it lasted (the latest), if any."""
        call = self.call
        return call.current if call is not None and len(call.instructions) > self._seen else None

    async def follow_redirect(self, at: float) -> RedirectFollowed:
        """Follow the redirect's TwiML (its stream has stopped) to the call's end; ``at``: when it interrupted."""
        instructions, call = self.redirect, self.call
        assert instructions is not None and call is not None
        by = "url" if instructions.url else "twiml"
        if call.ended:  # ended through the REST API as well, before its new TwiML was reached
            return RedirectFollowed(at=at, by=by, url=instructions.url, outcome="ended")
        core = self.twilio.core
        form = CallWebhook(self.sid, core.account_sid, call.from_, call.to, call_status="in-progress",
                           direction=call.direction)
        start = VoiceWebhook(instructions.url, instructions.method) if instructions.url else str(instructions.twiml)
        try:
            dialled = await follow(self.session, start, form, core.auth_token, pace=self.pace, local_to=self.local_to)
        finally:
            self.close()
        outcome = "stream" if dialled.stream_url is not None else dialled.ended_by
        return RedirectFollowed(at=at, by=by, url=instructions.url, said=tuple(dialled.said), outcome=outcome,
                                stream_url=dialled.twiml_url)

    def caller_hung_up(self) -> None:
        """The caller is gone (``stop`` sent, or the line dropped): the call is over at Twilio too."""
        self.close()

    def close(self) -> None:
        """Stop watching; the call's resource ends (``completed``) unless it has already."""
        if self._watching is not None and self._watching is not asyncio.current_task():
            self._watching.cancel()
        call, core = self.call, self.twilio.core
        if call is None or call.ended:
            return
        if call.status == "ringing" and call.direction == "inbound":  # its TwiML ran: Twilio had answered it
            core.advance(self.sid, "in-progress")
        core.advance(self.sid, "completed" if call.status == "in-progress" else "canceled")  # not answered: canceled
