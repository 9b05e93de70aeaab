"""What the fake saw and did, for tests to assert on (after WireMock's request journal).

Every connection attempt is recorded: its parameters, headers with secrets redacted, audio
received, each message sent with its audio position and wall times, faults fired, how it ended.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Iterable, Iterator, Mapping

SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}
MAX_FIELDS = 64  # headers or query parameters kept per connection
MAX_VALUE_CHARS = 512  # each kept value is cut to this (a client may send 8 KB headers, 100 KB queries)
MAX_BYTES = 64 << 20  # closed connection records kept, about (a long stream's partials run to MBs)


def clip(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` cut to ``limit`` characters, saying how much was cut."""
    return value if len(value) <= limit else f"{value[:limit]}...<{len(value) - limit} more characters>"


def clip_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """At most ``MAX_FIELDS`` name/value pairs, each clipped: a journal entry's size does not follow the client's."""
    kept = {clip(k, 128): clip(v) for k, v in list(fields.items())[:MAX_FIELDS]}
    if len(fields) > MAX_FIELDS:
        kept["..."] = f"{len(fields) - MAX_FIELDS} more not kept"
    return kept


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with every secret value replaced (the scheme of Authorization is kept), clipped."""
    clean = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            clean[name] = f"{clip(scheme, 20)} <redacted>".strip()
        else:
            clean[name] = value
    return clip_fields(clean)


class StreamEnd(StrEnum):
    """How a stream (or a file API job) ended: the journal's one vocabulary for it (a ``str``, as JSON gives it)."""

    SERVER_CLOSED = "server_closed"  # the server sent a Close (its reason "EOS": in answer to the client's EOS)
    DROPPED = "dropped"  # the server dropped the TCP connection without a Close (a fault)
    STALLED = "stalled"  # the server stopped answering, the socket left open (a fault)
    IDLE_TIMEOUT = "idle_timeout"  # no audio came for the idle timeout: the server closed it
    SHUTDOWN = "shutdown"  # the fake was shutting down
    CLIENT_CLOSED = "client_closed"  # the client sent a Close
    CLIENT_VANISHED = "client_vanished"  # the client's connection was lost without a Close
    CLIENT_ERROR = "client_error"  # the client sent what the API does not take (gRPC)
    COMPLETED = "completed"  # a file API job finished
    FAILED = "failed"  # ... or failed

    @property
    def ended_by_server(self) -> bool:
        """The server ended it (a close, a drop, a stall, an idle timeout): unless a Close's reason is "EOS",
        not what the client asked for."""
        return self in SERVER_ENDS


SERVER_ENDS = frozenset({StreamEnd.SERVER_CLOSED, StreamEnd.DROPPED, StreamEnd.STALLED, StreamEnd.IDLE_TIMEOUT})


