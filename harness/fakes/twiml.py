"""TwiML as the fake Twilio reads it (sans-I/O): text in, a list of the verbs it follows out.

The fake follows five verbs, each a frozen dataclass: ``<Connect><Stream>`` (``ConnectStream``), ``<Say>``,
``<Pause>``, ``<Hangup>`` and ``<Redirect>``. Anything else is refused with a ``TwimlError`` that names the element
and its place, so a handler whose TwiML the fake cannot follow fails loudly instead of silently doing less.

What Twilio documents, and this module holds to:
- The root must be ``<Response>``; a document Twilio cannot parse is error 12100, and verbs are case-sensitive
  (``<say>`` is not ``<Say>``: warning 12200). https://www.twilio.com/docs/api/errors/12100,
  https://www.twilio.com/docs/api/errors/12200
- ``<Connect><Stream url>`` opens a bidirectional Media Stream and holds the call: "The only way Twilio executes
  TwiML instructions after <Connect><Stream> is if your server closes the WebSocket connection" - then Twilio goes
  on with the next verb. ``url`` is ``wss`` only ("wss is the only supported protocol") and "does not support query
  string parameters" (values travel as ``<Parameter name value>``, which reach the ``start`` message's
  ``customParameters``); ``track`` defaults to ``inbound_track``.
  https://www.twilio.com/docs/voice/twiml/stream,
  https://www.twilio.com/docs/voice/media-streams/websocket-messages
- ``<Pause length>``: an integer > 0, 1 second by default. https://www.twilio.com/docs/voice/twiml/pause
- ``<Redirect method>URL</Redirect>``: transfers the call to the TwiML at that URL (``POST`` by default); "All verbs
  after <Redirect> are unreachable and ignored". https://www.twilio.com/docs/voice/twiml/redirect

The fake's own choices: a ``<!DOCTYPE>`` is refused before any entity is declared (TwiML has no DTD, and so no
entity expansion can be asked of the parser; stdlib ElementTree then suffices, without defusedxml); ``ws://`` stream
URLs are refused as Twilio refuses them unless ``allow_ws=True`` (a local handler without TLS); a relative stream
URL, which Twilio resolves against the document's URL, is resolved only when ``base_url`` is given.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import urljoin, urlsplit

from harness.errors import HarnessError

FOLLOWED = ("Connect", "Say", "Pause", "Hangup", "Redirect")
# Twilio's other voice verbs: valid TwiML, but not what this fake follows (https://www.twilio.com/docs/voice/twiml)
NOT_FOLLOWED = frozenset({"Dial", "Echo", "Enqueue", "Gather", "Leave", "Pay", "Play", "Prompt", "Queue", "Record",
                          "Refer", "Reject", "Siprec", "Sms", "Message", "Start", "Stop", "Transcription"})


class TwimlError(HarnessError):
    """TwiML the fake Twilio cannot follow: the message says which element, where, and what is wrong."""


@dataclass(frozen=True)
class ConnectStream:
    """``<Connect><Stream url>``: a bidirectional Media Stream; ``parameters`` become ``start.customParameters``."""

    url: str
    parameters: dict[str, str] = field(default_factory=dict, hash=False)
    name: str | None = None
    track: str = "inbound_track"
    status_callback: str | None = None
    status_callback_method: str = "POST"


@dataclass(frozen=True)
class Say:
    """``<Say>``: text spoken to the caller (SSML children are read for their text)."""

    text: str
    voice: str | None = None
    language: str | None = None
    loop: int = 1


@dataclass(frozen=True)
class Pause:
    """``<Pause length>``: silence for ``seconds``."""

    seconds: int = 1


@dataclass(frozen=True)
class Hangup:
    """``<Hangup/>``: the call ends here."""


@dataclass(frozen=True)
class Redirect:
    """``<Redirect>``: fetch the TwiML at ``url`` with ``method`` and follow it instead."""

    url: str
    method: str = "POST"


Verb = Union[ConnectStream, Say, Pause, Hangup, Redirect]


class _NoDoctype(ET.TreeBuilder):
    """Refuses a DTD at its start, before an entity in it is declared (and so before one can be expanded)."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise TwimlError(f"the TwiML has a <!DOCTYPE {name}>: TwiML has no DTD, and the fake Twilio refuses one "
                         "(no entity in it is ever expanded)")


def _root(text: str | bytes) -> ET.Element:
    if not text.strip():
        raise TwimlError("the TwiML is empty: Twilio needs a <Response> document (error 12100)")
    parser = ET.XMLParser(target=_NoDoctype())
    try:
        parser.feed(text)
        root: ET.Element = parser.close()
    except ET.ParseError as exc:
        raise TwimlError(f"the TwiML is not well-formed XML ({exc}): Twilio answers such a document with "
                         "error 12100, Document parse failure") from None
    if root.tag != "Response":
        raise TwimlError(f"the TwiML's root element is <{root.tag}>; Twilio needs <Response> (error 12100)")
    return root


def _where(index: int, element: ET.Element) -> str:
    return f"<{element.tag}> (verb {index + 1} of <Response>)"


def _no_text(element: ET.Element, where: str) -> None:
    text = (element.text or "").strip()
    if text:
        raise TwimlError(f"{where} holds text {text[:40]!r}, which Twilio's schema does not allow")


