"""Reports of a harness run: a console table, and JSON with every check, turn and timeline event."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO
from xml.etree import ElementTree

from aicall.twilio import XML_FORBIDDEN
from harness.judge.metrics import percentile
from harness.judge.verdict import Status, Verdict
from harness.files import write_atomically
from harness.replay.runner import FixtureRun
from harness.reports.printout import why
from harness.terminal import printable

NAME_WIDTH = 34


@dataclass(frozen=True)
class Interruption:
    """A run stopped by a signal: how, how many of its calls finished, and the ones never judged."""

    how: str  # "Ctrl-C (SIGINT)", "SIGTERM"
    finished: int
    planned: int
    not_run: list[str]

    @property
    def line(self) -> str:
        return (f"interrupted by {self.how} after {self.finished} of {self.planned} calls: only the finished ones are "
                "judged here")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _short(text: str, most: int = 80) -> str:
    one = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return repr(one if len(one) <= most else one[: most - 3] + "...")


def verdict(run: FixtureRun) -> str:
    """PASS, FAIL or NOT JUDGED."""
    return run.verdict.label


def console_table(runs: list[FixtureRun], out: TextIO) -> None:
    """The verdicts as a table, each failure's message and why; handler text in it made ``printable``."""
    text = io.StringIO()
    _table(runs, text)
    out.write(printable(text.getvalue()))


def _table(runs: list[FixtureRun], out: TextIO) -> None:
    width = max([NAME_WIDTH, *(len(r.fixture.name) + 1 for r in runs)])
    header = (f"{'fixture':<{width}} {'result':<10} {'turns':>5} {'stt ms':>7} {'last-partial->final':>20} {'turn ms':>8}"
              "  failed checks (skipped)")
    print(header, file=out)
    print("-" * len(header), file=out)
    for run in runs:
        stt = percentile([t.speech_end_to_final_ms for t in run.turns], 50)
        report = percentile([t.last_partial_to_final_ms for t in run.turns], 50)
        turn = percentile([t.speech_end_to_first_audio_ms for t in run.turns], 50)
        failed = ", ".join(c.name for c in run.checks if not c.ok) or "-"
        names = [c.name for c in run.checks if c.skipped]
        skipped = ", ".join(names) if len(names) <= 2 else f"{len(names)} skipped"
        print(f"{run.fixture.name:<{width}} {verdict(run):<10} {len(run.turns):>5} {_fmt(stt):>7} "
              f"{_fmt(report):>20} {_fmt(turn):>8}  {failed}" + (f" ({skipped})" if skipped else ""), file=out)
    for run in runs:
        for check in run.checks:
            if not check.ok:
                print(f"\n{run.fixture.name}: {check.name}: FAILED: {check.message}", file=out)
                for line in why(run.timeline, check):
                    print(f"    {line}", file=out)
    for run in runs:
        if run.verdict is Verdict.NOT_JUDGED:
            print(f"\n{run.fixture.name}: NOT JUDGED: no check could judge this call, so it did not pass: "
                  f"{run.not_judged_why}", file=out)
    for run in runs:
        for work in run.post_call:
            late = work.get("answers_final_after_hangup")
            print(f"\n{run.fixture.name}: post-call work (not a turn): the LLM was asked {work['after_hangup_s']:.2f} s "
                  f"after the hang-up: {_short(work['asked'])}"
                  + (f" - it answers {late!r}, a final that came after the hang-up" if late else ""), file=out)
    reasons: dict[str, set[str]] = {}
    for run in runs:
        for c in run.checks:
            if c.skipped:
                reasons.setdefault(c.message, set()).add(c.name)
    for why_skipped, names in sorted(reasons.items()):
        print(f"\nskipped {', '.join(sorted(names))}: {why_skipped}", file=out)


