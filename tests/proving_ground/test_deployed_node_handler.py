"""The Node.js handler as deployed, replayed unchanged: ``node_handler/deployed.js`` hard-codes openapi.vito.ai,
api.openai.com (chat and speech) and, through the twilio package, api.twilio.com; it takes its calls at its own
TwiML webhook (signature checked with the twilio package) and ends a goodbye call through Twilio's REST API.
Node 20's fetch and ``ws`` ignore the proxy variables, so it reaches the fakes through the ``--require`` hook
(``steer_hooks/steer.cjs``); the twilio package's client reads ``HTTP_PROXY``. Steered (``--steer``) and called
through its webhook (``--voice``), it passes over the calls the Python twin passes
(tests/proving_ground/test_deployed_handler.py); its variant that also posts to a host nothing fakes fails,
naming the host."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from harness.fakes.services import FakeNetwork, FakeServices
from harness.fixture import bundled_calls, load_call
from harness.judge.verdict import Status
from harness.replay.runs import run_target
from harness.replay.targets import CommandTarget
from proving_ground.mutants import HANDLERS_DIR

NODE_DIR = HANDLERS_DIR / "node_handler"
DEPLOYED = f"node {NODE_DIR / 'deployed.js'} --port {{port}}"
# a goodbye the handler ends through the REST API, a hang-up while the LLM stalls, three turns
CALLS = ("stalled-neighbour-talks", "failure3-hangup-while-llm-generates", "seed-three-turns")

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "twilio").is_dir()
    or not (NODE_DIR / "node_modules" / "ws").is_dir(),
    reason="needs node and `npm ci` in proving_ground/handlers/node_handler")


def _replay(command: str, names: tuple[str, ...], seen: list[FakeServices]) -> list:
    fixtures = [load_call(bundled_calls() / name) for name in names]
    target = CommandTarget(command, path="/media", voice="/voice", ready_timeout=60)
    return asyncio.run(run_target(target, fixtures, pace=None, on_fakes=seen.append,
                                  network=FakeNetwork(tls=True, steer=True, twilio=True)))


@pytest.mark.timeout(240)
def test_the_deployed_node_handler_replays_unchanged_and_passes() -> None:
    seen: list[FakeServices] = []
    runs = _replay(DEPLOYED, CALLS, seen)
    failed = {r.fixture.name: [f"{c.name}: {c.message}" for c in r.checks if c.status == Status.FAILED]
              for r in runs if not r.ok}
    assert not failed, failed
    assert [r.fixture.name for r in runs] == list(CALLS)
    for run in runs:  # every check that is not skipped passed
        assert all(c.status in (Status.PASSED, Status.SKIPPED) for c in run.checks), (run.fixture.name, run.checks)
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
def test_the_deployed_node_handler_that_reaches_an_unfaked_host_fails_naming_it() -> None:
    seen: list[FakeServices] = []
    [run] = _replay("MUTANT=calls-unfaked-host " + DEPLOYED, ("seed-three-turns",), seen)
    [check] = [c for c in run.checks if c.name == "reaches_only_faked_hosts"]
    assert check.status == Status.FAILED, check
    assert check.message.startswith("the handler tried to reach api.elevenlabs.io: not faked, refused"), check.message
    assert seen[0].proxy is not None and seen[0].proxy.refused
    assert {r.host for r in seen[0].proxy.refused} == {"api.elevenlabs.io"}
