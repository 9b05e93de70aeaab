"""The suite's long runs, each in processes of its own, started once per session as soon as the session
begins: the example handlers over every bundled call (the pipecat bot at real time, about four minutes,
mostly waiting), the proving ground's matrix, ``harness fuzz`` with calls at once against aicall, and the
README's main job (``harness run``: real-time calls, mostly waiting). They run beside the rest of the suite, on
the core it leaves; each test that reads one waits for it."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_matrix(running: set[subprocess.Popen]) -> list:
    """``python -m proving_ground.matrix --json``, in a process of its own (it plays real-time calls: no test
    thread holds its GIL), read back."""
    from proving_ground.matrix import load

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "matrix.json"
        proc = subprocess.Popen([sys.executable, "-m", "proving_ground.matrix", "--json", str(out)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=1500)
        finally:
            running.discard(proc)
        if not out.exists():
            raise RuntimeError(f"the matrix did not run (exit {proc.returncode}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
        return load(out)


@dataclass(frozen=True)
class FuzzRun:
    """What ``harness fuzz`` did: its exit status, its ``fuzz.json`` (None: not written), the end of its output."""

    returncode: int
    summary: dict | None
    output: str


FUZZ_REPORTS = ROOT / "harness-report" / "suite-fuzz"  # its reports, and a failing call as a fixture (git-ignored)


def run_fuzz(running: set[subprocess.Popen], examples: int, at_once: int, seed: int, pace: str) -> FuzzRun:
    """``harness fuzz`` against aicall in-process, ``at_once`` calls in flight, in a process of its own; its
    reports in ``FUZZ_REPORTS`` (a failing call is kept there, ready for ``harness run --fixtures``)."""
    shutil.rmtree(FUZZ_REPORTS, ignore_errors=True)  # an earlier session's failure is not this one's
    with tempfile.TemporaryDirectory() as tmp:  # its working directory: aicall's store and the like
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "fuzz", "--examples", str(examples),
                                 "--calls-at-once", str(at_once), "--seed", str(seed), "--pace", pace, "--no-database",
                                 "--report-dir", str(FUZZ_REPORTS)], cwd=tmp, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        running.add(proc)
        try:
            output, _ = proc.communicate(timeout=1500)
        finally:
            running.discard(proc)
    written = FUZZ_REPORTS / "fuzz.json"
    summary = json.loads(written.read_text(encoding="utf-8")) if written.exists() else None
    return FuzzRun(proc.returncode, summary, output[-4000:])


def run_command(running: set[subprocess.Popen], command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """A documented command (``bash -c``) in an empty directory of its own, to its exit: the README's main job,
    real-time calls that mostly wait, runs here beside the suite instead of holding it up."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(["bash", "-c", command], cwd=tmp, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        running.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            running.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@dataclass
class LongRuns:
    pool: concurrent.futures.ThreadPoolExecutor = field(default_factory=lambda: concurrent.futures.ThreadPoolExecutor(4))
    futures: dict[str, concurrent.futures.Future] = field(default_factory=dict)
    running: set[subprocess.Popen] = field(default_factory=set)

    def start(self, wanted: set[str], fuzz: dict | None = None, commands: dict[str, dict] | None = None) -> None:
        """Start each run ``wanted`` names (``fuzz``: ``run_fuzz``'s options, from the test that reads it;
        ``commands``: ``run_command``'s options by run name)."""
        if "examples" in wanted and "examples" not in self.futures:
            from examples.verdicts import run_all

            self.futures["examples"] = self.pool.submit(run_all)
        if "matrix" in wanted and "matrix" not in self.futures:
            self.futures["matrix"] = self.pool.submit(run_matrix, self.running)
        if "fuzz" in wanted and "fuzz" not in self.futures:
            self.futures["fuzz"] = self.pool.submit(run_fuzz, self.running, **(fuzz or {}))
        for name, options in (commands or {}).items():
            if name in wanted and name not in self.futures:
                self.futures[name] = self.pool.submit(run_command, self.running, **options)

    def result(self, name: str, timeout: float):
        return self.futures[name].result(timeout)

    def close(self) -> None:
        """The session is over: a run nobody read any more (``-x`` stopped early) is interrupted, not waited out."""
        if not all(f.done() for f in self.futures.values()):
            from examples.verdicts import interrupt

            interrupt()
            for proc in list(self.running):
                proc.send_signal(signal.SIGINT)
        self.pool.shutdown(wait=True, cancel_futures=True)
