"""Twilio Media Streams without I/O: parse what Twilio sends, build what we send back,
check request signatures, and write the TwiML that connects a call to the stream."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

from .safe_text import shown


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
    """A message we could not use: what it was and why (``why`` is safe to log: values in it are escaped)."""

    raw: str
    why: str


TwilioEvent = Connected | Start | Media | MarkEcho | Dtmf | Stop | Unknown

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")  # Twilio's SID shapes: two letters and 32 hex digits
STREAM_SID = re.compile(r"MZ[0-9a-fA-F]{32}")
DTMF_DIGITS = frozenset("0123456789*#")
MAX_PARAMETERS = 32  # custom parameters in a start: our TwiML writes one, a team's own TwiML a few
MAX_PARAMETER_CHARS = 500  # Twilio's limit for a <Parameter> name or value
MAX_PAYLOAD_CHARS = 64 << 10  # base64 of a media frame (Twilio sends 20 ms: 216 characters)
MAX_COUNTER = 2**53  # timestamps (ms) and chunk numbers


class Malformed(ValueError):
    """A field Twilio would never send; the message is ignored."""


def _object(parent: dict, key: str, *, required: bool = True) -> dict:
    value = parent.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{key} must be an object, got {shown(value)}")
    return value


def _string(parent: dict, key: str, limit: int, default: str | None = None) -> str:
    value = parent.get(key, default)
    if not isinstance(value, str) or len(value) > limit:
        raise Malformed(f"{key} must be a string of at most {limit} characters, got {shown(value)}")
    return value


def _sid(parent: dict, key: str, shape: re.Pattern[str]) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not shape.fullmatch(value):
        raise Malformed(f"{key} is not a Twilio SID ({shape.pattern}), got {shown(value)}")
    return value


def _counter(parent: dict, key: str, default: int = 0) -> int:
    """A whole number Twilio sends as a string ("40") or a number; bounded."""
    value = parent.get(key, default)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        raise Malformed(f"{key} must be a whole number 0-2^53, got {shown(value)}")
    return value


def _start(msg: dict) -> Start:
    start = _object(msg, "start")
    stream_sid = _sid(start if "streamSid" in start else msg, "streamSid", STREAM_SID)
    params = _object(start, "customParameters", required=False)
    if len(params) > MAX_PARAMETERS:
        raise Malformed(f"customParameters: {len(params)} of them; at most {MAX_PARAMETERS}")
    for name, value in params.items():
        if len(name) > MAX_PARAMETER_CHARS or not isinstance(value, str) or len(value) > MAX_PARAMETER_CHARS:
            raise Malformed(f"customParameters.{shown(name)} must be a string of at most {MAX_PARAMETER_CHARS} characters")
    fmt = _object(start, "mediaFormat", required=False)
    encoding = _string(fmt, "encoding", 40, "audio/x-mulaw")
    rate = _counter(fmt, "sampleRate", 8000)
    if encoding != "audio/x-mulaw" or rate != 8000:
        raise Malformed(f"mediaFormat must be audio/x-mulaw at 8000 Hz, got {shown(encoding)} at {rate}")
    return Start(stream_sid=stream_sid, call_sid=_sid(start, "callSid", CALL_SID),
                 account_sid=_string(start, "accountSid", 64, ""), custom_parameters=dict(params),
                 encoding=encoding, sample_rate=rate)


def _media(msg: dict) -> Media:
    media = _object(msg, "media")
    payload = _string(media, "payload", MAX_PAYLOAD_CHARS)
    try:
        audio = base64.b64decode(payload, validate=True)
    except ValueError:
        raise Malformed("media.payload is not base64") from None
    return Media(audio, _counter(media, "timestamp"), _counter(media, "chunk"))


def _dtmf(msg: dict) -> Dtmf:
    digit = _string(_object(msg, "dtmf"), "digit", 1)
    if digit not in DTMF_DIGITS:
        raise Malformed(f"dtmf.digit must be one of 0-9 * #, got {shown(digit)}")
    return Dtmf(digit)


def _stop(msg: dict) -> Stop:
    stop = _object(msg, "stop", required=False)
    call_sid = stop.get("callSid", "")
    return Stop(call_sid if isinstance(call_sid, str) and CALL_SID.fullmatch(call_sid) else "")


_PARSERS = {
    "connected": lambda msg: Connected(_string(msg, "protocol", 40, "")),
    "start": _start,
    "media": _media,
    "mark": lambda msg: MarkEcho(_string(_object(msg, "mark"), "name", 256)),
    "dtmf": _dtmf,
    "stop": _stop,
}


def _not_a_number(name: str) -> float:
    raise Malformed(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_not_a_number)  # made once: json.loads with an argument builds one per call


def parse_message(text: str) -> TwilioEvent:
    """One Twilio text frame to an event. Every field read is checked (type, shape, bounds); anything Twilio
    would never send becomes :class:`Unknown` saying why, never an exception."""
    try:
        msg = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # Malformed is a ValueError
        return Unknown(text[:200], f"not JSON: {shown(str(exc), 80)}")
    if not isinstance(msg, dict):
        return Unknown(text[:200], f"not a JSON object: {shown(msg)}")
    event = msg.get("event")
    parser = _PARSERS.get(event) if isinstance(event, str) else None
    if parser is None:
        return Unknown(text[:200], f"unknown event {shown(event)}")
    try:
        return parser(msg)
    except Malformed as exc:
        return Unknown(text[:200], f"malformed {event}: {exc}")


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
# what XML 1.0 forbids in a document (escaped or not): C0 controls but tab, LF and CR; surrogates; U+FFFE/F
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def connect_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """TwiML that holds the call on a bidirectional stream, then hangs up when it ends. Parameter values
    come from the webhook's form (``From``: anyone can post one): escaped, and stripped of what XML forbids."""
    params = "".join(
        f"<Parameter name={quoteattr(XML_FORBIDDEN.sub('', k))} value={quoteattr(XML_FORBIDDEN.sub('', v)[:499])}/>"
        for k, v in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect><Hangup/></Response>"
    )
