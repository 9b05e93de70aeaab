"""What ``harness fuzz`` prints and writes about a failure: the drawn call as the fixture it is (not a Python
dump), and reproduction commands whose reports go to folders of their own, so that running them leaves the
full run's reports as they were."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

from harness.cli.fuzz import _print, _summary
from harness.cli.main import build_parser
from harness.fuzz.scenario import Close, RevokedCredentials, Scenario
from harness.fuzz.search import Found, FuzzResult, reproduce_command
from harness.fuzz.strategies import as_call
from harness.fuzz.synthetic import SynthUtterance

CALL = as_call(Scenario(seed=4, utterances=(SynthUtterance(400, (150, 200)),),
                        faults=(Close(code=1011, after_finals=1),)))


def _failed(call=CALL, neighbours=()) -> dict:
    run = SimpleNamespace(checks=[], turns=[])  # what the summary reads of a run
    result = FuzzResult(seed=7, drawn=3, failure=Found(call, run), first_failure=Found(call, run),  # type: ignore[arg-type]
                        reproduced=True, neighbours=list(neighbours))
    summary = _summary(result, {"failure": f"rep/fuzz-failures/{call.name}"})
    summary["failure"]["checks"] = [{"name": "expectations", "status": "failed", "message": "planted"}]
    return summary


def _printed(capsys, argv: list[str], summary: dict) -> list[str]:
    args = build_parser().parse_args(argv)
    assert _print(args, argv, [summary]) == 1
    return capsys.readouterr().out.splitlines()


def _command(lines: list[str], label: str) -> list[str]:
    (line,) = [line for line in lines if line.startswith(f"  {label}: ")]
    return shlex.split(line.split(": ", 1)[1])


def _report_dir(command: list[str]) -> Path:
    assert command[0] == "harness"
    return build_parser().parse_args(command[1:]).report_dir


def test_search_again_writes_its_reports_to_a_folder_of_its_own(capsys, tmp_path):
    run_dir = tmp_path / "nightly"
    argv = ["fuzz", "--examples", "30", "--seed", "5", "--report-dir", str(run_dir), "--database", "db"]
    again = _command(_printed(capsys, argv, _failed()), "search again")
    assert again.count("--report-dir") == 1 and "--database" not in again and again.count("--seed") == 1
    assert "--seed" in again and again[again.index("--seed") + 1] == "7" and "--no-database" in again
    assert _report_dir(again) == run_dir / "repro-7" != run_dir


def test_replaying_the_failure_writes_its_reports_to_a_folder_of_its_own(capsys):
    lines = _printed(capsys, ["fuzz", "--cmd", "serve {port}", "--path", "/media"], _failed())
    replay = _command(lines, "replay it")
    assert _report_dir(replay) == Path("harness-report") / f"replay-{CALL.name}" != Path("harness-report")
    assert replay[replay.index("--cmd") + 1] == "serve {port}" and "-k" in replay


def test_a_cross_call_failure_is_replayed_into_a_folder_of_its_own(capsys):
    other = as_call(Scenario(seed=5, utterances=(SynthUtterance(400, (150,)),), lane=1))
    lines = _printed(capsys, ["fuzz", "--calls-at-once", "2", "--report-dir", "r"], _failed(neighbours=[other]))
    assert _report_dir(_command(lines, "replay them")) == Path("r") / f"replay-{CALL.name}"


def test_running_search_again_again_keeps_to_its_own_folder():
    first = shlex.split(reproduce_command(["fuzz", "--report-dir", "r"], 7, Path("r")))
    again = shlex.split(reproduce_command(first[1:], 7, _report_dir(first)))
    assert _report_dir(again) == Path("r") / "repro-7"  # not r/repro-7/repro-7


def test_the_failure_is_shown_as_the_fixture_it_is(capsys):
    call = as_call(Scenario(seed=4, utterances=(SynthUtterance(400, (150, 200)),), faults=(RevokedCredentials(),)))
    summary = _failed(call)
    assert summary["failure"]["drawn"] == call.describe()  # fuzz.json has it too
    out = "\n".join(_printed(capsys, ["fuzz"], summary))
    for line in call.describe().splitlines():
        assert f"    {line}" in out
    assert '{"type": "reject_handshake", "status": 401, "times": "unlimited"}' in out
    assert "SynthUtterance(" not in out and "'faults'" not in out
