"""JUnit files stay well-formed whatever a handler logged (issue 22, item 12): XML 1.0 forbids most C0
control bytes even escaped, and a CI system drops a file it cannot parse whole."""

from __future__ import annotations

from xml.etree import ElementTree

from harness.judge.checks import CheckResult
from harness.fixture import bundled_calls, load_call
from harness.cli.fuzz import _write_reports
from harness.reports.results import write_junit
from harness.replay.runner import FixtureRun
from harness.judge.timeline import CallTimeline

LOGGED = "ERROR handler: bad frame \x01\x0b\x1b[31m<tag>&\ud800"


def test_a_check_message_with_control_bytes_is_written_as_readable_escapes(tmp_path):
    fixture = load_call(bundled_calls() / "seed-three-turns")
    run = FixtureRun(fixture, [CheckResult("no_errors", False, LOGGED)], [], CallTimeline([]), 1.0)
    write_junit([run], tmp_path / "junit.xml")
    failure = ElementTree.parse(tmp_path / "junit.xml").getroot().find("./testcase/failure")
    assert failure.get("message") == "ERROR handler: bad frame \\x01\\x0b\\x1b[31m<tag>&\\ud800"
    assert failure.text.startswith(failure.get("message"))


def test_fuzz_junit_too(tmp_path):
    logged = LOGGED.replace("\ud800", "")  # a log is read as UTF-8 with errors replaced: no lone surrogates
    summary = {"drawn": 3, "failure": {"name": "fuzz-x", "fixture": "f", "checks": [
        {"name": "no_errors", "status": "failed", "message": logged}]}}
    _write_reports([summary], [], tmp_path)
    node = ElementTree.parse(tmp_path / "fuzz-junit.xml").getroot().find("./testcase/failure")
    assert "\\x01\\x0b" in node.text and "<tag>&" in node.text
