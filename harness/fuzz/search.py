"""``harness fuzz``: hypothesis draws whole calls (``harness.fuzz.strategies.calls``); each is replayed against the
handler and judged by every check, as ``harness run`` judges a fixture. The first call that fails is shrunk
to a small one and written as an ordinary fixture, which ``harness run --fixtures`` replays.

The search runs in this thread; the handler and its fakes live on an event loop of their own
(``HandlerSession``), one handler for the whole search, as ``harness run`` shares one across fixtures.
A call hypothesis tries again (shrinking does) is judged once: its verdict is kept by the call's key, so
the search never sees a flaky verdict of its own making; the shrunk failure is then replayed afresh, and
whether it failed again is reported. Shrinking stops after ``shrink_limit`` new calls (each is a real
replay); what has been found by then is what is reported.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from hypothesis import HealthCheck, Phase, given, reject, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis.database import DirectoryBasedExampleDatabase

from harness.fakes.services import FakeNetwork
from harness.replay.loop_lag import LoopLag
from harness.replay.resources import Resources, sample
from harness.fuzz.scenario import Scenario
from harness.fuzz.strategies import FAULT_KINDS, DrawnCall, as_call, calls
from harness.replay.runner import FixtureRun, HeadersFor, SharedHandler
from harness.replay.targets import Target

LATENCY = "speech end -> first bot audio of its reply, ms"
LAG_PERIOD_S = 0.05  # the session loop's lateness is sampled this often
LATE_WARNING_MS = 1000.0  # the harness ran this late at worst: its timing verdicts may be the machine's


@dataclass
class FuzzOptions:
    examples: int = 50
    seed: int | None = None  # None: a fresh one, printed so the run can be repeated
    pace: float | None = None  # None: fast
    max_duration_s: float | None = None  # of caller audio per call
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    max_faults: int = 2
    max_utterances: int = 4
    barge_in: bool = True
    hangups: bool = True
    keypad: bool = True
    long_utterances: bool = True  # utterances RTZR cuts at max_utter_duration
    reacts: bool = True  # callers who time words on the bot (caller.reacts)
    database: Path | None = None  # hypothesis's example database (failures found before are tried first)
    target_latency: bool = False  # steer the search toward the longest end of speech -> first bot audio
    shrink_limit: int = 150  # new calls tried while shrinking a failure, at most
    reduce_limit: int = 30  # ... and then while leaving its parts out one at a time (``reduce``)
    calls_at_once: int = 1  # calls in flight into the one handler (``search_waves``)


@dataclass
class Found:
    call: DrawnCall
    run: FixtureRun


@dataclass
class FuzzResult:
    seed: int
    drawn: int = 0  # calls drawn and replayed before the first failure (all if none failed; at once: those in flight too)
    replayed: int = 0  # every call replayed, shrinking included
    shrink_tries: int = 0
    failure: Found | None = None  # the shrunk failing call
    first_failure: Found | None = None  # the failure as first found, before shrinking
    reproduced: bool | None = None  # the shrunk failure, replayed afresh, failed again
    worst: tuple[float, Found] | None = None  # with target_latency: the longest turn latency found
    statistics: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    audio_s: float = 0.0  # the caller audio of the calls drawn (before a failure) ...
    played_s: float = 0.0  # ... and the time their replays took: at realtime pace, how close to the audio
    neighbours: list[DrawnCall] = field(default_factory=list)  # the calls the failure needs in flight beside it
    alone_passed: bool = False  # the failing call, replayed alone, passed: the failure is a cross-call one
    loop_late_ms: float = 0.0  # how late the harness's own event loop ran a timer, at worst (its calls' timings too)
    resources: Resources | None = None  # a launched handler's memory and descriptors as the calls went by
    interrupted: KeyboardInterrupt | None = None  # Ctrl-C or SIGTERM stopped the search: what it had is kept


class CallFailed(AssertionError):
    """A drawn call failed a check (hypothesis shrinks it)."""


class HandlerSession:
    """The handler under test and its fakes, on an event loop in a thread of their own, for a whole search."""

    def __init__(self, target: Target | None, *, pace: float | None, headers_for: HeadersFor = None,
                 fake_ports: tuple[int, int, int] = (0, 0, 0), on_fakes: Callable = lambda fakes: None,
                 network: FakeNetwork | None = None) -> None:
        self.target, self.pace, self.headers_for = target, pace, headers_for
        self.fake_ports, self.on_fakes = fake_ports, on_fakes
        self.network = network or FakeNetwork()  # --tls, --steer, and a fake Twilio account (--voice, --place)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="harness-fuzz-handler", daemon=True)
        self.stack = AsyncExitStack()
        self.tmp = tempfile.TemporaryDirectory(prefix="harness-fuzz-")
        self.shared: SharedHandler | None = None
        self.switchboard = None  # several calls at once: the fakes' routing of requests to calls
        self.wave = None  # ``start_feed``: the calls at once being fed, and the task that plays them
        self.serving: asyncio.Future | None = None
        self.lag = LoopLag(LAG_PERIOD_S)  # the harness's own lateness: every timing it judges carries it
        self.resources: Resources | None = None  # a launched handler's (``note_calls``), the one now running
        self._sampled: int | None = None  # ... whose process group that is

    def __enter__(self) -> "HandlerSession":
        self.thread.start()
        try:
            self._call(self._start())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self.stack.aclose(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.tmp.cleanup()

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        if self.target is None:  # aicall in-process: its log is read on this loop
            from harness.replay.runner import ErrorLog
            from harness.replay.targets import AicallTarget

            self.target = AicallTarget(self.stack.enter_context(ErrorLog()))
        fakes = await self.stack.enter_async_context(self.network.fakes(self.fake_ports))
        self.on_fakes(fakes)
        self.shared = SharedHandler(self.target, fakes, self.stack)
        await self.shared.get()
        from harness.replay.lanes import Switchboard

        self.switchboard = Switchboard(fakes)
        self.lag.start()
        self.stack.callback(self.lag.stop)

    def note_calls(self, calls: int) -> None:
        """Sample the launched handler's memory and open descriptors, ``calls`` calls in (nothing for aicall
        in-process or a running handler: the harness does not own their process); a handler started anew
        begins a series of its own."""
        handler = self.shared.handler if self.shared is not None else None
        pid = getattr(handler, "pid", None)
        if not pid or pid == os.getpid():
            return
        if pid != self._sampled:
            self.resources, self._sampled = Resources(), pid
        assert self.resources is not None
        self.resources.add(sample(pid, calls))

    def loop_late_ms(self) -> float:
        """The latest the session's loop ran a timer since the last call (ms): above a second or so, the calls'
        timings are the machine's as much as the handler's (fewer calls at once, or fewer workers)."""
        async def take() -> list[float]:
            return self.lag.take()
        return max(self._call(take()), default=0.0)

    def play(self, call: DrawnCall) -> FixtureRun:
        """Replay ``call`` and judge it (blocks this thread; the handler runs on its own loop). A call whose
        handler starts without credentials gets a handler of its own, as ``harness run`` gives it one."""
        fixture = call.fixture(Path(self.tmp.name) / call.key)
        assert self.shared is not None
        return self._call(self.shared.run(fixture, pace=self.pace, headers_for=self.headers_for))

    def play_alone(self, call: DrawnCall) -> FixtureRun:
        """Replay ``call`` on a handler started for it alone (a running handler, ``--target``, cannot be: the
        shared one), so that nothing an earlier call left in the handler's memory counts: what fails here fails
        without neighbours."""
        from harness.replay.runner import run_alone
        from harness.replay.targets import UrlTarget

        assert self.shared is not None and self.target is not None
        if isinstance(self.target, UrlTarget):
            return self.play(call)
        fixture = call.fixture(Path(self.tmp.name) / call.key)
        return self._call(run_alone(self.target, self.shared.fakes, fixture, pace=self.pace,
                                    headers_for=self.headers_for, without=fixture.handler_without))

    def play_fresh(self, calls: list[DrawnCall], at_once: int | None = None) -> list[FixtureRun]:
        """``play_wave`` on a handler started for these calls alone (a running handler cannot be: the shared
        one): cutting a cross-call failure down, or replaying it, is not swayed by what the search's earlier
        calls left in the handler's memory."""
        from harness.replay.lanes import Switchboard
        from harness.replay.runs import play_at_once
        from harness.replay.targets import UrlTarget

        assert self.shared is not None and self.target is not None
        if isinstance(self.target, UrlTarget):
            return self.play_wave(calls, at_once)
        fixtures = [c.fixture(Path(self.tmp.name) / c.key) for c in calls]

        async def fresh() -> list[FixtureRun]:
            assert self.shared is not None and self.target is not None
            async with AsyncExitStack() as stack:
                shared = SharedHandler(self.target, self.shared.fakes, stack)
                if any(not f.handler_without for f in fixtures):
                    await shared.get()  # up before the first call is dialled: the calls keep their stagger, as found
                switchboard = Switchboard(self.shared.fakes)
                try:
                    return await play_at_once(shared, switchboard, fixtures, at_once or len(fixtures), pace=self.pace,
                                              headers_for=self.headers_for)
                finally:
                    self.switchboard.attach()

        return self._call(fresh())

    def play_wave(self, calls: list[DrawnCall], at_once: int | None = None) -> list[FixtureRun]:
        """Replay ``calls`` into the handler, ``at_once`` of them in flight (all by default), and judge each (a
        call that must play alone plays alone)."""
        from harness.replay.runs import play_at_once

        assert self.shared is not None
        fixtures = [c.fixture(Path(self.tmp.name) / c.key) for c in calls]
        return self._call(play_at_once(self.shared, self.switchboard, fixtures, at_once or len(fixtures), pace=self.pace,
                                     headers_for=self.headers_for))

    def start_feed(self, at_once: int) -> None:
        """Calls fed as they are drawn (``feed``) are played into the handler, ``at_once`` in flight, across
        batches: a new call starts as soon as one is judged, not when a batch's last call is."""
        from harness.replay.together import CallsAtOnce

        async def begin() -> None:
            assert self.shared is not None and self.switchboard is not None
            self.wave = CallsAtOnce(self.shared, self.switchboard, at_once, self.pace, self.headers_for)
            self.serving = asyncio.ensure_future(self.wave.serve())

        self._call(begin())

    def feed(self, calls: list[DrawnCall]) -> list[Future[FixtureRun]]:
        """More calls to play (``start_feed``): each future gets the call's verdict once it is judged."""
        fixtures = [c.fixture(Path(self.tmp.name) / c.key) for c in calls]

        async def add() -> list[Future[FixtureRun]]:
            return self.wave.feed(fixtures)

        return self._call(add())

    def end_feed(self, *, drop_waiting: bool) -> None:
        """Until every call fed is judged (with ``drop_waiting``, those not yet started are let go)."""
        if self.serving is None:
            return

        async def end() -> None:
            self.wave.close(drop_waiting=drop_waiting)
            await self.serving

        try:
            self._call(end())
        finally:
            self.serving = None


