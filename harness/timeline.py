"""Every event of a replay - caller audio, recognizer results, LLM and TTS requests, what came
back to the caller - on one clock (monotonic seconds), for checks, metrics and reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fakertzr.journal import Journal

from .fake_llm import FakeLlm
from .fake_tts import FakeTts
from .fixture import CallFixture
from .twilio_line import PlayerRecord


@dataclass(frozen=True)
class Event:
    wall: float
    kind: str  # call_start, speech_start, speech_end, partial, final, rtzr_open, rtzr_end, rtzr_closed, llm_request, llm_end, tts_request, media, mark, clear, stop, closed
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallTimeline:
    events: list[Event]

    def of(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    def around(self, wall: float, seconds: float = 1.0) -> list[Event]:
        """The stretch of the timeline that explains a failed check."""
        return [e for e in self.events if abs(e.wall - wall) <= seconds]


def _call_position(alignment: list[dict[str, Any]], conn_ms: float | None) -> float | None:
    """Where in the caller's audio a connection's position ``conn_ms`` lies (fakertzr's alignment), if known."""
    if conn_ms is None:
        return None
    placed = [a for a in alignment if a.get("event") == "aligned" and a["conn_ms"] <= conn_ms]
    return round(conn_ms + placed[-1]["call_ms"] - placed[-1]["conn_ms"], 1) if placed else None


def build_timeline(fixture: CallFixture, player: PlayerRecord, rtzr: Journal, llm: FakeLlm, tts: FakeTts) -> CallTimeline:
    events: list[Event] = []
    frames = player.frame_sent
    if len(frames) and frames[0] == frames[0]:
        events.append(Event(float(frames[0]), "call_start"))
    for index, utt in enumerate(fixture.script.utterances if len(frames) else ()):
        first = int(utt.start_ms // 20)
        if first < len(frames) and frames[first] == frames[first]:
            events.append(Event(float(frames[first]), "speech_start", {"utterance": index, "text": utt.text,
                                                                      "audio_ms": utt.start_ms}))
        k = min(len(frames) - 1, max(0, int(-(-utt.end_ms // 20)) - 1))
        if k < len(frames) and frames[k] == frames[k]:  # sent (not NaN)
            events.append(Event(float(frames[k]), "speech_end", {"utterance": index, "text": utt.text, "audio_ms": utt.end_ms}))
    for conn in rtzr.connections:
        if not conn.accepted:
            events.append(Event(conn.opened_wall, "rtzr_refused",
                                {"connection": conn.index, "status": conn.status}))
            continue
        for m in conn.messages:
            events.append(Event(m.sent_wall, m.kind if m.kind != "raw" else "rtzr_raw",
                                {"connection": conn.index, "text": m.text, "audio_ms": m.audio_ms}))
        if conn.ended:
            call_ms = _call_position(conn.alignment, conn.ended.get("audio_ms"))
            events.append(Event(conn.ended.get("wall", 0.0), "rtzr_end", {"connection": conn.index, **conn.ended,
                                                                        **({"call_ms": call_ms} if call_ms is not None else {})}))
        # the socket itself: a stalled stream has ended but stays open until the client lets go
        events.append(Event(conn.closed_wall if conn.closed_wall is not None else time.monotonic(), "rtzr_closed",
                            {"connection": conn.index, "open": conn.closed_wall is None}))
    for i, r in enumerate(llm.requests):
        events.append(Event(r.at, "llm_request", {"index": i, "user": r.last_user, "reply": r.reply, "abandoned": r.abandoned,
                                                   "status": r.status, "stream": r.stream,
                                                   "open": not (r.completed or r.abandoned or r.status != 200)}))
    for i, r in enumerate(tts.requests):
        events.append(Event(r.at, "tts_request", {"index": i, "text": r.text, "format": r.response_format,
                                                   "status": r.status, "abandoned": r.abandoned,
                                                   "open": not (r.completed or r.abandoned or r.status != 200)}))
    for wall, message in player.received:
        kind = message.get("event", "?")
        detail = {"name": message["mark"]["name"]} if kind == "mark" else {}
        events.append(Event(wall, kind if kind in ("media", "mark", "clear") else f"handler_{kind}", detail))
    for wall, name in player.marks_played:
        events.append(Event(wall, "mark_played", {"name": name}))
    if player.stop_at is not None:
        sent = int((frames == frames).sum())  # frames actually sent (not NaN)
        events.append(Event(player.stop_at, "stop", {"how": player.hung_up_how, "audio_ms": sent * 20}))
    if player.closed_at is not None:
        events.append(Event(player.closed_at, "closed", {"by_handler": player.closed_by_handler}))
    return CallTimeline(sorted(events, key=lambda e: e.wall))
