"""A call started as Twilio starts it: the handler's voice webhook asked for TwiML, the TwiML followed to its
``<Connect><Stream>``.

Twilio answers an incoming call by POSTing the number's voice webhook (``twilio_webhook.fetch_twiml``: the form
fields Twilio sends, signed with the account's auth token) and follows the TwiML it gets: ``<Say>`` (the fake
speaks nothing: the caller's audio is the fixture's), ``<Pause>`` (waited out at the replay's pace),
``<Redirect>`` (the next document fetched), ``<Hangup>`` or the end of the document (the call ends there, no
stream). ``<Connect><Stream url>`` opens the Media Stream with its ``<Parameter>``s as the ``start`` message's
``customParameters``.

The stream URL is ``wss://`` (Twilio takes no other), usually built from the webhook request's ``Host``. Where
it names the handler's own plain-HTTP address, the fake Twilio connects with ``ws://``: it stands where your
TLS-terminating proxy (ngrok, a load balancer) stands in production.

``follow`` does the same from any start: a URL to fetch (the voice webhook, a placed call's ``Url``, a redirect's
``Url``) or TwiML given inline (a placed call's or a redirect's ``Twiml``). Inline TwiML has no document URL, so a
relative ``<Redirect>`` or ``<Stream url>`` in it cannot be resolved: refused, naming it (Twilio asks for absolute
URLs in TwiML given to update a call: https://www.twilio.com/docs/api/errors/15004).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

from harness.fakes.twiml import ConnectStream, Hangup, Pause, Redirect, Say, TwimlError, Verb, parse_twiml
from harness.fakes.twilio_webhook import CallWebhook, WebhookError, fetch_twiml

MAX_REDIRECTS = 10  # a webhook that redirects to itself forever is a failure, not a hang


@dataclass(frozen=True)
class VoiceWebhook:
    """Where a handler's calls start: its voice webhook URL (``{port}`` filled in) and the HTTP method Twilio uses."""

    url: str
    method: str = "POST"


@dataclass
class Dialled:
    """What the TwiML came to: the stream to open (None: the call ended without one) and what was followed."""

    stream_url: str | None  # where the fake Twilio connects (``local_stream_url``)
    twiml_url: str | None = None  # the stream URL as the TwiML gave it (what Twilio signs the handshake with)
    parameters: dict[str, str] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)  # <Say> texts, in order
    documents: int = 0  # TwiML documents fetched (redirects included)
    ended_by: str = ""  # "hangup" or "end of TwiML" when no stream was opened


def local_stream_url(stream_url: str, webhook_url: str) -> str:
    """``wss://host:port/path`` as the fake Twilio opens it: ``ws://`` when ``host:port`` is the plain-HTTP
    webhook's own (TLS is terminated in front of the handler in production), unchanged otherwise."""
    stream, hook = urlsplit(stream_url), urlsplit(webhook_url)
    same = stream.hostname == hook.hostname and (stream.port or 443) == (hook.port or 80)
    if stream.scheme == "wss" and hook.scheme == "http" and same:
        return urlunsplit(("ws", stream.netloc, stream.path, stream.query, ""))
    return stream_url


async def dial(session: aiohttp.ClientSession, webhook: VoiceWebhook, call: CallWebhook, auth_token: str, *,
               pace: float | None) -> Dialled:
    """Ask the webhook for the call's TwiML and follow it to its stream (or its end); ``WebhookError`` when the
    webhook fails or its TwiML cannot be followed, the cause first."""
    return await follow(session, webhook, call, auth_token, pace=pace, local_to=webhook.url)


def _inline(twiml: str) -> list[Verb]:
    try:
        return parse_twiml(twiml, allow_ws=True)
    except TwimlError as exc:
        raise WebhookError(f"the TwiML the handler gave inline (Twiml=) cannot be followed: {exc}") from None


async def follow(session: aiohttp.ClientSession, start: VoiceWebhook | str, call: CallWebhook, auth_token: str, *,
                 pace: float | None, local_to: str) -> Dialled:
    """Follow TwiML from ``start`` (a URL to fetch, or a TwiML document given inline) to its stream or its end, as
    ``dial`` does; ``local_to`` is the handler's own plain-HTTP address (a stream URL there is opened with ws://)."""
    dialled = Dialled(None)
    url: str | None = None
    method = "POST"
    verbs: list[Verb] | None = None
    if isinstance(start, VoiceWebhook):
        url, method = start.url, start.method
    else:
        verbs = _inline(start)
    first = url or "TwiML given inline"
    while dialled.documents <= MAX_REDIRECTS:
        if verbs is None:
            assert url is not None
            verbs = await fetch_twiml(session, url, call.form(), auth_token, method=method, allow_ws=True)
        dialled.documents += 1
        redirect = None
        for verb in verbs:
            if isinstance(verb, Say):
                dialled.said.append(verb.text)
            elif isinstance(verb, Pause):
                if pace is not None:
                    await asyncio.sleep(verb.seconds / pace)  # the TwiML's own pause, at the replay's pace
            elif isinstance(verb, ConnectStream):
                dialled.stream_url, dialled.twiml_url = local_stream_url(verb.url, local_to), verb.url
                dialled.parameters = dict(verb.parameters)
                return dialled
            elif isinstance(verb, Hangup):
                dialled.ended_by = "hangup"
                return dialled
            elif isinstance(verb, Redirect):
                redirect = verb
                break
        if redirect is None:
            dialled.ended_by = "end of TwiML"
            return dialled
        if url is None and not urlsplit(redirect.url).scheme:
            raise WebhookError(f"<Redirect>{redirect.url}</Redirect> in TwiML given inline (Twiml=) is relative: "
                               "there is no document URL to resolve it against; give an absolute URL")
        url, method = urljoin(url or "", redirect.url), redirect.method  # a relative URL is the document's, as Twilio reads it
        verbs = None
    raise WebhookError(f"the TwiML redirected more than {MAX_REDIRECTS} times ({first}): a loop")
