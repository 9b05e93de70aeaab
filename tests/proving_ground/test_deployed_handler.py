"""A handler replayed unchanged: ``deployed_handler`` hard-codes openapi.vito.ai, api.openai.com and (through
the twilio SDK) api.twilio.com, speaks through one OpenAI client, takes its calls at its own TwiML webhook and
ends a goodbye call through Twilio's REST API. Steered (``--steer``) and called through its webhook
(``--voice``), it passes as the correct handlers do; its variant that also posts to a host nothing fakes
fails, naming the host. The production-style handler it builds on, over TLS, lets a cut reply's request go
(it did not, before its socket tracking learned that https wraps the socket).

Its Node.js twin, ``node_handler/deployed.js`` (the twilio npm package for the webhook and the hang-up), is held
to the same: Node 20's fetch and ``ws`` ignore the proxy variables, so it reaches the fakes through the
``--require`` hook (``steer_hooks/steer.cjs``); the twilio package's client reads ``HTTP_PROXY``."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from harness.fakes.services import FakeNetwork, FakeServices
from harness.fixture import bundled_calls, load_call
from harness.judge.verdict import Status
from harness.replay.runs import run_target
from harness.replay.targets import CommandTarget
from proving_ground.mutants import HANDLERS_DIR

DEPLOYED = f"{sys.executable} {HANDLERS_DIR / 'deployed_handler.py'} --port {{port}}"
NODE_DIR = HANDLERS_DIR / "node_handler"
NODE_READY = shutil.which("node") is not None and all((NODE_DIR / "node_modules" / m).is_dir() for m in ("ws", "twilio"))
DEPLOYED_HANDLERS = [
    pytest.param(DEPLOYED, id="python"),
    pytest.param(f"node {NODE_DIR / 'deployed.js'} --port {{port}}", id="node", marks=pytest.mark.skipif(
        not NODE_READY, reason="needs node and `npm ci` in proving_ground/handlers/node_handler")),
]
# a goodbye the handler ends through the REST API, a hang-up while the LLM stalls (its cut over TLS), three turns
CALLS = ("stalled-neighbour-talks", "failure3-hangup-while-llm-generates", "seed-three-turns")


def _replay(command: str, names: tuple[str | Path, ...], seen: list[FakeServices], place: str | None = None) -> list:
    fixtures = [load_call(bundled_calls() / name) for name in names]
    target = CommandTarget(command, path="/media", voice="/voice", place=place, ready_timeout=60)
    return asyncio.run(run_target(target, fixtures, pace=None, on_fakes=seen.append,
                                  network=FakeNetwork(tls=True, steer=True, twilio=True)))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("deployed", DEPLOYED_HANDLERS)
def test_the_deployed_handler_replays_unchanged_and_passes(deployed: str) -> None:
    seen: list[FakeServices] = []
    runs = _replay(deployed, CALLS, seen)
    failed = {r.fixture.name: [f"{c.name}: {c.message}" for c in r.checks if c.status == Status.FAILED]
              for r in runs if not r.ok}
    assert not failed, failed
    assert [r.fixture.name for r in runs] == list(CALLS)
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
@pytest.mark.parametrize("deployed", DEPLOYED_HANDLERS)
def test_a_handler_that_reaches_an_unfaked_host_fails_naming_it(deployed: str) -> None:
    seen: list[FakeServices] = []
    [run] = _replay("MUTANT=calls-unfaked-host " + deployed, ("seed-three-turns",), seen)
    [check] = [c for c in run.checks if c.name == "reaches_only_faked_hosts"]
    assert check.status == Status.FAILED and check.message.startswith("the handler tried to reach api.elevenlabs.io: not faked, refused")
    assert [r.host for r in seen[0].proxy.refused] and {r.host for r in seen[0].proxy.refused} == {"api.elevenlabs.io"}


def _placed(tmp_path: Path) -> Path:
    """The seed call as one the handler places (``"start": "outbound"``): the same audio, its own name."""
    directory = tmp_path / "seed-three-turns-placed"
    shutil.copytree(bundled_calls() / "seed-three-turns", directory)
    doc = json.loads((directory / "call.json").read_text(encoding="utf-8"))
    doc.update(name=directory.name, start="outbound")
    (directory / "call.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return directory


@pytest.mark.timeout(240)
def test_the_deployed_handler_places_a_call_and_hands_a_goodbye_back_to_twilio(tmp_path: Path) -> None:
    """``PLACE_WITH=url HANG_UP_WITH=twiml``: the call it places (``POST /call``; Twilio fetches its ``/voice``
    when the caller answers) and the goodbye it redirects to a farewell (``update(twiml=<Say>..<Hangup/>)``) both
    pass, the redirect judged as the handler's end of the call, not the caller's hang-up."""
    seen: list[FakeServices] = []
    calls = (_placed(tmp_path), "stalled-neighbour-talks")
    placed, goodbye = _replay("PLACE_WITH=url HANG_UP_WITH=twiml " + DEPLOYED, calls, seen, place="/call")
    failed = {r.fixture.name: r.failures() for r in (placed, goodbye) if not r.ok}
    assert not failed, failed
    [fakes] = seen
    call = fakes.twilio.calls[placed.call_sid]
    assert call.direction == "outbound-api" and [s for s, _ in call.history] == ["queued", "ringing", "in-progress",
                                                                                  "completed"]
    [create] = fakes.twilio.creates()
    assert create.status == 201 and create.form["Url"].endswith("/voice") and create.form["To"] == call.to
    assert goodbye.record is not None and goodbye.record.hung_up_how == "redirect" and not goodbye.record.ended_by_api
    assert goodbye.record.redirect is not None and goodbye.record.redirect.outcome == "hangup"
    assert goodbye.record.redirect.said == ("전화 주셔서 감사합니다. 안녕히 계세요.",)
    assert fakes.twilio.calls[goodbye.call_sid].status == "completed"
    assert [c for c in fakes.twilio.calls.values() if c.ended_by == "api"] == []  # nothing ended through Status
