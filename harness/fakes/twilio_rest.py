"""A fake of Twilio's Calls REST API: a core that decides (``CallsCore``, no I/O) and a thin aiohttp shell
(``FakeTwilioRest``) with a journal, so a handler that makes, fetches, redirects or hangs up calls can be replayed.

Routes (form-encoded bodies, JSON answers, HTTP basic auth with the Account SID and auth token or an API key SID and
secret), from Twilio's OpenAPI description
(https://github.com/twilio/twilio-oai/blob/main/spec/json/twilio_api_v2010.json) and
https://www.twilio.com/docs/voice/api/call-resource:
- ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``: ``To`` and ``From`` required, and ``Url``, ``Twiml`` or
  ``ApplicationSid``; "If both twiml and url are provided then twiml parameter will be ignored". 201 with the Call
  resource, ``status`` ``queued``, ``direction`` ``outbound-api``, ``sid`` ``CA`` + 32 hex digits.
- ``GET .../Calls/{Sid}.json``: the Call resource.
- ``POST .../Calls/{Sid}.json``: ``Url`` or ``Twiml`` ("mutually exclusive") redirect a live call; ``Status``
  ``canceled`` "will attempt to hangup calls that are queued or ringing but not affect calls already in progress",
  ``completed`` "will attempt to hang up a call even if it's already in progress".
  https://www.twilio.com/docs/api/rest/change-call-state
- Statuses: queued -> ringing -> in-progress -> completed, or busy, no-answer, canceled, failed ("All new calls are
  created with a status of queued"). http://www.twilio.com/help/faq/voice/what-do-the-call-statuses-mean
- Times: ``start_time`` is "Empty if the call has not yet been dialed" (http://www.twilio.com/docs/api/rest/call):
  set when a queued call starts ringing (an incoming call rings when it is created); ``end_time`` when it ends;
  ``date_updated`` at every change; ``duration`` the whole seconds between them.

Errors in Twilio's shape, ``{"code", "message", "more_info", "status"}``:
- 401 20003 ``Authenticate`` for wrong credentials, or credentials of another account
  (https://www.twilio.com/docs/errors/20003; body as in https://github.com/twilio/twilio-video-app-react/issues/841);
- 404 20404 ``The requested resource /2010-04-01/Accounts/AC.../Calls/CA....json was not found``
  (https://github.com/twilio/twilio-salesforce/issues/53);
- 400 21220 ``Call is not in-progress. Cannot redirect.`` for any update of a call that has ended, and for a redirect
  of one that is not yet in progress (https://www.twilio.com/docs/errors/21220: "You attempted a realtime operation on
  a Call that was not in-progress"; HTTP 400 and the message as in https://github.com/bmlt-enabled/yap/issues/570;
  public client code treats 21220 on ``Status=completed`` as "the call already ended");
- 400 21201 ``No 'To' number is specified`` (https://www.twilio.com/docs/errors/21201; the message as in
  https://github.com/TwilioDevEd/voice-javascript-sdk-quickstart-python/issues/8), 400 21213 for no ``From``
  (https://www.twilio.com/docs/errors/21213; its message here is the page's title), 400 21205 ``Url parameter is
  required...`` / ``Url is not a valid URL: ...`` (https://www.twilio.com/docs/errors/21205; messages as in
  https://github.com/twilio/twilio-node/issues/275 and https://github.com/aloha/laravel-twilio/issues/169).
The fake's own, Twilio's code not found: ``Url`` and ``Twiml`` in one update, or a ``Status`` other than
``canceled``/``completed``, answer 400 with ``code`` null. Inferred: ``completed`` on a queued or ringing call
cancels it (status ``canceled``).

The runner drives a call's life with ``advance`` (ringing, answered, hung up) and learns what the handler asked with
``FakeCall.instructions`` (the TwiML or URL to follow now) and ``FakeTwilioRest.ended(sid)`` (an ``asyncio.Event``);
``expect_outbound(to, sid)`` gives the next call created to ``to`` the SID the runner already calls it by (Twilio
makes its own; the handler cannot tell the difference), so a placed call is judged under one SID from the start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from harness.errors import HarnessError
from harness.fakes.journal import JournaledFake

API_VERSION = "2010-04-01"
STATUSES = ("queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled")
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
NEXT: dict[str, frozenset[str]] = {  # every move a call can make, in one table
    "queued": frozenset({"ringing", "canceled", "failed"}),
    "ringing": frozenset({"in-progress", "busy", "no-answer", "canceled", "failed"}),
    "in-progress": frozenset({"completed", "failed"}),
}
NOT_IN_PROGRESS = "Call is not in-progress. Cannot redirect."


def new_sid(prefix: str = "CA") -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits (34 characters)."""
    return prefix + uuid.uuid4().hex


