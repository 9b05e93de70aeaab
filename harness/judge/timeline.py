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
from typing import Any, Iterable, Sequence, TypeVar, overload

import numpy as np

from fakertzr.journal import ConnectionRecord, Journal
from harness.fakes.llm import FakeLlm, LlmRequest as LlmExchange
from harness.fakes.tts import FakeTts, TtsRequest as TtsExchange
from harness.fakes.twilio_line import FRAME_MS, PlayerRecord
from harness.fixture import CallFixture
from harness.judge.bot_audio import BotAudio, analyse
from harness.judge.events import (CallStart, Clear, Closed, Event, EventBase, Final, HandlerInvalid, HarnessNote,
                                  LlmForeign, LlmPostcall, LlmRequest, Mark, MarkPlayed, Media, Partial, Redirected,
                                  RtzrAuthFailed, RtzrClosed, RtzrEnd, RtzrForeign, RtzrRaw, RtzrRefused, SpeechEnd,
                                  SpeechStart, Stop, TtsForeign, TtsRequest)
from harness.judge.words import says


CAUSALITY_SLACK_S = 0.05  # a result may not be due before the caller sent its audio (one clock, in-process)

E = TypeVar("E", bound=EventBase)
E1 = TypeVar("E1", bound=EventBase)
E2 = TypeVar("E2", bound=EventBase)
E3 = TypeVar("E3", bound=EventBase)


