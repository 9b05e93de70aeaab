"""Replay every bundled fixture against aicall and the two example handlers; print, check or write the
verdict table of docs/handlers.md ("The two examples").

    python examples/verdicts.py                  # run all three, print the table
    python examples/verdicts.py --check docs/handlers.md   # exit 1 if the table says otherwise
    python examples/verdicts.py --write docs/handlers.md   # put the measured table there
    python examples/verdicts.py --repeat 3       # run each 3 times; any verdict that changed is shown as flaky

Each handler is replayed with exactly the command docs/handlers.md gives (``HANDLERS``); the three run at
once, each with its own fakes. Needs ``pip install -e '.[examples]'``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

try:
    from examples import readme_tables
except ImportError:  # run as a script: examples/ is on sys.path itself
    import readme_tables

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- verdicts:begin -->", "<!-- verdicts:end -->"


@dataclass(frozen=True)
class HandlerRun:
    column: str
    args: tuple[str, ...]  # after ``harness run``
    alone_only: bool = False  # leaves out the calls made to be played together (``together`` in call.json)


HANDLERS = (
    # four at once, not eight: in-process calls share one event loop with their fakes and the harness, and on a
    # loaded machine (the suite runs this beside its other long runs) that loop's lateness, not aicall's, would
    # be judged against the checks' wall-clock allowances (a stalled TTS let go of within 1 s of the hang-up)
    HandlerRun("aicall (in-process), fast", ("--pace", "fast", "--jobs", "4")),
    HandlerRun("FastAPI example, fast", ("--pace", "fast", "--path", "/media-stream",
                                         "--cmd", "cd examples/fastapi_handler && uvicorn app:app --port {port}")),
    HandlerRun("pipecat example, realtime", ("--pace", "realtime", "--path", "/ws",
                                             "--cmd", "python examples/pipecat_bot/bot.py --port {port}"),
               alone_only=True),  # at real time the together calls would add a minute to the suite's longest run
)


def alone_calls() -> tuple[str, ...]:
    """``-k`` options naming every bundled call that is not one of a ``together`` group."""
    from harness.fixture import bundled_calls, discover, load_call
    from harness.replay.lanes import together

    return tuple(arg for p in discover(bundled_calls()) if not together(load_call(p)) for arg in ("-k", p.name))


RUN_TIMEOUT_S = 600  # one handler's whole run (they take 15-300 s)
RUNNING: set[subprocess.Popen] = set()  # the harness runs under way (``interrupt`` ends them)


def interrupt() -> None:
    """Ctrl-C every harness run under way: each stops the handler it launched, and exits."""
    for proc in list(RUNNING):
        proc.send_signal(signal.SIGINT)


def run_one(handler: HandlerRun, report_dir: Path) -> dict[str, str]:
    """fixture -> verdict cell (``pass`` or ``FAIL: check, check``), from the run's report.json."""
    picked = alone_calls() if handler.alone_only else ()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *handler.args, *picked,
                             "--report-dir", str(report_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    RUNNING.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # say which fixture it was on, not just that it took too long
        proc.kill()
        stdout, stderr = proc.communicate()
        raise RuntimeError(f"{handler.column}: harness run still going after {RUN_TIMEOUT_S} s; it printed:\n"
                           f"{stdout[-3000:]}\n{stderr[-3000:]}") from None
    finally:
        RUNNING.discard(proc)
    report = report_dir / "report.json"
    if proc.returncode not in (0, 1) or not report.exists():
        raise RuntimeError(f"{handler.column}: harness exited {proc.returncode}:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    runs = json.loads(report.read_text(encoding="utf-8"))["runs"]
    for run in runs:  # why each failure failed, for whoever reads a mismatch (a failing run's reason is kept)
        why = "\n".join(f"{c['name']}: {c['message']}\n" + "\n".join(c.get("why", []))
                        for c in run["checks"] if c["status"] == "failed")
        if why:
            DETAILS[(handler.column, run["fixture"])] = why
    return {run["fixture"]: cell(run["checks"]) for run in runs}


DETAILS: dict[tuple[str, str], str] = {}  # (column, fixture) -> the failed checks' messages and timelines of the last run


def explain(measured: str, expected: str) -> str:
    """The rows where the measured table differs from the expected one, with why the measured cells failed."""
    rows = dict(zip(expected.splitlines(), measured.splitlines()))
    out = []
    for want, got in rows.items():
        if want != got:
            fixture = got.split("|")[1].strip().strip("`")
            out.append(f"expected {want}\nmeasured {got}")
            out += [f"  {column}: {DETAILS[(column, fixture)]}" for column in (h.column for h in HANDLERS)
                    if DETAILS.get((column, fixture))]
    return "\n".join(out)


def cell(checks: list[dict]) -> str:
    """``FAIL: names``, or ``pass`` saying what was skipped (``finals_persisted``, skipped for every
    handler but aicall, is left out)."""
    failed = [c["name"] for c in checks if c["status"] == "failed"]
    if failed:
        return "FAIL: " + ", ".join(failed)
    skipped = [c for c in checks if c["status"] == "skipped" and c["name"] != "finals_persisted"]
    if any(c["message"] == "the handler did not start" for c in skipped):
        return "pass (refused to start)"
    return "pass" + (f" (skipped: {', '.join(c['name'] for c in skipped)})" if skipped else "")


def run_all(repeat: int = 1) -> dict[str, dict[str, str]]:
    """column -> fixture -> cell; with ``repeat`` > 1 a cell that was not the same every time says so."""
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(len(HANDLERS)) as pool:
        futures = {(h.column, i): pool.submit(run_one, h, Path(tmp) / f"{n}-{i}")
                   for n, h in enumerate(HANDLERS) for i in range(repeat)}
        results = {key: f.result() for key, f in futures.items()}
    table: dict[str, dict[str, str]] = {}
    for h in HANDLERS:
        seen = [results[(h.column, i)] for i in range(repeat)]
        table[h.column] = {fx: seen[0][fx] if all(s.get(fx) == seen[0][fx] for s in seen)
                           else "flaky: " + " / ".join(s.get(fx, "-") for s in seen) for fx in seen[0]}
    return table


def markdown(table: dict[str, dict[str, str]]) -> str:
    columns = list(table)
    fixtures = sorted({fx for cells in table.values() for fx in cells})
    lines = ["| fixture | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| `{fx}` | " + " | ".join(table[c].get(fx, "-") for c in columns) + " |" for fx in fixtures]
    return "\n".join(lines)


def readme_table(readme: Path) -> str:
    return readme_tables.read(readme, BEGIN, END)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, metavar="PAGE")
    parser.add_argument("--write", type=Path, metavar="PAGE")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    measured = markdown(run_all(args.repeat))
    print(measured)
    if args.write:
        readme_tables.write(args.write, BEGIN, END, measured)
    if args.check and readme_table(args.check) != measured:
        print(f"\n{args.check} says otherwise:\n{readme_table(args.check)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
