"""Every event of a replay - caller audio, recognizer results, LLM and TTS requests, what came
back to the caller - on one clock (monotonic seconds), for checks, metrics and reports.

A call's traffic at the fakes is told apart from another call's by what it carries, not by when it
came: an RTZR stream that delivered words of this call's audio before this caller had said them
belongs to another call (a previous call's reconnect after its hang-up, say) and is set aside as
``foreign``, with the LLM and TTS requests made from its words.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fakertzr.journal import ConnectionRecord, Journal
from harness.fakes.llm import FakeLlm, LlmRequest
from harness.fakes.tts import FakeTts
from harness.fakes.twilio_line import PlayerRecord
from harness.fixture import CallFixture
from harness.judge.bot_audio import BotAudio, analyse
from harness.judge.words import says

SERVER_ENDS = ("server_closed", "dropped", "stalled", "idle_timeout")  # how RTZR ends a stream (its reason EOS: asked)
CAUSALITY_SLACK_S = 0.05  # a result may not be due before the caller sent its audio (one clock, in-process)


@dataclass(frozen=True)
class Event:
    wall: float
    kind: str  # call_start, speech_start, speech_end, partial, final, rtzr_open, rtzr_end, rtzr_closed, rtzr_refused, rtzr_auth_failed, rtzr_foreign, llm_request, llm_postcall, tts_request, media, mark, clear, handler_invalid, harness_note, mark_played, stop, closed
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallTimeline:
    events: list[Event]
    bot_audio: BotAudio | None = None  # the bot's audio, decoded, with the TTS tones heard in it

    def of(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    def around(self, wall: float, seconds: float = 1.0) -> list[Event]:
        """The stretch of the timeline that explains a failed check."""
        return [e for e in self.events if abs(e.wall - wall) <= seconds]

    @property
    def hangup(self) -> float:
        """When the call ended: the caller's ``stop`` (or dropped line), or the socket's close."""
        return min((e.wall for e in self.of("stop", "closed")), default=float("inf"))


def _call_position(alignment: list[dict[str, Any]], conn_ms: float | None) -> float | None:
    """Where in the caller's audio a connection's position ``conn_ms`` lies (fakertzr's alignment), if known.
    Past a discontinuity, until the audio is placed again (silence held while the caller waits for the bot, a
    gap), nothing of the call was received: the position is where the placed audio ended."""
    if conn_ms is None:
        return None
    marks = [(a["conn_ms"], i, a) for i, a in enumerate(alignment)
             if a.get("event") in ("aligned", "discontinuity") and a["conn_ms"] <= conn_ms]
    if not marks:
        return None
    at, last, mark = max(marks, key=lambda m: m[:2])
    if mark["event"] == "discontinuity":  # placed by the segment before it, up to where it ended
        mark = next((a for a in reversed(alignment[:last]) if a.get("event") == "aligned" and a["conn_ms"] <= at), None)
        if mark is None:
            return None
        conn_ms = at
    return round(conn_ms + mark["call_ms"] - mark["conn_ms"], 1)


def is_foreign(conn: ConnectionRecord, frames_sent: np.ndarray, call_start: float | None,
               dialled: float | None = None) -> bool:
    """A connection opened before this call was dialled is another call's (a handler cannot stream a call it
    has not been told of: a previous call's reconnect, carrying the same audio when a shrinking search replays
    a call again, was taken for this call's); so is one whose words were due before this caller sent their
    audio; and one with no words opened before this call's first audio."""
    if dialled is not None and conn.opened_wall < dialled:
        return True
    placed = False
    for m in conn.messages:
        if m.kind not in ("partial", "final"):
            continue
        position = _call_position(conn.alignment, m.audio_ms)
        if position is None:
            continue
        placed = True
        # the frame that completed that audio; a position within audio the caller's line held (silence sent while
        # the caller waited) is where the placed audio before it ended, 2820.125 ms where the frame before the hold
        # ended at 2820 (the stream counts bytes): to the ms, or the first frame after the hold is taken for it
        k = max(0, int(-(-round(position) // 20)) - 1)
        sent = frames_sent[k] if k < len(frames_sent) else float("nan")
        if not sent == sent or sent > m.due_wall + CAUSALITY_SLACK_S:  # never sent, or sent after it was due
            return True
    return not placed and call_start is not None and conn.opened_wall < call_start


def new_user_text(requests: list[LlmRequest]) -> list[list[str]]:
    """For each LLM request, the user messages it adds to what the request before it carried: history
    resent with a later turn is not given again; two finals sent as two new messages are both new. A
    request that repeats a failed one word for word (the openai SDK's retry) carries what that one did."""
    result: list[list[str]] = []
    previous: list[str] = []
    for i, r in enumerate(requests):
        users = [m["content"] for m in r.messages if m.get("role") == "user"]
        if i and not requests[i - 1].delivered and users == previous:
            result.append(list(result[-1]))
            continue
        fresh = Counter(users) - Counter(previous)
        new = []
        for text in users:  # in order, each as often as it is new
            if fresh[text] > 0:
                new.append(text)
                fresh[text] -= 1
        result.append(new)
        previous = users
    return result


def build_timeline(fixture: CallFixture, player: PlayerRecord, rtzr: Journal, llm: FakeLlm, tts: FakeTts) -> CallTimeline:
    events: list[Event] = []
    frames = player.frame_sent
    call_start = float(frames[0]) if len(frames) and frames[0] == frames[0] else None
    if call_start is not None:
        events.append(Event(call_start, "call_start"))
    epd_ms = fixture.script.recognizer.end_point_ms
    for index, utt in enumerate(fixture.script.utterances if len(frames) else ()):
        first = int(utt.start_ms // 20)
        if first < len(frames) and frames[first] == frames[first]:
            events.append(Event(float(frames[first]), "speech_start", {"utterance": index, "text": utt.text,
                                                                      "audio_ms": utt.start_ms}))
        k = min(len(frames) - 1, max(0, int(-(-utt.end_ms // 20)) - 1))
        if k < len(frames) and frames[k] == frames[k]:  # sent (not NaN)
            tail = int(-(-(utt.end_ms + epd_ms) // 20)) - 1  # the frame after which RTZR's end-point detection can fire
            ready = float(frames[tail]) if tail < len(frames) and frames[tail] == frames[tail] else None
            events.append(Event(float(frames[k]), "speech_end", {"utterance": index, "text": utt.text, "audio_ms": utt.end_ms,
                                                                "end_point_sent": ready}))
    foreign_finals: set[str] = set()
    for conn in rtzr.connections:
        if not conn.accepted:
            events.append(Event(conn.opened_wall, "rtzr_refused",
                                {"connection": conn.index, "status": conn.status,
                                 "why": str((getattr(conn, "refusal", None) or {}).get("msg", ""))[:200]}))
            continue
        if is_foreign(conn, frames, call_start, player.dialled_at):
            foreign_finals.update(m.text for m in conn.finals)
            events.append(Event(conn.opened_wall, "rtzr_foreign", {
                "connection": conn.index, "finals": [m.text for m in conn.finals],
                "why": "carried words of this call's audio before this caller had said them: another call's"}))
            continue
        for m in conn.messages:
            call_ms = _call_position(conn.alignment, m.audio_ms)
            events.append(Event(m.sent_wall, m.kind if m.kind != "raw" else "rtzr_raw",
                                {"connection": conn.index, "text": m.text, "audio_ms": m.audio_ms,
                                 **({"call_ms": call_ms} if call_ms is not None else {})}))
        if conn.ended:
            call_ms = _call_position(conn.alignment, conn.ended.get("audio_ms"))
            events.append(Event(conn.ended.get("wall", 0.0), "rtzr_end", {"connection": conn.index, **conn.ended,
                                                                        "opened": conn.opened_wall,
                                                                        **({"call_ms": call_ms} if call_ms is not None else {})}))
        # the socket itself: a stalled stream has ended but stays open until the client lets go
        events.append(Event(conn.closed_wall if conn.closed_wall is not None else time.monotonic(), "rtzr_closed",
                            {"connection": conn.index, "open": conn.closed_wall is None}))
    offset = time.monotonic() - time.time()  # the token journal keeps wall-clock seconds
    for auth in rtzr.auth:
        if auth.status != 200:
            events.append(Event(auth.at + offset, "rtzr_auth_failed", {"status": auth.status}))
    own_finals = {e.detail["text"] for e in events if e.kind == "final"}
    foreign_replies: list[str] = []
    for i, (r, new) in enumerate(zip(llm.requests, new_user_text(llm.requests))):
        detail = {"index": i, "user": "\n".join(new), "last_user": r.last_user, "reply": r.reply,
                  "told": [(m.get("role", ""), m.get("content", "")) for m in r.messages],
                  "abandoned": r.abandoned, "status": r.status, "stream": r.stream, "ended": r.ended_at,
                  "open": not (r.completed or r.abandoned or r.status != 200),
                  **({"stalled": True} if getattr(r, "stalled_until", None) is not None else {})}
        if new and all(t in foreign_finals and t not in own_finals for t in new):
            foreign_replies.append(r.reply)
            events.append(Event(r.at, "llm_foreign", detail))
            continue
        events.append(Event(r.at, "llm_request", detail))
    tts_by_tone: dict[float, list[tuple[float, int]]] = {}
    for i, r in enumerate(tts.requests):
        detail = {"index": i, "text": r.text, "format": r.response_format, "status": r.status,
                  "abandoned": r.abandoned, "tone_hz": r.tone_hz, "ended": r.ended_at, "audio_s": r.audio_s,
                  "open": not (r.completed or r.abandoned or r.status != 200),
                  **({"stalled": True} if getattr(r, "stalled_until", None) is not None else {})}
        if r.text and any(r.text in reply for reply in foreign_replies if reply):
            events.append(Event(r.at, "tts_foreign", detail))
            continue
        if r.tone_hz:
            tts_by_tone.setdefault(r.tone_hz, []).append((r.at, i))
        events.append(Event(r.at, "tts_request", detail))
    bot = analyse(player.received)
    owns = {i: r.audio_s * 1000 * OWN_RATIO + OWN_SLACK_MS for i, r in enumerate(tts.requests)}  # ms each may own
    speakers = Speakers(tts_by_tone, dict(owns), owns)
    media = {index: k for k, index in enumerate(bot.message_index)}
    for n, (wall, message) in enumerate(player.received):
        kind = message.get("event", "?")
        if kind == "media":
            k = media[n]
            tone = bot.tone_of_message(k)
            ms = bot.message_samples(k) / 8
            source = speakers.speaker(tone, wall, ms) if tone else None
            events.append(Event(wall, "media", {"ms": ms, **({"tts": source} if source is not None else {})}))
            continue
        if kind == "clear":
            speakers.cleared(wall, tts.requests)
        if kind == "invalid":
            events.append(Event(wall, "handler_invalid", {k: v for k, v in message.items() if k != "event"}))
            continue
        if kind == "harness_note":  # the fake Twilio stopped keeping what the handler sent (a flood): said, not judged
            events.append(Event(wall, "harness_note", {"note": message["note"]}))
            continue
        detail = {"name": message["mark"]["name"]} if kind == "mark" else {}
        events.append(Event(wall, kind if kind in ("mark", "clear") else f"handler_{kind}", detail))
    for wall, name in player.marks_played:
        events.append(Event(wall, "mark_played", {"name": name}))
    if player.stop_at is not None:
        sent = np.flatnonzero(frames == frames)  # frames actually sent (not NaN; a pause cut short skips some)
        events.append(Event(player.stop_at, "stop", {"how": player.hung_up_how,
                                                     "audio_ms": (int(sent[-1]) + 1) * 20 if len(sent) else 0}))
    if player.closed_at is not None:
        events.append(Event(player.closed_at, "closed", {"by_handler": player.closed_by_handler}))
    return CallTimeline(post_call(sorted(events, key=lambda e: e.wall)), bot)


OWN_RATIO, OWN_SLACK_MS = 1.02, 80  # a request's audio is taken for its until it reaches this (then a later one of its tone's)


@dataclass
class Speakers:
    """Which TTS request spoke each media message of a tone, in the order they came (sans-I/O). The fake's ten
    tones repeat, so a handler that asks for ten or more sentences at once has two requests of one tone in
    flight; it plays them one after the other. A message goes on with the request the message before it was
    (until that request's audio is all accounted for), else to the earliest begun before it not heard yet (one
    whose audio stopped when another's began is done with: a handler may drop the rest of a sentence without a
    ``clear``), else to the earliest of which most is still to come, else to the latest begun before it (audio
    repeated past its length is still that one's). A sliver whose tone is only that of requests whose audio has
    stopped is the end of the request playing (the short last message of a sentence is read with the tone of the
    audio after it, which a request asked a moment later speaks)."""

    asked: dict[float, list[tuple[float, int]]]  # tone -> its requests, (when begun, index)
    left: dict[int, float]  # ms of each request's audio not yet accounted for
    total: dict[int, float]
    previous: int | None = None
    started: set[int] = field(default_factory=set)  # requests some of whose audio has been heard
    stopped: set[int] = field(default_factory=set)  # ... and whose audio stopped when another request's began

    def speaker(self, tone: float, wall: float, ms: float) -> int | None:
        begun = [i for at, i in self.asked.get(tone, []) if at <= wall]
        if not begun:
            return None
        if self.previous in begun and self.left.get(self.previous, 0.0) > 0:
            owner = self.previous
        else:  # one not yet heard, else one of which most is still to come and not stopped, else the latest
            owner = next((i for i in begun if i not in self.started), None)
            if owner is None:
                owner = next((i for i in begun if i not in self.stopped
                              and self.left.get(i, 0.0) > FRESH_SHARE * self.total.get(i, 0.0)), begun[-1])
            if owner in self.stopped and self.previous is not None and self.left.get(self.previous, 0.0) > 0:
                owner = self.previous  # a sentence's last sliver, read with the next sentence's tone (asked after it)
        if self.previous is not None and owner != self.previous:
            self.stopped.add(self.previous)
        self.started.add(owner)
        self.left[owner] = self.left.get(owner, 0.0) - ms
        self.previous = owner
        return owner

    def cleared(self, wall: float, requests) -> None:
        """Playback was cleared: what was asked before it is dropped, later audio of a tone is a later request's."""
        self.left.update({i: 0.0 for i, r in enumerate(requests) if r.at <= wall})
        self.previous = None


FRESH_SHARE = 0.2  # a request with more than this share of its audio still to come has not been played through


def post_call(events: list[Event]) -> list[Event]:
    """LLM requests begun after the call ended are post-call work (a summary, CRM notes), ``llm_postcall``:
    never a delivery of a final nor a turn. One whose new user content gives a final that came after the
    hang-up, and no final from before it (a summary quotes the call), answers words nobody is left to hear
    the answer to: its ``late_final`` says which."""
    hangup = min((e.wall for e in events if e.kind in ("stop", "closed")), default=float("inf"))
    finals = [e for e in events if e.kind == "final"]
    late = [f.detail["text"] for f in finals if f.wall >= hangup]
    early = [f.detail["text"] for f in finals if f.wall < hangup]
    result = []
    for e in events:
        if e.kind == "llm_request" and e.wall >= hangup:
            user = e.detail.get("user", "")
            answers = next((t for t in late if says(user, t)), None)
            detail = dict(e.detail)
            if answers is not None and not any(says(user, t) for t in early if t not in late):
                detail["late_final"] = answers
            e = Event(e.wall, "llm_postcall", detail)
        result.append(e)
    return result
