"""Which reply answered which utterance, traced through the fakes rather than guessed from the clock.

Sans-I/O over a timeline. Each utterance of the script gets the finals recognised from it (by where
they lie in the caller's audio and the words they share), the LLM request that carried those words,
that request's reply, the TTS requests that spoke the reply, and the bot audio those requests made
(each media message knows its TTS request by the tone it carries, :mod:`harness.judge.bot_audio`). A
turn whose reply was never heard has no first audio, whatever other audio came after it: the bot
finishing an earlier reply is not an answer. Audio that carries no fake TTS tone (a handler with its
own TTS or recorded prompts) falls back to the clock: the first bot audio after the utterance ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from harness.judge.events import Clear, Final, LlmRequest, Media, SpeechEnd, SpeechStart, TtsRequest
from harness.judge.playback import Span, spans
from harness.judge.timeline import CallTimeline

_NOT_WORD = re.compile(r"[\W_]+")


def _norm(text: str) -> str:
    return _NOT_WORD.sub("", text)


@dataclass
class TurnTrace:
    utterance: int
    said: str
    start: SpeechStart | None = None
    end: SpeechEnd | None = None  # None: the caller hung up first
    finals: list[Final] = field(default_factory=list)
    request: LlmRequest | None = None  # the LLM request that carried its words (a failed one when none after it was answered)
    tts: list[int] = field(default_factory=list)  # the TTS requests that spoke that request's reply
    first_audio: Media | None = None  # the first media of its reply (by clock when no tone says)
    audio: list[Span] = field(default_factory=list)  # its reply's audio, as played

    @property
    def reply(self) -> str:
        return self.request.reply if self.request is not None else ""


def owner(final: Final, utterances: Sequence[tuple[int, SpeechStart | SpeechEnd]]) -> int | None:
    """The utterance a final came from: among those begun before it (in the audio when its position is
    known, else on the clock), the one it shares most words with, the latest on a tie."""
    at_ms = final.call_ms
    begun = [(i, s) for i, s in utterances
             if (s.audio_ms <= at_ms if at_ms is not None else s.wall <= final.wall)]
    if not begun:
        return None
    words = set(final.text.split())
    return max(begun, key=lambda u: (len(words & set(u[1].text.split())), u[1].wall))[0]


def sources_of_tts(tts_requests: Sequence[TtsRequest], requests: Sequence[LlmRequest],
                   clears: Sequence[Clear] = ()) -> list[LlmRequest | None]:
    """The LLM request whose reply each TTS request spoke, in order: of the requests begun before it whose reply
    holds its text, the earliest still speaking (none later has been spoken from yet, no ``clear`` cut it since it
    began to be spoken) with that text not yet spoken as often as its reply holds it (two replies in flight at once
    that share a sentence, "더 도와드릴까요?", each speak their own); else the latest holding it; else (a fallback
    sentence, an apology) the latest begun before it."""
    sources: list[LlmRequest | None] = []
    said: dict[tuple[int, str], int] = {}  # (request, text) -> times spoken
    first_spoken: dict[int, float] = {}  # request -> when its reply began to be spoken
    for tts in tts_requests:
        before = [r for r in requests if r.wall <= tts.wall]
        text = _norm(tts.text)
        holding = [r for r in before if text and text in _norm(r.reply)]

        def still_speaking(r: LlmRequest) -> bool:
            began = first_spoken.get(id(r))
            later = any(first_spoken.get(id(o)) is not None for o in before if o.wall > r.wall)
            cut = began is not None and any(began < c.wall <= tts.wall for c in clears)
            return not later and not cut and said.get((id(r), text), 0) < _norm(r.reply).count(text)

        source = next((r for r in holding if still_speaking(r)), None) or ((holding or before)[-1] if before else None)
        if source is not None:
            said[(id(source), text)] = said.get((id(source), text), 0) + 1
            first_spoken.setdefault(id(source), tts.wall)
        sources.append(source)
    return sources


def trace_turns(timeline: CallTimeline, pace: float | None) -> list[TurnTrace]:
    starts = {e.utterance: e for e in timeline.of(SpeechStart)}
    ends = {e.utterance: e for e in timeline.of(SpeechEnd)}
    begun: dict[int, SpeechStart | SpeechEnd] = {**ends, **starts}  # an utterance is placed by its start (by its end if that is all there is)
    traces = {i: TurnTrace(i, b.text, starts.get(i), ends.get(i)) for i, b in sorted(begun.items())}
    ordered = sorted(begun.items(), key=lambda u: u[1].wall)
    for final in timeline.of(Final):
        utterance = owner(final, ordered)
        if utterance is not None:
            traces[utterance].finals.append(final)
    requests = timeline.of(LlmRequest)
    for trace in traces.values():
        texts = [f.text for f in trace.finals if f.text]
        first = trace.finals[0].wall if trace.finals else None
        carrying = [r for r in requests if first is not None and r.wall >= first
                    and any(t in r.user for t in texts)]
        # the request that was answered (a failed one's retry), else the failed one (its fallback is the answer)
        trace.request = next((r for r in carrying if r.status < 400), carrying[0] if carrying else None)
    speaking: dict[int, int] = {}  # TTS request -> LLM request index
    tts_requests = timeline.of(TtsRequest)
    for tts, request in zip(tts_requests, sources_of_tts(tts_requests, requests, timeline.of(Clear))):
        if request is not None:
            speaking[tts.index] = request.index
    played = spans(timeline.events, pace, until=timeline.hangup)
    media = timeline.of(Media)
    traced = any(m.tts is not None for m in media)
    for trace in traces.values():
        if trace.request is None:
            continue
        index = trace.request.index
        trace.tts = sorted(t for t, r in speaking.items() if r == index)
        if traced:
            mine = set(trace.tts)
            after = trace.end.wall if trace.end is not None else trace.request.wall
            trace.first_audio = next((m for m in media if m.tts in mine and m.wall >= after), None)
            trace.audio = [s for s in played if s.tts in mine]
    if not traced:  # no tone to go by: the first bot audio after the utterance ends, before the next one's final
        _by_clock(list(traces.values()), media, played)
    return list(traces.values())


def _by_clock(traces: list[TurnTrace], media: list[Media], played: list[Span]) -> None:
    answered_from = [t.finals[0].wall if t.finals else None for t in traces]
    for i, trace in enumerate(traces):
        begin = answered_from[i]
        until = next((t for t in answered_from[i + 1:] if t is not None), float("inf"))
        if trace.end is not None:
            trace.first_audio = next((m for m in media if trace.end.wall <= m.wall < until), None)
        if begin is not None:
            trace.audio = [s for s in played if begin <= s.start < until]