@dataclass(frozen=True)
class StreamEnded:
    """How a connection ended, typed (``ConnectionRecord.ending``): how, the close code and reason, when (epoch and
    monotonic seconds), and the audio it had received."""

    how: StreamEnd
    code: int | None = None
    reason: str = ""
    at: float = 0.0
    wall: float = 0.0
    audio_ms: float = 0.0

    @property
    def answered_eos(self) -> bool:
        """The server closed it in answer to the client's EOS: the end the client asked for."""
        return self.how is StreamEnd.SERVER_CLOSED and self.reason == "EOS"

    @property
    def ended_by_server(self) -> bool:
        """The server ended it, not in answer to EOS."""
        return self.how.ended_by_server and not self.answered_eos


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
    api: str = "websocket"  # or "grpc", or "batch" (a file API job): one journal for RTZR's three APIs
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
    eos_wall: float | None = None  # monotonic time the client's EOS (gRPC: its half-close) came: it ended the stream
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

    @property
    def ending(self) -> StreamEnded | None:
        """How it ended, typed (``ended`` is the same as plain data)."""
        if self.ended is None:
            return None
        keys = ("code", "reason", "at", "wall", "audio_ms")
        return StreamEnded(StreamEnd(self.ended["how"]), **{k: self.ended[k] for k in keys if k in self.ended})

    def end(self, how: StreamEnd | str, code: int | None = None, reason: str = "") -> None:
        """Record how the connection ended; the first account wins. ``how`` is a ``StreamEnd`` (or its value)."""
        if self.ended is None:
            self.ended = {"how": StreamEnd(how), "code": code, "reason": reason, "at": time.time(), "wall": time.monotonic(),
                          "audio_ms": self.audio_ms}

    def to_dict(self) -> dict[str, Any]:
        """Plain data, copied now (a live stream keeps changing); built by hand: ``asdict`` deep-copies
        every message and took 0.5 ms a record, long enough for a journal read to stall live streams."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(query=dict(self.query), headers=dict(self.headers), text_frames=list(self.text_frames),
                    messages=[dict(vars(m)) for m in self.messages], alignment=[dict(a) for a in self.alignment],
                    faults_fired=[dict(f) for f in self.faults_fired], refusal=self.refusal and dict(self.refusal),
                    ended=self.ended and dict(self.ended), finals=[m.text for m in self.finals])
        return data


@dataclass
class AuthRecord:
    client_id: str
    status: int
    at: float = field(default_factory=time.time)


def record_bytes(record: ConnectionRecord) -> int:
    """About the bytes of ``record``'s JSON (``to_dict``), from its texts (UTF-8; a final's text is there twice) and
    a share per message and entry: cheap enough to take as a stream closes (a JSON dump of 500 messages held the
    event loop for 4 ms)."""
    texts = [*record.headers, *record.headers.values(), *record.query, *record.query.values(), *record.text_frames]
    size = sum(len(t.encode("utf-8", "surrogatepass")) + 8 for t in texts)
    for m in record.messages:
        size += len(m.text.encode("utf-8", "surrogatepass")) * (2 if m.kind == "final" else 1) + 160
        size += len(m.payload.encode("utf-8", "surrogatepass")) * 9 // 8  # its quotes escaped
    return size + 100 * (len(record.alignment) + len(record.faults_fired)) + 512


class Journal:
    """Connections and token requests since the last reset, bounded: at most ``limit`` connection records are
    kept whole, and about ``max_bytes`` of closed ones (each measured once, when it closes: a stream's record
    grows while it is open); past either the oldest *closed* ones are dropped into ``dropped`` (counts: how they
    ended, finals sent), so a fake that runs for days holds steady memory and a live stream's record is never lost."""

    def __init__(self, limit: int = 2000, max_bytes: int = MAX_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.closed_bytes = 0  # the measured size of the closed records kept
        self._sizes: dict[int, int | None] = {}  # id of a kept record -> its size once closed (ids are unique while kept)
        self.connections: list[ConnectionRecord] = []
        self.auth: deque[AuthRecord] = deque(maxlen=limit)
        self.total = 0  # connection attempts ever journaled (kept + dropped)
        self.auth_total = 0
        self.dropped_ended: Counter[str] = Counter()
        self.dropped_finals = 0

    def add(self, record: ConnectionRecord) -> None:
        self.connections.append(record)
        self._sizes[id(record)] = None
        self.total += 1
        self._trim(len(self.connections) - self.limit)

    def closed(self, record: ConnectionRecord) -> None:
        """``record`` is done (its stream closed, its handshake refused): measure it, once; over ``max_bytes``,
        the oldest closed records go. A record of a journal since reset is no longer this one's: ignored."""
        if id(record) in self._sizes and self._sizes[id(record)] is None:
            self._sizes[id(record)] = size = record_bytes(record)
            self.closed_bytes += size
            if self.closed_bytes > self.max_bytes:
                self._trim(0)

    def _trim(self, excess: int) -> None:
        """Drop the oldest closed records: ``excess`` of them, and more while over ``max_bytes``."""
        if excess <= 0 and self.closed_bytes <= self.max_bytes:
            return
        gone_at = []
        over = self.closed_bytes
        for i, c in enumerate(self.connections):
            if excess <= 0 and over <= self.max_bytes:
                break
            if c.closed:
                gone_at.append(i)
                excess -= 1
                over -= self._sizes.get(id(c)) or 0
        for i in reversed(gone_at):
            gone = self.connections.pop(i)
            self.closed_bytes -= self._sizes.pop(id(gone), None) or 0
            self.dropped_ended[(gone.ended or {}).get("how") or ("refused" if not gone.accepted else "unknown")] += 1
            self.dropped_finals += len(gone.finals)

    def add_auth(self, record: AuthRecord) -> None:
        self.auth.append(record)
        self.auth_total += 1

    @property
    def dropped(self) -> int:
        return sum(self.dropped_ended.values())

    def accepted(self) -> list[ConnectionRecord]:
        return [c for c in self.connections if c.accepted]

    def finals(self) -> list[str]:
        """Every final text sent, over the kept connections, in order of connection."""
        return [m.text for c in self.connections for m in c.finals]

    def page(self, since: int = 0, limit: int | None = None, only: Iterable[int] | None = None) -> list[ConnectionRecord]:
        """Kept records with ``index >= since`` (or those in ``only``), at most ``limit`` of them."""
        wanted = set(only) if only is not None else None
        chosen = [c for c in self.connections if c.index >= since and (wanted is None or c.index in wanted)]
        return chosen if limit is None else chosen[:limit]

    def _page(self, since: int, limit: int | None, only: Iterable[int] | None) -> tuple[list[ConnectionRecord], int | None]:
        records = self.page(since, None if limit is None else limit + 1, only)
        if limit is not None and len(records) > limit:
            return records[:limit], records[limit - 1].index + 1
        return records, None

    def _summary(self, next_since: int | None) -> dict[str, Any]:
        return {
            "next": next_since,
            "total": self.total,
            "dropped": {"connections": self.dropped, "ended": dict(self.dropped_ended), "finals": self.dropped_finals,
                        "auth": self.auth_total - len(self.auth)},
            "auth": [asdict(a) for a in self.auth],
        }

    def to_dict(self, since: int = 0, limit: int | None = None, only: Iterable[int] | None = None) -> dict[str, Any]:
        """The journal as JSON data; with ``limit``, one page, and ``next`` the ``since`` of the next one."""
        records, next_since = self._page(since, limit, only)
        return {"connections": [c.to_dict() for c in records], **self._summary(next_since)}

    def json_pieces(self, since: int = 0, limit: int | None = None, only: Iterable[int] | None = None,
                    batch: int = 20) -> Iterator[str]:
        """``to_dict`` as JSON text, ``batch`` records a piece: a server writes each piece and lets live streams
        run between them (one ``json.dumps`` of 2000 records held the event loop for 300 ms)."""
        records, next_since = self._page(since, limit, only)
        yield '{"connections": ['
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            yield ("," if start else "") + ",".join(json.dumps(c.to_dict(), ensure_ascii=False) for c in chunk)
        yield "], " + json.dumps(self._summary(next_since), ensure_ascii=False)[1:]
