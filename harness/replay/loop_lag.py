"""How late this process's event loop runs a timer: a load generator's measure of its own delay.

Every figure a load run takes (when a frame went out, when an answer came in) is read by callbacks of
this process's event loop. When the loop is busy they run late, and the figures grow by that much
although the handler did nothing wrong. ``LoopLag`` asks for a callback every ``period_s`` and keeps
how late each one ran, so a step can say "the harness itself was up to X ms late" beside its latencies.
"""

from __future__ import annotations

import asyncio
import time

PERIOD_S = 0.01  # 100 callbacks a second: cheap, and fine enough for the p99 of a 15 s window
MAX_SAMPLES = 1_000_000  # a run forgotten without take(): about 3 hours at 100 a second


class LoopLag:
    """Samples the running loop's lateness (ms) from :meth:`start` until :meth:`stop`."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self._samples: list[float] = []
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = time.monotonic() + self.period_s
        self._handle = loop.call_later(self.period_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def take(self) -> list[float]:
        """The lateness of every callback since the last take (ms, oldest first), and forget them."""
        samples, self._samples = self._samples, []
        return samples

    def _tick(self) -> None:
        now = time.monotonic()  # not loop.time(): uvloop's is the time its current iteration began
        if len(self._samples) < MAX_SAMPLES:
            self._samples.append(max(0.0, (now - self._due) * 1000))
        self._due = now + self.period_s
        self._handle = asyncio.get_running_loop().call_later(self.period_s, self._tick)
