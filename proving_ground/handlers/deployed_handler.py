"""The production-style FastAPI handler as it is deployed behind Twilio: vendor hosts hard-coded, one OpenAI
client, its own TwiML webhook, calls ended through Twilio's REST API.

It keeps ``fastapi_handler``'s call handling and adds what a deployed backend has around it:

- RTZR at ``https://openapi.vito.ai`` / ``wss://openapi.vito.ai``, OpenAI at ``https://api.openai.com/v1``,
  Twilio at ``api.twilio.com`` (the twilio SDK's own default): no environment variable moves them, so the
  harness reaches it only by steering those hosts (``harness run --steer``).
- One ``OpenAI()`` client for chat *and* speech.
- ``POST /voice``: checks ``X-Twilio-Signature`` with twilio's ``RequestValidator`` (``TWILIO_AUTH_TOKEN``) and
  answers TwiML made with twilio's ``VoiceResponse``: ``<Connect><Stream url="wss://{Host}/media">`` with the
  caller's number as a ``<Parameter>``.
- A caller who says goodbye ("끊을게요", "안녕히 계세요") is answered, and once the answer has played (its mark
  echoed) the call is ended through the REST API (``calls(sid).update(status="completed")``), or, with
  ``HANG_UP_WITH=twiml``, redirected to a farewell (``update(twiml=<Say>...</Say><Hangup/>)``), as handlers that
  hand the call back to Twilio do.
- ``POST /call`` with ``To``: an outbound call placed through the REST API (``calls.create``) from
  ``TWILIO_NUMBER``, with the stream's TwiML inline (``twiml=``) or, with ``PLACE_WITH=url``, this handler's own
  ``/voice`` for Twilio to fetch when the call connects (``url=``).

``MUTANT=calls-unfaked-host``: each final is also posted to an analytics service nothing fakes
(``api.elevenlabs.io``): the harness must refuse the connection and fail the call, naming the host. Any
other ``MUTANT`` is ``fastapi_handler``'s.

    RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... OPENAI_API_KEY=... TWILIO_ACCOUNT_SID=... TWILIO_AUTH_TOKEN=... \\
        python deployed_handler.py --port 8080        # webhook http://127.0.0.1:8080/voice, calls out at /call
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time

OWN_MUTANTS = ("calls-unfaked-host",)
OWN_MUTANT = os.environ.get("MUTANT", "") if os.environ.get("MUTANT") in OWN_MUTANTS else ""
if OWN_MUTANT:
    del os.environ["MUTANT"]  # not one of fastapi_handler's: it would refuse to start

import fastapi_handler as prod  # noqa: E402 - after the mutant is set aside
import requests  # noqa: E402
from fastapi import Request, Response  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from openai import OpenAI  # noqa: E402
from twilio.base.exceptions import TwilioRestException  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402
from twilio.rest import Client  # noqa: E402
from twilio.twiml.voice_response import Connect, VoiceResponse  # noqa: E402

logger = logging.getLogger("phone")

# what this deployment hard-codes
prod.RTZR_API_BASE = "https://openapi.vito.ai"
prod.RTZR_STREAM_URL = "wss://openapi.vito.ai/v1/transcribe:streaming?sample_rate=8000&encoding=MULAW&use_itn=true"
prod.llm = prod.tts = OpenAI(base_url="https://api.openai.com/v1")  # one client, chat and speech
ANALYTICS_URL = "https://api.elevenlabs.io/v1/history"  # the mutant's: a host the harness does not fake
GOODBYE = re.compile(r"끊을게요|끊겠습니다|안녕히 계세요")
PLAYED_WAIT_S = 10.0  # at most this long for the goodbye's audio to finish playing before ending the call
OWN_NUMBER = os.environ.get("TWILIO_NUMBER", "+8215880000")  # the number outbound calls come from
PLACE_WITH = os.environ.get("PLACE_WITH", "twiml")  # "twiml" (inline) or "url" (Twilio fetches /voice)
HANG_UP_WITH = os.environ.get("HANG_UP_WITH", "status")  # "status" (completed) or "twiml" (a farewell, then <Hangup/>)
FAREWELL = "전화 주셔서 감사합니다. 안녕히 계세요."
app = prod.app


def twilio_client() -> Client:
    return Client(os.environ["TWILIO_ACCOUNT_SID"], os.environ["TWILIO_AUTH_TOKEN"])


@app.post("/voice")
async def voice(request: Request) -> Response:
    """Twilio's voice webhook: the call goes to the Media Stream, the caller's number along."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if token and not RequestValidator(token).validate(str(request.url), form,
                                                      request.headers.get("X-Twilio-Signature", "")):
        logger.warning("voice webhook refused: bad X-Twilio-Signature")
        return Response("invalid signature", status_code=403)
    # the person on the line: who called, or, on a call this handler placed, who it called
    caller = form.get("To", "") if form.get("Direction") == "outbound-api" else form.get("From", "")
    logger.info("call=%s event=voice direction=%s", form.get("CallSid"), form.get("Direction"))
    return Response(str(stream_twiml(request.headers["host"], caller)), media_type="application/xml")


