"""End-to-end fuzzing: whole generated calls against aicall, with the harness's checks as properties.

Scenarios vary the utterances, a recognizer fault at any point, the caller's hang-up, and the LLM's
and TTS's timing. A failing scenario is written out as a fixture (``harness-report/fuzz-failures/``)
to replay with ``harness run --fixtures harness-report/fuzz-failures`` and add to fixtures/calls/.
Profiles: ``HYPOTHESIS_PROFILE=ci`` (default, bounded) or ``nightly``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aicall.app import create_app
from aicall.config import load_settings
from callaudio.g711 import pcm16_to_ulaw
from fakertzr import FakeRtzrBackend, FakeRtzrServer
from fakertzr.appserver import AppServer
from harness.fake_llm import FakeLlm
from harness.fake_tts import FakeTts
from harness.fixture import load_call, save_call
from harness.runner import ErrorLog, replay
from tests.support.synth import SynthUtterance, synth_call

settings.register_profile("ci", max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("nightly", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FAILURES = Path("harness-report/fuzz-failures")
GENERAL_CHECKS = {"stops_sending_after_hangup", "finals_to_llm_once", "finals_persisted", "recognition_continues",
                  "upstream_closed_after_hangup", "replies_in_order", "no_errors"}

faults = st.one_of(
    st.none(),
    st.builds(lambda code, n: {"type": "close", "code": code, "after_finals": n}, st.sampled_from([1000, 1001, 1011]), st.integers(1, 2)),
    st.builds(lambda at: {"type": "drop", "at_ms": at}, st.integers(300, 6000)),
    st.builds(lambda at: {"type": "stall", "at_ms": at}, st.integers(300, 6000)),
    st.builds(lambda d: {"type": "delay_finals", "delay_ms": d}, st.integers(0, 2000)),
    st.builds(lambda n: {"type": "expire_tokens", "after_finals": n}, st.integers(1, 2)),
)
scenarios = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31),
    "utterances": st.lists(st.builds(SynthUtterance, pause_before_ms=st.integers(600, 1800),
                                     word_ms=st.lists(st.integers(200, 500), min_size=1, max_size=3).map(tuple)),
                           min_size=1, max_size=3),
    "fault": faults,
    "hangup_frac": st.none() | st.floats(0.2, 1.0),
    "llm": st.fixed_dictionaries({"first_token_ms": st.integers(0, 1500), "token_ms": st.integers(0, 50)}),
    "tts": st.fixed_dictionaries({"realtime": st.booleans(), "ms_per_char": st.integers(20, 120)}),
})


def scenario_doc(s: dict) -> tuple[dict, bytes]:
    script = synth_call(s["seed"], s["utterances"])
    doc = {**script.raw, "name": f"fuzz-{s['seed']}", "faults": [s["fault"]] if s["fault"] else [],
           "llm": s["llm"], "tts": s["tts"], "description": f"found by contract_tests/fuzz: {s}"}
    if s["hangup_frac"] is not None:
        doc["caller"] = {"hangup_ms": round(s["hangup_frac"] * script.duration_ms)}
    return doc, pcm16_to_ulaw(script.audio)


async def replay_scenario(s: dict, tmp: Path):
    doc, ulaw = scenario_doc(s)
    fixture = load_call(save_call(doc, ulaw, tmp / doc["name"]))
    rtzr, llm, tts = FakeRtzrBackend(), FakeLlm(), FakeTts()
    async with FakeRtzrServer(rtzr) as r, llm.server() as l, tts.server() as t:
        env = {"RTZR_CLIENT_ID": rtzr.config.client_id, "RTZR_CLIENT_SECRET": rtzr.config.client_secret,
               "RTZR_API_BASE": r.base_url, "OPENAI_BASE_URL": f"{l.base_url}/v1", "OPENAI_API_KEY": "k",
               "TTS_BASE_URL": f"{t.base_url}/v1", "AICALL_DB": str(tmp / "calls.db")}
        with ErrorLog() as errors:
            async with AppServer(create_app(load_settings(env, env_file=None))) as app:
                return await replay(fixture, f"{app.ws_url}/twilio/media", rtzr=rtzr, llm=llm, tts=tts,
                                    pace=8.0, errors=errors), doc, ulaw


@given(scenarios)
def test_generated_calls_pass_every_general_check(tmp_path_factory, scenario):  # noqa: D103
    import asyncio

    tmp = tmp_path_factory.mktemp("fuzz")
    run, doc, ulaw = asyncio.run(replay_scenario(scenario, tmp))
    failed = [c for c in run.checks if not c.ok and c.name in GENERAL_CHECKS]
    if failed:
        kept = save_call(doc, ulaw, FAILURES / doc["name"])
        raise AssertionError(f"{'; '.join(f'{c.name}: {c.message}' for c in failed)}\nscenario kept in {kept}")
