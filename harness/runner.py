"""Replay one fixture against aicall, in-process, with every fake started for it alone."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

from aicall.app import create_app, wait_for_calls_to_end
from aicall.config import load_settings
from aicall.store import CallStore
from fakertzr import FakeRtzrBackend, FakeRtzrServer
from fakertzr.appserver import AppServer

from .checks import CheckContext, CheckResult, run_checks
from .fake_llm import FakeLlm, FakeLlmConfig, LlmRequest, default_reply
from .fake_tts import FakeTts, FakeTtsConfig
from .fixture import CallFixture
from .metrics import TurnMetrics, turn_metrics
from .timeline import CallTimeline, build_timeline
from .twilio_player import TwilioPlayer

SETTLE_S = 10.0


@dataclass
class FixtureRun:
    fixture: CallFixture
    checks: list[CheckResult]
    turns: list[TurnMetrics]
    timeline: CallTimeline
    wall_s: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> str:
        """The failed checks, one per line, for assertion messages."""
        return "\n".join(f"{c.name}: {c.message}" for c in self.checks if not c.ok)


class ErrorLog(logging.Handler):
    """Errors of a whole harness run: log records at ERROR and exceptions no task retrieved.

    Install it once (``with ErrorLog() as errors``); each fixture keeps the lines tagged with its
    call id, and untagged ones (unhandled exceptions, aiohttp) from while it ran.
    """

    LOGGERS = ("aicall", "aiohttp.server", "asyncio")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        detail = f" ({record.exc_info[1]!r})" if record.exc_info else ""
        self.records.append((time.monotonic(), record.getMessage() + detail))

    def _unhandled(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        self.records.append((time.monotonic(), f"unhandled: {context.get('message')} {context.get('exception')!r}"))

    def __enter__(self) -> "ErrorLog":
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        self._loop = asyncio.get_running_loop()
        self._previous = self._loop.get_exception_handler()
        self._loop.set_exception_handler(self._unhandled)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.set_exception_handler(self._previous)
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def add(self, line: str) -> None:
        """An error line from outside this process (a handler launched with --cmd)."""
        self.records.append((time.monotonic(), line))

    def for_call(self, call_sid: str, start: float, end: float) -> list[str]:
        return [m for t, m in self.records if f"call={call_sid}" in m or ("call=" not in m and start <= t <= end)]


def _llm_config(fixture: CallFixture, time_scale: float) -> FakeLlmConfig:
    spec = fixture.llm
    replies = spec.get("replies")
    answered = itertools.count()

    def reply(request: LlmRequest) -> str:
        if not replies:
            return default_reply(request)
        text = replies[min(next(answered), len(replies) - 1)]
        return text.replace("{user}", request.last_user)

    return FakeLlmConfig(reply=reply, first_token_ms=spec.get("first_token_ms", 0.0), token_ms=spec.get("token_ms", 0.0),
                         time_scale=time_scale, fail_requests={int(k): v for k, v in spec.get("fail_requests", {}).items()},
                         stall_requests=set(spec.get("stall_requests", ())))


def _tts_config(fixture: CallFixture, time_scale: float) -> FakeTtsConfig:
    spec = fixture.tts
    return FakeTtsConfig(ms_per_char=spec.get("ms_per_char", 60.0), first_chunk_ms=spec.get("first_chunk_ms", 0.0),
                         realtime=spec.get("realtime", False), time_scale=time_scale)


def call_sid_for(fixture: CallFixture) -> str:
    """A Twilio-shaped call SID unique to the fixture, so its log lines can be told apart."""
    return "CA" + hashlib.sha1(fixture.name.encode()).hexdigest()[:32]


def configure_fakes(fixture: CallFixture, rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts, time_scale: float) -> None:
    """Make the fakes play this fixture: its script and faults, its LLM and TTS behaviour, one time_scale."""
    rtzr.reset()
    rtzr.clear_scripts()
    rtzr.update_config({"time_scale": time_scale})
    rtzr.load_script(fixture.script)
    llm.config = _llm_config(fixture, time_scale)
    tts.config = _tts_config(fixture, time_scale)
    llm.requests.clear()
    tts.requests.clear()


async def replay(fixture: CallFixture, url: str, *, rtzr: FakeRtzrBackend, llm: FakeLlm, tts: FakeTts,
                 pace: float | None = None, errors: ErrorLog | None = None, store_lines=None,
                 headers: dict[str, str] | None = None,
                 handler_done: Callable[[float], Awaitable[bool]] | None = None) -> FixtureRun:
    """Replay ``fixture`` against the Twilio Media Streams handler at ``url`` and judge it.

    The handler must already use these fakes; ``configure_fakes`` is called here. ``store_lines``
    (a function of the call SID returning the caller lines stored) enables the persistence check.
    ``handler_done(timeout)``, when the handler can say so, waits until it has let go of the call;
    otherwise the call is judged once the fakes' sockets and requests are all closed.
    """
    time_scale = 0.0 if pace is None else 1.0 / pace
    configure_fakes(fixture, rtzr, llm, tts, time_scale)
    started = time.monotonic()
    call_sid = call_sid_for(fixture)
    async with aiohttp.ClientSession() as session:
        player = TwilioPlayer(session, url, fixture, pace=pace, call_sid=call_sid, headers=headers)
        record = await player.run()
    if handler_done is not None and not await handler_done(SETTLE_S):  # it may reconnect to hear the last words
        if errors is not None:
            errors.add(f"call={call_sid} harness: the handler still held the call {SETTLE_S:g} s after it ended")
    try:  # the handler has let go of the call: give the fakes a moment to see every close
        await rtzr.wait_for(lambda j: all(c.closed for c in j.connections), SETTLE_S)  # sockets, not just streams
        await llm.wait_for(lambda f: all(r.completed or r.abandoned or r.status != 200 for r in f.requests), SETTLE_S)
        await tts.wait_for(lambda f: all(r.completed or r.abandoned for r in f.requests), SETTLE_S)
    except asyncio.TimeoutError:
        pass  # the checks will say what stayed open
    timeline = build_timeline(fixture, record, rtzr.journal, llm, tts)
    ctx = CheckContext(
        timeline=timeline, expect=fixture.expect,
        stored_caller_lines=store_lines(call_sid) if store_lines else None,
        errors_logged=errors.for_call(call_sid, started, time.monotonic()) if errors else [],
        call_refused_allowed=bool(fixture.expect.get("call_refused")), audio_plays=pace is not None,
    )
    return FixtureRun(fixture, run_checks(ctx), turn_metrics(timeline), timeline, time.monotonic() - started)


async def run_fixture(fixture: CallFixture, *, pace: float | None, workdir: Path, errors: ErrorLog) -> FixtureRun:
    """Replay ``fixture`` against aicall in-process, with fresh fakes, and judge the result."""
    rtzr, llm, tts = FakeRtzrBackend(), FakeLlm(), FakeTts()
    store = CallStore(workdir / f"{fixture.name}.db")

    def caller_lines(call_sid: str) -> list[str]:
        stored = store.call(call_sid)
        return [line.text for line in stored[1] if line.role == "caller"] if stored else []

    try:
        async with FakeRtzrServer(rtzr) as r, llm.server() as l, tts.server() as t:
            env = {"RTZR_CLIENT_ID": rtzr.config.client_id, "RTZR_CLIENT_SECRET": rtzr.config.client_secret,
                   "RTZR_API_BASE": r.base_url, "OPENAI_BASE_URL": f"{l.base_url}/v1", "OPENAI_API_KEY": "harness",
                   "TTS_BASE_URL": f"{t.base_url}/v1"}
            async with AppServer(create_app(load_settings(env, env_file=None), store)) as app:
                return await replay(fixture, f"{app.ws_url}/twilio/media", rtzr=rtzr, llm=llm, tts=tts, pace=pace,
                                    errors=errors, store_lines=caller_lines,
                                    handler_done=lambda timeout: wait_for_calls_to_end(app.app, timeout))
    finally:
        store.close()
