"""What every check reads of a call: its timeline, the fixture's expectations, the store and the handler's log,
how it was played (``CheckContext``); a check is a function of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from harness.judge.events import Final
from harness.fixture import CallFixture
from harness.judge.handler_log import ErrorBlock
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import CheckResult

if TYPE_CHECKING:
    from harness.judge.crosscall import Neighbours

NO_LOG = "no handler log to read: give one with --handler-log FILE"


@dataclass
class CheckContext:
    timeline: CallTimeline
    expect: dict[str, Any]
    stored_caller_lines: list[str] | None  # None when the store is not reachable
    errors_logged: Sequence[ErrorBlock | str] | None = field(default_factory=list)  # None: the handler's log is not readable
    call_refused_allowed: bool = False
    audio_plays: bool = True  # False at 'fast' pacing: bot audio takes no time, nothing can be talked over
    no_log_why: str = NO_LOG
    started_without: tuple[str, ...] = ()  # the handler was started without these variables (failure 1)
    pace: float | None = 1.0  # bot audio plays at this pace (None: fast, no time at all)
    neighbours: "Neighbours | None" = None  # other calls on this handler (None: judged as the only call)
    unfaked_hosts: tuple[str, ...] | None = None  # steered (--steer): what the handler tried to reach that nothing fakes
    recognised_s: float = 0.0  # after the caller sent an utterance's end point, until RTZR finalises it (``recognised_s``)

    @property
    def hangup(self) -> float:
        return self.timeline.hangup

    @property
    def play_pace(self) -> float | None:
        return self.pace if self.audio_plays else None

    def finals_before_hangup(self) -> list[Final]:
        return [e for e in self.timeline.of(Final) if e.wall < self.hangup]


Check = Callable[[CheckContext], CheckResult]


def recognised_s(fixture: CallFixture, pace: float | None) -> float:
    """Wall seconds from when the caller's audio reached an utterance's end point (``end_point_sent``: its
    end-point time of audio after the last word, sent) until RTZR finalises it: its processing delay, and the
    longest delay a ``delay_finals`` fault adds, at the pace (0 at fast pace)."""
    if pace is None:
        return 0.0
    delayed = max((float(f.get("delay_ms", 0.0)) for f in fixture.script.faults if f.get("type") == "delay_finals"),
                  default=0.0)
    return (fixture.script.recognizer.processing_delay_ms + delayed) / 1000.0 / pace
