"""A drawn call is a ``Scenario`` of small frozen dataclasses: it gives the fixture's faults (revoked credentials
``times: "unlimited"``), reads as the fixture it is (``describe``), and goes through the fixture writer and back
unchanged; ``calls()`` names its options."""

from __future__ import annotations

import inspect
import json
from dataclasses import FrozenInstanceError, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakertzr.faults import UNLIMITED, fault_from_spec
from harness.fixture import load_call
from harness.fuzz.scenario import (
    AuthFailure,
    Close,
    DelayFinals,
    Hangup,
    KeyPress,
    Llm,
    NoCredentials,
    Reaction,
    Recognizer,
    RejectHandshake,
    RevokedCredentials,
    Scenario,
    Stall,
    Tts,
)
from harness.fuzz.strategies import CREDENTIALS, TAIL_MS, as_call, calls, scenarios
from harness.fuzz.synthetic import SynthUtterance

SAID = (SynthUtterance(400, (150, 217)), SynthUtterance(1200, (300,)))
BUSY = Scenario(seed=7, utterances=SAID, recognizer=Recognizer(epd_time=0.8, processing_delay_ms=79),
                partial_every_ms=300, faults=(Close(code=1011, at_ms=900), RevokedCredentials()),
                hangup=Hangup(after_turns=2), vanish=True, dtmf=(KeyPress(1000, "5"),),
                llm=Llm(281, 35, 2, fail_requests=((1, 429),), stall_requests=(0,)), tts=Tts(True, 100, 67),
                reacts=(Reaction("bot_ends", 250),))
PLAIN = Scenario(seed=3, utterances=SAID, faults=(Stall(after_finals=1), DelayFinals(400, 2)),
                 hangup=Hangup(at_ms=2000), dtmf=(KeyPress(1000, "#"),), reacts=(Reaction("bot_starts", 300),))


def test_revoked_credentials_are_one_fault_and_two_fakertzr_faults_that_never_run_out():
    assert BUSY.fault_specs() == [{"type": "close", "code": 1011, "at_ms": 900},
                                  {"type": "auth_failure", "status": 401, "times": UNLIMITED},
                                  {"type": "reject_handshake", "status": 401, "times": UNLIMITED}]
    assert BUSY.refused and not BUSY.without_credentials
    call = as_call(BUSY)
    assert call.size == (2, 2)  # the close and the revoked credentials
    assert call.doc["expect"] == {"call_refused": True}
    assert "caller" in call.doc and call.doc["caller"] == {"dtmf": [{"at_ms": 1000, "digit": "5"}]}  # the handler ends it
    assert "RTZR fault: revoked_credentials" in call.features()


def test_each_fault_gives_the_fixture_lines_fakertzr_takes():
    for fault in (Close(code=1000, after_finals=2), Stall(at_ms=0), DelayFinals(100), DelayFinals(100, 2),
                  RejectHandshake(503, 2, connection=1), AuthFailure(500, 2), RevokedCredentials()):
        for spec in fault.specs():
            fault_from_spec(spec)  # fakertzr builds it
    assert NoCredentials().specs() == []
    call = as_call(Scenario(seed=1, utterances=SAID, faults=(NoCredentials(),)))
    assert call.doc["faults"] == [] and call.doc["handler"] == {"without_env": list(CREDENTIALS)}
    assert call.size == (2, 1)


def test_the_parts_are_frozen():
    with pytest.raises(FrozenInstanceError):
        BUSY.seed = 8  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        BUSY.llm.sentences = 3  # type: ignore[misc]


def test_describe_reads_as_the_fixture_not_as_python():
    call = as_call(PLAIN)
    text = call.describe()
    assert text.splitlines()[0] == call.name
    for utterance in call.doc["utterances"]:  # its words, where they start and end in the caller's audio
        assert f'"{utterance["text"]}" {utterance["start_ms"]}-{utterance["end_ms"]} ms' in text
    for spec in call.doc["faults"]:  # each fault as its fixture line
        assert json.dumps(spec) in text
    assert f"{call.audio_ms} ms of caller audio" in text
    assert "spoken 300 ms after the bot starts reply 1" in text
    assert "hangs up at 2000 ms" in text and "presses # at 1000 ms" in text
    assert f"expect: {json.dumps(call.doc['expect'])}" in text
    for python in ("SynthUtterance(", "{'", "Scenario(", "None", "True", "[]"):
        assert python not in text, python
    assert repr(call) == f"DrawnCall {text}"  # what hypothesis prints for a falsifying call


