"""The report's four failure modes: each fixture replayed against aicall passes, and against the
report's original handler (bugs put back) fails with a message naming the failure mode."""

from __future__ import annotations

import warnings

import pytest

from aicall.app import create_app
from aicall.config import load_settings
from fakertzr import FakeRtzrBackend, FakeRtzrServer
from fakertzr.appserver import AppServer
from harness.fakes.llm import FakeLlm
from harness.fakes.tts import FakeTts
from harness.fixture import load_call
from harness.replay.runner import ErrorLog, replay

from .legacy_handler import create_legacy_app

MODES = {
    "failure1-credentials-refused": ("failure 1: credentials missing or refused",
                                     {"no_errors", "expectations", "refuses_without_credentials"}),
    "failure2-recognizer-closes-1000": ("failure 2: recognizer closes 1000 after the first final", {"recognition_continues"}),
    "failure3-hangup-while-llm-generates": ("failure 3: hang-up while the reply is generated", {"upstream_closed_after_hangup"}),
    "failure4-hangup-while-tts-streams": ("failure 4: TTS sent after the call closed", {"no_errors", "stops_sending_after_hangup"}),
}


async def run_against(handler: str, fixture_name: str, tmp_path):
    rtzr, llm, tts = FakeRtzrBackend(), FakeLlm(), FakeTts()
    async with FakeRtzrServer(rtzr) as r, llm.server() as l, tts.server() as t:
        env = {"RTZR_CLIENT_ID": rtzr.config.client_id, "RTZR_CLIENT_SECRET": rtzr.config.client_secret,
               "RTZR_API_BASE": r.base_url, "OPENAI_BASE_URL": f"{l.base_url}/v1", "OPENAI_API_KEY": "k",
               "TTS_BASE_URL": f"{t.base_url}/v1", "AICALL_DB": str(tmp_path / "calls.db")}
        if handler == "legacy" and fixture_name.startswith("failure1"):
            env.pop("RTZR_CLIENT_ID")  # the report's deployment: the variable never reached the process
        app = create_app(load_settings(env, env_file=None)) if handler == "aicall" else create_legacy_app(env)
        with ErrorLog() as errors, warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            async with AppServer(app) as server:
                return await replay(load_call(f"fixtures/calls/{fixture_name}"), f"{server.ws_url}/twilio/media",
                                    rtzr=rtzr, llm=llm, tts=tts, pace=4.0, errors=errors)


@pytest.mark.parametrize("fixture_name", sorted(MODES))
async def test_aicall_survives(fixture_name, tmp_path):
    run = await run_against("aicall", fixture_name, tmp_path)
    assert run.ok, f"{MODES[fixture_name][0]} is not guarded by aicall:\n{run.failures()}"


@pytest.mark.parametrize("fixture_name", sorted(MODES))
async def test_the_guard_catches_the_reports_bug(fixture_name, tmp_path):
    mode, guards = MODES[fixture_name]
    run = await run_against("legacy", fixture_name, tmp_path)
    failed = {c.name for c in run.checks if not c.ok}
    assert failed & guards, f"{mode}: the report's handler passed the guard {sorted(guards)} (a guard that cannot fail)"
