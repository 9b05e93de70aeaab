"""What the fake saw and did, for tests to assert on (after WireMock's request journal).

Every connection attempt is recorded: its parameters, headers with secrets redacted, audio
received, each message sent with its audio position and wall times, faults fired, how it ended.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers with every secret value replaced; the scheme of Authorization is kept."""
    clean = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            clean[name] = f"{scheme} <redacted>".strip()
        else:
            clean[name] = value
    return clean


@dataclass
class SentMessage:
    kind: str  # "partial", "final" or "raw"
    seq: int | None
    text: str
    audio_ms: float  # the connection audio position at which it became due
    due_wall: float  # monotonic time at which that audio position had arrived
    sent_wall: float  # monotonic time at which it was written to the socket
    delay_ms: float  # the scripted (scaled) processing delay it waited
    payload: str


@dataclass
class ConnectionRecord:
    MAX_TEXT_FRAMES = 100  # text frames kept per connection (each cut to 200 characters)

    index: int
    opened_at: float = field(default_factory=time.time)
    opened_wall: float = field(default_factory=time.monotonic)
    client_id: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 101
    refusal: dict[str, str] | None = None
    mode: str = ""
    script: str | None = None
    audio_bytes: int = 0
    audio_frames: int = 0
    audio_ms: float = 0.0
    text_frames: list[str] = field(default_factory=list)
    messages: list[SentMessage] = field(default_factory=list)
    alignment: list[dict[str, Any]] = field(default_factory=list)
    faults_fired: list[dict[str, Any]] = field(default_factory=list)
    ended: dict[str, Any] | None = None  # how the conversation ended (a stall ends it with the socket still open)
    closed_wall: float | None = None  # monotonic time the socket was gone and the server let go of it
    client_close_code: int | None = None  # after a server close: the client's Close in answer (1006: none came)

    @property
    def finals(self) -> list[SentMessage]:
        return [m for m in self.messages if m.kind == "final"]

    @property
    def accepted(self) -> bool:
        return self.status == 101

    @property
    def closed(self) -> bool:
        """The socket is gone (a refused handshake never had one)."""
        return not self.accepted or self.closed_wall is not None

    def end(self, how: str, code: int | None = None, reason: str = "") -> None:
        """Record how the connection ended; the first account wins."""
        if self.ended is None:
            self.ended = {"how": how, "code": code, "reason": reason, "at": time.time(), "wall": time.monotonic(),
                          "audio_ms": self.audio_ms}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["finals"] = [m.text for m in self.finals]
        return data


@dataclass
class AuthRecord:
    client_id: str
    status: int
    at: float = field(default_factory=time.time)


class Journal:
    """All connections and token requests since the last reset."""

    def __init__(self) -> None:
        self.connections: list[ConnectionRecord] = []
        self.auth: list[AuthRecord] = []

    def accepted(self) -> list[ConnectionRecord]:
        return [c for c in self.connections if c.accepted]

    def finals(self) -> list[str]:
        """Every final text sent, over all connections, in order of connection."""
        return [m.text for c in self.connections for m in c.finals]

    def to_dict(self) -> dict[str, Any]:
        return {
            "connections": [c.to_dict() for c in self.connections],
            "auth": [asdict(a) for a in self.auth],
        }