def _stream_url(url: str | None, where: str, *, allow_ws: bool, base_url: str | None) -> str:
    if not url:
        raise TwimlError(f"{where}: <Stream> has no url attribute")
    parts = urlsplit(url)
    if not parts.scheme:
        if base_url is None:
            raise TwimlError(f"{where}: <Stream url={url!r}> is relative; give an absolute wss:// URL (or the "
                             "document's URL as base_url)")
        base = urlsplit(base_url)
        url = urljoin(base._replace(scheme={"https": "wss", "http": "ws"}.get(base.scheme, base.scheme)).geturl(), url)
        parts = urlsplit(url)
    allowed = ("wss", "ws") if allow_ws else ("wss",)
    if parts.scheme not in allowed:
        raise TwimlError(f"{where}: <Stream url={url!r}> is not a wss:// URL; Twilio streams to wss only"
                         + ("" if parts.scheme != "ws" else " (allow_ws=True for a local handler without TLS)"))
    if parts.query:
        raise TwimlError(f"{where}: <Stream url={url!r}> has a query string, which Twilio does not support; "
                         "pass values as <Parameter name=... value=...> (they arrive in start.customParameters)")
    return url


def _parameters(stream: ET.Element, where: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for child in stream:
        if child.tag != "Parameter":
            raise TwimlError(f"{where}: <Stream> holds <{child.tag}>; only <Parameter> may be nested in it")
        name, value = child.get("name"), child.get("value")
        if not name or value is None:
            raise TwimlError(f"{where}: a <Parameter> needs both name and value (got name={name!r}, value={value!r})")
        parameters[name] = value
    return parameters


def _connect(element: ET.Element, where: str, *, allow_ws: bool, base_url: str | None) -> ConnectStream:
    _no_text(element, where)
    children = list(element)
    if len(children) != 1 or children[0].tag != "Stream":
        held = ", ".join(f"<{c.tag}>" for c in children) or "nothing"
        raise TwimlError(f"{where} holds {held}; the fake Twilio follows <Connect> only around one <Stream> "
                         "(not <Room>, <ConversationRelay>, <VirtualAgent>, ...)")
    stream = children[0]
    _no_text(stream, where)
    return ConnectStream(url=_stream_url(stream.get("url"), where, allow_ws=allow_ws, base_url=base_url),
                         parameters=_parameters(stream, where), name=stream.get("name"),
                         track=stream.get("track") or "inbound_track", status_callback=stream.get("statusCallback"),
                         status_callback_method=(stream.get("statusCallbackMethod") or "POST").upper())


def _whole_number(value: str | None, default: int, what: str, where: str, least: int = 1) -> int:
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        number = least - 1
    if number < least:
        raise TwimlError(f"{where}: {what}={value!r} is not a whole number >= {least}")
    return number


def _say(element: ET.Element, where: str) -> Say:
    text = "".join(element.itertext()).strip()
    return Say(text=text, voice=element.get("voice"), language=element.get("language"),
               loop=_whole_number(element.get("loop"), 1, "loop", where, least=0))


def _redirect(element: ET.Element, where: str) -> Redirect:
    if len(element):
        raise TwimlError(f"{where}: nothing may be nested in <Redirect>, only its URL as text")
    url = (element.text or "").strip()
    if not url:
        raise TwimlError(f"{where}: <Redirect> has no URL (its text is the URL of the next TwiML)")
    method = (element.get("method") or "POST").upper()
    if method not in ("GET", "POST"):
        raise TwimlError(f"{where}: <Redirect method={method!r}>; Twilio takes GET or POST")
    return Redirect(url=url, method=method)


def _bare(element: ET.Element, where: str) -> None:
    _no_text(element, where)
    if len(element):
        raise TwimlError(f"{where}: nothing may be nested in <{element.tag}>")


def _verb(index: int, element: ET.Element, *, allow_ws: bool, base_url: str | None) -> Verb:
    where = _where(index, element)
    if element.tag == "Connect":
        return _connect(element, where, allow_ws=allow_ws, base_url=base_url)
    if element.tag == "Say":
        return _say(element, where)
    if element.tag == "Pause":
        _bare(element, where)
        return Pause(_whole_number(element.get("length"), 1, "length", where))
    if element.tag == "Hangup":
        _bare(element, where)
        return Hangup()
    if element.tag == "Redirect":
        return _redirect(element, where)
    if element.tag in NOT_FOLLOWED:
        raise TwimlError(f"{where} is a TwiML verb the fake Twilio does not follow; it follows "
                         f"{', '.join(f'<{v}>' for v in FOLLOWED)}")
    known = next((v for v in (*FOLLOWED, *NOT_FOLLOWED) if v.lower() == element.tag.lower()), None)
    hint = f" (TwiML is case-sensitive: <{known}>, not <{element.tag}>)" if known else ""
    raise TwimlError(f"{where} is not a TwiML verb{hint}; Twilio warns 12200 and the fake refuses it")


def parse_twiml(text: str | bytes, *, allow_ws: bool = False, base_url: str | None = None) -> list[Verb]:
    """The verbs of a TwiML document, in order, or a ``TwimlError`` naming what the fake cannot follow.
    ``base_url`` (the URL the document came from) resolves a relative ``<Stream url>``."""
    root = _root(text)
    _no_text(root, "<Response>")
    verbs: list[Verb] = []
    for index, element in enumerate(root):
        tail = (element.tail or "").strip()
        if tail:
            raise TwimlError(f"text {tail[:40]!r} after {_where(index, element)} is not TwiML")
        verbs.append(_verb(index, element, allow_ws=allow_ws, base_url=base_url))
    return verbs


def reachable(verbs: list[Verb]) -> list[Verb]:
    """The verbs Twilio can reach: none after a ``<Hangup>`` (the call is over) or a ``<Redirect>`` (whose
    followers "are unreachable and ignored")."""
    for index, verb in enumerate(verbs):
        if isinstance(verb, (Hangup, Redirect)):
            return verbs[: index + 1]
    return list(verbs)
