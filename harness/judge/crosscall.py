"""The checks that need other calls on the same handler: what one caller suffers from another's call.

- ``unaffected_by_neighbours``: while a neighbour's LLM or TTS request stalls, this call's words still reach
  the LLM, and its replies still reach TTS, without waiting on the stall (a handler that makes one call's
  request on the event loop freezes every caller);
- ``replies_reach_own_caller``: no other call's words are in this call's LLM requests, and no audio of
  another call's reply is heard on this call's line.

Judged from the fakes' journals and the caller's line, as every check is: which call a request belongs to
is told by what it carries (``harness.replay.lanes``), never by the handler's say-so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from harness.judge.events import (Final, LlmRequest, RtzrAuthFailed, RtzrEnd, RtzrRefused, SpeechEnd, SpeechStart,
                                  TtsRequest)
from harness.judge.bot_audio import HOP
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import CheckResult, skipped
from harness.judge.words import says, words

NEIGHBOUR_WAIT_S = 1.5  # a step this call's handler owes it may wait this long (wall) while a neighbour stalls
IDLE_GAP_MS = 1000.0  # an utterance followed by this much caller audio before the next one: nothing to hold it for
EXCESS_S = 0.3  # audio of one tone on a line beyond what this call's own requests of that tone could give


@dataclass(frozen=True)
class Stall:
    """A neighbour's request the fake held (a scripted stall): whose, what, from when until when."""

    call_sid: str
    fixture: str
    what: str  # "LLM request", "TTS request"
    start: float
    end: float


@dataclass(frozen=True)
class OtherCall:
    """Another call on this handler (in flight with this one, or before it): what it said, what its TTS spoke."""

    call_sid: str
    fixture: str
    finals: frozenset[str]
    spoken: tuple[tuple[float, str, float], ...] = ()  # its TTS requests its words prove: (tone, text, seconds)
    heard_s: dict[float, float] | Callable[[], dict[float, float]] = field(default_factory=dict)
    # tone -> seconds of it heard on its own line (or how to find out: worked out only when needed)

    def heard(self) -> dict[float, float]:
        return self.heard_s() if callable(self.heard_s) else self.heard_s


@dataclass
class Neighbours:
    """What a call's cross-call checks are given: the calls around it and this call's own side."""

    others: list[OtherCall]  # every other call on this handler so far (the concurrent ones and the earlier)
    concurrent: set[str]  # the call SIDs of those in flight with this one
    stalls: list[Stall]  # the concurrent calls' stalls
    user_texts: list[tuple[float, str]]  # every user message of this call's LLM requests: (request wall, text)
    spoken: list[tuple[float, str, float]]  # this call's TTS requests: (tone, text, seconds of audio)
    call_start: float = 0.0
    recognised_s: float = 0.0  # after the caller sent an utterance's end point, until RTZR could finalise it (its delay)


def heard_seconds(timeline: CallTimeline) -> dict[float, float]:
    """Seconds of each TTS tone heard on the call's line."""
    heard: dict[float, float] = {}
    for h in timeline.bot_audio.heard if timeline.bot_audio else ():
        if h.tone is not None:
            heard[h.tone] = heard.get(h.tone, 0.0) + HOP / 8000.0
    return heard


def _open_at(events: Sequence[LlmRequest | TtsRequest], t: float) -> bool:
    return any(e.wall <= t < (e.ended or float("inf")) for e in events)


def own_trouble(timeline: CallTimeline) -> float:
    """When this call's own fixture first made something fail (RTZR ending or refusing its stream, its LLM or
    TTS answering an error or stalling), or never: a wait after that may be its own recovery, not a neighbour's
    doing."""
    times = [e.wall for e in timeline.of(RtzrRefused, RtzrAuthFailed)]
    times += [e.wall for e in timeline.of(RtzrEnd) if e.by_server]
    times += [e.wall for e in timeline.of(LlmRequest, TtsRequest) if e.status >= 400]
    times += [e.wall for e in timeline.of(LlmRequest, TtsRequest) if e.stalled]
    return min(times, default=float("inf"))


