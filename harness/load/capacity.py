"""``harness load``: many concurrent callers against one handler, step by step, to find its capacity.

Each caller is the harness's fake Twilio (``TwilioPlayer``) playing the given fixtures one call after
another, every call with its own call SID and stream; fakertzr recognises each stream from its audio.
A step adds (or retires) callers at the arrival rate, then holds for ``hold_s`` and measures the
turns spoken in that window (``load_stats``). With a capacity search the steps double until one
breaks the criteria, then bisect to the knee. Everything a run starts lives in one task group.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Callable

import aiohttp

from harness.errors import HarnessError
from harness.fakes.services import FakeNetwork, FakeServices
from harness.fakes.twilio_player import TwilioPlayer
from harness.fixture import CallFixture
from harness.judge.handler_log import LogReader
from harness.replay.loop_lag import LoopLag
from harness.replay.resources import Resources, group_stats, sample
from harness.load.stats import (
    ANSWER_WAIT_S,
    Criteria,
    StepResult,
    TurnOutcome,
    end_frames,
    knee,
    next_callers,
    summarise,
    turn_outcomes,
)
from harness.replay.runner import _llm_config, _tts_config
from harness.replay.targets import Handler, InProcessLog, Target

HANDLER_TURN_LINE = re.compile(r"final_to_first_media_ms=([\d.]+)")  # aicall's per-turn line; other handlers: none
HANDLER_FIGURE = re.compile(r"\b(\w+)_ms=([\d.]+)\b")  # every figure on that line (aicall: final -> each step)
MAX_FAILURES_KEPT = 5
FAILED_CALL_PAUSE_S = 1.0  # a caller whose call failed dials again after this (not in a tight loop)
RETIRE_WAIT_S = 30.0  # callers leaving the run hang up; how long their calls may take to end


@dataclass(frozen=True)
class LoadPlan:
    steps: tuple[int, ...] = (10,)  # callers per step (without a capacity search)
    hold_s: float = 30.0
    ramp_s: float = 5.0  # callers of a step join spread over this ...
    arrival_rate: float | None = None  # ... or this many per second
    criteria: Criteria | None = None  # judge each step; with ``search`` also find the knee
    search: bool = False
    start: int = 10  # the capacity search's first step (after the one-caller baseline)
    limit: int = 2000  # nor more callers than this

    def join_gap(self, joining: int) -> float:
        if joining <= 0:
            return 0.0
        return 1.0 / self.arrival_rate if self.arrival_rate else self.ramp_s / joining


@dataclass
class LoadResult:
    target: str
    fixtures: list[str]
    plan: LoadPlan
    steps: list[StepResult] = field(default_factory=list)
    baseline: StepResult | None = None  # one caller alone, measured first in the same run
    cpu_seen: str = ""  # whose CPU the handler column is
    resources: Resources | None = None  # a launched handler's memory and descriptors, sampled as calls went by

    @property
    def knee(self) -> dict:
        return knee(self.steps)


def process_group_cpu_s(pgid: int) -> float | None:
    """CPU seconds (user + system) used so far by the live processes of a process group (Linux /proc)."""
    stats = group_stats(pgid, descriptors=False)
    return stats.cpu_s if stats is not None else None


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class CallEntry:
    started: float
    failed: str | None = None  # why, when it failed


class Caller:
    """One simulated caller: plays fixtures back to back until it leaves (hanging up the call it is in)."""

    def __init__(self, run: "LoadRunner") -> None:
        self.run = run
        self.leaving = False
        self.player: TwilioPlayer | None = None
        self.done = asyncio.Event()

    def leave(self) -> None:
        self.leaving = True
        if self.player is not None:
            self.player.hang_up_now()

    async def calls(self) -> None:
        try:
            fixtures = itertools.cycle(self.run.fixtures)
            while not self.leaving:
                if not await self.run.play_one(next(fixtures), self) and not self.leaving:
                    await asyncio.sleep(FAILED_CALL_PAUSE_S)  # the caller dials again in a moment
        finally:
            self.done.set()


class LoadRunner:
    """The callers, the fakes and the handler of one load run, and the figures per step."""

    def __init__(self, target: Target, fixtures: list[CallFixture], plan: LoadPlan, *,
                 progress: Callable[[str], None] = lambda line: None, handler_log: LogReader | None = None,
                 fake_ports: tuple[int, int, int] = (0, 0, 0),
                 on_fakes: Callable[[FakeServices], None] = lambda fakes: None,
                 network: FakeNetwork | None = None) -> None:
        if not fixtures:
            raise HarnessError("no fixtures to play")
        self.target, self.fixtures, self.plan, self.progress = target, fixtures, plan, progress
        self.callers: list[Caller] = []
        self.result_resources = Resources()  # sampled each second of every step (a launched handler only)
        self._active: dict[int, tuple[CallFixture, TwilioPlayer]] = {}
        self._finished: list[TurnOutcome] = []  # turns of calls that ended (their records are let go)
        self._calls: list[CallEntry] = []
        self._call_numbers = itertools.count()
        self._extra_log = handler_log  # aicall in-process: its per-turn INFO lines
        self.fake_ports, self.on_fakes = fake_ports, on_fakes
        self.network = network or FakeNetwork()  # --tls, --steer
        self.refused: list[str] = []  # with --steer: the hosts the handler tried to reach that nothing fakes
        self.lag = LoopLag()

    # ----------------------------------------------------------------- calls
    async def play_one(self, fixture: CallFixture, caller: Caller) -> bool:
        """One call; False if it failed."""
        number = next(self._call_numbers)
        player = caller.player = TwilioPlayer(self.session, self.handler.url, fixture, pace=1.0)
        self._active[number] = (fixture, player)
        call = CallEntry(time.monotonic())
        self._calls.append(call)
        try:
            record = await player.run()
            if record.closed_by_handler and not caller.leaving:
                call.failed = f"the handler ended call {player.call_sid} before the caller hung up"
        except HarnessError as exc:
            call.failed = str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed call is a figure of the step, not the end of the run
            call.failed = f"{type(exc).__name__}: {exc or '(no message)'}"
        finally:
            del self._active[number]
            now = time.monotonic()
            self._finished.extend(o for o in turn_outcomes(fixture, player.record, now, final=True) if o is not None)
        return call.failed is None

    def outcomes(self, now: float) -> list[TurnOutcome]:
        live = (o for fixture, player in self._active.values()
                for o in turn_outcomes(fixture, player.record, now, final=False) if o is not None)
        return [*self._finished, *live]

    # ----------------------------------------------------------------- steps
    async def _set_callers(self, n: int, group: asyncio.TaskGroup) -> None:
        present = [c for c in self.callers if not c.leaving]
        if n > len(present):
            gap = self.plan.join_gap(n - len(present))
            for i in range(n - len(present)):
                caller = Caller(self)
                self.callers.append(caller)
                group.create_task(caller.calls())
                self.progress(f"{len(present) + i + 1}/{n} callers joined")
                if gap and i < n - len(present) - 1:
                    await asyncio.sleep(gap)  # the arrival rate
        elif n < len(present):
            leaving = present[n:]
            for caller in leaving:
                caller.leave()
            self.progress(f"{len(leaving)} caller(s) hanging up")
            try:
                await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in leaving)), RETIRE_WAIT_S)
            except asyncio.TimeoutError:
                pass

    async def _step(self, n: int, group: asyncio.TaskGroup) -> StepResult:
        await self._set_callers(n, group)
        start = time.monotonic()
        cpu0_handler, cpu0_own = self._handler_cpu(), own_cpu_s()
        self.lag.take()  # the window's lateness only
        calls0 = len(self._calls)
        end = start + self.plan.hold_s
        while (now := time.monotonic()) < end:
            recent = [o for o in self.outcomes(now) if o.spoke_at >= max(start, now - 10)]
            answered = [o for o in recent if o.latency_ms is not None]
            self.progress(f"step {n} callers: {end - now:4.0f} s left, {len(self._active)} calls up, "
                          f"last 10 s: {len(answered)}/{len(recent)} turns answered")
            self._note_resources()
            await asyncio.sleep(min(1.0, end - now))  # the progress line's tick
        wall = time.monotonic() - start
        cpu_handler, cpu_own = self._handler_cpu(), own_cpu_s()
        late_ms = self.lag.take()
        step = StepResult(callers=n, window_s=round(wall, 2))
        started = [c for c in self._calls[calls0:] if c.started < end]
        step.calls_started = len(started)
        failures = [c.failed for c in started if c.failed]
        step.calls_failed, step.failures = len(failures), failures[:MAX_FAILURES_KEPT]
        if cpu0_handler is not None and cpu_handler is not None:
            step.handler_cpu_percent = round(100 * (cpu_handler - cpu0_handler) / wall, 1)
        step.harness_cpu_percent = round(100 * (cpu_own - cpu0_own) / wall, 1)
        self.progress(f"step {n} callers: waiting up to {ANSWER_WAIT_S:g} s for the window's last answers")
        settle = end + ANSWER_WAIT_S
        while (now := time.monotonic()) < settle and self._unsettled(end, now):
            await asyncio.sleep(0.1)  # answers arrive on other tasks; bounded by ANSWER_WAIT_S
        window = [o for o in self.outcomes(time.monotonic()) if start <= o.spoke_at < end]
        figures = self._handler_figures(start, end)
        summarise(step, window, figures.get("final_to_first_media", []), late_ms, figures)
        log_ = self.handler.log
        if log_ is not None:
            step.handler_errors = sum(1 for b in log_.blocks if start <= b.at < end + ANSWER_WAIT_S)
        if self.plan.criteria is not None:
            self.plan.criteria.judge(step)
        return step

    def _unsettled(self, before: float, now: float) -> bool:
        """Whether a turn spoken before ``before`` could still be answered."""
        for fixture, player in self._active.values():
            sent = player.record.frame_sent
            spoken = [k < len(sent) and sent[k] < before for k in end_frames(fixture)]
            outcomes = turn_outcomes(fixture, player.record, now, final=False)
            if any(was and o is None for was, o in zip(spoken, outcomes)):
                return True
        return False

    def _note_resources(self) -> None:
        """Sample a launched handler's memory and descriptors (the harness owns its process group)."""
        pid = self.handler.pid
        if pid and pid != os.getpid():
            self.result_resources.add(sample(pid, len(self._calls)))

    def _handler_cpu(self) -> float | None:
        if self.handler.pid is None:
            return None
        if self.handler.pid == os.getpid():
            return own_cpu_s()
        return process_group_cpu_s(self.handler.pid)

    def _handler_figures(self, start: float, end: float) -> dict[str, list[float]]:
        """The figures on the per-turn lines the handler logged (aicall: ``final_to_first_media_ms=`` and, on
        the same line, the ms from the final to each step before it), by name without ``_ms``."""
        figures: dict[str, list[float]] = {}
        for reader in (self.handler.log, self._extra_log):
            if reader is None:
                continue
            for at, line in reader.lines:
                if start <= at < end + ANSWER_WAIT_S and HANDLER_TURN_LINE.search(line):
                    for name, value in HANDLER_FIGURE.findall(line):
                        figures.setdefault(name, []).append(float(value))
        return figures

    # ------------------------------------------------------------------- run
    async def run(self, describe: str) -> LoadResult:
        result = LoadResult(describe, [f.name for f in self.fixtures], self.plan)
        async with AsyncExitStack() as stack:
            fakes: FakeServices = await stack.enter_async_context(self.network.fakes(self.fake_ports))
            if fakes.proxy is not None:
                proxy = fakes.proxy
                stack.callback(lambda: self.refused.extend(str(r) for r in proxy.refused))
            prepare_fakes(fakes, self.fixtures)
            self.on_fakes(fakes)
            self.handler: Handler = await stack.enter_async_context(self.target.start(fakes))
            if self.handler.pid and self.handler.pid != os.getpid():
                result.resources = self.result_resources
            result.cpu_seen = ("the harness process (the handler runs in it)" if self.handler.pid == os.getpid()
                               else "the handler's process group" if self.handler.pid else "")
            self.session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
            self.lag.start()
            stack.callback(self.lag.stop)
            async with asyncio.TaskGroup() as group:
                try:
                    await self._steps(result, group, fakes)
                finally:
                    for caller in self.callers:
                        caller.leave()
                    self.progress(f"stopping: {len(self._active)} caller(s) hanging up")
        return result

    async def _steps(self, result: LoadResult, group: asyncio.TaskGroup, fakes: FakeServices) -> None:
        plan = self.plan
        if plan.search:
            result.baseline = await self._step(1, group)
            self._report(result.baseline, baseline=True)
            while (n := next_callers(result.steps, start=plan.start, limit=plan.limit)) is not None:
                result.steps.append(await self._step(n, group))
                self._report(result.steps[-1])
                prune_fakes(fakes)
        else:
            for n in plan.steps:
                result.steps.append(await self._step(n, group))
                self._report(result.steps[-1])
                prune_fakes(fakes)

    def _report(self, step: StepResult, baseline: bool = False) -> None:
        verdict = "" if step.held is None else (" held" if step.held else f" broke: {step.why_not}")
        self.progress(f"step {step.callers} caller(s){' (baseline)' if baseline else ''}: {step.answered}/{step.turns} "
                      f"turns answered, p50 {step.latency_ms.get('p50')} ms, p95 {step.latency_ms.get('p95')} ms, "
                      f"{step.calls_failed} failed call(s), harness late p99 {step.harness_late_ms.get('p99')} ms"
                      f"{verdict}\n")


