"""Calls ``harness fuzz`` found aicall failing, kept as drawn (``harness.fuzz.strategies.as_call`` makes the same
fixture from the same scenario) and replayed against aicall in-process with the harness's checks."""

from __future__ import annotations

from harness.replay.runner import ErrorLog, run_fixture
from harness.fuzz.strategies import as_call
from harness.fuzz.synthetic import SynthUtterance

QUIET_CALL = {"recognizer": {}, "partial_every_ms": None, "hangup": None, "vanish": False, "dtmf": [],
              "barge_in": False, "llm": {"first_token_ms": 0, "token_ms": 0, "sentences": 1},
              "tts": {"realtime": False, "ms_per_char": 20, "first_chunk_ms": 0}}


async def test_a_stall_after_an_unreadable_message_is_still_a_stall(tmp_path):
    """RTZR sends a message that is not a result, then stalls mid-word: aicall took the bad message for an
    answer to all the speech sent before it, and never found the stall (the caller was not heard again)."""
    call = as_call({**QUIET_CALL, "seed": 0, "utterances": [SynthUtterance(400, (150, 217))],
                    "faults": [{"type": "stall", "at_ms": 700}, {"type": "malformed", "at_ms": 0}]})
    with ErrorLog() as errors:
        run = await run_fixture(call.fixture(tmp_path / call.name), pace=None, errors=errors)
    assert run.ok, run.failures()
    assert [c.status for c in run.checks if c.name == "recognition_continues"] == ["passed"]
