"""Locust users that are Twilio callers: load spread over as many machines as Locust has workers.

Each user is the harness's fake Twilio (``TwilioPlayer``) playing fixtures call after call against the
handler at Locust's ``--host`` (its Media Streams URL, ws:// or wss://). Every turn goes into Locust's
statistics as a ``turn`` request (its latency: the caller's speech end to the first bot audio; a turn not
answered within 5 s is a failure), every call as a ``call`` request (its length; a refused or dropped call
is a failure). Locust spreads the users; nothing here does.

    locust -f "$(harness locustfile)" --host ws://HANDLER:8080/twilio/media --fixture seed-three-turns
    locust -f "$(harness locustfile)" --master ...   and   locust -f "$(harness locustfile)" --worker --master-host M

The handler must be pointed at fakes that know the fixtures' scripts (``fakertzr serve --workers N --script
DIR ...`` and ``harness fakes`` for the LLM and TTS, on any host).

Locust runs users as gevent greenlets; the player is asyncio. One asyncio loop per Locust process runs in a
greenlet of its own (gevent's patched selector lets it cooperate), and each user waits for its call there.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import gevent
from locust import User, constant, events, task

from harness.errors import HarnessError
from harness.fakes.twilio_player import TwilioPlayer
from harness.fixture import CallFixture, load_call, resolve_fixture
from harness.load.capacity import check_loadable
from harness.load.stats import ANSWER_WAIT_S, turn_outcomes

_loop: asyncio.AbstractEventLoop | None = None


def shared_loop() -> asyncio.AbstractEventLoop:
    """This process's asyncio loop, running in its own greenlet."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        gevent.spawn(_loop.run_forever)
    return _loop


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--fixture", default="seed-three-turns", include_in_web_ui=True,
                        help="clean calls to play, comma-separated names of bundled fixtures or directories")


_fixtures: dict[str, list[CallFixture]] = {}


def fixtures_for(spec: str) -> list[CallFixture]:
    if spec not in _fixtures:
        loaded = [load_call(resolve_fixture(name.strip())) for name in spec.split(",") if name.strip()]
        for fixture in loaded:
            check_loadable(fixture)
        if not loaded:
            raise HarnessError("--fixture: no fixture named")
        _fixtures[spec] = loaded
    return _fixtures[spec]


class TwilioCaller(User):
    """One caller: fixtures played back to back against ``host``."""

    wait_time = constant(0)

    def on_start(self) -> None:
        if not self.host or not self.host.startswith(("ws://", "wss://")):
            raise HarnessError(f"--host must be the handler's Media Streams URL (ws:// or wss://), got {self.host!r}")
        self._fixtures = itertools.cycle(fixtures_for(self.environment.parsed_options.fixture))

    @task
    def call(self) -> None:
        fixture = next(self._fixtures)
        started = time.monotonic()
        future = asyncio.run_coroutine_threadsafe(play(self.host, fixture), shared_loop())
        player, problem = future.result()  # a gevent-cooperative wait: other callers run meanwhile
        fire = self.environment.events.request.fire
        ended = time.monotonic()
        for i, outcome in enumerate(turn_outcomes(fixture, player.record, ended, final=True)):
            if outcome is None:
                continue  # never spoken: the call ended first
            answered = outcome.latency_ms is not None
            fire(request_type="turn", name=fixture.name, response_length=0,
                 response_time=outcome.latency_ms if answered else ANSWER_WAIT_S * 1000,
                 exception=None if answered else HarnessError(f"turn {i + 1} not answered within {ANSWER_WAIT_S:g} s"),
                 context={"call_sid": player.call_sid})
        fire(request_type="call", name=fixture.name, response_time=(ended - started) * 1000, response_length=0,
             exception=HarnessError(problem) if problem else None, context={"call_sid": player.call_sid})


async def play(url: str, fixture: CallFixture) -> tuple[TwilioPlayer, str | None]:
    """One call in the shared loop: the player and why it failed (None: it did not)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        player = TwilioPlayer(session, url, fixture, pace=1.0)
        try:
            record = await player.run()
        except HarnessError as exc:
            return player, str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed call is a statistic, not the end of the user
            return player, f"{type(exc).__name__}: {exc or '(no message)'}"
    if record.closed_by_handler:
        return player, "the handler ended the call before the caller hung up"
    return player, None
