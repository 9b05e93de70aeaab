"""A handler replayed unchanged: ``deployed_handler`` hard-codes openapi.vito.ai, api.openai.com and (through
the twilio SDK) api.twilio.com, speaks through one OpenAI client, takes its calls at its own TwiML webhook and
ends a goodbye call through Twilio's REST API. Steered (``--steer``) and called through its webhook
(``--voice``), it passes as the correct handlers do; its variant that also posts to a host nothing fakes
fails, naming the host. The production-style handler it builds on, over TLS, lets a cut reply's request go
(it did not, before its socket tracking learned that https wraps the socket)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from harness.fakes.services import FakeNetwork, FakeServices
from harness.fixture import bundled_calls, load_call
from harness.judge.verdict import Status
from harness.replay.runs import run_target
from harness.replay.targets import CommandTarget
from proving_ground.mutants import HANDLERS_DIR

DEPLOYED = f"{sys.executable} {HANDLERS_DIR / 'deployed_handler.py'} --port {{port}}"
# a goodbye the handler ends through the REST API, a hang-up while the LLM stalls (its cut over TLS), three turns
CALLS = ("stalled-neighbour-talks", "failure3-hangup-while-llm-generates", "seed-three-turns")


def _replay(command: str, names: tuple[str, ...], seen: list[FakeServices]) -> list:
    fixtures = [load_call(bundled_calls() / name) for name in names]
    target = CommandTarget(command, path="/media", voice="/voice", ready_timeout=60)
    return asyncio.run(run_target(target, fixtures, pace=None, on_fakes=seen.append,
                                  network=FakeNetwork(tls=True, steer=True, twilio=True)))


@pytest.mark.timeout(240)
def test_the_deployed_handler_replays_unchanged_and_passes() -> None:
    seen: list[FakeServices] = []
    runs = _replay(DEPLOYED, CALLS, seen)
    failed = {r.fixture.name: [f"{c.name}: {c.message}" for c in r.checks if c.status == Status.FAILED]
              for r in runs if not r.ok}
    assert not failed, failed
    [fakes] = seen
    assert fakes.proxy is not None and fakes.proxy.refused == []
    assert {s.host for s in fakes.proxy.steered} >= {"openapi.vito.ai", "api.openai.com", "api.twilio.com"}
    assert all(any(c.name == "reaches_only_faked_hosts" and c.status == Status.PASSED for c in r.checks) for r in runs)
    assert fakes.tts.requests and all(r.status == 200 for r in fakes.tts.requests)  # speech asked at api.openai.com
    goodbye = next(r for r in runs if r.fixture.name == "stalled-neighbour-talks")
    assert goodbye.record is not None and goodbye.record.ended_by_api  # it ended the call through the REST API ...
    ended = [c for c in fakes.twilio.calls.values() if c.ended_by == "api"]
    assert [c.sid for c in ended] == [goodbye.call_sid]  # ... that call alone, by its SID


@pytest.mark.timeout(120)
def test_a_handler_that_reaches_an_unfaked_host_fails_naming_it() -> None:
    seen: list[FakeServices] = []
    [run] = _replay("MUTANT=calls-unfaked-host " + DEPLOYED, ("seed-three-turns",), seen)
    [check] = [c for c in run.checks if c.name == "reaches_only_faked_hosts"]
    assert check.status == Status.FAILED and check.message.startswith("the handler tried to reach api.elevenlabs.io: not faked, refused")
    assert [r.host for r in seen[0].proxy.refused] and {r.host for r in seen[0].proxy.refused} == {"api.elevenlabs.io"}
