"""End-to-end fuzzing: whole generated calls against aicall, with the harness's checks as properties.

Each call is drawn by the package's public strategies (``harness.fuzz.strategies.calls``, what ``harness
fuzz`` draws from too: no private copy here), becomes a fixture, and is replayed by the harness at 8x
pace against aicall in-process with fakertzr, the fake LLM and the fake TTS. Every general check must
pass, and the call's own expectations (a refused call when credentials are refused). A failing call
is written out (``harness-report/fuzz-failures/``) to replay with
``harness run --fixtures harness-report/fuzz-failures`` and to add to ``fixtures/calls/``.

How many calls: ``HYPOTHESIS_PROFILE`` ci (default, 40), nightly (400), dev (4).
``--hypothesis-show-statistics`` shows what the calls went through (faults fired, barge-ins, ...).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import event, given

from harness.replay.runner import ErrorLog, FixtureRun, run_fixture
from harness.fuzz.strategies import DrawnCall, calls
from tests.support.budget import examples, scaled

FAILURES = Path("harness-report/fuzz-failures")
PACE = 8.0
CALLS, NIGHTLY_CALLS = 40, 400


async def replay_call(call: DrawnCall, tmp: Path) -> FixtureRun:
    fixture = call.fixture(tmp / call.name)
    with ErrorLog() as errors:
        return await run_fixture(fixture, pace=PACE, workdir=tmp, errors=errors)


def observe(run: FixtureRun) -> None:
    """Say what the call went through, for ``--hypothesis-show-statistics``."""
    timeline = run.timeline
    ends = {e.detail.get("how") for e in timeline.of("rtzr_end")} - {None}
    for how in sorted(ends):
        event(f"an RTZR stream ended: {how}")
    event(f"RTZR connections: {bucket(len({e.detail['connection'] for e in timeline.of('rtzr_end')}))}")
    event(f"LLM requests: {bucket(len(timeline.of('llm_request')))}")
    event("playback cleared (barge-in)" if timeline.of("clear") else "playback never cleared")
    event("ended by the handler (refused)" if any(e.detail.get("by_handler") for e in timeline.of("closed"))
          else "ended by the caller")


def bucket(n: int) -> str:
    return str(n) if n < 3 else "3 or more"


@pytest.mark.timeout(60 + 20 * scaled(CALLS, nightly=NIGHTLY_CALLS))  # a call takes 0.1-10 s
@examples(CALLS, nightly=NIGHTLY_CALLS)
@given(calls())
def test_generated_calls_pass_every_check(tmp_path_factory, call):  # noqa: D103
    tmp = tmp_path_factory.mktemp("fuzz")
    run = asyncio.run(replay_call(call, tmp))
    observe(run)
    if not run.ok:  # every harness check, the call's expectations included
        kept = call.save(FAILURES / call.name)
        raise AssertionError(f"{run.failures()}\ncall kept in {kept}")
