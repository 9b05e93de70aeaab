"""A call as a conversation, turn by turn: what the caller said (scripted), what the recognizer made of
it (finals), what the bot answered (the LLM's reply), and how much of that answer the caller heard.

Sans-I/O over the timeline; each turn's reply and its audio are traced through the fakes
(:mod:`harness.judge.attribution`), so an earlier reply still playing is never counted as a later turn's
answer. Turns are numbered from 1, as ``aicall show`` numbers them (t1, t2, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.judge.attribution import trace_turns
from harness.judge.timeline import CallTimeline


@dataclass(frozen=True)
class Turn:
    number: int  # from 1
    said: str  # the fixture's script
    finished: bool  # the caller got to the end of it (no hang-up in the middle)
    recognised: list[str]  # finals that came in this turn
    asked: bool  # a delivered LLM request carried it
    reply: str  # the LLM's reply to it ("" when none)
    bot_seconds: float  # bot audio the handler sent for its reply
    heard_seconds: float  # of it, what the caller heard before a clear or the hang-up
    cut: bool  # playback was cleared (barge-in)


def turns(timeline: CallTimeline, pace: float | None) -> list[Turn]:
    """One turn per utterance the caller began."""
    return [Turn(t.utterance + 1, t.said, t.end is not None, [f.text for f in t.finals], t.request is not None,
                 t.reply, sum(s.sent_ms for s in t.audio) / 1000, sum(s.ms for s in t.audio) / 1000,
                 any(s.cut for s in t.audio))
            for t in trace_turns(timeline, pace)]
