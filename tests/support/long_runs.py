"""The suite's two long runs, each in processes of its own, started once per session as soon as the session
begins: the example handlers over every bundled call (the pipecat bot at real time, about four minutes,
mostly waiting) and the proving ground's matrix. They run beside the rest of the suite, on the core it
leaves; each test that reads one waits for it."""

from __future__ import annotations

import concurrent.futures
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


@dataclass
class LongRuns:
    pool: concurrent.futures.ThreadPoolExecutor = field(default_factory=lambda: concurrent.futures.ThreadPoolExecutor(2))
    futures: dict[str, concurrent.futures.Future] = field(default_factory=dict)
    running: set[subprocess.Popen] = field(default_factory=set)

    def start(self, wanted: set[str]) -> None:
        if "examples" in wanted and "examples" not in self.futures:
            from examples.verdicts import run_all

            self.futures["examples"] = self.pool.submit(run_all)
        if "matrix" in wanted and "matrix" not in self.futures:
            self.futures["matrix"] = self.pool.submit(run_matrix, self.running)

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
