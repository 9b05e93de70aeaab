"""What a load run measures, without I/O: each turn's outcome from what a caller saw, a step's figures,
and where the capacity knee lies.

A turn is an utterance of the fixture. It is *answered* when the first bot ``media`` frame arrives
after the frame that completed the utterance was sent, within ``ANSWER_WAIT_S`` and before the
caller's next utterance ends; its latency is that gap (what the caller hears: it includes the
recognizer's end-point detection, the LLM and the TTS).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from harness.fakes.twilio_line import FRAME_MS, PlayerRecord
from harness.fixture import CallFixture

ANSWER_WAIT_S = 5.0  # a caller who has heard nothing this long after speaking was not answered


@dataclass(frozen=True)
class TurnOutcome:
    spoke_at: float  # monotonic wall time the utterance's last frame was sent
    latency_ms: float | None  # None: not answered


def end_frames(fixture: CallFixture) -> list[int]:
    """Index of the frame that completes each utterance."""
    return [max(0, math.ceil(u.end_ms / FRAME_MS) - 1) for u in fixture.script.utterances]


def turn_outcomes(fixture: CallFixture, record: PlayerRecord, now: float, *, final: bool) -> list[TurnOutcome | None]:
    """Each utterance's outcome as far as it is known at ``now``: ``None`` while it is unspoken or could
    still be answered. ``final``: the call is over, so every spoken turn is settled."""
    frames = end_frames(fixture)
    sent = record.frame_sent
    spoken = [float(sent[k]) if k < len(sent) and not math.isnan(sent[k]) else None for k in frames]
    media = [t for t, m in record.received if m.get("event") == "media"]
    ended = record.closed_at if record.closed_at is not None else (now if final else math.inf)
    outcomes: list[TurnOutcome | None] = []
    for i, at in enumerate(spoken):
        if at is None:
            outcomes.append(None)
            continue
        later = [s for s in spoken[i + 1:] if s is not None]
        limit = min(at + ANSWER_WAIT_S, later[0] if later else math.inf)
        first = next((t for t in media if t >= at), None)
        if first is not None and first < limit:
            outcomes.append(TurnOutcome(at, round((first - at) * 1000, 1)))
        elif now >= limit or ended <= now or final:
            outcomes.append(TurnOutcome(at, None))
        else:
            outcomes.append(None)  # it may still be answered
    return outcomes


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 1)


@dataclass
class StepResult:
    """One step of concurrency, measured over its hold window (after its callers had joined)."""

    callers: int
    window_s: float
    calls_started: int = 0
    calls_failed: int = 0
    turns: int = 0
    answered: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # p50, p95, p99, max
    handler_ms: dict[str, float | None] = field(default_factory=dict)  # what the handler logged (final -> first media)
    handler_steps_p99_ms: dict[str, float | None] = field(default_factory=dict)  # every figure on that line, p99
    handler_errors: int | None = None  # error blocks in its log, None: no log
    handler_cpu_percent: float | None = None  # of one core; None: the process cannot be seen
    harness_cpu_percent: float | None = None  # this process: the callers and the fakes (and an in-process handler)
    harness_late_ms: dict[str, float | None] = field(default_factory=dict)  # this process's loop (p50, p99, max)
    failures: list[str] = field(default_factory=list)  # the first few reasons calls failed
    held: bool | None = None  # against the capacity criteria, when they were given
    why_not: str = ""

    @property
    def answered_share(self) -> float | None:
        return self.answered / self.turns if self.turns else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "answered_share": self.answered_share}


def summarise(step: StepResult, outcomes: Iterable[TurnOutcome], handler_ms: list[float],
              harness_late_ms: Sequence[float] = (), handler_figures: Mapping[str, list[float]] | None = None,
              ) -> StepResult:
    """Fill ``step`` from the turns spoken in its window, how late the harness's own loop ran then, and the
    figures the handler logged per turn (by name)."""
    outcomes = list(outcomes)
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    step.turns, step.answered = len(outcomes), len(latencies)
    step.latency_ms = {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99), "max": max(latencies) if latencies else None}
    step.handler_ms = {"p50": percentile(handler_ms, 50), "p95": percentile(handler_ms, 95),
                       "p99": percentile(handler_ms, 99)} if handler_ms else {}
    step.handler_steps_p99_ms = {name: percentile(values, 99) for name, values in (handler_figures or {}).items()}
    step.harness_late_ms = {"p50": percentile(harness_late_ms, 50), "p99": percentile(harness_late_ms, 99),
                            "max": round(max(harness_late_ms), 1)} if harness_late_ms else {}
    return step


@dataclass(frozen=True)
class Criteria:
    """When a step counts as held: p95 turn latency at most ``max_p95_ms``, at least ``min_answered`` of
    the turns answered and of the calls started without failing."""

    max_p95_ms: float
    min_answered: float = 0.99

    def judge(self, step: StepResult) -> StepResult:
        p95 = step.latency_ms.get("p95")
        reasons = []
        if not step.turns:
            reasons.append("no turn was spoken in the window (make --hold longer than one utterance)")
        elif (step.answered_share or 0.0) < self.min_answered:
            reasons.append(f"{step.answered}/{step.turns} turns answered (< {self.min_answered:.0%})")
        if p95 is not None and p95 > self.max_p95_ms:
            reasons.append(f"p95 {p95:g} ms > {self.max_p95_ms:g} ms")
        if step.calls_started and step.calls_failed / step.calls_started > 1 - self.min_answered:
            reasons.append(f"{step.calls_failed}/{step.calls_started} calls failed")
        step.held, step.why_not = not reasons, "; ".join(reasons)
        return step


def next_callers(steps: list[StepResult], *, start: int, limit: int, resolution: float = 0.1) -> int | None:
    """The search for the knee: double while steps hold, then bisect between the last step that held and
    the first that broke until they are within ``resolution`` of each other. None: done."""
    if not steps:
        return start
    held = [s.callers for s in steps if s.held]
    broke = [s.callers for s in steps if not s.held]
    good = max(held, default=0)
    bad = min((b for b in broke if b > good), default=None)
    if bad is None:
        if good >= limit:
            return None
        return min(limit, max(good * 2, good + 1))
    if bad - good <= max(1, resolution * good):
        return None
    middle = (good + bad) // 2
    return middle if middle not in (good, bad) else None


def knee(steps: list[StepResult]) -> dict[str, Any]:
    """The most callers a step held with no smaller step broken below it, and the first step that broke above."""
    held = sorted(s.callers for s in steps if s.held)
    broke = sorted(s.callers for s in steps if s.held is False)
    first_bad = broke[0] if broke else None
    good = max((c for c in held if first_bad is None or c < first_bad), default=None)
    return {"held": good, "broke": first_bad,
            "why": next((s.why_not for s in steps if s.callers == first_bad), "") if first_bad else ""}
