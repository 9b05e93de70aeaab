"""What every check reads of a call: its timeline, the fixture's expectations, the store and the handler's log,
how it was played (``CheckContext``); a check is a function of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from harness.judge.handler_log import ErrorBlock
from harness.judge.timeline import CallTimeline, Event
from harness.judge.verdict import CheckResult

if TYPE_CHECKING:
    from harness.judge.crosscall import Neighbours

NO_LOG = "no handler log to read: give one with --handler-log FILE"


@dataclass
class CheckContext:
    timeline: CallTimeline
    expect: dict
    stored_caller_lines: list[str] | None  # None when the store is not reachable
    errors_logged: list[ErrorBlock | str] | None = field(default_factory=list)  # None: the handler's log is not readable
    call_refused_allowed: bool = False
    audio_plays: bool = True  # False at 'fast' pacing: bot audio takes no time, nothing can be talked over
    no_log_why: str = NO_LOG
    started_without: tuple[str, ...] = ()  # the handler was started without these variables (failure 1)
    pace: float | None = 1.0  # bot audio plays at this pace (None: fast, no time at all)
    neighbours: "Neighbours | None" = None  # other calls on this handler (None: judged as the only call)

    @property
    def hangup(self) -> float:
        return self.timeline.hangup

    @property
    def play_pace(self) -> float | None:
        return self.pace if self.audio_plays else None

    def finals_before_hangup(self) -> list[Event]:
        return [e for e in self.timeline.of("final") if e.wall < self.hangup]


Check = Callable[[CheckContext], CheckResult]
