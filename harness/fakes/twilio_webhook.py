"""Twilio's voice webhook, as the fake Twilio sends it: the call's form, its signature, and the TwiML it gets back.

The form: Twilio requests the number's voice URL "and expects to receive TwiML in response", sending ``CallSid``,
``AccountSid``, ``From``, ``To``, ``CallStatus``, ``ApiVersion``, ``Direction``, ``ForwardedFrom``, ``CallerName``,
``ParentCallSid`` (and ``Caller``/``Called``, the older names of ``From``/``To``, which Twilio still sends)
"as POST parameters or URL query parameters, depending on which HTTP method you've configured", form-encoded.
https://www.twilio.com/docs/usage/webhooks/voice-webhooks, https://www.twilio.com/docs/api/twiml/twilio_request;
``Caller``/``Called``: https://www.twilio.com/docs/api/2008-08-01/twiml/twilio_request, and still in a 2015 capture,
https://gist.github.com/jonahglover/5887ef900cc6890abda1.
For a call made with the REST API, the request to its ``Url`` "is identical to the request Twilio sends when
receiving a phone call", with ``Direction`` ``outbound-api``; it is made when the call connects, so ``CallStatus``
is ``in-progress`` (inferred from the status list: "When the call is answered the status becomes in-progress").
https://support.twilio.com/hc/en-us/articles/223132247,
http://www.twilio.com/help/faq/voice/what-do-the-call-statuses-mean

The signature (``X-Twilio-Signature``): the full URL, then each POST parameter sorted by name with its name and
value appended (nothing for GET, whose parameters are in the URL), HMAC-SHA1 keyed by the auth token, base64.
https://www.twilio.com/docs/usage/webhooks/webhooks-security; twilio-python's ``RequestValidator.compute_signature``
(twilio/request_validator.py) does the same, and its ``validate`` accepts this module's signatures (the tests say so).

Twilio's user agent is ``TwilioProxy/1.1`` (as captured Twilio requests in public test code show; Twilio's docs do not
name it). What Twilio does when the answer is wrong, and so what ``fetch_twiml`` says: a 4xx/5xx answer is
11200/11217 (https://www.twilio.com/docs/api/errors/11217); no answer within 15 s is 11205
(https://www.twilio.com/docs/api/errors/11205); a Content-Type that is not XML is 12300
(https://www.twilio.com/docs/api/errors/12300); a body over 64 kB is 11750 (https://www.twilio.com/docs/errors/11750);
a body that is not TwiML is 12100 (``harness.fakes.twiml``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

import aiohttp

from harness.errors import HarnessError
from harness.fakes.twiml import TwimlError, Verb, parse_twiml

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
USER_AGENT = "TwilioProxy/1.1"
WEBHOOK_TIMEOUT_S = 15.0  # Twilio waits 15 s in all for an answer, connecting included (11205)
MAX_TWIML_BYTES = 64 * 1024  # a longer answer is error 11750
TWIML_TYPES = ("text/xml", "application/xml", "text/html")  # what Twilio reads as TwiML


class WebhookError(HarnessError):
    """The voice webhook did not give the fake Twilio TwiML it can follow; the message leads with the cause."""


@dataclass(frozen=True)
class CallWebhook:
    """One call's fields for its voice webhook, in this module's names; ``form()`` gives them in Twilio's."""

    call_sid: str
    account_sid: str
    from_: str
    to: str
    call_status: str = "ringing"
    direction: str = "inbound"
    api_version: str = API_VERSION
    forwarded_from: str | None = None
    caller_name: str | None = None
    parent_call_sid: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)  # e.g. FromCountry, CallToken

    @classmethod
    def incoming(cls, call_sid: str, account_sid: str, from_: str, to: str, **fields: Any) -> "CallWebhook":
        """A call to one of the account's numbers: ``Direction=inbound``, ``CallStatus=ringing``."""
        return cls(call_sid, account_sid, from_, to, **fields)

    @classmethod
    def outbound_api(cls, call_sid: str, account_sid: str, from_: str, to: str, **fields: Any) -> "CallWebhook":
        """A call made with ``POST .../Calls.json``, answered: ``Direction=outbound-api``, ``in-progress``."""
        return cls(call_sid, account_sid, from_, to, call_status="in-progress", direction="outbound-api", **fields)

    def form(self) -> dict[str, str]:
        """The parameters as Twilio names them; the optional ones only when known."""
        form = {"CallSid": self.call_sid, "AccountSid": self.account_sid, "From": self.from_, "To": self.to,
                "Caller": self.from_, "Called": self.to, "CallStatus": self.call_status,
                "ApiVersion": self.api_version, "Direction": self.direction}
        optional = {"ForwardedFrom": self.forwarded_from, "CallerName": self.caller_name,
                    "ParentCallSid": self.parent_call_sid}
        form.update({k: v for k, v in optional.items() if v is not None})
        form.update(self.extra)
        return form


def signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """``X-Twilio-Signature`` for a request to ``url`` with POST ``params`` (empty for GET)."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def request_for(url: str, form: Mapping[str, str], auth_token: str, method: str = "POST"
                ) -> tuple[str, dict[str, str] | None, dict[str, str]]:
    """What Twilio sends: the URL (with the form in its query for GET), the POST body, and the headers."""
    if method.upper() == "GET":
        url = url + ("&" if urlsplit(url).query else "?") + urlencode(form)
        body = None
    else:
        body = dict(form)
    headers = {SIGNATURE_HEADER: signature(url, body or {}, auth_token), "User-Agent": USER_AGENT}
    return url, body, headers


def _content_type(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


async def _read_twiml(response: aiohttp.ClientResponse, url: str) -> bytes:
    """The body, once the answer is known to be one Twilio reads as TwiML."""
    if response.status >= 400:
        start = (await response.content.read(200)).decode("utf-8", "replace").strip()
        raise WebhookError(f"the voice webhook answered HTTP {response.status} for {url}: Twilio calls this 11200 "
                           f"(HTTP retrieval failure) and plays the caller an application error"
                           + (f"; the answer began {start!r}" if start else ""))
    kind = _content_type(response)
    if kind not in TWIML_TYPES:
        raise WebhookError(f"the voice webhook answered Content-Type {kind or 'none'!r} for {url}, not TwiML "
                           f"(text/xml or application/xml): Twilio calls this 12300 (Invalid Content-Type)")
    body = await response.content.read(MAX_TWIML_BYTES + 1)
    if len(body) > MAX_TWIML_BYTES:
        raise WebhookError(f"the voice webhook's answer for {url} is over 64 kB: Twilio calls this 11750")
    return body


async def fetch_twiml(session: aiohttp.ClientSession, url: str, form: Mapping[str, str], auth_token: str, *,
                      method: str = "POST", timeout_s: float = WEBHOOK_TIMEOUT_S, allow_ws: bool = False) -> list[Verb]:
    """Request ``url`` as Twilio does (form-encoded, signed, ``TwilioProxy/1.1``) and parse the TwiML it answers;
    a ``WebhookError`` says what went wrong, the cause first."""
    target, body, headers = request_for(url, form, auth_token, method)
    try:
        async with session.request(method.upper(), target, data=body, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            text = await _read_twiml(response, url)
    except asyncio.TimeoutError:
        raise WebhookError(f"the voice webhook did not answer within {timeout_s:g} s ({url}): Twilio gives up "
                           "then (11205, HTTP connection failure)") from None
    except aiohttp.ClientError as exc:
        raise WebhookError(f"the voice webhook could not be reached ({url}): {str(exc) or type(exc).__name__} "
                           "(Twilio: 11205, HTTP connection failure)") from None
    try:
        return parse_twiml(text, allow_ws=allow_ws, base_url=url)
    except TwimlError as exc:
        raise WebhookError(f"the voice webhook answered TwiML the fake Twilio cannot follow ({url}): {exc}") from None
