"""A check's verdict: passed, failed, or skipped (with why), and the moment on the timeline that shows it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: passed, failed, or skipped (``ok`` and ``skipped``, with why in ``message``)."""

    name: str
    ok: bool
    message: str = ""
    at: float | None = None  # wall time of the event that shows the failure
    skipped: bool = False
    since: float | None = None  # with ``at``: the stretch of the timeline that shows it starts here

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.ok else "failed"


def skipped(name: str, why: str) -> CheckResult:
    """A check that could not be judged for this handler: not a pass, and never shown as one."""
    return CheckResult(name, True, why, skipped=True)