@dataclass
class CallTimeline:
    events: list[Event]
    bot_audio: BotAudio | None = None  # the bot's audio, decoded, with the TTS tones heard in it

    @overload
    def of(self, kind: type[E1], /) -> list[E1]: ...
    @overload
    def of(self, kind: type[E1], kind2: type[E2], /) -> list[E1 | E2]: ...
    @overload
    def of(self, kind: type[E1], kind2: type[E2], kind3: type[E3], /) -> list[E1 | E2 | E3]: ...
    @overload
    def of(self, *kinds: type[EventBase]) -> list[Event]: ...

    def of(self, *kinds: type[EventBase]) -> list[Any]:
        """The events of these kinds (classes), in time order. A kind given as a string is refused: a
        misspelled one would match nothing, and the check using it judge nothing."""
        bad = [k for k in kinds if not (isinstance(k, type) and issubclass(k, EventBase))]
        if bad:
            raise TypeError(f"CallTimeline.of takes event classes (harness.judge.events), not {bad[0]!r}")
        return [e for e in self.events if isinstance(e, kinds)]

    def around(self, wall: float, seconds: float = 1.0) -> list[Event]:
        """The stretch of the timeline that explains a failed check."""
        return [e for e in self.events if abs(e.wall - wall) <= seconds]

    @property
    def hangup(self) -> float:
        """When the call ended: the caller's ``stop`` (or dropped line), or the socket's close."""
        return min((e.wall for e in self.of(Stop, Closed)), default=float("inf"))


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
        placed = next((a for a in reversed(alignment[:last]) if a.get("event") == "aligned" and a["conn_ms"] <= at), None)
        if placed is None:
            return None
        mark, conn_ms = placed, at
    return round(float(conn_ms + mark["call_ms"] - mark["conn_ms"]), 1)


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
        k = max(0, int(-(-round(position) // FRAME_MS)) - 1)
        sent = frames_sent[k] if k < len(frames_sent) else float("nan")
        if not sent == sent or sent > m.due_wall + CAUSALITY_SLACK_S:  # never sent, or sent after it was due
            return True
    return not placed and call_start is not None and conn.opened_wall < call_start


def new_user_text(requests: Sequence[LlmExchange]) -> list[list[str]]:
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
    """The call's events from every source, on one clock, in time order; post-call LLM work told apart."""
    frames = player.frame_sent
    call_start = float(frames[0]) if len(frames) and frames[0] == frames[0] else None
    rtzr_events, foreign_finals = recognizer_events(rtzr, frames, call_start, player.dialled_at)
    llm_events, foreign_replies = llm_request_events(llm, foreign_finals, {e.text for e in rtzr_events
                                                                           if isinstance(e, Final)})
    tts_events = tts_request_events(tts, foreign_replies)
    bot = analyse(player.received)
    events = [*caller_events(fixture, player), *rtzr_events, *llm_events, *tts_events,
              *line_events(player, bot, tts, tts_events)]
    return CallTimeline(post_call(sorted(events, key=lambda e: e.wall)), bot)


def _sent(frames: np.ndarray, k: int) -> float | None:
    """When frame ``k`` went out (None: never)."""
    return float(frames[k]) if 0 <= k < len(frames) and frames[k] == frames[k] else None


def caller_events(fixture: CallFixture, player: PlayerRecord) -> list[Event]:
    """What the caller did: the first frame, each utterance's start and end, the hang-up, the socket's close."""
    frames = player.frame_sent
    events: list[Event] = []
    if (start := _sent(frames, 0)) is not None:
        events.append(CallStart(start))
    epd_ms = fixture.script.recognizer.end_point_ms
    for index, utt in enumerate(fixture.script.utterances if len(frames) else ()):
        if (begun := _sent(frames, int(utt.start_ms // FRAME_MS))) is not None:
            events.append(SpeechStart(begun, utterance=index, text=utt.text, audio_ms=utt.start_ms))
        k = min(len(frames) - 1, max(0, int(-(-utt.end_ms // FRAME_MS)) - 1))
        if (ended := _sent(frames, k)) is not None:
            tail = int(-(-(utt.end_ms + epd_ms) // FRAME_MS)) - 1  # the frame after which RTZR's end-point detection can fire
            events.append(SpeechEnd(ended, utterance=index, text=utt.text, audio_ms=utt.end_ms,
                                    end_point_sent=_sent(frames, tail)))
    if player.stop_at is not None:
        sent = np.flatnonzero(frames == frames)  # frames actually sent (not NaN; a pause cut short skips some)
        events.append(Stop(player.stop_at, how=player.hung_up_how,
                           audio_ms=(int(sent[-1]) + 1) * FRAME_MS if len(sent) else 0))
    if player.redirect is not None:
        redirect = player.redirect
        events.append(Redirected(redirect.at, by=redirect.by, outcome=redirect.outcome, said=redirect.said,
                                 url=redirect.url))
    if player.closed_at is not None:
        events.append(Closed(player.closed_at, by_handler=player.closed_by_handler))
    return events


def recognizer_events(rtzr: Journal, frames: np.ndarray, call_start: float | None,
                      dialled: float | None) -> tuple[list[Event], set[str]]:
    """What RTZR did for this call (fakertzr's journal): refusals, results, how streams ended, token refusals;
    and the finals of streams set aside as another call's."""
    events: list[Event] = []
    foreign_finals: set[str] = set()
    for conn in rtzr.connections:
        if not conn.accepted:
            events.append(RtzrRefused(conn.opened_wall, connection=conn.index, status=conn.status,
                                      why=str((conn.refusal or {}).get("msg", ""))[:200]))
            continue
        if is_foreign(conn, frames, call_start, dialled):
            foreign_finals.update(m.text for m in conn.finals)
            events.append(RtzrForeign(conn.opened_wall, connection=conn.index, finals=tuple(m.text for m in conn.finals),
                                      why="carried words of this call's audio before this caller had said them: "
                                          "another call's"))
            continue
        for m in conn.messages:
            call_ms = _call_position(conn.alignment, m.audio_ms)
            if m.kind == "final":
                after_eos = conn.eos_wall is not None and m.sent_wall >= conn.eos_wall  # the handler had ended the stream
                events.append(Final(m.sent_wall, connection=conn.index, text=m.text, audio_ms=m.audio_ms,
                                    call_ms=call_ms, after_eos=after_eos))
            else:
                kind = Partial if m.kind == "partial" else RtzrRaw
                events.append(kind(m.sent_wall, connection=conn.index, text=m.text, audio_ms=m.audio_ms, call_ms=call_ms))
        if (ending := conn.ending) is not None:
            events.append(RtzrEnd(ending.wall, connection=conn.index, how=ending.how, code=ending.code,
                                  reason=ending.reason, audio_ms=ending.audio_ms, opened=conn.opened_wall,
                                  call_ms=_call_position(conn.alignment, ending.audio_ms)))
        # the socket itself: a stalled stream has ended but stays open until the client lets go
        events.append(RtzrClosed(conn.closed_wall if conn.closed_wall is not None else time.monotonic(),
                                 connection=conn.index, open=conn.closed_wall is None))
    offset = time.monotonic() - time.time()  # the token journal keeps wall-clock seconds
    events += [RtzrAuthFailed(auth.at + offset, status=auth.status) for auth in rtzr.auth if auth.status != 200]
    return events, foreign_finals


def llm_request_events(llm: FakeLlm, foreign_finals: set[str], own_finals: set[str]) -> tuple[list[Event], list[str]]:
    """Each LLM request, with the user words it adds; one made only from another call's finals is foreign (its
    replies returned, to tell that call's TTS requests apart too)."""
    events: list[Event] = []
    foreign_replies: list[str] = []
    for i, (r, new) in enumerate(zip(llm.requests, new_user_text(llm.requests))):
        request = LlmRequest(r.at, index=i, user="\n".join(new), last_user=r.last_user, reply=r.reply,
                             told=tuple((m.get("role", ""), m.get("content", "")) for m in r.messages),
                             abandoned=r.abandoned, status=r.status, stream=r.stream, ended=r.ended_at,
                             open=not (r.completed or r.abandoned or r.status != 200),
                             stalled=getattr(r, "stalled_until", None) is not None)
        if new and all(t in foreign_finals and t not in own_finals for t in new):
            foreign_replies.append(r.reply)
            events.append(request.as_kind(LlmForeign))
            continue
        events.append(request)
    return events, foreign_replies


def tts_request_events(tts: FakeTts, foreign_replies: list[str]) -> list[Event]:
    """Each TTS request; one for another call's reply is foreign."""
    events: list[Event] = []
    for i, r in enumerate(tts.requests):
        foreign = bool(r.text) and any(r.text in reply for reply in foreign_replies if reply)
        events.append((TtsForeign if foreign else TtsRequest)(
            r.at, index=i, text=r.text, format=r.response_format, status=r.status, abandoned=r.abandoned,
            tone_hz=r.tone_hz, ended=r.ended_at, audio_s=r.audio_s,
            open=not (r.completed or r.abandoned or r.status != 200),
            stalled=getattr(r, "stalled_until", None) is not None))
    return events


def line_events(player: PlayerRecord, bot: BotAudio, tts: FakeTts, asked: Iterable[Event]) -> list[Event]:
    """What the handler sent on the Twilio socket, each media message given to the TTS request (of ``asked``,
    this call's) that spoke it, and the marks Twilio echoed."""
    tts_by_tone: dict[float, list[tuple[float, int]]] = {}
    for r in asked:
        if isinstance(r, TtsRequest) and r.tone_hz:
            tts_by_tone.setdefault(r.tone_hz, []).append((r.wall, r.index))
    owns = {i: r.audio_s * 1000 * OWN_RATIO + OWN_SLACK_MS for i, r in enumerate(tts.requests)}  # ms each may own
    speakers = Speakers(tts_by_tone, dict(owns), owns)
    media = {index: k for k, index in enumerate(bot.message_index)}
    events: list[Event] = []
    for n, (wall, message) in enumerate(player.received):
        kind = message.get("event", "?")
        if kind == "media":
            k = media[n]
            tone = bot.tone_of_message(k)
            ms = bot.message_samples(k) / 8
            events.append(Media(wall, ms=ms, tts=speakers.speaker(tone, wall, ms) if tone else None))
        elif kind == "clear":
            speakers.cleared(wall, tts.requests)
            events.append(Clear(wall))
        elif kind == "mark":
            events.append(Mark(wall, name=message["mark"]["name"]))
        elif kind == "invalid":
            events.append(HandlerInvalid(wall, code=message["code"], why=message["why"], dropped=message["dropped"],
                                         text=message.get("text", "")))
        else:  # the fake Twilio stopped keeping what the handler sent (a flood): said, not judged
            events.append(HarnessNote(wall, note=str(message.get("note", f"a {kind!r} message"))))
    events += [MarkPlayed(wall, name=name) for wall, name in player.marks_played]
    return events


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
            fresh = next((i for i in begun if i not in self.started), None)
            owner = fresh if fresh is not None else next(
                (i for i in begun if i not in self.stopped
                 and self.left.get(i, 0.0) > FRESH_SHARE * self.total.get(i, 0.0)), begun[-1])
            if owner in self.stopped and self.previous is not None and self.left.get(self.previous, 0.0) > 0:
                owner = self.previous  # a sentence's last sliver, read with the next sentence's tone (asked after it)
        if self.previous is not None and owner != self.previous:
            self.stopped.add(self.previous)
        self.started.add(owner)
        self.left[owner] = self.left.get(owner, 0.0) - ms
        self.previous = owner
        return owner

    def cleared(self, wall: float, requests: Sequence[TtsExchange]) -> None:
        """Playback was cleared: what was asked before it is dropped, later audio of a tone is a later request's."""
        self.left.update({i: 0.0 for i, r in enumerate(requests) if r.at <= wall})
        self.previous = None


FRESH_SHARE = 0.2  # a request with more than this share of its audio still to come has not been played through
ON_ITS_WAY_S = 0.2  # a final this soon after the hang-up, on a stream the handler had not ended, was already coming


def post_call(events: list[Event]) -> list[Event]:
    """LLM requests begun after the call ended are post-call work (a summary, CRM notes), ``LlmPostcall``:
    never a delivery of a final nor a turn. One whose new user content gives a final that came after the
    hang-up, and no final from before it (a summary quotes the call), answers words nobody is left to hear
    the answer to: its ``late_final`` says which. A final that came as the caller hung up (within
    ``ON_ITS_WAY_S``, before the handler ended its stream) met the hang-up on the way: a handler cannot know
    of a hang-up before its socket says so, and answering that final is a race no handler wins every time
    (what the answer then sends is judged as any sending after the hang-up is); one the handler's EOS drew
    out, or one later still, it knew was for nobody."""
    hangup = min((e.wall for e in events if isinstance(e, (Stop, Closed))), default=float("inf"))
    finals = [e for e in events if isinstance(e, Final)]
    late = [f.text for f in finals if f.wall >= hangup and (f.after_eos or f.wall >= hangup + ON_ITS_WAY_S)]
    early = [f.text for f in finals if f.wall < hangup]
    result: list[Event] = []
    for e in events:
        if isinstance(e, LlmRequest) and e.wall >= hangup:
            answers = next((t for t in late if says(e.user, t)), None)
            if answers is not None and any(says(e.user, t) for t in early if t not in late):
                answers = None
            result.append(e.as_kind(LlmPostcall, late_final=answers))
            continue
        result.append(e)
    return result
