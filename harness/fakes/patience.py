"""A caller's patience at fast pace, counted in the time this process ran on time.

At fast pace the caller's audio takes no time, so how long a caller waits for an answer is a wall-clock
figure (``twilio_player.FAST_ANSWER_WAIT_S``). A stretch in which this process could not run (the machine
overloaded, the harness's loop busy judging another call, a garbage collection) is no delay of the handler's:
counted, it would make the caller talk on, or hang up, early, and the handler's verdict would be the
machine's luck. So the clock advances by at most ``LATE_CREDIT`` ticks per tick, however late the tick ran.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

TICK_S = 0.05  # how often the clock looks at the time while it waits
LATE_CREDIT = 2.0  # a tick counts for at most this many ticks' time, however late it ran


class Patience:
    """``seconds`` of waiting, counted only while the process ran on time (see the module's docstring)."""

    def __init__(self, seconds: float, tick_s: float = TICK_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.left = seconds
        self.tick_s = tick_s
        self.late_s = 0.0  # the time not counted: the process did not run on time
        self._clock = clock
        self._last = clock()

    def spent(self) -> bool:
        """Take the time since the last look (at most ``LATE_CREDIT`` ticks of it) off what is left."""
        now = self._clock()
        elapsed, self._last = now - self._last, now
        counted = min(elapsed, LATE_CREDIT * self.tick_s)
        self.late_s += elapsed - counted
        self.left -= counted
        return self.left <= 0

    def next_wait(self) -> float:
        """How long to wait before looking again: a tick, or what is left if less."""
        return max(0.0, min(self.tick_s, self.left))

    async def wait(self, event: asyncio.Event) -> bool:
        """Until ``event`` is set (True) or the patience is spent (False)."""
        while not event.is_set():
            if self.spent():
                return False
            try:
                await asyncio.wait_for(event.wait(), self.next_wait())
            except asyncio.TimeoutError:
                pass
        return True
