"""pytest fixtures for replaying calls against your own handler: ``fake_llm``, ``fake_tts``, ``replay``.

    async def test_my_handler(fake_rtzr, fake_llm, fake_tts, replay):
        handler = await start_my_handler(rtzr=fake_rtzr.base_url, llm=fake_llm.base_url, tts=fake_tts.base_url)
        run = await replay("fixtures/calls/failure2-recognizer-closes-1000", handler.media_url)
        assert run.ok, run.failures()

Whole calls drawn by hypothesis (``harness.fuzz.strategies.calls``) replay the same way::

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(call=calls(max_faults=1))
    async def test_my_handler_takes_any_call(my_handler, replay, call):
        run = await replay(call, my_handler.media_url)
        assert run.ok, run.failures()

(every replay starts from clean fakes, so the function-scoped fixtures serve every example.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Generic, Protocol, TypeVar

import pytest
import pytest_asyncio

from fakertzr.pytest_plugin import FakeRtzr

from harness.fakes.llm import FakeLlm
from harness.fakes.tts import FakeTts
from harness.fixture import load_call, resolve_fixture
from harness.fuzz.strategies import DrawnCall
from harness.replay.runner import ErrorLog, FixtureRun
from harness.replay.runner import replay as replay_fixture


F = TypeVar("F", FakeLlm, FakeTts)


class ServedFake(Generic[F]):
    """A running fake: ``base_url`` is the OpenAI-style base (``.../v1``); ``fake`` the fake itself (its requests,
    its config), whose attributes are also the served fake's."""

    def __init__(self, fake: F, root_url: str) -> None:
        self.fake: F = fake
        self.base_url = f"{root_url}/v1"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)


class Replay(Protocol):
    """The ``replay`` fixture: ``await replay(fixture, media_ws_url)`` plays a call into your handler and judges it."""

    async def __call__(self, fixture: str | Path | DrawnCall, url: str, *, pace: float | None = None,
                       headers: dict[str, str] | None = None, errors: ErrorLog | None = None) -> FixtureRun: ...


@pytest_asyncio.fixture
async def fake_llm() -> AsyncIterator[ServedFake[FakeLlm]]:
    """A fake OpenAI-compatible LLM on a free port (no delays unless a fixture says so)."""
    fake = FakeLlm()
    async with fake.server() as server:
        yield ServedFake(fake, server.base_url)


@pytest_asyncio.fixture
async def fake_tts() -> AsyncIterator[ServedFake[FakeTts]]:
    """A fake OpenAI-compatible TTS on a free port."""
    fake = FakeTts()
    async with fake.server() as server:
        yield ServedFake(fake, server.base_url)


@pytest_asyncio.fixture
async def replay(fake_rtzr: FakeRtzr, fake_llm: ServedFake[FakeLlm], fake_tts: ServedFake[FakeTts],
                 tmp_path_factory: pytest.TempPathFactory) -> Replay:
    """``await replay(fixture, media_ws_url, pace=None)``: play a fixture (a directory, a bundled call's
    name such as ``"failure2-recognizer-closes-1000"``, or a call drawn by ``harness.fuzz.strategies.calls``)
    into your handler and judge it.

    For ``no_errors`` on an in-process handler, run it inside ``with ErrorLog() as errors`` and pass
    ``errors=errors`` (its logging records at ERROR and unretrieved task exceptions); otherwise that
    check is skipped."""

    async def run(fixture: str | Path | DrawnCall, url: str, *, pace: float | None = None,
                  headers: dict[str, str] | None = None, errors: ErrorLog | None = None) -> FixtureRun:
        if isinstance(fixture, DrawnCall):
            call = fixture.fixture(tmp_path_factory.mktemp("drawn") / fixture.name)
        else:
            call = load_call(resolve_fixture(fixture))
        return await replay_fixture(call, url, rtzr=fake_rtzr.backend, llm=fake_llm.fake, tts=fake_tts.fake,
                                    pace=pace, headers=headers, errors=errors)

    return run