def failed_checks(run: FixtureRun) -> frozenset[str]:
    return frozenset(c.name for c in run.checks if not c.ok)


def smallest_like(first: Found | None, failures: list[Found]) -> Found:
    """The smallest failing call (fewest utterances and faults; of those, the one failing more of the first
    failure's checks, then the one hypothesis shrank last) of those that fail a check the first failure
    failed: hypothesis shrinks by its own measure, and may slip to another bug on the way; the call reported
    still shows the first bug, as small as it was seen (a check that failed beside it by the way, such as a
    final the mutant's early answer left behind, need not hold the call's size up)."""
    assert first is not None
    wanted = failed_checks(first.run)
    same = [(k, f) for k, f in enumerate(failures) if failed_checks(f.run) & wanted] or [(0, first)]
    return min(same, key=lambda kf: (sum(kf[1].call.size), kf[1].call.size, -len(failed_checks(kf[1].run) & wanted),
                                     -kf[0]))[1]


def smaller(scenario: Scenario) -> Iterator[Scenario]:
    """Scenarios one part smaller than ``scenario``: an utterance, a fault, the hang-up, the dropped line, the
    keypad, barge-in, an utterance's timing on the bot, the LLM's failure or stall left out, one at a time (the
    largest parts first)."""
    said = scenario.utterances
    reacts = scenario.reacts  # one per utterance after the first: how it is timed
    for k in reversed(range(len(said))):
        if len(said) > 1:
            rest = said[:k] + said[k + 1:]
            timed = reacts[1:] if k == 0 else reacts[:k - 1] + reacts[k:]  # the utterance's own timing goes with it
            yield replace(scenario, utterances=rest, barge_in=scenario.barge_in and len(rest) > 1, reacts=timed)
    for k in reversed(range(len(reacts))):
        if reacts[k] is not None:
            yield replace(scenario, reacts=reacts[:k] + (None,) + reacts[k + 1:])
    faults = scenario.faults
    for k in reversed(range(len(faults))):  # revoked credentials are one fault (two in the fixture)
        yield replace(scenario, faults=faults[:k] + faults[k + 1:])
    if scenario.hangup is not None:
        yield replace(scenario, hangup=None)
    if scenario.vanish:
        yield replace(scenario, vanish=False)
    if scenario.dtmf:
        yield replace(scenario, dtmf=())
    if scenario.barge_in:
        yield replace(scenario, barge_in=False)
    if scenario.llm.fail_requests:
        yield replace(scenario, llm=replace(scenario.llm, fail_requests=()))
    if scenario.llm.stall_requests:
        yield replace(scenario, llm=replace(scenario.llm, stall_requests=()))