def write_json(runs: list[FixtureRun], path: Path, pace: str, interrupted: Interruption | None = None) -> None:
    all_turns = [t for run in runs for t in run.turns]
    summary = {
        "pace": pace,
        "fixtures": len(runs),
        "failed": sum(r.verdict is Verdict.FAIL for r in runs),
        "passed": sum(r.verdict is Verdict.PASS for r in runs),
        "not_judged": sum(r.verdict is Verdict.NOT_JUDGED for r in runs),
        "checks": {status: sum(c.status is status for r in runs for c in r.checks) for status in Status},
        "speech_end_to_final_ms": {"p50": percentile([t.speech_end_to_final_ms for t in all_turns], 50),
                                   "p95": percentile([t.speech_end_to_final_ms for t in all_turns], 95)},
        "last_partial_to_final_ms": {"p50": percentile([t.last_partial_to_final_ms for t in all_turns], 50),
                                     "p95": percentile([t.last_partial_to_final_ms for t in all_turns], 95)},
        "turn_latency_ms": {"p50": percentile([t.speech_end_to_first_audio_ms for t in all_turns], 50),
                            "p95": percentile([t.speech_end_to_first_audio_ms for t in all_turns], 95)},
    }
    if interrupted is not None:
        summary["interrupted"] = asdict(interrupted)
    body = {
        "summary": summary,
        "runs": [{
            "fixture": run.fixture.name, "verdict": run.verdict, "ok": run.ok,
            **({"not_judged_why": run.not_judged_why} if run.verdict is Verdict.NOT_JUDGED else {}),
            "call_sid": run.call_sid, "wall_s": round(run.wall_s, 2),
            "checks": [{**asdict(c), "status": c.status, "why": why(run.timeline, c)} for c in run.checks],
            "handler_errors": run.errors, "turns": [asdict(t) for t in run.turns], "post_call": run.post_call,
            **({"caller_reacted": {"reactions": run.record.reactions, "silence_held_ms": run.record.silence_ms,
                                   "pauses_cut_ms": run.record.skipped_ms}} if run.record and run.record.reactions else {}),
            "timeline": [{"t": round(e.wall - run.timeline.events[0].wall, 4), "kind": e.kind,
                          **{k: v for k, v in e.fields().items() if k != "told"}}  # a request's whole history: the turns say it
                         for e in run.timeline.events if e.kind != "media"],
        } for run in runs],
    }
    write_atomically(path, json.dumps(body, ensure_ascii=False, indent=1, default=str) + "\n")


def write_junit(runs: list[FixtureRun], path: Path, interrupted: Interruption | None = None) -> None:
    """One testcase per fixture and check (skipped ones as ``<skipped>``), for CI systems that read JUnit XML; an
    interrupted run adds one skipped testcase per call it never replayed, saying so."""
    checks = [(run, check) for run in runs for check in run.checks]
    not_run = interrupted.not_run if interrupted else []
    unjudged = [run for run in runs if run.verdict is Verdict.NOT_JUDGED]
    suite = ElementTree.Element("testsuite", name="harness", tests=str(len(checks) + len(not_run) + len(unjudged)),
                                failures=str(sum(not c.ok for _, c in checks)),
                                skipped=str(sum(c.skipped for _, c in checks) + len(not_run) + len(unjudged)))
    if interrupted is not None:
        properties = ElementTree.SubElement(suite, "properties")
        ElementTree.SubElement(properties, "property", name="interrupted", value=interrupted.line)
    for run, check in checks:
        case = ElementTree.SubElement(suite, "testcase", classname=f"harness.{run.fixture.name}", name=check.name,
                                      time=f"{run.wall_s:.3f}")
        if check.skipped:
            ElementTree.SubElement(case, "skipped", message=check.message)
        elif not check.ok:
            failure = ElementTree.SubElement(case, "failure", message=check.message.split("\n")[0])
            failure.text = "\n".join([check.message, *why(run.timeline, check)])
    for run in unjudged:  # every check skipped: the call as a whole was not judged, said as its own testcase
        case = ElementTree.SubElement(suite, "testcase", classname=f"harness.{run.fixture.name}", name="verdict",
                                      time=f"{run.wall_s:.3f}")
        ElementTree.SubElement(case, "skipped", message=f"NOT JUDGED: no check could judge this call: {run.not_judged_why}")
    for name in not_run:
        case = ElementTree.SubElement(suite, "testcase", classname=f"harness.{name}", name="not replayed", time="0")
        ElementTree.SubElement(case, "skipped", message=f"not replayed: the run was {interrupted.line}")
    work = [f"{run.fixture.name}: post-call work (not a turn): LLM asked {w['after_hangup_s']:.2f} s after the hang-up: "
            f"{_short(w['asked'])}" for run in runs for w in run.post_call]
    if work:
        ElementTree.SubElement(suite, "system-out").text = "\n".join(work)
    write_xml(suite, path)


def xml_text(text: str) -> str:
    """``text`` with what XML 1.0 forbids (a handler's log line may carry 0x01 or 0x0b) written as ``\\xNN``:
    a CI system drops a JUnit file that is not well-formed whole."""
    return XML_FORBIDDEN.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def write_xml(root: ElementTree.Element, path: Path) -> None:
    """Write a JUnit tree, every text and attribute made ``xml_text`` first."""
    for node in root.iter():
        node.text = None if node.text is None else xml_text(node.text)
        node.attrib = {k: xml_text(v) for k, v in node.attrib.items()}
    write_atomically(path, ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))