def test_a_refused_call_is_described_as_its_fixture_has_it():
    text = as_call(BUSY).describe()
    assert '"times": "unlimited"' in text and '"times": 100' not in text
    assert "hangs up" not in text and "after the bot" not in text  # a refused call: the caller waits for the handler
    assert "request 1 fails with 429" in text and "request 0 stalls" in text
    assert "epd_time 0.8, processing_delay_ms 79; a partial every 300 ms" in text


def test_a_scenario_goes_through_the_fixture_writer_and_back(tmp_path):
    call = as_call(BUSY)
    fixture = load_call(call.save(tmp_path / call.name))
    written = json.loads((tmp_path / call.name / "call.json").read_text(encoding="utf-8"))
    assert written["faults"] == BUSY.fault_specs() and list(fixture.script.faults) == BUSY.fault_specs()
    assert written["recognizer"] == {"epd_time": 0.8, "processing_delay_ms": 79}
    assert written["llm"]["fail_requests"] == {"1": 429} and written["llm"]["stall_requests"] == [0]
    assert written["tts"] == {"realtime": True, "ms_per_char": 100, "first_chunk_ms": 67}
    assert written["description"].startswith("drawn by harness fuzz: utterances (2, ")
    assert "\n" not in written["description"] and "SynthUtterance(" not in written["description"]
    assert Scenario.from_dict(BUSY.as_dict()) == BUSY
    assert as_call(BUSY.as_dict()).doc == call.doc  # plain data makes the same fixture


def test_plain_data_kept_from_before_still_makes_its_call():
    """Tests keep calls a search found as plain data: revoked credentials were two faults of ``times: 100``."""
    legacy = {**BUSY.as_dict(), "faults": [{"type": "close", "code": 1011, "at_ms": 900},
                                          {"type": "auth_failure", "status": 401, "times": 100},
                                          {"type": "reject_handshake", "status": 401, "times": 100}]}
    del legacy["reacts"]
    assert Scenario.from_dict(legacy) == replace(BUSY, reacts=())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=scenarios())
def test_any_drawn_scenario_round_trips_and_gives_faults_fakertzr_takes(s):
    assert Scenario.from_dict(s.as_dict()) == s
    for spec in s.fault_specs():
        fault = fault_from_spec(spec)
        assert fault.times != 100
    text = s.describe(TAIL_MS)
    assert text.count("\n  ") >= len(s.utterances) and "SynthUtterance(" not in text


@settings(max_examples=10, deadline=None)
@given(call=calls(max_faults=1, fault_kinds=("revoked_credentials",), min_faults=1))
def test_a_drawn_call_with_revoked_credentials_writes_unlimited(call):
    assert [f["times"] for f in call.doc["faults"]] == ["unlimited", "unlimited"]


def test_calls_spells_out_its_options():
    params = inspect.signature(calls).parameters
    assert list(params) == ["max_utterances", "max_faults", "min_faults", "fault_kinds", "barge_in", "hangups",
                            "keypad", "long_utterances", "reacts", "max_duration_ms"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert params["max_faults"].default == 2 and params["max_duration_ms"].default is None
    for name in params:
        assert f"``{name}``" in (calls.__doc__ or ""), name
    with pytest.raises(TypeError, match="max_fault"):
        calls(max_fault=1)  # type: ignore[call-arg]


def test_the_strategies_of_the_parts_draw_dataclasses():
    from harness.fuzz.strategies import dtmf, hangup, llm, recognizer, tts

    @settings(max_examples=5, database=None)
    @given(st.tuples(recognizer(), llm(), tts(), hangup(5000), dtmf(5000)))
    def drawn(parts):
        rec, replies, speech, hang, keys = parts
        assert isinstance(rec, Recognizer) and isinstance(replies, Llm) and isinstance(speech, Tts)
        assert hang is None or isinstance(hang, Hangup)
        assert all(isinstance(k, KeyPress) for k in keys)

    drawn()
