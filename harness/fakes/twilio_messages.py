"""What Twilio accepts from a Media Streams handler, judged message by message (sans-I/O).

Twilio's docs (https://www.twilio.com/docs/voice/media-streams/websocket-messages) list three messages a
bidirectional stream may send back, each naming the stream: ``media`` (``streamSid``, ``media.payload``:
base64 ``audio/x-mulaw`` at 8000 Hz, no file header), ``mark`` (``streamSid``, ``mark.name``) and
``clear`` (``streamSid``). Anything else Twilio drops with a warning, once per stream: a binary frame
is 31950 (https://www.twilio.com/docs/api/errors/31950); text that is not JSON, an unknown event, a
missing field or a wrong ``streamSid`` is 31951 (https://www.twilio.com/docs/api/errors/31951); a
frame that breaks the WebSocket protocol is error 31924 (https://www.twilio.com/docs/api/errors/31924).
The caller hears none of what was dropped. Extra fields are not judged: the docs name them as a
possible cause of 31951, but what Twilio does with them is not documented further.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

BINARY, INVALID, PROTOCOL = 31950, 31951, 31924
SENDABLE = ("media", "mark", "clear")
# an audio file's first bytes: Twilio plays them as noise ("do not include audio file header bytes")
FILE_HEADERS = {b"RIFF": "a WAV header (RIFF)", b"ID3": "an MP3 header (ID3)", b"OggS": "an Ogg header",
                b"fLaC": "a FLAC header"}


@dataclass(frozen=True)
class Rejection:
    """Why Twilio would not play or echo a message, with its warning code."""

    code: int
    why: str
    dropped: bool = True  # False: Twilio takes it, but the caller hears something wrong (a file header)

    def as_event(self, text: str = "") -> dict[str, Any]:
        return {"event": "invalid", "code": self.code, "why": self.why, "dropped": self.dropped, "text": text[:160]}


def judge_text(text: str, stream_sid: str) -> tuple[dict[str, Any] | None, Rejection | None]:
    """A text frame: the message Twilio would act on (None if it drops it), and what is wrong with it."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None, Rejection(INVALID, "not JSON")
    if not isinstance(message, dict):
        return None, Rejection(INVALID, f"a JSON {type(message).__name__}, not an object")
    event = message.get("event")
    if event not in SENDABLE:
        return None, Rejection(INVALID, f"event {event!r}: Twilio takes only media, mark and clear")
    sid = message.get("streamSid")
    if sid is None:
        return None, Rejection(INVALID, f"{event} without streamSid")
    if sid != stream_sid:
        return None, Rejection(INVALID, f"{event} for streamSid {str(sid)[:40]!r}, not this stream's")
    if event == "media":
        return _media(message)
    if event == "mark":
        mark = message.get("mark")
        if not isinstance(mark, dict) or not isinstance(mark.get("name"), str):
            return None, Rejection(INVALID, "mark without mark.name")
    return message, None


def _media(message: dict[str, Any]) -> tuple[dict[str, Any] | None, Rejection | None]:
    media = message.get("media")
    payload = media.get("payload") if isinstance(media, dict) else None
    if not isinstance(payload, str):
        return None, Rejection(INVALID, "media without media.payload")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None, Rejection(INVALID, "media.payload is not base64")
    header = next((name for magic, name in FILE_HEADERS.items() if audio.startswith(magic)), None)
    if header:
        return message, Rejection(INVALID, f"media.payload starts with {header}: send raw mu-law, "
                                  "the caller hears the header as noise", dropped=False)
    return message, None


def binary_frame(size: int) -> Rejection:
    return Rejection(BINARY, f"a binary frame ({size} bytes): Twilio takes only text messages")


def protocol_error(error: object) -> Rejection:
    return Rejection(PROTOCOL, f"a WebSocket protocol error: {error}")