def rfc2822(at: float | None) -> str | None:
    """Twilio's date format: ``Tue, 31 Aug 2010 20:36:28 +0000``."""
    return None if at is None else format_datetime(datetime.fromtimestamp(at, timezone.utc))


class TwilioApiError(Exception):
    """An answer in Twilio's error shape: HTTP ``status``, Twilio ``code`` (None: the fake's own), ``message``."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        more_info = None if self.code is None else f"https://www.twilio.com/docs/errors/{self.code}"
        return {"code": self.code, "message": self.message, "more_info": more_info, "status": self.status}


class CallStateError(HarnessError):
    """The runner asked a call to move where Twilio's calls never go (``NEXT`` lists where they can)."""


@dataclass(frozen=True)
class Instructions:
    """What a call is to follow: TwiML, or a URL to fetch it from (with ``method``), and who said so."""

    url: str | None = None
    twiml: str | None = None
    method: str = "POST"
    by: str = "create"  # "create", "update" or "incoming"
    at: float = 0.0


@dataclass
class FakeCall:
    """One call as the fake keeps it: its fields, its status history, every set of instructions it was given."""

    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str
    status: str
    date_created: float
    date_updated: float
    instructions: list[Instructions] = field(default_factory=list)
    history: list[tuple[str, float]] = field(default_factory=list)  # (status, when), the first one included
    start_time: float | None = None
    end_time: float | None = None
    ended_by: str = ""  # "api" (an update ended it) or "runner"
    status_callback: str | None = None
    application_sid: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def current(self) -> Instructions | None:
        """The instructions to follow now (the latest)."""
        return self.instructions[-1] if self.instructions else None


Listener = Callable[[FakeCall, str], None]  # (call, "status" | "instructions")


