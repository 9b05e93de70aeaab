"""Calls at once: up to N calls kept in flight into one handler, each judged by every check as soon as it and
its traffic are done, and by the cross-call checks (``harness.judge.crosscall``) against the calls around it.

A call is judged once nothing it started with the fakes is in flight (its streams closed, its LLM and TTS
requests answered or let go: ``settle_lane``) and its traffic at the fakes, and the handler's log lines naming
it, have been quiet a moment (``quiet_lane``), as one call alone is: no fixed wait for the whole batch. Each
call's timeline holds only its own traffic (``harness.replay.lanes``): a verdict must not change because
neighbours exist. A call that must play alone (its own handler, an RTZR fault before any audio) waits until
nothing is in flight, and plays as in a run one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import aiohttp

from harness.judge.events import CallStart
from harness.errors import HarnessError
from harness.fakes.services import FakeServices
from harness.fakes.twilio_player import TwilioPlayer, new_call_sid
from harness.fixture import CallFixture
from harness.judge.checks import ERROR_WINDOW_S
from harness.judge.context import recognised_s
from harness.judge.crosscall import Neighbours, OtherCall, Stall, heard_seconds
from harness.judge.handler_log import ErrorBlock
from harness.judge.timeline import CallTimeline, build_timeline
from harness.judge.verdict import CheckResult, skipped
from harness.replay.lanes import Lane, Switchboard, confusable, dial_delay_s, plays_alone, together
from harness.replay.runner import (EXIT_WAIT_S, LOG_QUIET_MAX_S, LOG_QUIET_S, RECONNECT_GRACE_S, SETTLE_S, FixtureRun,
                                   HeadersFor, PlayedCall, SharedHandler, _llm_config, _tts_config,
                                   _unrecognised_after_a_fault, call_start, cannot_start, judge, unfaked_hosts)

log = logging.getLogger("harness")
KEEP_FINISHED = 256  # finished calls remembered for their neighbours' judgement
STAGGER_S = 0.05  # between two calls dialled: in the order they were given, as callers dial (a group's dial_ms adds)


@dataclass
class _Call:
    """A call in flight (or done): its lane, its caller, when it began and ended, its timeline once judged."""

    lane: Lane
    player: TwilioPlayer | None = None
    started: float = 0.0
    ended: float | None = None  # the caller's side is over
    judged_at: float | None = None
    problem: str | None = None
    timeline: CallTimeline | None = None

    @property
    def sid(self) -> str:
        return self.lane.call_sid

    def overlaps(self, other: "_Call") -> bool:
        end = self.judged_at or float("inf")
        other_end = other.judged_at or float("inf")
        return self.started < other_end and other.started < end


@dataclass
class CallsAtOnce:
    """Plays fixtures into one shared handler, up to ``at_once`` calls in flight: given all at once (``run``), or
    fed as they come (``feed`` while ``serve`` runs, then ``close``: a search feeds each batch as it is drawn)."""

    shared: SharedHandler
    switchboard: Switchboard
    at_once: int
    pace: float | None
    headers_for: HeadersFor = None
    progress: Callable[[FixtureRun], None] = lambda run: None
    calls: list[_Call] = field(default_factory=list)  # every call of this run still remembered
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _pending: list[tuple[int, list[CallFixture]]] = field(default_factory=list)  # (which feed, unit) not started
    _verdicts: dict[int, Future[FixtureRun]] = field(default_factory=dict)  # by id(fixture), until settled
    _fed: int = 0
    _closed: bool = False
    _wakers: set[asyncio.Future] = field(default_factory=set)

    @property
    def fakes(self) -> FakeServices:
        return self.shared.fakes

    @property
    def in_flight(self) -> list[_Call]:
        return [c for c in self.calls if c.judged_at is None]

    # --------------------------------------------------------------- the run
    async def run(self, fixtures: list[CallFixture]) -> list[FixtureRun]:
        """Every fixture's verdict, in the fixtures' order (the calls of a ``together`` group start together)."""
        verdicts = self.feed(fixtures)
        self.close()
        await self.serve()
        return [v.result() for v in verdicts]

    def feed(self, fixtures: list[CallFixture]) -> list[Future[FixtureRun]]:
        """More calls to play (on this loop's thread): started as room frees, after those fed before; each
        future gets the call's verdict (thread-safe: a search in another thread waits on them)."""
        self._fed += 1
        self._pending += [(self._fed, unit) for unit in units(fixtures, self.at_once)]
        verdicts = [self._verdicts.setdefault(id(fixture), Future()) for fixture in fixtures]
        self._wake()
        return verdicts

    def close(self, *, drop_waiting: bool = False) -> None:
        """No more calls will be fed: ``serve`` returns once those fed are judged (with ``drop_waiting``, the
        calls not yet started are let go: their futures cancelled)."""
        self._closed = True
        if drop_waiting:
            for _, unit in self._pending:
                for fixture in unit:
                    self._verdicts.pop(id(fixture)).cancel()
            self._pending.clear()
        self._wake()

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()
        waker = asyncio.ensure_future(notify())
        self._wakers.add(waker)  # held until done: the loop keeps only a weak reference to a task
        waker.add_done_callback(self._wakers.discard)

    async def serve(self) -> None:
        """Start the fed calls, up to ``at_once`` in flight, until ``close()`` and every call fed is judged."""
        scale = 0.0 if self.pace is None else 1.0 / self.pace
        rtzr = self.fakes.rtzr
        rtzr.clear_scripts()  # a call played alone on these fakes before left its script and faults as the whole
        rtzr.clear_faults()  # fake's: a stream of this run's whose audio it holds would be taken for that call's
        rtzr.update_config({"time_scale": scale})
        tasks: set[asyncio.Task] = set()
        last = 0.0
        try:
            while True:
                async with self._changed:
                    unit = await self._changed.wait_for(lambda: self._admissible() or self._closed and not self._pending)
                if unit is True:
                    break
                self._pending.remove(unit)
                first = unit[1][0]
                if plays_alone(first):
                    self._settle(first, await self._alone(first))
                    continue
                for fixture in unit[1]:
                    await asyncio.sleep(max(0.0, last + STAGGER_S - time.monotonic()))  # callers dial one by one
                    last = time.monotonic()
                    task = asyncio.create_task(self._one(self._open(fixture, scale)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for verdict in self._verdicts.values():
                verdict.cancel()  # those fed and never played (a run cut short): nobody waits forever

    def _settle(self, fixture: CallFixture, run: FixtureRun) -> None:
        verdict = self._verdicts.pop(id(fixture), None)
        if verdict is not None and not verdict.done():
            verdict.set_result(run)

    def _admissible(self) -> tuple[int, list[CallFixture]] | None:
        """The first unit that may start now: room for all its calls, none confusable with a call in flight. A
        call that plays alone starts only once nothing is in flight and nothing else may start: the others
        fed with it pass it by (it is judged as a call alone is, whenever it plays); those fed after it wait."""
        flying = self.in_flight
        barrier = min((fed for fed, unit in self._pending if plays_alone(unit[0])), default=None)
        for fed, unit in self._pending:
            if barrier is not None and fed > barrier:
                break
            if not plays_alone(unit[0]) and len(flying) + len(unit) <= self.at_once and not any(
                    confusable(f, c.lane.fixture) for f in unit for c in flying):
                return fed, unit
        return next(((fed, unit) for fed, unit in self._pending if plays_alone(unit[0])), None) if not flying else None

    async def _alone(self, fixture: CallFixture) -> FixtureRun:
        """A call that plays as in a run one call at a time (nothing else in flight)."""
        run = await self.shared.run(fixture, pace=self.pace, headers_for=self.headers_for)
        rtzr = self.fakes.rtzr  # its script and faults were the whole fake's: none is the next calls'
        rtzr.clear_scripts()
        rtzr.clear_faults()
        rtzr.update_config({"time_scale": 0.0 if self.pace is None else 1.0 / self.pace})
        self.progress(run)
        return run

    def _open(self, fixture: CallFixture, scale: float) -> _Call:
        lane = self.switchboard.open(fixture, new_call_sid(), _llm_config(fixture, scale), _tts_config(fixture, scale),
                                     dial_delay_s(fixture, scale))
        call = _Call(lane, started=time.monotonic())
        self.calls.append(call)
        return call

    async def _one(self, call: _Call) -> None:
        why = cannot_start(call.lane.fixture, await self.shared.get())
        if why is not None:  # the run lacks the option this call's start needs: not played, not judged
            await self._done(call, FixtureRun(call.lane.fixture, [skipped("replay", why)], [], CallTimeline([]), 0.0,
                                              call.sid))
            return
        try:
            await self._play(call)
            handler = self.shared.handler
            released = handler is not None and handler.released_call is not None
            if released and not await handler.released_call(call.sid, SETTLE_S):
                call.problem = call.problem or f"the handler still held the call {SETTLE_S:g} s after it ended"
                released = False
            await self.settle_lane(call)
            # a handler that says it let go of the call has nothing more to do for it: judged now, else after a
            # quiet spell of its traffic
            end = time.monotonic() if released and not self._busy(call.lane) else await self.quiet_lane(call)
            run = await self._judge(call, end)
        except Exception as exc:  # noqa: BLE001 - one call's trouble is its verdict, never the run's end
            log.debug("calls at once: %s failed", call.lane.name, exc_info=True)
            run = FixtureRun(call.lane.fixture, [CheckResult("replay", False, f"the harness failed: {exc!r}")],
                             [], CallTimeline([]), time.monotonic() - call.started, call.sid)
        await self._done(call, run)

    async def _done(self, call: _Call, run: FixtureRun) -> None:
        """The call is judged: its verdict to whoever waits, its room to the next call."""
        self._settle(call.lane.fixture, run)
        async with self._changed:
            call.judged_at = time.monotonic()
            self.switchboard.close(call.lane)
            self._forget()
            self._changed.notify_all()
        self.progress(run)

    def _forget(self) -> None:
        """Let go of the finished calls no call in flight overlaps (those to come start later: none will), and
        of the oldest beyond ``KEEP_FINISHED``: a search feeds calls for as long as it runs."""
        first = min((c.started for c in self.in_flight), default=float("inf"))
        self.calls = [c for c in self.calls if c.judged_at is None or c.judged_at > first]
        done = [c for c in self.calls if c.judged_at is not None]
        if len(done) > KEEP_FINISHED:
            oldest = {id(c) for c in done[: len(done) - KEEP_FINISHED]}
            self.calls = [c for c in self.calls if id(c) not in oldest]

    # -------------------------------------------------------------- one call
    async def _play(self, call: _Call) -> None:
        fakes, lane, handler = self.fakes, call.lane, await self.shared.get()

        def replying() -> bool:
            return any(r.lane == lane.call_sid and r.ended_at is None for r in (*fakes.llm.requests, *fakes.tts.requests))

        if lane.dial_s:
            await asyncio.sleep(lane.dial_s)  # the fixture's own dialling time within its group
        headers = self.headers_for(handler.url) if self.headers_for else None
        handler.mark(f"fixture {lane.name}, call {lane.call_sid} (calls at once)")
        async with aiohttp.ClientSession() as session:
            call.player = TwilioPlayer(session, handler.url, lane.fixture, pace=self.pace, call_sid=lane.call_sid,
                                       headers=headers, replying=replying,
                                       start=call_start(lane.fixture, handler, fakes.twilio))
            call.started = time.monotonic()
            try:
                await call.player.run()
            except HarnessError as exc:
                call.problem = str(exc)
            except Exception as exc:  # noqa: BLE001 - one call's trouble must not end the others
                log.debug("replay of %s failed", lane.name, exc_info=True)
                call.problem = f"the replay failed: {type(exc).__name__}: {exc or '(no message)'}"
        call.ended = time.monotonic()

    def _busy(self, lane: Lane) -> bool:
        fakes = self.fakes
        return any(not c.closed for c in self.switchboard.connections(lane)) or any(
            r.lane == lane.call_sid and r.ended_at is None for r in (*fakes.llm.requests, *fakes.tts.requests))

    async def settle_lane(self, call: _Call) -> None:
        """Until nothing of this call is in flight at the fakes (bounded by ``SETTLE_S``), with a grace of
        ``RECONNECT_GRACE_S`` for a reconnect it still needs (as ``runner.settle`` for a call alone)."""
        rtzr, lane = self.fakes.rtzr, call.lane
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            try:
                await self._wait(lambda: not self._busy(lane), deadline)
            except asyncio.TimeoutError:
                return
            if not _unrecognised_after_a_fault(lane.fixture, rtzr, self.switchboard.views(lane)[0]):
                return
            seen = {c.index for c in rtzr.journal.connections}
            grace = min(deadline, time.monotonic() + RECONNECT_GRACE_S)
            try:  # a new stream: this call's, or one whose audio has not said whose it is yet
                await self._wait(lambda: any(c.index not in seen and c.script in (None, lane.script_name)
                                             for c in rtzr.journal.connections), grace)
            except asyncio.TimeoutError:
                return

    async def _wait(self, predicate: Callable[[], bool], deadline: float) -> None:
        """Until ``predicate()`` holds (re-checked at each change of any fake), or TimeoutError at ``deadline``."""
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            await _next_change(self.fakes, left)

    def _last_activity(self, call: _Call) -> float:
        lane, fakes = call.lane, self.fakes
        last = call.ended or 0.0
        for c in self.switchboard.connections(lane):
            last = max(last, c.opened_wall, c.closed_wall or 0.0, *(m.sent_wall for m in c.messages[-1:]))
        for r in (*fakes.llm.requests, *fakes.tts.requests):
            if r.lane == lane.call_sid:
                last = max(last, r.at, r.ended_at or r.at)
        reader = self.shared.handler.log if self.shared.handler else None
        if reader is not None:
            last = max([last, *(b.at for b in reader.blocks[-50:] if lane.call_sid in b.call_sids)])
        return last

    async def quiet_lane(self, call: _Call) -> float:
        """Until this call's traffic at the fakes, and the handler's errors naming it, have been quiet for
        ``LOG_QUIET_S`` (at most ``LOG_QUIET_MAX_S``): its aftermath lands in its own verdict."""
        deadline = time.monotonic() + LOG_QUIET_MAX_S
        while time.monotonic() < deadline:
            wait = LOG_QUIET_S - (time.monotonic() - self._last_activity(call))
            if wait <= 0 and not self._busy(call.lane):
                break
            await asyncio.sleep(max(0.02, min(wait, deadline - time.monotonic())))  # a quiet spell is measured on the clock
        return time.monotonic()

    # -------------------------------------------------------------- verdicts
    async def _judge(self, call: _Call, end: float) -> FixtureRun:
        handler = self.shared.handler
        assert handler is not None and call.player is not None
        gone = handler.alive()
        record = call.player.record
        if not gone and handler.exited is not None and record.closed_how == "handler" and record.close_code in (None, 1006):
            gone = await handler.exited(EXIT_WAIT_S)
        if gone and call.problem is None:
            call.problem = f"the handler process {gone} during the call"
        lane, sb = call.lane, self.switchboard
        views = sb.views(lane)
        # the timeline and the checks are CPU work of up to a second for a long call: in a thread, so that the
        # calls still in flight are not held up by this one's judgement (their timings are what is judged next)
        timeline = await asyncio.to_thread(build_timeline, lane.fixture, record, *views)
        left = heard_seconds(timeline)  # the tones this line heard beyond its own requests': a greeting's, an apology's
        for r in views[2].requests:
            if r.tone_hz:
                left[r.tone_hz] = left.get(r.tone_hz, 0.0) - r.audio_s
        if sb.give_unattributed(lane, left, call.started, min(end, call.ended or end), self.fakes.tts):
            views = sb.views(lane)
            timeline = await asyncio.to_thread(build_timeline, lane.fixture, record, *views)
        call.timeline = timeline
        neighbours = self._neighbours(call, views, timeline)
        stored = handler.stored_lines(lane.call_sid) if handler.stored_lines else None
        played = PlayedCall(lane.fixture, lane.call_sid, record, timeline, call.started, end, stored, call.problem)
        errors = None if handler.log is None else self._own_errors(handler.log.blocks, call, end)
        run = await asyncio.to_thread(judge, played, errors, pace=self.pace, no_log_why=handler.no_log_why,
                                      neighbours=neighbours, unfaked=unfaked_hosts(self.fakes, end))
        run.beside = tuple(o.fixture for o in neighbours.others if o.call_sid in neighbours.concurrent)
        return run

    def _spoken(self, lane: Lane, proven_only: bool) -> tuple[tuple[float, str, float], ...]:
        return tuple((r.tone_hz, r.text, r.audio_s) for r in self.fakes.tts.requests
                     if r.lane == lane.call_sid and r.tone_hz and r.status == 200
                     and (not proven_only or not r.given))

    def _neighbours(self, call: _Call, views, timeline: CallTimeline) -> Neighbours:
        around = [c for c in self.calls if c is not call and c.overlaps(call)]
        others = []
        for c in around:
            def heard(c: _Call = c) -> dict[float, float]:
                if c.timeline is not None:
                    return heard_seconds(c.timeline)
                return heard_seconds(build_timeline(c.lane.fixture, c.player.record, *self.switchboard.views(c.lane))) \
                    if c.player is not None else {}
            others.append(OtherCall(c.sid, c.lane.name, frozenset(self.switchboard.finals(c.lane)),
                                    self._spoken(c.lane, proven_only=True), heard))
        sids = {c.sid: c for c in around}
        stalls = [Stall(r.lane, sids[r.lane].lane.name, what, r.at, min(r.stalled_until, r.ended_at or r.stalled_until))
                  for what, requests in (("LLM request", self.fakes.llm.requests), ("TTS request", self.fakes.tts.requests))
                  for r in requests if r.lane in sids and r.stalled_until is not None]
        earlier = [OtherCall(sid, name, frozenset(said)) for sid, (name, said) in self.switchboard.said.items()
                   if sid not in sids and sid != call.sid]
        start = timeline.of(CallStart)
        return Neighbours(others=[*others, *earlier], concurrent=set(sids), stalls=stalls,
                          user_texts=[(r.at, m["content"]) for r in views[1].requests for m in r.messages
                                      if m.get("role") == "user"],
                          spoken=list(self._spoken(call.lane, proven_only=False)),
                          call_start=start[0].wall if start else call.started,
                          recognised_s=recognised_s(call.lane.fixture, self.pace))

    def _provoked(self, lane: Lane) -> list[tuple[float, float]]:
        """When this call's fixture made something fail on purpose (as ``checks.provoked_windows``, from the
        fakes' records: a call in flight has no timeline yet)."""
        fakes = self.fakes
        windows = [(r.at, r.at + ERROR_WINDOW_S) for r in (*fakes.llm.requests, *fakes.tts.requests)
                   if r.lane == lane.call_sid and r.status >= 400]
        for c in self.switchboard.connections(lane):
            end = c.ending
            if end is not None and end.ended_by_server:
                windows.append((end.wall, (c.closed_wall or float("inf")) + ERROR_WINDOW_S))
        return windows

    def _own_errors(self, blocks: list[ErrorBlock], call: _Call, end: float) -> list[ErrorBlock]:
        """The handler's error blocks that are this call's: those naming its SID; one naming no call, read while
        it was in flight, unless a call around it provoked a failure just then and this one did not."""
        mine = self._provoked(call.lane)
        around = [c for c in self.calls if c is not call and c.overlaps(call)]
        own = []
        for block in blocks:
            sids = block.call_sids
            if sids:
                if call.sid in sids:
                    own.append(block)
                continue
            if not call.started <= block.at < end:
                continue
            theirs = any(a <= block.at <= b for c in around for a, b in self._provoked(c.lane))
            if any(a <= block.at <= b for a, b in mine) or not theirs:
                own.append(block)
        return own


async def _next_change(fakes: FakeServices, timeout: float) -> None:
    """Until any of the fakes changes (a stream opened or closed, a result sent, a request taken or done)."""
    waits = [asyncio.ensure_future(fake.next_change()) for fake in (fakes.rtzr, fakes.llm, fakes.tts)]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def units(fixtures: list[CallFixture], at_once: int) -> list[list[CallFixture]]:
    """What starts together: a ``together`` group (in pieces of ``at_once``), or one call."""
    result: list[list[CallFixture]] = []
    groups: dict[str, list[CallFixture]] = {}
    for f in fixtures:
        group = together(f) if at_once > 1 and not plays_alone(f) else ""
        if not group:
            result.append([f])
        elif group not in groups:
            groups[group] = [g for g in fixtures if together(g) == group and not plays_alone(g)]
            members = groups[group]
            result += [members[i : i + at_once] for i in range(0, len(members), at_once)]
    return result
