"""`harness run` end to end: the bundled fixtures pass against aicall, and a bug put back is caught."""

from __future__ import annotations

import json
import re
import subprocess
from xml.etree import ElementTree
import sys

import aicall.rtzr_client as rtzr_client
from harness.fixture import discover, load_call
from harness.replay.runner import ErrorLog, run_fixture

FIXTURES = "fixtures/calls"


def test_every_bundled_fixture_loads_and_names_itself():
    directories = discover(FIXTURES)
    assert len(directories) >= 8
    assert all(load_call(d).name == d.name for d in directories)


async def test_failure2_fixture_passes_against_aicall(tmp_path):
    with ErrorLog() as errors:
        run = await run_fixture(load_call(f"{FIXTURES}/failure2-recognizer-closes-1000"), pace=None, workdir=tmp_path, errors=errors)
    assert run.ok, [c for c in run.checks if not c.ok]
    assert [t.utterance for t in run.turns] == [0, 1, 2]


async def test_the_harness_catches_failure2_put_back_into_aicall(tmp_path, monkeypatch):
    """The report's bug: the recognizer stream ends after the first final and is never reopened."""
    async def stops_after_first_close(self):
        ws = await self._connect()
        self.connections += 1
        await self._converse(ws)

    monkeypatch.setattr(rtzr_client.RecognizerStream, "run", stops_after_first_close)
    with ErrorLog() as errors:
        run = await run_fixture(load_call(f"{FIXTURES}/failure2-recognizer-closes-1000"), pace=None, workdir=tmp_path, errors=errors)
    failed = {c.name: c.message for c in run.checks if not c.ok}
    assert "recognition_continues" in failed and "expectations" in failed


def test_cli_runs_writes_a_report_and_exits_by_result(tmp_path):
    report = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed",
                           "--report-dir", str(report)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^seed-three-turns +PASS", done.stdout, re.M), done.stdout
    body = json.loads((report / "report.json").read_text())
    assert body["summary"]["failed"] == 0 and body["runs"][0]["checks"]
    junit = ElementTree.parse(report / "junit.xml").getroot()
    assert junit.get("failures") == "0" and len(junit.findall("testcase")) == len(body["runs"][0]["checks"])
    page = (report / "report.html").read_text()
    assert "<svg" in page and "seed-three-turns <span class='verdict'>PASS</span>" in page


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, message in ((["--pace", "slow"], "pace must be realtime, fast or xN"),
                          (["--fixtures", str(tmp_path)], "no fixtures in")):
        done = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_cli_launches_a_handler_with_cmd_and_signs_the_stream(tmp_path):
    cmd = "TWILIO_AUTH_TOKEN=tw PUBLIC_URL=http://127.0.0.1:{port} AICALL_DB=" + str(tmp_path / "c.db") + \
          f" {sys.executable} -m aicall.cli serve --port {{port}}"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed-three",
                           "--cmd", cmd, "--twilio-auth-token", "tw", "--report-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "seed-three-turns: PASS" in done.stdout
    unsigned = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed-three",
                               "--cmd", cmd, "--report-dir", str(tmp_path / "r2")], capture_output=True, text=True, timeout=120)
    assert unsigned.returncode == 1, "a handler that checks signatures refuses the unsigned stream: that fixture fails"
    assert re.search(r"replay: FAILED: the handler refused the stream at path /twilio/media, a path it serves \(.*\): "
                     r"does it check X-Twilio-Signature\? give --twilio-auth-token \(ws://127\.0\.0\.1:\d+/twilio/media "
                     r"answered HTTP 403\)", unsigned.stdout), unsigned.stdout


def test_long_fixture_names_keep_the_console_columns():
    import io
    from types import SimpleNamespace

    from harness.reports.results import console_table
    from harness.replay.runner import FixtureRun
    from harness.judge.timeline import CallTimeline

    from harness.judge.verdict import passed

    runs = [FixtureRun(SimpleNamespace(name=name), [passed("expectations")], [], CallTimeline([]), 0.0)
            for name in ("short", "failure3-hangup-while-llm-generates", "x" * 50)]
    out = io.StringIO()
    console_table(runs, out)
    rows = out.getvalue().splitlines()[2:5]
    assert len({row.index("PASS") for row in rows}) == 1, rows
    assert all(row[row.index("PASS") - 1] == " " for row in rows)