def reduce(found: Found, first: Found | None, judged: Callable[[DrawnCall], FixtureRun], limit: int,
           progress: Callable[[str], None] = lambda text: None) -> Found:
    """After hypothesis's shrinking, the parts of the call left out one at a time (delta debugging, by parts
    of the call rather than by hypothesis's choices): each removal kept if the call still fails a check the
    first failure failed, until nothing more goes or ``limit`` replays were spent. Hypothesis shrinks by its
    own measure and, a replay costing seconds, slowly: the structure is what a reader wants small."""
    wanted = failed_checks((first or found).run)
    best, tries = found, 0
    shrinking = True
    while shrinking and tries < limit:
        shrinking = False
        for candidate in smaller(best.call.scenario):
            if tries >= limit:
                break
            call = as_call(candidate)
            run = judged(call)
            tries += 1
            if run.failed and failed_checks(run) & wanted:
                best, shrinking = Found(call, run), True
                progress(f"fuzz: reducing: {tries} tries, the failing call now {call.size[0]} utterance(s), "
                         f"{call.size[1]} fault(s)")
                break
    return best


def worst_latency(run: FixtureRun) -> float | None:
    values = [t.speech_end_to_first_audio_ms for t in run.turns if t.speech_end_to_first_audio_ms is not None]
    return max(values) if values else None


