"""Per-turn latency from the timeline: the true figures, and the one the report measured beside them.

Each turn's answer is its own reply, traced through the fakes (:mod:`harness.judge.attribution`): the bot
finishing an earlier reply after the caller spoke again is not this turn's answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

from harness.judge.events import EventBase, Partial, SpeechEnd
from harness.judge.attribution import trace_turns
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import CheckResult

if TYPE_CHECKING:
    from harness.judge.context import CheckContext


@dataclass(frozen=True)
class TurnMetrics:
    utterance: int
    speech_end_to_final_ms: float | None  # true STT latency: end of caller speech (from the audio) -> final
    last_partial_to_final_ms: float | None  # what the report called "0.001 s"
    final_to_llm_ms: float | None
    speech_end_to_first_audio_ms: float | None  # turn latency as the caller hears it: its own reply's first audio


def _ms(a: EventBase | None, b: EventBase | None) -> float | None:
    return None if a is None or b is None else round((b.wall - a.wall) * 1000, 1)


def turn_metrics(timeline: CallTimeline) -> list[TurnMetrics]:
    partials = timeline.of(Partial)
    result = []
    for trace in trace_turns(timeline, None):
        if trace.end is None:
            continue  # the caller hung up mid-utterance
        final = next((f for f in trace.finals if f.wall >= trace.end.wall), trace.finals[-1] if trace.finals else None)
        last_partial = None
        if final is not None:
            before = [p for p in partials if p.wall <= final.wall and p.connection == final.connection]
            last_partial = before[-1] if before else None
        result.append(TurnMetrics(trace.utterance, _ms(trace.end, final), _ms(last_partial, final),
                                  _ms(final, trace.request), _ms(trace.end, trace.first_audio)))
    return result


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(v for v in values if v is not None)
    return round(ordered[int(q / 100 * (len(ordered) - 1))], 1) if ordered else None


def turn_latency(ctx: CheckContext) -> CheckResult:
    """A latency budget (``expect.max_turn_ms``, or ``harness run --max-turn-ms``): every turn answered within it,
    from the end of the caller's speech (in the audio) to the first audio of its own reply, as the latency
    figures measure it. A turn never answered is ``expectations``' to judge (``answered_turns``)."""
    budget = float(ctx.expect["max_turn_ms"])
    measured = [m for m in turn_metrics(ctx.timeline) if m.speech_end_to_first_audio_ms is not None]
    if not measured:
        return CheckResult("turn_latency", True, "no turn answered: nothing to time")
    slowest = max(measured, key=lambda m: m.speech_end_to_first_audio_ms or 0.0)
    ms = slowest.speech_end_to_first_audio_ms or 0.0
    if ms <= budget:
        return CheckResult("turn_latency", True, f"the slowest turn (t{slowest.utterance + 1}) answered in {ms:.0f} ms")
    over = sum(1 for m in measured if (m.speech_end_to_first_audio_ms or 0.0) > budget)
    ends = {e.utterance: e for e in ctx.timeline.of(SpeechEnd)}
    end = ends.get(slowest.utterance)
    return CheckResult("turn_latency", False, f"turn t{slowest.utterance + 1} was answered {ms:.0f} ms after the caller "
                       f"stopped speaking (to the first audio of its own reply), over the budget of {budget:.0f} ms; "
                       f"{over} of {len(measured)} answered turn(s) over it", end.wall if end else None)
