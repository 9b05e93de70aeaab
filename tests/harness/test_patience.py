"""A fast caller's patience is counted in the time the harness ran on time: a loaded machine is no slow handler."""

from __future__ import annotations

import asyncio
import time

from harness.fakes.patience import LATE_CREDIT, Patience


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


TICK = 1 / 16  # times in binary fractions: the sums below are exact


def test_time_that_ran_on_time_is_counted_in_full():
    clock = Clock()
    patience = Patience(6 * TICK, tick_s=TICK, clock=clock)
    for _ in range(5):
        clock.now += TICK
        assert not patience.spent()
    clock.now += TICK
    assert patience.spent() and patience.late_s == 0.0


def test_a_stretch_the_process_could_not_run_counts_as_two_ticks():
    clock = Clock()
    patience = Patience(6 * TICK, tick_s=TICK, clock=clock)
    clock.now += 5.0  # the loop held five seconds (the machine overloaded, the harness judging another call)
    assert not patience.spent(), "a held loop spent the caller's patience: the verdict would be the machine's"
    assert (patience.left, patience.late_s) == ((6 - LATE_CREDIT) * TICK, 5.0 - LATE_CREDIT * TICK)
    clock.now += 3 * TICK  # a look one tick late: two ticks counted
    assert not patience.spent() and patience.left == (4 - LATE_CREDIT) * TICK
    clock.now += 2 * TICK
    assert patience.spent()


async def test_a_wait_ends_when_the_answer_comes_and_when_patience_is_spent():
    answer = asyncio.Event()
    asyncio.get_running_loop().call_soon(answer.set)
    assert await asyncio.wait_for(Patience(30.0).wait(answer), 10)
    assert not await asyncio.wait_for(Patience(0.1, tick_s=0.02).wait(asyncio.Event()), 10)


async def test_a_loop_held_busy_does_not_spend_the_patience():
    patience = Patience(0.3, tick_s=0.05)
    never = asyncio.Event()
    waiting = asyncio.create_task(patience.wait(never))
    await asyncio.sleep(0)  # the wait takes its first look
    held_until = time.monotonic() + 0.5
    while time.monotonic() < held_until:  # the loop held busy longer than the whole patience
        pass
    await asyncio.sleep(0)
    assert not waiting.done(), "the caller gave up while the harness could not run"
    assert not await asyncio.wait_for(waiting, 10)  # and then waits out what is left
    assert patience.late_s >= 0.3
