"""Twilio Media Streams without I/O: parse what Twilio sends, build what we send back,
check request signatures, and write the TwiML that connects a call to the stream."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr


# ------------------------------------------------------------------ inbound
@dataclass(frozen=True)
class Connected:
    protocol: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000


@dataclass(frozen=True)
class Media:
    payload: bytes  # raw mu-law
    timestamp_ms: int
    chunk: int


@dataclass(frozen=True)
class MarkEcho:
    name: str


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Stop:
    call_sid: str


@dataclass(frozen=True)
class Unknown:
    """A message we could not use: what it was and why."""

    raw: str
    why: str


TwilioEvent = Connected | Start | Media | MarkEcho | Dtmf | Stop | Unknown


def parse_message(text: str) -> TwilioEvent:
    """One Twilio text frame to an event; malformed input becomes :class:`Unknown`, never an exception."""
    try:
        msg = json.loads(text)
        event = msg["event"]
        if event == "connected":
            return Connected(msg.get("protocol", ""))
        if event == "start":
            start = msg["start"]
            fmt = start.get("mediaFormat", {})
            return Start(
                stream_sid=msg.get("streamSid") or start["streamSid"],
                call_sid=start["callSid"],
                account_sid=start.get("accountSid", ""),
                custom_parameters={str(k): str(v) for k, v in (start.get("customParameters") or {}).items()},
                encoding=fmt.get("encoding", "audio/x-mulaw"),
                sample_rate=int(fmt.get("sampleRate", 8000)),
            )
        if event == "media":
            media = msg["media"]
            return Media(base64.b64decode(media["payload"]), int(media.get("timestamp", 0)), int(media.get("chunk", 0)))
        if event == "mark":
            return MarkEcho(msg["mark"]["name"])
        if event == "dtmf":
            return Dtmf(msg["dtmf"]["digit"])
        if event == "stop":
            return Stop(msg.get("stop", {}).get("callSid", ""))
        return Unknown(text[:200], f"unknown event {event!r}")
    except (ValueError, KeyError, TypeError) as exc:
        return Unknown(text[:200], f"malformed message: {exc!r}")


# ----------------------------------------------------------------- outbound
def media_message(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})


# --------------------------------------------------------------- signatures
def compute_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by sorted name+value pairs."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params or {}))
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    host = parts.hostname or ""
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    without = urlunsplit(parts._replace(netloc=host))
    return list(dict.fromkeys([url, with_port, without]))


def signature_is_valid(auth_token: str, url: str, params: Mapping[str, str] | None, signature: str | None) -> bool:
    """Constant-time check against the URL as given and with/without its explicit default port."""
    if not signature:
        return False
    return any(hmac.compare_digest(compute_signature(auth_token, u, params), signature) for u in _port_variants(url))


# -------------------------------------------------------------------- TwiML
def connect_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """TwiML that holds the call on a bidirectional stream, then hangs up when it ends."""
    params = "".join(
        f"<Parameter name={quoteattr(k)} value={quoteattr(v[:499])}/>" for k, v in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect><Hangup/></Response>"
    )
