"""``harness record`` and ``fakertzr record`` together, proven without the real services: aicall answers the
seed call through both recording proxies (the fake Twilio on one side, a fakertzr as "RTZR" on the other);
the recorded fixture, replayed, must give the same finals, the same checks and turn latencies within 20 ms,
at real time and at x4."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aicall.app import wait_for_calls_to_end
from harness.fixture import load_call
from harness.recorder import aicall_between_recorders, mask_number
from harness.runner import ErrorLog, replay

SEED = Path("fixtures/calls/seed-three-turns")


def verdicts(run) -> dict[str, bool]:
    return {c.name: c.ok for c in run.checks}


@pytest.mark.parametrize("pace", [1.0, 4.0], ids=["real time", "x4"])
async def test_a_call_recorded_through_both_proxies_replays_the_same(tmp_path, pace):
    seed = load_call(SEED)
    async with aicall_between_recorders(tmp_path, "seed-rec") as (fakes, app, url, proxy):
        errors = ErrorLog()
        kwargs = dict(rtzr=fakes.rtzr, llm=fakes.llm, tts=fakes.tts, pace=pace, errors=errors,
                      handler_done=lambda t: wait_for_calls_to_end(app.app, t))
        original = await replay(seed, f"{proxy.ws_url}/twilio/media", **kwargs)
        assert original.ok, original.failures()
        written = await asyncio.wait_for(proxy.recordings.get(), 30)  # once aicall is done with RTZR too
        original_finals = fakes.rtzr.journal.finals()
        doc = json.loads((written / "call.json").read_text())
        assert set(doc["caller"]) == {"hangup_ms"} and doc["caller"]["hangup_ms"] == doc["audio"]["duration_ms"]
        assert doc["audio"]["duration_ms"] > seed.script.duration_ms, "the caller's listening to the end, as silence"
        assert doc["authoring"]["caller"] == "+8210****0000"
        assert len(doc["authoring"]["rtzr_streams"]) == 1 and doc["authoring"]["rtzr_streams"][0]["offset_ms"] == 0.0
        for section in ("llm", "tts", "expect"):  # the seed's own LLM and TTS behaviour, to compare like with like
            if section in seed.script.raw:
                doc[section] = seed.script.raw[section]
        (written / "call.json").write_text(json.dumps(doc, ensure_ascii=False))
        recorded = load_call(written)
        again = await replay(recorded, url, **kwargs)
        assert fakes.rtzr.journal.finals() == original_finals == seed.expect["finals"]
    assert verdicts(again) == verdicts(original) and again.ok, again.failures()
    lat = [(a.speech_end_to_first_audio_ms, b.speech_end_to_first_audio_ms) for a, b in zip(original.turns, again.turns)]
    assert len(lat) == 3 and all(a is not None and b is not None and abs(a - b) <= 20.0 for a, b in lat), lat


def test_caller_numbers_are_masked():
    assert mask_number("+821012345678") == "+8210****5678"
    assert mask_number("01012345678") == "0101***5678"
    assert mask_number("1234") == "****"