def _waits(timeline: CallTimeline, recognised_s: float) -> list[tuple[float, float, str]]:
    """What this call waited on its handler for, when it had nothing else to wait on: (from, until, what). An
    utterance's words are due at the LLM once the recognizer could have finalised them: ``recognised_s`` (its
    processing delay at the pace) after the caller sent the audio of its end point (the end-point time after the
    last word: ``end_point_sent``), whether or not the handler forwarded the audio in time (a blocked handler
    forwards nothing, and RTZR finalises nothing). A caller who waits for an answer before sending more holds
    the end point back, and with it when the words are due."""
    requests = timeline.of(LlmRequest)
    tts = timeline.of(TtsRequest)
    hangup = min(timeline.hangup, own_trouble(timeline))  # from its own fault on, a call's waits are its own
    ends = timeline.of(SpeechEnd)
    starts = [e.audio_ms for e in timeline.of(SpeechStart)]
    waits = []
    for end in ends:
        sent = end.end_point_sent
        if sent is None:  # the call ended before the caller's audio reached the end point: nothing was due
            continue
        text, due = end.text, sent + recognised_s
        said = set(words(text))
        follows = min((s for s in starts if s > end.audio_ms), default=float("inf"))
        if not said or due >= hangup or _open_at(requests, due) or _open_at(tts, due) \
                or follows - end.audio_ms < IDLE_GAP_MS:
            continue
        asked = next((r.wall for r in requests if end.wall - 1.0 <= r.wall < hangup
                      and said & set(words(r.user))), hangup)
        waits.append((due, asked, f"the caller's words {text!r} waited {{wait:.1f}} s to reach the LLM"
                                  + (" (they never did before the call ended)" if asked == hangup else "")))
    for r in requests:
        ended, reply = r.ended, r.reply
        if ended is None or r.status != 200 or not reply or ended >= hangup or _open_at(tts, ended):
            continue
        spoken = [t for t in tts if t.wall >= r.wall and says(reply, t.text)]
        if spoken and spoken[0].wall > ended:
            waits.append((ended, spoken[0].wall, f"this call's reply {reply[:40]!r} waited {{wait:.1f}} s to reach TTS"))
    return waits


class Judged(Protocol):
    """What a cross-call check reads of a call's ``checks.CheckContext``."""

    timeline: CallTimeline
    neighbours: "Neighbours | None"


def unaffected_by_neighbours(ctx: Judged) -> CheckResult:
    """While a neighbour stalls, this call's words reach the LLM and its replies TTS without waiting on it."""
    name, n, timeline = "unaffected_by_neighbours", ctx.neighbours, ctx.timeline
    if n is None or not n.concurrent:
        return skipped(name, "no other call was in flight on this handler")
    if not n.stalls:
        return skipped(name, "no call in flight with this one stalled")
    for start, end, what in _waits(timeline, n.recognised_s):
        wait = end - start
        if wait <= NEIGHBOUR_WAIT_S:
            continue
        stall = next((s for s in n.stalls if s.start < end and s.end > start), None)
        if stall is None:
            continue
        return CheckResult(name, False,
                           f"while call {stall.fixture} ({stall.call_sid})'s {stall.what} stalled "
                           f"({stall.start - n.call_start:+.1f} s, "
                           + (f"for {stall.end - stall.start:.1f} s), " if stall.end < float("inf") else "still), ")
                           + what.format(wait=wait) + ": one call's stall froze another (a blocking call on the "
                           "event loop, or a lock every call waits on?)", end, since=start)
    return CheckResult(name, True, f"{len(n.stalls)} neighbour stall(s) left this call's turns unhindered")


def replies_reach_own_caller(ctx: Judged) -> CheckResult:
    """No other call's words in this call's LLM requests; no other call's reply heard on this line."""
    name, n, timeline = "replies_reach_own_caller", ctx.neighbours, ctx.timeline
    own_finals = {e.text for e in timeline.of(Final, SpeechStart)}  # heard, and said
    if n is None or not n.others:
        return skipped(name, "no other call on this handler")
    for other in n.others:
        theirs = [f for f in other.finals if not any(says(mine, f) for mine in own_finals)]
        for wall, text in n.user_texts:
            word = next((f for f in theirs if says(text, f)), None)
            if word is not None:
                when = "in flight with this one" if other.call_sid in n.concurrent else "earlier on this handler"
                return CheckResult(name, False,
                                   f"call {other.fixture} ({other.call_sid}, {when}) said {word!r}, and this call's "
                                   f"LLM request at +{wall - n.call_start:.1f} s was given it: one history shared "
                                   "by calls?", wall)
    heard = heard_seconds(timeline)
    own: dict[float, float] = {}
    for tone, _, seconds in n.spoken:
        own[tone] = own.get(tone, 0.0) + seconds
    for tone, seconds in heard.items():
        excess = seconds - own.get(tone, 0.0)
        if excess <= EXCESS_S:
            continue
        for other in n.others:
            spoken = [(text, s) for t, text, s in other.spoken if t == tone]
            missing = sum(s for _, s in spoken) - other.heard().get(tone, 0.0) if spoken else 0.0
            if spoken and missing > EXCESS_S:
                return CheckResult(name, False,
                                   f"{excess:.1f} s of call {other.fixture} ({other.call_sid})'s reply "
                                   f"{spoken[0][0][:40]!r} was heard on this call's line, not on its own: the "
                                   "handler sent one caller's reply to another (the current call kept in one "
                                   "variable?)")
    return CheckResult(name, True, f"{len(n.others)} other call(s) on this handler: none of their words reached this "
                                   "call's LLM, none of their replies its line")


CROSS_CALL_CHECKS = (unaffected_by_neighbours, replies_reach_own_caller)