def prepare_fakes(fakes: FakeServices, fixtures: list[CallFixture]) -> None:
    """Every fixture's script loaded at once (each stream is recognised from its audio), no RTZR
    concurrency limit, real-time delays, and the first fixture's LLM and TTS behaviour."""
    rtzr = fakes.rtzr
    rtzr.reset()
    rtzr.clear_scripts()
    rtzr.update_config({"time_scale": 1.0, "max_streams": 1_000_000})
    for fixture in fixtures:
        rtzr.load_script(fixture.script)
    fakes.llm.config = _llm_config(fixtures[0], 1.0)
    fakes.tts.config = _tts_config(fixtures[0], 1.0)


def prune_fakes(fakes: FakeServices) -> None:
    """Forget the fake LLM's and TTS's finished requests: a long run must not grow without bound."""
    for fake in (fakes.llm, fakes.tts):
        fake.requests[:] = [r for r in fake.requests if not (r.completed or r.abandoned)]


def check_loadable(fixture: CallFixture) -> None:
    """Load plays clean calls: a fixture that scripts faults or failures measures those, not capacity."""
    why = []
    if fixture.script.raw.get("faults"):
        why.append("scripts recognizer faults")
    if fixture.handler_without:
        why.append("starts the handler without credentials")
    if fixture.llm.get("fail_requests") or fixture.llm.get("stall_requests"):
        why.append("fails LLM requests")
    if fixture.caller.vanish or fixture.caller.hangup_ms is not None or fixture.caller.hangup_after_turns:
        why.append("hangs up early")
    if not fixture.script.utterances:
        why.append("has no utterance to answer")
    if why:
        raise HarnessError(f"{fixture.name} {' and '.join(why)}: load plays clean calls (e.g. seed-three-turns)")


class InProcessTurnLog(InProcessLog):
    """aicall in-process: its INFO lines too, for the per-turn figure it logs."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.INFO)

    def __enter__(self) -> "InProcessTurnLog":
        super().__enter__()
        self._level = logging.getLogger("aicall").level
        logging.getLogger("aicall").setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("aicall").setLevel(self._level)
        super().__exit__(*exc)
