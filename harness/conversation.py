"""A call as a conversation, turn by turn: what the caller said (scripted), what the recognizer made of
it (finals), what the bot answered (the LLM's reply), and how much of that answer the caller heard.

Sans-I/O over the timeline and the played bot audio; turns are numbered from 1, as ``aicall show``
numbers them (t1, t2, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from .playback import Played
from .timeline import CallTimeline


@dataclass(frozen=True)
class Turn:
    number: int  # from 1
    said: str  # the fixture's script
    finished: bool  # the caller got to the end of it (no hang-up in the middle)
    recognised: list[str]  # finals that came in this turn
    asked: bool  # a delivered LLM request carried it
    reply: str  # the LLM's reply to it ("" when none)
    bot_seconds: float  # bot audio the handler sent in this turn
    heard_seconds: float  # of it, what the caller heard before a clear or the hang-up
    cut: bool  # playback was cleared (barge-in)


def turns(timeline: CallTimeline, played: list[Played]) -> list[Turn]:
    """One turn per utterance the caller began; its reply and the bot audio are those after its final,
    up to the next turn's final (a reply still playing while the caller talks on stays its own)."""
    starts = timeline.of("speech_start")
    ended = {e.detail["utterance"] for e in timeline.of("speech_end")}
    finals = timeline.of("final")
    requests = [r for r in timeline.of("llm_request") if r.detail.get("status", 200) < 400]
    hangup = min((e.wall for e in timeline.of("stop", "closed")), default=float("inf"))
    owned = []
    for i, start in enumerate(starts):
        until = starts[i + 1].wall if i + 1 < len(starts) else float("inf")
        owned.append([f for f in finals if start.wall <= f.wall < until])
    answered_from = [own[0].wall if own else None for own in owned]  # a reply (and its audio) follows its final
    result = []
    for i, (start, own) in enumerate(zip(starts, owned)):
        begin = answered_from[i]
        until = next((t for t in answered_from[i + 1:] if t is not None), float("inf"))
        request = next((r for r in requests if begin is not None and begin <= r.wall < until), None)
        audio = [p for p in played if begin is not None and begin <= p.start < until]
        heard = sum(min(p.seconds, max(0.0, hangup - p.start)) for p in audio)
        number = start.detail["utterance"]
        result.append(Turn(number + 1, start.detail.get("text", ""), number in ended, [f.detail["text"] for f in own],
                           request is not None, request.detail.get("reply", "") if request else "",
                           sum(p.sent for p in audio) / 8000, heard, any(p.cut for p in audio)))
    return result
