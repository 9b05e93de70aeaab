"""A run of fixtures against a target: one call at a time (a handler per fixture, or one shared), or several
calls at once into one handler (``harness.replay.together``). The entry point of ``harness run``, the
proving ground and the suite."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Callable

from harness.fakes.services import FakeNetwork, FakeServices
from harness.fixture import CallFixture
from harness.replay.lanes import Switchboard
from harness.replay.runner import PARALLEL, FixtureRun, HeadersFor, SharedHandler, run_one
from harness.replay.targets import Target
from harness.replay.together import CallsAtOnce


async def run_target(target: Target, fixtures: list[CallFixture], *, pace: float | None,
                     headers_for: HeadersFor = None, progress: Callable[[FixtureRun], None] = lambda run: None,
                     fake_ports: tuple[int, int, int] = (0, 0, 0),
                     on_fakes: Callable[[FakeServices], None] = lambda fakes: None,
                     parallel: int = PARALLEL, calls_at_once: int = 1, handlers: int = 1,
                     network: FakeNetwork = FakeNetwork()) -> list[FixtureRun]:
    """Replay ``fixtures`` against ``target``; the runs come back in the fixtures' order. ``network``: plain
    HTTP fakes, TLS, or TLS behind the steering proxy (``harness.fakes.services.FakeNetwork``).

    ``handlers`` > 1 (a target the harness launches, one handler for many fixtures): that many handler
    processes side by side, each with its own fakes, each taking the next fixture when it is done with one
    (with ``calls_at_once`` > 1 too, the fixtures are dealt among them in turn).

    ``calls_at_once`` > 1: one handler takes the calls, that many in flight at once
    (``harness.replay.together``), each judged by every check and the cross-call ones.
    Raises ``HandlerDidNotStart`` only when a shared handler cannot be started at all (nothing
    could be replayed); every other trouble is a failed check of its fixture.
    """
    if handlers > 1 and not target.fresh_per_fixture and len(fixtures) > 1 and calls_at_once == 1:
        return await run_pool(target, fixtures, handlers, pace=pace, headers_for=headers_for, progress=progress,
                              on_fakes=on_fakes, network=network)
    if handlers > 1 and not target.fresh_per_fixture and len(fixtures) > 1:
        shares = [fixtures[k::handlers] for k in range(min(handlers, len(fixtures)))]
        done = await asyncio.gather(*(run_target(target, share, pace=pace, headers_for=headers_for, progress=progress,
                                                 on_fakes=on_fakes, parallel=parallel, calls_at_once=calls_at_once,
                                                 network=network)
                                      for share in shares))
        by_fixture = {id(f): run for share, runs in zip(shares, done) for f, run in zip(share, runs)}
        return [by_fixture[id(f)] for f in fixtures]
    if calls_at_once > 1:
        return await run_at_once(target, fixtures, pace=pace, headers_for=headers_for, progress=progress,
                               fake_ports=fake_ports, on_fakes=on_fakes, calls_at_once=calls_at_once, network=network)
    if target.fresh_per_fixture:
        gate = asyncio.Semaphore(parallel)

        async def one(fixture: CallFixture) -> FixtureRun:
            async with gate, network.fakes() as fakes:
                run = await run_one(target, fakes, fixture, pace=pace, headers_for=headers_for)
            progress(run)
            return run

        return list(await asyncio.gather(*(one(f) for f in fixtures)))
    runs = []
    async with network.fakes(fake_ports) as fakes, AsyncExitStack() as stack:
        on_fakes(fakes)
        shared = SharedHandler(target, fakes, stack)
        if any(not f.handler_without for f in fixtures):
            await shared.get()  # a handler that cannot start at all is one error, not one per fixture
        for fixture in fixtures:
            run = await shared.run(fixture, pace=pace, headers_for=headers_for)
            runs.append(run)
            progress(run)
    return runs


async def run_pool(target: Target, fixtures: list[CallFixture], handlers: int, *, pace: float | None,
                   headers_for: HeadersFor, progress: Callable[[FixtureRun], None],
                   on_fakes: Callable[[FakeServices], None], network: FakeNetwork = FakeNetwork()) -> list[FixtureRun]:
    """``handlers`` handler processes side by side, each with its own fakes, each taking the next fixture when it
    is done with one (a call that needs a handler of its own gets one, as in a run on one handler)."""
    pending = list(fixtures)
    results: dict[int, FixtureRun] = {}

    async def member() -> None:
        async with network.fakes() as fakes, AsyncExitStack() as stack:
            on_fakes(fakes)
            shared = SharedHandler(target, fakes, stack)
            while pending:
                fixture = pending.pop(0)
                run = await shared.run(fixture, pace=pace, headers_for=headers_for)
                results[id(fixture)] = run
                progress(run)

    await asyncio.gather(*(member() for _ in range(min(handlers, len(fixtures)))))
    return [results[id(f)] for f in fixtures]


async def run_at_once(target: Target, fixtures: list[CallFixture], *, pace: float | None, headers_for: HeadersFor,
                    progress: Callable[[FixtureRun], None], fake_ports: tuple[int, int, int],
                    on_fakes: Callable[[FakeServices], None], calls_at_once: int,
                    network: FakeNetwork = FakeNetwork()) -> list[FixtureRun]:
    """One handler, up to ``calls_at_once`` of the fixtures in flight (``together.CallsAtOnce``)."""
    async with network.fakes(fake_ports) as fakes, AsyncExitStack() as stack:
        on_fakes(fakes)
        shared = SharedHandler(target, fakes, stack)
        if any(not f.handler_without for f in fixtures):
            await shared.get()
        switchboard = Switchboard(fakes)
        try:
            return await play_at_once(shared, switchboard, fixtures, calls_at_once, pace=pace, headers_for=headers_for,
                                    progress=progress)
        finally:
            switchboard.detach()


async def play_at_once(shared: SharedHandler, switchboard: Switchboard, fixtures: list[CallFixture], calls_at_once: int, *,
                     pace: float | None, headers_for: HeadersFor,
                     progress: Callable[[FixtureRun], None] = lambda run: None) -> list[FixtureRun]:
    """``fixtures`` into the shared handler with up to ``calls_at_once`` in flight (``together.CallsAtOnce``),
    their verdicts in the fixtures' order."""
    return await CallsAtOnce(shared, switchboard, calls_at_once, pace, headers_for, progress).run(fixtures)