def _absolute_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _credentials(authorization: str | None) -> tuple[str, str] | None:
    """The user and password of an HTTP basic ``Authorization`` header, or None."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class CallsCore:
    """The Calls API's decisions, with no I/O: requests in (as dicts), calls and errors out."""

    def __init__(self, account_sid: str, auth_token: str, api_keys: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.api_keys = dict(api_keys or {})  # API key SID (SK...) -> secret
        self.clock = clock
        self.calls: dict[str, FakeCall] = {}
        self.listeners: list[Listener] = []
        self.reserved: dict[str, str] = {}  # To number -> the SID the next call created to it gets

    def reset(self) -> None:
        """Forget every call and reservation (the listeners stay)."""
        self.calls.clear()
        self.reserved.clear()

    # ------------------------------------------------------------------ checks
    def authenticate(self, authorization: str | None, account_sid: str) -> None:
        """401 20003 unless ``authorization`` is the account's SID and token (or an API key) and the URL is its."""
        user, password = _credentials(authorization) or ("", "")
        secret = self.auth_token if user == self.account_sid else self.api_keys.get(user)
        valid = secret is not None and hmac.compare_digest(password.encode(), secret.encode())
        if not valid or account_sid != self.account_sid:
            raise TwilioApiError(401, 20003, "Authenticate")

    def _call(self, account_sid: str, sid: str) -> FakeCall:
        call = self.calls.get(sid)
        if call is None or call.account_sid != account_sid:
            path = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{sid}.json"
            raise TwilioApiError(404, 20404, f"The requested resource {path} was not found")
        return call

    # ------------------------------------------------------------------ changes
    def _tell(self, call: FakeCall, what: str) -> None:
        for listener in list(self.listeners):
            listener(call, what)

    def _move(self, call: FakeCall, status: str, by: str = "runner") -> None:
        now = self.clock()
        call.status, call.date_updated = status, now
        call.history.append((status, now))
        if status == "ringing" and call.start_time is None:  # dialled
            call.start_time = now
        if status in ENDED:
            call.end_time, call.ended_by = now, by
        self._tell(call, "status")

    def _new(self, to: str, from_: str, direction: str, status: str, instructions: Instructions,
             sid: str | None = None) -> FakeCall:
        now = self.clock()
        call = FakeCall(sid=sid or new_sid(), account_sid=self.account_sid, to=to, from_=from_, direction=direction,
                        status=status, date_created=now, date_updated=now, history=[(status, now)],
                        start_time=now if status == "ringing" else None)
        if instructions.url or instructions.twiml:
            call.instructions.append(Instructions(instructions.url, instructions.twiml, instructions.method,
                                                  instructions.by, now))
        self.calls[call.sid] = call
        self._tell(call, "status")
        return call

    # ------------------------------------------------------------------ the API
    def create(self, account_sid: str, form: Mapping[str, str]) -> FakeCall:
        """``POST .../Calls.json``: a queued outbound call, or the error Twilio gives."""
        to, from_ = form.get("To", "").strip(), form.get("From", "").strip()
        url, twiml, app = form.get("Url") or None, form.get("Twiml") or None, form.get("ApplicationSid") or None
        if not to:
            raise TwilioApiError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise TwilioApiError(400, 21213, "Caller phone number is required")
        if not (url or twiml or app):
            raise TwilioApiError(400, 21205, "Url parameter is required. For more information, see "
                                             "http://www.twilio.com/docs/api/twiml")
        if url and not _absolute_url(url):
            raise TwilioApiError(400, 21205, f"Url is not a valid URL: {url}")
        method = (form.get("Method") or "POST").upper()
        call = self._new(to, from_, "outbound-api", "queued",
                         Instructions(url=url, twiml=None if url else twiml, method=method, by="create"),
                         sid=self.reserved.pop(to, None))
        call.status_callback, call.application_sid = form.get("StatusCallback") or None, app
        return call

    def fetch(self, account_sid: str, sid: str) -> FakeCall:
        """``GET .../Calls/{Sid}.json``."""
        return self._call(account_sid, sid)

    def update(self, account_sid: str, sid: str, form: Mapping[str, str]) -> FakeCall:
        """``POST .../Calls/{Sid}.json``: end the call (``Status``) or give it new TwiML (``Url``/``Twiml``)."""
        call = self._call(account_sid, sid)
        status, url, twiml = form.get("Status") or None, form.get("Url") or None, form.get("Twiml") or None
        if status is not None and status not in ("canceled", "completed"):
            raise TwilioApiError(400, None, f"Status must be canceled or completed, not {status!r}")
        if url and twiml:
            raise TwilioApiError(400, None, "Url and Twiml are mutually exclusive")
        if call.ended or ((url or twiml) and status is None and call.status != "in-progress"):
            raise TwilioApiError(400, 21220, NOT_IN_PROGRESS)
        if url and not _absolute_url(url):
            raise TwilioApiError(400, 21205, f"Url is not a valid URL: {url}")
        if status is not None:
            self._hang_up(call, status)
        elif url or twiml:
            call.instructions.append(Instructions(url=url, twiml=twiml, method=(form.get("Method") or "POST").upper(),
                                                  by="update", at=self.clock()))
            call.date_updated = self.clock()
            self._tell(call, "instructions")
        return call

    def _hang_up(self, call: FakeCall, status: str) -> None:
        if call.status in ("queued", "ringing"):
            self._move(call, "canceled", by="api")
        elif status == "completed":  # in progress: ``canceled`` leaves it be
            self._move(call, "completed", by="api")

    # ------------------------------------------------------------------ the runner's side
    def add_incoming(self, from_: str, to: str, *, url: str | None = None, twiml: str | None = None,
                     sid: str | None = None) -> FakeCall:
        """A call to one of the account's numbers (the fake Twilio dialled the handler): ringing, inbound."""
        return self._new(to, from_, "inbound", "ringing", Instructions(url=url, twiml=twiml, by="incoming"), sid)

    def advance(self, sid: str, status: str) -> FakeCall:
        """Move a call on (ringing, answered, hung up, ...) as Twilio's network would; ``NEXT`` says where it may."""
        call = self.calls.get(sid)
        if call is None:
            raise CallStateError(f"no call {sid} in the fake Twilio")
        if status not in NEXT.get(call.status, frozenset()):
            allowed = ", ".join(sorted(NEXT.get(call.status, frozenset()))) or "nothing: it has ended"
            raise CallStateError(f"call {sid} is {call.status}; it can move to {allowed}, not {status}")
        self._move(call, status)
        return call

    def resource(self, call: FakeCall) -> dict[str, Any]:
        """The Call resource's JSON, with the fields Twilio's answers have."""
        base = f"/{API_VERSION}/Accounts/{call.account_sid}/Calls/{call.sid}"
        duration = None
        if call.start_time is not None and call.end_time is not None:
            duration = str(int(call.end_time - call.start_time))
        subresources = ("notifications", "recordings", "payments", "events", "siprec", "streams", "transcriptions",
                        "user_defined_message_subscriptions", "user_defined_messages")
        names = {"user_defined_message_subscriptions": "UserDefinedMessageSubscriptions",
                 "user_defined_messages": "UserDefinedMessages"}
        return {
            "sid": call.sid, "account_sid": call.account_sid, "parent_call_sid": None,
            "date_created": rfc2822(call.date_created), "date_updated": rfc2822(call.date_updated),
            "to": call.to, "to_formatted": call.to, "from": call.from_, "from_formatted": call.from_,
            "phone_number_sid": None, "status": call.status, "start_time": rfc2822(call.start_time),
            "end_time": rfc2822(call.end_time), "duration": duration, "price": None, "price_unit": "USD",
            "direction": call.direction, "answered_by": None, "api_version": API_VERSION, "forwarded_from": None,
            "group_sid": None, "caller_name": None, "queue_time": "0", "trunk_sid": None, "uri": base + ".json",
            "subresource_uris": {s: f"{base}/{names.get(s, s.capitalize())}.json" for s in subresources},
        }


@dataclass
class RestRequest:
    """One request the fake took, for the journal."""

    method: str
    path: str
    form: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    status: int = 0
    code: int | None = None  # Twilio's error code, when it answered one
    call_sid: str | None = None
    ended_at: float | None = None
    abandoned: bool = False
    index: int = -1


CALLS = f"/{API_VERSION}/Accounts/{{AccountSid}}/Calls"


class FakeTwilioRest(JournaledFake[RestRequest]):
    """The Calls API over HTTP, around one ``CallsCore``; ``ended(sid)`` is an event the runner can wait on."""

    def __init__(self, account_sid: str | None = None, auth_token: str | None = None,
                 api_keys: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.core = CallsCore(account_sid or new_sid("AC"), auth_token or uuid.uuid4().hex, api_keys)
        self.core.listeners.append(self._changed)
        self._ended: dict[str, asyncio.Event] = {}

    @property
    def calls(self) -> dict[str, FakeCall]:
        return self.core.calls

    def reset(self) -> None:
        """No calls and an empty journal, as new (the credentials stay)."""
        self.core.reset()
        self._ended.clear()
        self.clear()

    def expect_outbound(self, to: str, sid: str) -> None:
        """The next call created to ``to`` (``POST .../Calls.json``) gets ``sid``."""
        self.core.reserved[to] = sid

    def forget_outbound(self, to: str) -> None:
        """No call to ``to`` is expected any more (one that was never created leaves no reservation behind)."""
        self.core.reserved.pop(to, None)

    def creates(self) -> list[RestRequest]:
        """The ``POST .../Calls.json`` requests taken, in order (answered or refused)."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Calls.json")]

    def ended(self, sid: str) -> asyncio.Event:
        """Set once call ``sid`` has ended (by an update, or by ``core.advance``)."""
        event = self._ended.setdefault(sid, asyncio.Event())
        call = self.core.calls.get(sid)
        if call is not None and call.ended:
            event.set()
        return event

    def _changed(self, call: FakeCall, what: str) -> None:
        if call.ended and call.sid in self._ended:
            self._ended[call.sid].set()
        self.changes.notify()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(CALLS + ".json", self._create)
        app.router.add_get(CALLS + "/{Sid}.json", self._fetch)
        app.router.add_post(CALLS + "/{Sid}.json", self._update)

    async def _answer(self, request: web.Request, decide: Callable[[str, dict[str, str]], tuple[int, FakeCall]]
                      ) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        entry = RestRequest(request.method, request.path, form)
        self.record(entry)
        with self.answering(entry):
            account_sid = request.match_info["AccountSid"]
            try:
                self.core.authenticate(request.headers.get("Authorization"), account_sid)
                status, call = decide(account_sid, form)
            except TwilioApiError as exc:
                entry.status, entry.code = exc.status, exc.code
                return web.json_response(exc.body(), status=exc.status)
            entry.status, entry.call_sid = status, call.sid
            return web.json_response(self.core.resource(call), status=status)

    async def _create(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda account, form: (201, self.core.create(account, form)))

    async def _fetch(self, request: web.Request) -> web.Response:
        sid = request.match_info["Sid"]
        return await self._answer(request, lambda account, form: (200, self.core.fetch(account, sid)))

    async def _update(self, request: web.Request) -> web.Response:
        sid = request.match_info["Sid"]
        return await self._answer(request, lambda account, form: (200, self.core.update(account, sid, form)))
