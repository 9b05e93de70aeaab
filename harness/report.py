"""Reports of a harness run: a console table, and JSON with every check, turn and timeline event."""

from __future__ import annotations

import json
from dataclasses import asdict
from xml.etree import ElementTree
from pathlib import Path
from typing import TextIO

from .metrics import percentile
from .runner import FixtureRun


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def console_table(runs: list[FixtureRun], out: TextIO) -> None:
    header = f"{'fixture':<28} {'result':<6} {'turns':>5} {'stt ms':>7} {'last-partial->final':>20} {'turn ms':>8}  failed checks"
    print(header, file=out)
    print("-" * len(header), file=out)
    for run in runs:
        stt = percentile([t.speech_end_to_final_ms for t in run.turns], 50)
        report = percentile([t.last_partial_to_final_ms for t in run.turns], 50)
        turn = percentile([t.speech_end_to_first_audio_ms for t in run.turns], 50)
        failed = ", ".join(c.name for c in run.checks if not c.ok) or "-"
        print(f"{run.fixture.name:<28} {'PASS' if run.ok else 'FAIL':<6} {len(run.turns):>5} {_fmt(stt):>7} "
              f"{_fmt(report):>20} {_fmt(turn):>8}  {failed}", file=out)
    for run in runs:
        for check in run.checks:
            if not check.ok:
                print(f"\n{run.fixture.name}: {check.name}: {check.message}", file=out)
                if check.at is not None:
                    t0 = run.timeline.events[0].wall if run.timeline.events else check.at
                    for event in run.timeline.around(check.at):
                        print(f"    {event.wall - t0:8.3f}s {event.kind:<12} {json.dumps(event.detail, ensure_ascii=False)[:120]}", file=out)


def write_json(runs: list[FixtureRun], path: Path, pace: str) -> None:
    all_turns = [t for run in runs for t in run.turns]
    summary = {
        "pace": pace,
        "fixtures": len(runs),
        "failed": sum(not r.ok for r in runs),
        "speech_end_to_final_ms": {"p50": percentile([t.speech_end_to_final_ms for t in all_turns], 50),
                                   "p95": percentile([t.speech_end_to_final_ms for t in all_turns], 95)},
        "last_partial_to_final_ms": {"p50": percentile([t.last_partial_to_final_ms for t in all_turns], 50),
                                     "p95": percentile([t.last_partial_to_final_ms for t in all_turns], 95)},
        "turn_latency_ms": {"p50": percentile([t.speech_end_to_first_audio_ms for t in all_turns], 50),
                            "p95": percentile([t.speech_end_to_first_audio_ms for t in all_turns], 95)},
    }
    body = {
        "summary": summary,
        "runs": [{
            "fixture": run.fixture.name, "ok": run.ok, "wall_s": round(run.wall_s, 2),
            "checks": [asdict(c) for c in run.checks], "turns": [asdict(t) for t in run.turns],
            "timeline": [{"t": round(e.wall - run.timeline.events[0].wall, 4), "kind": e.kind, **e.detail}
                         for e in run.timeline.events if e.kind != "media"],
        } for run in runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")


def write_junit(runs: list[FixtureRun], path: Path) -> None:
    """One testcase per fixture and check, for CI systems that read JUnit XML."""
    checks = [(run, check) for run in runs for check in run.checks]
    suite = ElementTree.Element("testsuite", name="harness", tests=str(len(checks)),
                                failures=str(sum(not c.ok for _, c in checks)))
    for run, check in checks:
        case = ElementTree.SubElement(suite, "testcase", classname=f"harness.{run.fixture.name}", name=check.name,
                                      time=f"{run.wall_s:.3f}")
        if not check.ok:
            failure = ElementTree.SubElement(case, "failure", message=check.message)
            if check.at is not None:
                failure.text = "\n".join(f"{e.wall - check.at:+.3f}s {e.kind} {json.dumps(e.detail, ensure_ascii=False)[:160]}"
                                          for e in run.timeline.around(check.at))
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
