"""The harness's measure of its own lateness: a loop held busy shows as late by as long as it was held."""

from __future__ import annotations

import asyncio
import time

from harness.replay.loop_lag import LoopLag


async def next_samples(lag: LoopLag) -> list[float]:
    """The lateness the monitor records next (yielding to the loop until it has one)."""

    async def until() -> list[float]:
        while not (samples := lag.take()):
            await asyncio.sleep(0)
        return samples

    return await asyncio.wait_for(until(), 5)


async def test_a_loop_held_busy_is_measured_late_by_at_least_the_time_held():
    lag = LoopLag(period_s=0.01)
    lag.start()
    try:
        assert all(ms >= 0 for ms in await next_samples(lag))
        held_until = time.perf_counter() + 0.06
        while time.perf_counter() < held_until:  # the loop held busy 60 ms, as an overloaded harness holds it
            pass
        samples = await next_samples(lag)
    finally:
        lag.stop()
    assert max(samples) >= 50, samples  # the next callback was due at most 10 ms into the 60 ms held


async def test_stop_ends_the_sampling():
    lag = LoopLag(period_s=0.001)
    lag.start()
    await next_samples(lag)
    lag.stop()
    held_until = time.perf_counter() + 0.005  # five periods pass: a timer still set would be due
    while time.perf_counter() < held_until:
        pass
    for _ in range(10):
        await asyncio.sleep(0)
    assert lag.take() == []
