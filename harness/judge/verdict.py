"""A check's result (passed, failed, or skipped with why, and the moment on the timeline that shows it) and a call's
verdict: a call none of whose checks judged anything is *not judged*, never a pass (after schemathesis'
``CheckResult(status=...)`` with its distinct skip)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable


class Status(StrEnum):
    """What one check found."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # it could not judge this call (why is in the message): not a pass


class Verdict(StrEnum):
    """What a call's checks found together."""

    PASS = "pass"  # at least one check judged the call, and none failed
    FAIL = "fail"  # a check failed
    NOT_JUDGED = "not judged"  # no check could judge the call (all skipped, or none run)

    @property
    def label(self) -> str:
        """As the console and the reports print it: PASS, FAIL, NOT JUDGED."""
        return self.value.upper()


@dataclass(frozen=True)
class CheckResult:
    """One check's result; build it with ``passed``, ``failed`` or ``skipped`` (``ok`` is False only for a failure;
    a skipped check is ``ok`` and judged nothing)."""

    name: str
    ok: bool
    message: str = ""
    at: float | None = None  # wall time of the event that shows the failure
    skipped: bool = False
    since: float | None = None  # with ``at``: the stretch of the timeline that shows it starts here

    @property
    def status(self) -> Status:
        return Status.SKIPPED if self.skipped else Status.PASSED if self.ok else Status.FAILED

    @property
    def judged(self) -> bool:
        return not self.skipped


def passed(name: str, message: str = "") -> CheckResult:
    """The check judged the call and found nothing wrong."""
    return CheckResult(name, True, message)


def failed(name: str, message: str, at: float | None = None, since: float | None = None) -> CheckResult:
    """The check failed: ``message`` says the cause, then what was seen; ``at`` the moment that shows it."""
    return CheckResult(name, False, message, at, since=since)


def skipped(name: str, why: str) -> CheckResult:
    """A check that could not be judged for this handler: not a pass, and never shown as one."""
    return CheckResult(name, True, why, skipped=True)


def verdict_of(checks: Iterable[CheckResult]) -> Verdict:
    """FAIL if any check failed; NOT_JUDGED if none judged anything; else PASS."""
    results = list(checks)
    if any(c.status is Status.FAILED for c in results):
        return Verdict.FAIL
    return Verdict.PASS if any(c.judged for c in results) else Verdict.NOT_JUDGED
