"""Mistakes a user (or a test) can make with the judge's types. mypy must refuse each line that ends with the
comment "refused" and no other (tests/test_types.py); this module is type-checked, never run nor collected."""

from fakertzr.journal import StreamEnd
from harness import FixtureRun, Verdict
from harness.judge.events import Final, LlmRequest, Stop
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import Status

timeline = CallTimeline([])
finals: list[Final] = timeline.of(Final)  # the kind as a class: fine
timeline.of("final")  # refused: a kind as a string matches nothing
Final(1.0, txt="안녕")  # refused: no such field
print(finals[0].txt)  # refused
print(Stop(1.0).hwo)  # refused
print(timeline.of(Final, Stop)[0].text)  # refused: a Stop has no text
print(timeline.of(LlmRequest)[0].user)
print(Verdict.PASSED)  # refused: it is Verdict.PASS
print(Status.PASS)  # refused: it is Status.PASSED
print(StreamEnd.CLOSED)  # refused: it is StreamEnd.SERVER_CLOSED


def failed_checks(run: FixtureRun) -> list[str]:
    return [c.name for c in run.checks if c.status is Status.FAILED]


def verdict_word(run: FixtureRun) -> str:
    return run.verdict.lable  # refused