@dataclass(frozen=True)
class Stage:
    """A part of the search: ``examples`` calls drawn from ``options`` of ``calls()``."""

    label: str
    examples: int
    options: dict


def stages(options: FuzzOptions) -> list[Stage]:
    """Coverage first, then calls drawn freely (as schemathesis runs its coverage phase before fuzzing):
    hypothesis draws what its mutations copy again and again, and in 100 calls may never draw a fault kind
    at all; so before drawing freely, a few calls have each fault kind (two each when ``examples`` is at
    least four times the kinds, one when at least twice, none below), the rest drawn as they come."""
    free = dict(max_utterances=options.max_utterances, max_faults=options.max_faults, fault_kinds=options.fault_kinds,
                barge_in=options.barge_in, hangups=options.hangups, keypad=options.keypad,
                long_utterances=options.long_utterances, reacts=options.reacts,
                max_duration_ms=None if options.max_duration_s is None else int(options.max_duration_s * 1000))
    kinds = options.fault_kinds if options.max_faults else ()
    each = min(2, options.examples // (2 * len(kinds))) if kinds else 0
    covering = [Stage(f"coverage: {kind}", each, {**free, "fault_kinds": (kind,), "min_faults": 1, "max_faults": 1})
                for kind in kinds] if each else []
    return [*covering, Stage("drawn freely", options.examples - each * len(covering), free)]


def search(session: HandlerSession, options: FuzzOptions,
           progress: Callable[[str], None] = lambda text: None) -> FuzzResult:
    """Draw, replay and judge calls (``stages``) until one fails (then shrink it) or ``options.examples`` have passed."""
    if options.calls_at_once > 1:
        return search_waves(session, options, progress)
    chosen = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    result = FuzzResult(chosen)
    seen: dict[str, FixtureRun] = {}
    smallest: list[Found] = []  # every failure seen
    started = time.monotonic()
    stage = ""

    def judged(call: DrawnCall) -> FixtureRun:
        run = seen.get(call.key)
        if run is None:
            if result.first_failure is not None and result.shrink_tries >= options.shrink_limit:
                reject()  # shrinking has had its budget: what was found stands
            began = time.monotonic()
            run = seen[call.key] = session.play(call)
            result.replayed += 1
            if result.first_failure is None:
                result.drawn += 1
                session.note_calls(result.drawn)
                result.statistics.update(call.features())
                result.audio_s += call.audio_ms / 1000
                result.played_s += time.monotonic() - began
            else:
                result.shrink_tries += 1
        return run

    def judged_again(call: DrawnCall) -> FixtureRun:
        """A call the reduction tries: replayed once (kept by its key, as the search's are)."""
        run = seen.get(call.key)
        if run is None:
            run = seen[call.key] = session.play(call)
            result.replayed += 1
            result.shrink_tries += 1
        return run

    def one(call: DrawnCall) -> None:
        run = judged(call)
        if options.target_latency:
            latency = worst_latency(run)
            if latency is not None:
                target(latency, label=LATENCY)
                if result.worst is None or latency > result.worst[0]:
                    result.worst = (latency, Found(call, run))
        if run.failed:
            found = Found(call, run)
            if result.first_failure is None:
                result.first_failure = found
            smallest.append(found)
            best = smallest_like(result.first_failure, smallest).call.size
            what = f"shrinking: {result.shrink_tries} tries, smallest failing call so far {best[0]} utterance(s), {best[1]} fault(s)"
            progress(f"fuzz: {result.drawn} call(s) drawn, 1 failed ({', '.join(c.name for c in run.checks if not c.ok)}); "
                     f"{what}")
            raise CallFailed(run.failures())
        if result.first_failure is None:
            progress(f"fuzz: {result.drawn} of {options.examples} call(s) drawn, none failed "
                     f"({stage}, {time.monotonic() - started:.0f} s)")

    try:
        try:
            for k, part in enumerate(stages(options)):
                stage = part.label
                test = settings(max_examples=part.examples, deadline=None, print_blob=False, report_multiple_bugs=False,
                                database=DirectoryBasedExampleDatabase(str(options.database)) if options.database else None,
                                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                                suppress_health_check=list(HealthCheck))(given(calls(**part.options))(one))
                # each stage's failures are kept in the database apart (hypothesis keys them by the test function)
                test._hypothesis_internal_database_key = f"harness-fuzz {part.label}".encode()
                hypothesis_seed(chosen + k)(test)()
        except CallFailed:
            result.failure = smallest_like(result.first_failure, smallest)
            result.failure = reduce(result.failure, result.first_failure, judged_again, options.reduce_limit, progress)
    except KeyboardInterrupt as exc:  # the failure found so far, as far as it was shrunk, is kept
        result.interrupted = exc
        if result.first_failure is not None and result.failure is None:
            result.failure = smallest_like(result.first_failure, smallest)
    finally:
        result.wall_s = time.monotonic() - started
        result.loop_late_ms = session.loop_late_ms()
        result.resources = session.resources
    if result.failure is not None and result.interrupted is None:
        again = session.play(result.failure.call)  # afresh: the verdict kept for the search is not evidence
        result.reproduced = again.failed
        result.failure = Found(result.failure.call, again if again.failed else result.failure.run)
    return result


def without_options(argv: list[str], options: tuple[str, ...], flags: tuple[str, ...] = ()) -> list[str]:
    """``argv`` without these options (each with its value, as ``--seed 3`` or ``--seed=3``) and flags."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif arg not in flags and not arg.startswith(tuple(o + "=" for o in options)):
            out.append(arg)
    return out


def reproduce_command(argv: list[str], seed: int, report_dir: Path) -> str:
    """The command that runs this search again: the same options, this seed, no database, and its reports in a
    folder of their own (``REPORT_DIR/repro-SEED``), so that running it leaves the full run's reports as they are."""
    keep = without_options(argv, ("--seed", "--database", "--workers", "--worker", "--report-dir"),
                           flags=("--no-database",))
    own = report_dir if report_dir.name == f"repro-{seed}" else report_dir / f"repro-{seed}"  # run again: its own
    return shlex.join(["harness", *keep, "--seed", str(seed), "--no-database", "--report-dir", str(own)])


def search_waves(session: HandlerSession, options: FuzzOptions,
                 progress: Callable[[str], None] = lambda text: None) -> FuzzResult:
    """``search`` with ``calls_at_once`` calls in flight: hypothesis draws batches of calls
    (``strategies.waves``, ``BATCH`` times the calls in flight; ``wave_stages``), fed to the one handler as they
    are drawn (``HandlerSession.feed``): that many in flight across batches (a new call starts as one is judged,
    while the next batch is drawn), every call judged, cross-call checks included. A failing call is not shrunk
    with its batch: it is replayed alone first; if it fails alone, it is reduced alone (``reduce``), as a call
    found one at a time is; if it passes alone, the failure needs calls that were in flight beside it, and those
    are cut down to the fewest with which it still fails (``cut_down``)."""
    from harness.fuzz.strategies import waves

    size = options.calls_at_once
    ahead = size + size // 2  # calls fed and not yet judged when the next batch is drawn: room never waits on drawing
    chosen = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    result = FuzzResult(chosen)
    alone: dict[str, FixtureRun] = {}
    together: dict[tuple[str, ...], list[FixtureRun]] = {}
    fed: list[tuple[DrawnCall, Future[FixtureRun]]] = []
    looked = 0  # fed calls before this one were judged and passed
    started = time.monotonic()

    def judged_alone(call: DrawnCall) -> FixtureRun:
        if call.key not in alone:
            alone[call.key] = session.play_alone(call)
            result.replayed += 1
            result.shrink_tries += 1
        return alone[call.key]

    def judged_fresh(calls: list[DrawnCall]) -> list[FixtureRun]:
        key = ("fresh", *(c.key for c in calls))
        if key not in together:
            together[key] = session.play_fresh(calls, size)
            result.replayed += len(calls)
            result.shrink_tries += 1
        return together[key]

    def failed_yet() -> bool:
        nonlocal looked
        while looked < len(fed) and fed[looked][1].done():
            call, verdict = fed[looked]
            if not verdict.cancelled() and verdict.result().failed:
                return True
            fed[looked] = (call, PASSED)  # its run (recordings, timeline) is let go: a search is long
            looked += 1
        return any(v.done() and not v.cancelled() and v.result().failed for _, v in fed[looked:])

    taken: dict[tuple[str, ...], int] = {}  # a batch hypothesis gives again is not fed again

    def one(batch: list[DrawnCall]) -> None:  # ``stage``: the loop's below
        if failed_yet():
            raise CallFailed("a call failed")  # (hypothesis runs the example it failed on again: it fails again)
        drawn_as = tuple(c.key for c in batch)
        if drawn_as in taken:
            return
        first = SIMPLEST_PLAYED if stage.simplest_first and not stage.played else len(batch)
        taken[drawn_as] = min(first, len(batch), stage.calls - stage.played)
        stage.played += taken[drawn_as]
        batch = batch[: taken[drawn_as]]
        if not batch:
            return
        fed.extend(zip(batch, session.feed(batch)))
        while not failed_yet():
            waiting = [v for _, v in fed[looked:] if not v.done()]
            if len(waiting) <= ahead:
                session.note_calls(len(fed) - len(waiting))
                progress(f"fuzz: {len(fed) - len(waiting)} of {options.examples} call(s) judged, {size} at once, "
                         f"none failed ({time.monotonic() - started:.0f} s)")
                return
            wait(waiting, return_when=FIRST_COMPLETED)
        raise CallFailed("a call failed")

    session.start_feed(size)
    found = False
    try:
        for k, stage in enumerate(wave_stages(options, size)):
            test = settings(max_examples=stage.batches, deadline=None, print_blob=False,
                            report_multiple_bugs=False, database=None,
                            phases=[Phase.explicit, Phase.generate],  # a failing call is cut down below, not here
                            suppress_health_check=list(HealthCheck))(
                given(waves(stage.batch, covering=stage.covering, **stage.options))(one))
            hypothesis_seed(chosen + k)(test)()
    except CallFailed:
        found = True
    except KeyboardInterrupt as exc:  # the calls judged so far are kept; a failure among them is not cut down
        result.interrupted = exc
    finally:
        session.end_feed(drop_waiting=found or result.interrupted is not None or sys.exc_info()[0] is not None)
        played = [(c, v.result()) for c, v in fed if v.done() and not v.cancelled()]  # PASSED: None
        for call, _ in played:
            result.statistics.update(call.features())
            result.audio_s += call.audio_ms / 1000
        result.drawn = result.replayed = len(played)
        result.played_s = time.monotonic() - started
    bad = [(c, r) for c, r in played if r is not None and r.failed]
    if result.interrupted is not None:
        result.first_failure = result.failure = Found(*bad[0]) if bad else None
        result.wall_s = time.monotonic() - started
        result.resources = session.resources
        return result
    try:
        if bad:
            result.first_failure = Found(*bad[0])
            for call, run in bad[:ALONE_TRIES]:
                progress(f"fuzz: a call failed with {len(run.beside)} other(s) in flight beside it; replaying it alone")
                by_itself = judged_alone(call)
                if by_itself.failed:
                    result.failure = reduce(Found(call, by_itself), Found(call, by_itself), judged_alone,
                                            options.reduce_limit, progress)
                    break
            else:
                result.alone_passed = True
                call, run = bad[0]
                beside = [c for c, _ in played if c is not call and c.name in run.beside]
                result.failure, result.neighbours = cut_down(call, run, beside, judged_fresh, progress,
                                                             options.reduce_limit)
    finally:
        result.wall_s = time.monotonic() - started
        result.loop_late_ms = session.loop_late_ms()
        result.resources = session.resources
    if result.failure is not None:
        if result.neighbours:
            calls = sorted([result.failure.call, *result.neighbours], key=lambda c: c.scenario.lane)
            again = session.play_fresh(calls)[calls.index(result.failure.call)]
        else:
            again = session.play_alone(result.failure.call)
        result.reproduced = again.failed
        result.failure = Found(result.failure.call, again if again.failed else result.failure.run)
    return result


PASSED: Future[FixtureRun | None] = Future()  # a fed call judged and passed, its run let go
PASSED.set_result(None)


@dataclass
class WaveStage:
    """A part of a search with calls at once: ``calls`` calls, in ``batches`` hypothesis examples of ``batch``."""

    label: str
    calls: int
    batch: int
    batches: int
    options: dict = field(default_factory=dict)
    covering: tuple[str, ...] = ()  # call k has one fault, of kind covering[k % len(covering)]
    simplest_first: bool = False  # hypothesis's first example is its simplest: two calls of it are played, not a batch
    played: int = 0


def wave_stages(options: FuzzOptions, size: int) -> list[WaveStage]:
    """``stages`` in batches: the coverage part as batches of one call per fault kind (each kind twice, as one at
    a time: the first batch hypothesis's simplest calls, each with its fault; the second drawn), then the calls
    drawn freely, ``BATCH`` times the calls in flight to a batch (``MAX_BATCH`` at most). Hypothesis's first
    example of a stage is its simplest (every call the same shortest call): of the free part's first batch, two
    calls are played (the plainest pair at once, which shared state between calls fails at once), not a batch of
    copies."""
    parts = stages(options)
    covering = tuple(p.options["fault_kinds"][0] for p in parts[:-1])
    each = parts[0].examples if covering else 0
    free = parts[-1]
    result = []
    if covering:
        result.append(WaveStage("coverage", each * len(covering), len(covering), each, free.options, covering))
    if free.examples:
        first = min(SIMPLEST_PLAYED, free.examples)
        batch = max(first, min(BATCH * size, MAX_BATCH, free.examples - first))
        result.append(WaveStage(free.label, free.examples, batch, 1 + -(-(free.examples - first) // batch), free.options,
                                simplest_first=True))
    return result


MAX_BATCH = 32  # calls drawn in one hypothesis example at most: with 64 (16 at once) the CPU went into drawing, 44
# calls in 5 minutes; with 32, 172 in two
SIMPLEST_PLAYED = 2  # calls played of hypothesis's first, simplest, example of the free part
ALONE_TRIES = 3  # failing calls of a batch replayed alone, at most, before the failure is taken for a cross-call one
BATCH = 4  # calls drawn per example, in calls in flight (``MAX_BATCH`` at most): fed as drawn, no batch waits for its last call


def cut_down(call: DrawnCall, run: FixtureRun, beside: list[DrawnCall],
             judged_together: Callable[[list[DrawnCall]], list[FixtureRun]],  # each set on a handler of its own
             progress: Callable[[str], None] = lambda text: None, limit: int = 30) -> tuple[Found, list[DrawnCall]]:
    """A call that fails only with others in flight: the fewest of those that were beside it with which, all in
    flight together in the order they were drawn, it still fails a check it failed. Most such failures need
    one neighbour (the one that stalls, the one whose words leak): each is tried alone beside it first, a replay
    of two calls. Failing that, parts are left out as delta debugging does: halves first, down to one call at a
    time, each part kept out while the failure holds (``limit`` tries in all: a long call fed among others had
    30 beside it, and leaving one out at a time took 30 replays of as many calls)."""
    wanted = failed_checks(run)
    order = [*beside, call]
    order.sort(key=lambda c: c.scenario.lane)

    def fails(others: list[DrawnCall]) -> FixtureRun | None:
        calls = [c for c in order if c is call or c in others]
        mine = judged_together(calls)[calls.index(call)]
        return mine if mine.failed and failed_checks(mine) & wanted else None

    others, best = list(beside), Found(call, run)
    again = fails(others)
    if again is None:
        return best, others  # it needed more than the calls beside it: reported as found
    best = Found(call, again)
    tries = 0
    for one in others[:limit]:
        tries += 1
        again = fails([one])
        if again is not None:
            progress("fuzz: the failure needs 1 other call in flight")
            return Found(call, again), [one]
    size = max(1, len(others) // 2)
    while others and tries < limit:
        for start in range(0, len(others), size):
            part = others[start : start + size]
            trial = [c for c in others if c not in part]
            tries += 1
            again = fails(trial)
            if again is not None:
                others, best = trial, Found(call, again)
                progress(f"fuzz: the failure needs {len(others)} other call(s) in flight")
                break
            if tries >= limit:
                break
        else:
            if size == 1:
                break
            size = max(1, size // 2)
    return best, others
