"""A call none of whose checks could judge it is NOT JUDGED, never a pass: at each output (console, report.json,
junit.xml, report.html, the exit code), and from the command line as a new user meets it (a running handler
cannot be started without its credentials, so a failure-1 call is not judged). And how a stream ended is
fakertzr's one typed vocabulary, which the judge reads."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from fakertzr.journal import SERVER_ENDS, ConnectionRecord, StreamEnd
from harness.cli.main import NOTHING_JUDGED, run_exit_code
from harness.fixture import bundled_calls, load_call
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import CheckResult, Status, Verdict, failed, passed, skipped, verdict_of
from harness.replay.runner import FixtureRun
from harness.reports.html import write_html
from harness.reports.results import console_table, write_json, write_junit

ROOT = Path(__file__).resolve().parents[2]
WHY = "a running handler cannot be started without its credentials"


def run_of(name: str, *checks: CheckResult) -> FixtureRun:
    return FixtureRun(load_call(bundled_calls() / name), list(checks), [], CallTimeline([]), 0.1)


def unjudged() -> FixtureRun:
    return run_of("failure1-credentials-missing", skipped("refuses_without_credentials", WHY), skipped("no_errors", "no log"))


def judged() -> FixtureRun:
    return run_of("seed-three-turns", passed("expectations"), skipped("no_errors", "no log"))


def test_a_verdict_is_a_pass_only_when_something_judged() -> None:
    assert verdict_of([skipped("a", "why"), skipped("b", "why")]) is Verdict.NOT_JUDGED
    assert verdict_of([]) is Verdict.NOT_JUDGED
    assert verdict_of([skipped("a", "why"), passed("b")]) is Verdict.PASS
    assert verdict_of([passed("a"), failed("b", "cause: symptom")]) is Verdict.FAIL
    assert [c.status for c in (passed("a"), failed("b", "x"), skipped("c", "y"))] == [Status.PASSED, Status.FAILED,
                                                                                      Status.SKIPPED]
    run = unjudged()
    assert (run.verdict, run.ok, run.failed) == (Verdict.NOT_JUDGED, False, False)
    assert WHY in run.not_judged_why and WHY in run.failures()


def test_the_console_says_not_judged_and_why() -> None:
    out = io.StringIO()
    console_table([unjudged(), judged()], out)
    text = out.getvalue()
    row = next(line for line in text.splitlines() if line.startswith("failure1-credentials-missing "))
    assert "NOT JUDGED" in row and "PASS" not in row, text
    assert f"failure1-credentials-missing: NOT JUDGED: no check could judge this call, so it did not pass: {WHY}" in text
    assert next(line for line in text.splitlines() if line.startswith("seed-three-turns ")).split()[1] == "PASS"


def test_report_json_says_not_judged(tmp_path: Path) -> None:
    write_json([unjudged(), judged()], tmp_path / "report.json", "fast")
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["summary"]["not_judged"] == 1 and report["summary"]["passed"] == 1
    assert report["summary"]["failed"] == 0 and report["summary"]["checks"]["skipped"] == 3
    first, second = report["runs"]
    assert (first["verdict"], first["ok"]) == ("not judged", False) and WHY in first["not_judged_why"]
    assert (second["verdict"], second["ok"]) == ("pass", True) and "not_judged_why" not in second


def test_junit_skips_the_call_as_a_whole(tmp_path: Path) -> None:
    write_junit([unjudged(), judged()], tmp_path / "junit.xml")
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    verdicts = [c for c in suite.iter("testcase") if c.get("name") == "verdict"]
    assert [c.get("classname") for c in verdicts] == ["harness.failure1-credentials-missing"]
    assert verdicts[0].find("skipped").get("message").startswith("NOT JUDGED: no check could judge this call")
    assert suite.get("failures") == "0" and suite.get("skipped") == "4" and suite.get("tests") == "5"


def test_the_html_report_marks_it_apart(tmp_path: Path) -> None:
    write_html([judged(), unjudged()], tmp_path / "report.html", "fast")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "1 of 2 calls passed, 1 not judged" in page
    assert "<tr class='unjudged'>" in page and "<td>NOT JUDGED</td>" in page
    assert "<span class='verdict'>NOT JUDGED</span>" in page and f"so it did not pass: {WHY}" in page
    assert page.index("failure1-credentials-missing") < page.index("seed-three-turns"), "not judged before passes"


def test_the_exit_code_says_nothing_was_judged() -> None:
    failing = run_of("seed-three-turns", failed("expectations", "cause"))
    assert run_exit_code([unjudged()]) == NOTHING_JUDGED == 5
    assert run_exit_code([unjudged(), judged()]) == 0
    assert run_exit_code([unjudged(), failing]) == 1
    assert run_exit_code([judged()]) == 0


@pytest.mark.timeout(120)
def test_harness_run_of_a_call_nothing_can_judge_exits_5(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--target", "ws://127.0.0.1:9/twilio/media",
                           "-k", "failure1-credentials-missing", "--report-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "failure1-credentials-missing: NOT JUDGED" in done.stdout and " PASS" not in done.stdout
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["runs"][0]["verdict"] == "not judged"


def test_how_a_stream_ended_is_one_typed_vocabulary() -> None:
    record = ConnectionRecord(0)
    record.end("stalled", None, "fault: stall")
    record.end(StreamEnd.SERVER_CLOSED, 1000, "EOS")  # the first account wins
    assert record.ending is not None and record.ending.how is StreamEnd.STALLED and record.ending.ended_by_server
    assert json.loads(json.dumps(record.to_dict()))["ended"]["how"] == "stalled"
    asked = ConnectionRecord(1)
    asked.end("server_closed", 1000, "EOS")
    assert asked.ending is not None and asked.ending.answered_eos and not asked.ending.ended_by_server
    assert SERVER_ENDS == {StreamEnd.SERVER_CLOSED, StreamEnd.DROPPED, StreamEnd.STALLED, StreamEnd.IDLE_TIMEOUT}
    assert not StreamEnd.CLIENT_CLOSED.ended_by_server and StreamEnd.IDLE_TIMEOUT.ended_by_server
    with pytest.raises(ValueError):
        ConnectionRecord(2).end("closed_by_server")