def stream_twiml(host: str, caller: str) -> VoiceResponse:
    """The call to the Media Stream at ``wss://{host}/media``, the caller's number along."""
    response, connect = VoiceResponse(), Connect()
    stream = connect.stream(url=f"wss://{host}/media")
    stream.parameter(name="caller", value=caller)
    response.append(connect)
    return response


@app.post("/call")
async def place_call(request: Request) -> Response:
    """Place a call to ``To`` through Twilio's REST API; Twilio dials it and streams it to ``/media``."""
    to = (await request.form()).get("To")
    if not isinstance(to, str) or not to:
        return Response("To is required", status_code=400)
    host = request.headers["host"]
    how = {"url": f"{request.url.scheme}://{host}/voice"} if PLACE_WITH == "url" else {"twiml": stream_twiml(host, to)}
    try:
        call = await asyncio.to_thread(lambda: twilio_client().calls.create(to=to, from_=OWN_NUMBER, **how))
    except TwilioRestException as exc:
        logger.warning("call to place refused by Twilio: %s (%s)", exc.msg, exc.code)
        return Response("Twilio refused the call", status_code=502)
    logger.info("call=%s event=placed with=%s", call.sid, PLACE_WITH)
    return JSONResponse({"sid": call.sid}, status_code=201)


def end_call(call_sid: str) -> None:
    """The call ended through Twilio's REST API (or handed back to Twilio for a farewell and a hang-up); a call
    already over is no error (Twilio answers 21220)."""
    try:
        if HANG_UP_WITH == "twiml":
            farewell = VoiceResponse()
            farewell.say(FAREWELL, language="ko-KR")
            farewell.hangup()
            twilio_client().calls(call_sid).update(twiml=farewell)
            logger.info("call=%s event=redirected_to_farewell", call_sid)
            return
        twilio_client().calls(call_sid).update(status="completed")
        logger.info("call=%s event=ended_by_api", call_sid)
    except TwilioRestException as exc:
        logger.info("call=%s end through the API: %s (%s)", call_sid, exc.msg, exc.code)


async def played(call: prod.PhoneCall) -> None:
    """Until the bot's audio has played (every mark echoed), ``PLAYED_WAIT_S`` at most."""
    deadline = time.monotonic() + PLAYED_WAIT_S
    while call.marks and not call.ended and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # Twilio's mark echoes are the only news of playback: checked as they come


_answer = prod.PhoneCall.answer


async def answer(self: prod.PhoneCall, session: dict, text: str | None) -> None:
    """Answer as the production handler does; a goodbye is answered, played, then the call ended."""
    goodbye = text is not None and GOODBYE.search(text) is not None
    await _answer(self, session, text)
    if goodbye and not self.ended:
        await played(self)
        await asyncio.to_thread(end_call, self.call_sid)


_on_final = prod.PhoneCall.on_final


def on_final(self: prod.PhoneCall, text: str, talks_on: bool) -> None:
    if OWN_MUTANT == "calls-unfaked-host":
        self.tg.create_task(asyncio.to_thread(report_final, self.call_sid, text))
    _on_final(self, text, talks_on)


def report_final(call_sid: str, text: str) -> None:
    try:
        requests.post(ANALYTICS_URL, json={"call": call_sid, "text": text}, timeout=5)
    except requests.RequestException as exc:
        logger.warning("call=%s analytics unreachable: %s", call_sid, type(exc).__name__)


prod.PhoneCall.answer = answer  # type: ignore[method-assign]
prod.PhoneCall.on_final = on_final  # type: ignore[method-assign]


if __name__ == "__main__":
    prod.main()
