"""Replay fixtures against a handler under test (any ``Target``) and judge each call.

A call is played by the fake Twilio, then judged from the fakes' journals, the caller side and what
the handler offers (its log, its store, its "call released" signal). It is judged once nothing the
handler started with the fakes is in flight (``settle``: with a grace for a reconnect the call still
needs) and its log and the fakes have been quiet a moment (``quiet``): the aftermath of a call lands in
that call's verdict. Nothing one fixture does aborts the run: a handler that cannot be reached, crashes
or hangs fails that fixture with a message, and a handler process that died is started again for the
next one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp

from fakertzr import FakeRtzrBackend
from fakertzr.journal import Journal
from harness.judge.events import CallStart, LlmPostcall
from harness.errors import HandlerDidNotStart, HarnessError
from harness.fakes.llm import FakeLlm, FakeLlmConfig, LlmRequest, default_reply
from harness.fakes.services import FakeServices, running_fakes
from harness.fakes.tts import FakeTts, FakeTtsConfig
from harness.fakes.twilio_call import CallStart as TwilioStart
from harness.fakes.twilio_call import PlaceStart, WebhookStart
from harness.fakes.twilio_line import PlayerRecord
from harness.fakes.twilio_player import TwilioPlayer, new_call_sid
from harness.fakes.twilio_rest import FakeTwilioRest
from harness.fixture import CallFixture
from harness.judge.checks import CHECKS, run_checks
from harness.judge.verdict import CheckResult, Verdict, skipped, verdict_of
from harness.judge.context import NO_LOG, CheckContext, recognised_s
from harness.judge.crosscall import Neighbours
from harness.judge.handler_log import ErrorBlock, LogReader
from harness.judge.metrics import TurnMetrics, turn_metrics
from harness.judge.timeline import CallTimeline, build_timeline
from harness.replay.targets import Handler, InProcessLog, Target

SETTLE_S = 10.0
RECONNECT_GRACE_S = 2.0  # RTZR failed the call's stream and words are still unrecognised: time to reconnect
LOG_QUIET_S = 0.5  # a call is judged once the handler's log and the fakes have been quiet this long ...
LOG_QUIET_MAX_S = 5.0  # ... or after this long
PARALLEL = 8  # fixtures replayed at once when each has its own handler and fakes (mostly waiting: real time)
EXIT_WAIT_S = 2.0  # a socket that went away without a close frame: how long the process has to be seen exiting

log = logging.getLogger("harness")


@dataclass
class FixtureRun:
    fixture: CallFixture
    checks: list[CheckResult]
    turns: list[TurnMetrics]
    timeline: CallTimeline
    wall_s: float
    call_sid: str = ""
    errors: list[str] = field(default_factory=list)  # whole error blocks from the handler's log, for the report
    record: PlayerRecord | None = None  # what the caller side sent and received (the report plays it back)
    pace: float | None = None
    beside: tuple[str, ...] = ()  # the fixtures of the calls in flight with it on the handler (calls at once)

    @property
    def verdict(self) -> Verdict:
        """PASS, FAIL, or NOT_JUDGED: no check could judge the call (all skipped), which is never a pass."""
        return verdict_of(self.checks)

    @property
    def ok(self) -> bool:
        """The call passed: some check judged it and none failed."""
        return self.verdict is Verdict.PASS

    @property
    def failed(self) -> bool:
        """A check failed (a call not judged has not failed, nor passed)."""
        return self.verdict is Verdict.FAIL

    @property
    def not_judged_why(self) -> str:
        """Why no check judged the call ("" when one did): the reasons its checks were skipped."""
        if self.verdict is not Verdict.NOT_JUDGED:
            return ""
        reasons = list(dict.fromkeys(c.message for c in self.checks if c.message))
        return "; ".join(reasons[:3]) + (f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else "") \
            if reasons else "no check ran"

    @property
    def post_call(self) -> list[dict[str, Any]]:
        """LLM requests begun after the call ended (a summary, notes): never a turn; what was asked, and when."""
        end = self.timeline.hangup
        return [{"after_hangup_s": round(e.wall - end, 3), "asked": e.user,
                 **({"answers_final_after_hangup": e.late_final} if e.late_final else {})}
                for e in self.timeline.of(LlmPostcall)]

    def failures(self) -> str:
        """The failed checks, one per line, for assertion messages (a call not judged says so, and why)."""
        if self.verdict is Verdict.NOT_JUDGED:
            return f"not judged: no check could judge this call: {self.not_judged_why}"
        return "\n".join(f"{c.name}: {c.message}" for c in self.checks if not c.ok)


@dataclass
class PlayedCall:
    """A replayed call before it is judged (the handler's errors are read once its log is quiet)."""

    fixture: CallFixture
    call_sid: str
    record: PlayerRecord
    timeline: CallTimeline
    started: float
    ended: float
    stored: list[str] | None
    problem: str | None = None
    started_without: tuple[str, ...] = ()
    not_started: str | None = None  # why the call could not start as its fixture says (not judged)


class ErrorLog(InProcessLog):
    """The in-process handler's errors (aicall's log records, unretrieved task exceptions)."""

    def for_call(self, call_sid: str, start: float, end: float) -> list[ErrorBlock]:
        return self.reader.blocks_for(call_sid, start, end)


def _llm_config(fixture: CallFixture, time_scale: float) -> FakeLlmConfig:
    spec = fixture.llm
    replies = spec.get("replies")
    answered = itertools.count()

    def reply(request: LlmRequest) -> str:
        if not replies:
            return default_reply(request)
        text = replies[min(next(answered), len(replies) - 1)]
        return str(text).replace("{user}", request.last_user)

    return FakeLlmConfig(reply=reply, first_token_ms=spec.get("first_token_ms", 0.0), token_ms=spec.get("token_ms", 0.0),
                         time_scale=time_scale, fail_requests={int(k): v for k, v in spec.get("fail_requests", {}).items()},
                         stall_requests=set(spec.get("stall_requests", ())), stall_s=spec.get("stall_s"))


def _tts_config(fixture: CallFixture, time_scale: float) -> FakeTtsConfig:
    spec = fixture.tts
    return FakeTtsConfig(ms_per_char=spec.get("ms_per_char", 60.0), first_chunk_ms=spec.get("first_chunk_ms", 0.0),
                         realtime=spec.get("realtime", False), time_scale=time_scale,
                         stall_requests=set(spec.get("stall_requests", ())), stall_s=spec.get("stall_s"))


def configure_fakes(fixture: CallFixture, rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts, time_scale: float) -> None:
    """Make the fakes play this fixture: its script and faults, its LLM and TTS behaviour, one time_scale."""
    rtzr.reset()
    rtzr.clear_scripts()
    rtzr.update_config({"time_scale": time_scale})
    rtzr.load_script(fixture.script)
    llm.config = _llm_config(fixture, time_scale)
    tts.config = _tts_config(fixture, time_scale)
    llm.clear()
    tts.clear()


async def play_call(fixture: CallFixture, handler: Handler, rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts, *,
                    pace: float | None, headers: dict[str, str] | None = None,
                    started_without: tuple[str, ...] = (), twilio: FakeTwilioRest | None = None) -> PlayedCall:
    """Play one call into ``handler`` and collect everything the judgement needs (never raises); a handler with a
    voice webhook is called through it, the call kept in ``twilio``."""
    started = time.monotonic()
    call_sid = new_call_sid()
    why = cannot_start(fixture, handler)
    if why is not None:
        return PlayedCall(fixture, call_sid, PlayerRecord(), CallTimeline([]), started, started, None, not_started=why)
    configure_fakes(fixture, rtzr, llm, tts, 0.0 if pace is None else 1.0 / pace)
    handler.mark(f"fixture {fixture.name}, call {call_sid}")
    problem = None
    async with aiohttp.ClientSession() as session:
        player = TwilioPlayer(session, handler.url, fixture, pace=pace, call_sid=call_sid, headers=headers,
                              replying=lambda: llm.in_flight() or tts.in_flight(),
                              start=call_start(fixture, handler, twilio))
        try:
            await player.run()
        except HarnessError as exc:
            problem = str(exc)
        except Exception as exc:  # noqa: BLE001 - one fixture's trouble must not end the run; say what it was
            log.debug("replay of %s failed", fixture.name, exc_info=True)
            problem = f"the replay failed: {type(exc).__name__}: {exc or '(no message)'}"
    if handler.released is not None and not await handler.released(SETTLE_S):  # it may reconnect to hear the last words
        problem = problem or f"the handler still held the call {SETTLE_S:g} s after it ended"
    await settle(fixture, rtzr, llm, tts)
    await quiet(handler.log, rtzr, llm, tts)
    gone = handler.alive()
    if not gone and handler.exited is not None and player.record.closed_how == "handler" \
            and player.record.close_code in (None, 1006):
        gone = await handler.exited(EXIT_WAIT_S)  # the socket just went away: did the process die?
    if gone and problem is None:
        problem = f"the handler process {gone} during the call"
    timeline = build_timeline(fixture, player.record, rtzr.journal, llm, tts)
    stored = handler.stored_lines(call_sid) if handler.stored_lines else None
    return PlayedCall(fixture, call_sid, player.record, timeline, started, time.monotonic(), stored, problem,
                      started_without)


def starts_how(fixture: CallFixture, handler: Handler) -> str:
    """How the call starts: the fixture's ``start``, else at the voice webhook with ``--voice``, else placed by the
    handler with ``--place``, else on the stream."""
    if fixture.start is not None:
        return fixture.start
    return "webhook" if handler.voice is not None else "outbound" if handler.place is not None else "stream"


def cannot_start(fixture: CallFixture, handler: Handler) -> str | None:
    """Why the call cannot start as its fixture says (the run lacks the option it needs), or None."""
    if fixture.start == "webhook" and handler.voice is None:
        return ('the call starts at the handler\'s voice webhook ("start": "webhook" in its call.json): give --voice '
                'PATH|URL (with --cmd or --target)')
    if fixture.start == "outbound" and handler.place is None:
        return ('the call is placed by the handler ("start": "outbound" in its call.json): give --place PATH|URL, '
                'the handler\'s endpoint that places a call (with --cmd or --target)')
    return None


def call_start(fixture: CallFixture, handler: Handler, twilio: FakeTwilioRest | None) -> TwilioStart | None:
    """How a call to ``handler`` starts at the fake Twilio (``starts_how``): None, on its stream."""
    how = starts_how(fixture, handler)
    if how == "stream":
        return None
    if twilio is None:
        raise HarnessError("a call started at the fake Twilio needs its REST API (FakeServices.twilio)")
    if how == "webhook" and handler.voice is not None:
        return WebhookStart(handler.voice, twilio)
    if how == "outbound" and handler.place is not None:
        return PlaceStart(handler.place, twilio)
    raise HarnessError(cannot_start(fixture, handler) or f"the call cannot start: {how}")


def unfaked_hosts(fakes: FakeServices, until: float) -> tuple[str, ...] | None:
    """The hosts the handler tried to reach that nothing fakes, not yet charged to a call (None: not steered)."""
    return None if fakes.proxy is None else tuple(r.host for r in fakes.proxy.take_refused(until))


def judge(played: PlayedCall, errors: list[ErrorBlock] | None, *, pace: float | None,
          no_log_why: str = NO_LOG, neighbours: "Neighbours | None" = None,
          unfaked: tuple[str, ...] | None = None) -> FixtureRun:
    """The verdict on one played call, ``errors`` being its handler's error blocks (None: no log), ``unfaked``
    the hosts it tried to reach that nothing fakes (None: not steered, not judged)."""
    fixture = played.fixture
    wall = played.ended - played.started
    texts = [b.text for b in errors or ()]
    if played.not_started is not None:
        return FixtureRun(fixture, [skipped("replay", played.not_started)], [], played.timeline, wall, played.call_sid)
    checks: list[CheckResult] = []
    if played.problem:
        checks.append(CheckResult("replay", False, played.problem))
        if not played.timeline.of(CallStart):  # not a frame went out: there is no call to judge
            return FixtureRun(fixture, checks, [], played.timeline, wall, played.call_sid, texts, played.record, pace)
    ctx = CheckContext(
        timeline=played.timeline, expect=fixture.expect, stored_caller_lines=played.stored, errors_logged=errors,
        no_log_why=no_log_why, call_refused_allowed=bool(fixture.expect.get("call_refused")),
        started_without=played.started_without, audio_plays=pace is not None, pace=pace, neighbours=neighbours,
        recognised_s=recognised_s(fixture, pace), unfaked_hosts=unfaked)
    checks.extend(run_checks(ctx))
    return FixtureRun(fixture, checks, turn_metrics(played.timeline), played.timeline, wall, played.call_sid, texts,
                      played.record, pace)


def did_not_start(fixture: CallFixture, exc: HandlerDidNotStart, without: tuple[str, ...], wall_s: float) -> FixtureRun:
    """A handler started without ``without`` that refused to start: failure 1 guarded, if it said why."""
    said = f"{exc}\n{exc.output}"
    named = [v for v in without if v in said]
    if not without:
        check = CheckResult("replay", False, f"the handler did not start: {exc}\n{exc.output}".rstrip())
    elif named:
        line = next((l for l in said.splitlines() if named[0] in l), named[0]).strip()
        check = CheckResult("refuses_without_credentials", True, f"refused to start without {named[0]}: {line[:300]}")
    else:
        check = CheckResult("refuses_without_credentials", False,
                            f"failure 1: started without {', '.join(without)}, the handler stopped without naming "
                            f"the missing variable: {exc}\n{exc.output}".rstrip())
    rest = [skipped(c.__name__, "the handler did not start") for c in CHECKS]
    return FixtureRun(fixture, [check, *rest], [], CallTimeline([]), wall_s)


def _in_flight(rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts) -> bool:
    return not all(c.closed for c in rtzr.journal.connections) or llm.in_flight() or tts.in_flight()


def rtzr_last_activity(rtzr: FakeRtzrBackend) -> float:
    """When the fake RTZR last saw or did something: a stream opened, a result sent, a socket closed."""
    last = 0.0
    for c in rtzr.journal.connections:
        last = max(last, c.opened_wall, c.closed_wall or 0.0, *(m.sent_wall for m in c.messages[-1:]))
    return last


def _unrecognised_after_a_fault(fixture: CallFixture, rtzr: FakeRtzrBackend, journal: Journal | None = None) -> bool:
    """RTZR failed a stream of this call (closed, dropped or stalled it, refused a handshake) and fewer finals
    came than the caller spoke utterances: a correct handler may be reconnecting to hear the rest
    (``journal``: this call's part of the fake's journal, when calls go at once)."""
    journal = journal if journal is not None else rtzr.journal
    faulted = any(not c.accepted or (c.ending is not None and c.ending.ended_by_server) for c in journal.connections)
    return faulted and len(journal.finals()) < len(fixture.script.utterances)


async def settle(fixture: CallFixture, rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts) -> None:
    """Until nothing the handler started with the fakes is in flight (bounded by ``SETTLE_S``), with a grace
    of ``RECONNECT_GRACE_S`` for a reconnect the call still needs after its last stream closed: a handler
    that reconnects 15 ms after closing the stalled stream is judged on the new stream, never by luck."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            await rtzr.wait_for(lambda j: all(c.closed for c in j.connections), max(0.0, deadline - time.monotonic()))
            await llm.wait_for(lambda f: not f.in_flight(), max(0.0, deadline - time.monotonic()))
            await tts.wait_for(lambda f: not f.in_flight(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return  # the checks will say what stayed open
        if not _unrecognised_after_a_fault(fixture, rtzr):
            return
        opened = len(rtzr.journal.connections)
        try:
            await rtzr.wait_for(lambda j: len(j.connections) > opened,
                                min(RECONNECT_GRACE_S, max(0.0, deadline - time.monotonic())))
        except asyncio.TimeoutError:
            return


async def quiet(reader: LogReader | None, rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts) -> float:
    """Wait until the handler has logged nothing, and the fakes have done nothing, for ``LOG_QUIET_S``
    (bounded): a call's aftermath (an error on sending a TTS reply that came after the hang-up) lands in
    that call's judgement, not the next one's."""
    deadline = time.monotonic() + LOG_QUIET_MAX_S
    while time.monotonic() < deadline:
        last = max(reader.last_line_at if reader is not None else 0.0, rtzr_last_activity(rtzr),
                   llm.last_activity(), tts.last_activity())
        if time.monotonic() - last >= LOG_QUIET_S and not _in_flight(rtzr, llm, tts):
            break
        await asyncio.sleep(0.05)  # another process writes the log: there is nothing to wait on but the clock
    return time.monotonic()


HeadersFor = Callable[[str], dict[str, str]] | None  # the stream URL -> handshake headers (a Twilio signature)


async def run_alone(target: Target, fakes: FakeServices, fixture: CallFixture, *, pace: float | None,
                    headers_for: HeadersFor, without: tuple[str, ...] = ()) -> FixtureRun:
    """One fixture on a handler started for it alone (fresh per fixture, or without credentials)."""
    started = time.monotonic()
    try:
        async with target.start(fakes, without=without) as handler:
            played = await play_call(fixture, handler, fakes.rtzr, fakes.llm, fakes.tts, pace=pace,
                                     headers=headers_for(handler.url) if headers_for else None, started_without=without,
                                     twilio=fakes.twilio)
            end = time.monotonic()
    except HandlerDidNotStart as exc:
        return did_not_start(fixture, exc, without, time.monotonic() - started)
    # a process started for this call alone: everything it logged, to its exit, is this call's
    start, end = (0.0, float("inf")) if handler.own_log else (played.started, end)
    errors = None if handler.log is None else handler.log.blocks_for(played.call_sid, start, end)
    return judge(played, errors, pace=pace, no_log_why=handler.no_log_why, unfaked=unfaked_hosts(fakes, played.ended))


class SharedHandler:
    """One handler for a run of fixtures, started again if it died; each call's errors are those read
    between its start and the next call's."""

    def __init__(self, target: Target, fakes: FakeServices, stack: AsyncExitStack) -> None:
        self.target, self.fakes, self.stack = target, fakes, stack
        self.handler: Handler | None = None
        self._starting = asyncio.Lock()  # calls at once ask for it together: one handler is started, not one each

    async def get(self) -> Handler:
        async with self._starting:
            if self.handler is None or self.handler.alive():
                self.handler = await self.stack.enter_async_context(self.target.start(self.fakes))
            return self.handler

    async def run(self, fixture: CallFixture, *, pace: float | None, headers_for: HeadersFor) -> FixtureRun:
        """Replay ``fixture`` into the shared handler and judge it; a call that needs a handler started without
        its credentials gets one of its own (``run_one``)."""
        if fixture.handler_without:
            return await run_one(self.target, self.fakes, fixture, pace=pace, headers_for=headers_for)
        handler = await self.get()
        played = await play_call(fixture, handler, self.fakes.rtzr, self.fakes.llm, self.fakes.tts, pace=pace,
                                 headers=headers_for(handler.url) if headers_for else None, twilio=self.fakes.twilio)
        errors = None if handler.log is None else handler.log.blocks_for(played.call_sid, played.started, played.ended)
        return judge(played, errors, pace=pace, no_log_why=handler.no_log_why,
                     unfaked=unfaked_hosts(self.fakes, played.ended))


def not_startable_without(fixture: CallFixture, how: str) -> FixtureRun:
    """The verdict on a fixture whose handler must start without credentials, for a handler already running."""
    why = f"a running handler cannot be started without its credentials: {how}"
    return FixtureRun(fixture, [skipped("refuses_without_credentials", why)], [], CallTimeline([]), 0.0)


async def run_one(target: Target, fakes: FakeServices, fixture: CallFixture, *, pace: float | None,
                   headers_for: HeadersFor) -> FixtureRun:
    if fixture.handler_without and not target.can_drop_credentials:
        return not_startable_without(fixture, "use --cmd to let the harness launch it")
    return await run_alone(target, fakes, fixture, pace=pace, headers_for=headers_for, without=fixture.handler_without)


async def replay(fixture: CallFixture, url: str, *, rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts,
                 pace: float | None = None, errors: ErrorLog | None = None,
                 store_lines: Callable[[str], list[str] | None] | None = None,
                 headers: dict[str, str] | None = None,
                 handler_done: Callable[[float], Awaitable[bool]] | None = None) -> FixtureRun:
    """Replay ``fixture`` against the Twilio Media Streams handler at ``url`` (already using these fakes)
    and judge it: the pytest plugin's and the contract suite's entry point.

    ``errors`` is the in-process handler's log; ``store_lines`` (call SID -> stored caller lines)
    enables the persistence check; ``handler_done(timeout)`` waits until the handler let go of the call.
    """
    if fixture.handler_without:
        return not_startable_without(fixture, "start one without them and replay this fixture into it")
    handler = Handler(url, log=errors.reader if errors else None, released=handler_done, stored_lines=store_lines,
                      no_log_why="no handler log: pass errors=ErrorLog() for an in-process handler")
    played = await play_call(fixture, handler, rtzr, llm, tts, pace=pace, headers=headers)
    found = None if errors is None else errors.for_call(played.call_sid, played.started, played.ended)
    return judge(played, found, pace=pace, no_log_why=handler.no_log_why)


async def run_fixture(fixture: CallFixture, *, pace: float | None, errors: ErrorLog,
                      workdir: object = None) -> FixtureRun:
    """Replay ``fixture`` against aicall in-process, with fresh fakes, and judge the result (``workdir``
    is no longer needed: aicall's store lives in a temporary directory of its own)."""
    from harness.replay.targets import AicallTarget

    async with running_fakes() as fakes:
        return await run_one(AicallTarget(errors), fakes, fixture, pace=pace, headers_for=None)
