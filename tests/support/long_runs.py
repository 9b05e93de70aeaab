"""The suite's two long runs, started together once per session: the example handlers over every bundled call
(the pipecat bot at real time, about four minutes, mostly waiting) and the proving ground's matrix. Run side by
side they take about as long as the longer of the two; each test waits only for the run it reads."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field


@dataclass
class LongRuns:
    pool: concurrent.futures.ThreadPoolExecutor = field(default_factory=lambda: concurrent.futures.ThreadPoolExecutor(2))
    futures: dict[str, concurrent.futures.Future] = field(default_factory=dict)

    def start(self, wanted: set[str]) -> None:
        if "examples" in wanted and "examples" not in self.futures:
            from examples.verdicts import run_all

            self.futures["examples"] = self.pool.submit(run_all)
        if "matrix" in wanted and "matrix" not in self.futures:
            from proving_ground.matrix import run_all as run_matrix

            self.futures["matrix"] = self.pool.submit(lambda: asyncio.run(run_matrix()))

    def result(self, name: str, timeout: float):
        return self.futures[name].result(timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
