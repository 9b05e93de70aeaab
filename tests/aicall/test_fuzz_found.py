"""Calls ``harness fuzz`` found aicall failing, kept as drawn (``harness.fuzz.strategies.as_call`` makes the same
fixture from the same scenario) and replayed against aicall in-process with the harness's checks."""

from __future__ import annotations

from harness.judge.events import RtzrEnd
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


async def test_speech_seconds_after_an_unanswered_wisp_is_no_stall_the_moment_it_goes_out(tmp_path):
    """``harness fuzz --calls-at-once 8`` (seed 11) and two workers (seed 12) both stopped on this call: the first
    turn's LLM stalls, the caller waits 3 s and talks on. The last speech frame of the first utterance ends 3 ms
    past where its final reaches (the words' end): 20 ms of speech unanswered from the moment that final came, so
    when the next words went out 3 s later aicall took RTZR for stalled at once, reconnected as the second final
    arrived and resent its audio: RTZR gave that final twice and the store kept neither (``finals_persisted``)."""
    call = as_call({**QUIET_CALL, "seed": 16351374, "recognizer": {"epd_time": 0.5, "processing_delay_ms": 79,
                                                                  "partial_delay_ms": 97},
                    "utterances": [SynthUtterance(1550, (590, 472, 226, 199)), SynthUtterance(2177, (246, 364, 412, 526))],
                    "faults": [], "llm": {"sentences": 6, "stall_requests": [0], "token_ms": 35, "first_token_ms": 281},
                    "tts": {"realtime": True, "ms_per_char": 100, "first_chunk_ms": 67}})
    with ErrorLog() as errors:
        run = await run_fixture(call.fixture(tmp_path / call.name), pace=None, errors=errors)
    assert not run.timeline.of(RtzrEnd)[:-1], "one stream: nothing stalled"
    assert run.ok, run.failures()
