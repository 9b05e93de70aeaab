"""Hypothesis over everything fakertzr parses from a client: text frames, control-API config and faults, with
arbitrary JSON and arbitrary types in every field. Nothing but FakeRtzrError may escape, and whatever is
accepted must run a stream to its end."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrError
from fakertzr.faults import FAULT_TYPES, fault_from_spec
from fakertzr.validation import loads_strict, non_finite_path
from tests.support.budget import examples
from tests.support.core import new_session, stream
from tests.support.synth import SynthUtterance, synth_call

CALL = synth_call(5, [SynthUtterance(600, (250,)), SynthUtterance(700, (250,))])

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


def _finite(value) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


@examples(300, nightly=6000)  # CI's 15 minutes: half of what it was
@given(text=st.text(max_size=200) | json_values.map(lambda v: json.dumps(v, allow_nan=True)))
def test_any_text_frame_leaves_the_stream_able_to_finish(text):
    session = new_session(CALL)
    assert session.receive_text(text) is not None
    run = stream(session, CALL.audio)
    if not session.ended:
        assert run.final_texts == ["w0", "w1"]


config_fields = st.sampled_from(FakeRtzrConfig.UPDATABLE + ("colour",))


@examples(500, nightly=10000)  # CI's 15 minutes: half of what it was
@given(changes=st.dictionaries(config_fields, json_values, max_size=3))
def test_any_config_change_is_taken_whole_or_refused_whole(changes):
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0))
    before = dict(vars(backend.config))
    try:
        backend.update_config(changes)
    except FakeRtzrError:
        assert vars(backend.config) == before
        return
    for name, value in changes.items():
        assert getattr(backend.config, name) == value and _finite(value)
    assert backend.config.max_frame_bytes >= 1 and backend.config.max_streams >= 1
    assert backend.config.idle_timeout_s > 0 and backend.config.token_ttl_s > 0


fault_fields = st.sampled_from(["type", "connection", "times", "at_ms", "after_finals", "code", "status", "reason",
                                "delay_ms", "payload", "colour"])


@st.composite
def fault_specs(draw):
    spec = draw(st.dictionaries(fault_fields, json_values, max_size=4))
    if draw(st.booleans()):
        spec["type"] = draw(st.sampled_from(sorted(FAULT_TYPES)))
    return spec


@examples(350, nightly=7000)  # CI's 15 minutes: half of what it was
@given(spec=fault_specs())
def test_any_fault_spec_is_refused_or_runs_a_stream_to_its_end(spec):
    try:
        fault = fault_from_spec(spec)
    except FakeRtzrError:
        return
    session = new_session(CALL, faults=[fault])
    run = stream(session, CALL.audio)  # raises if a hook trips over a value it was given
    assert len(run.final_texts) <= 2


@examples(350, nightly=7000)  # CI's 15 minutes: half of what it was
@given(text=st.text(max_size=100) | json_values.map(lambda v: json.dumps(v, allow_nan=True)) | st.binary(max_size=60))
def test_strict_json_gives_a_value_or_a_fakertzr_error(text):
    try:
        doc = loads_strict(text, "body")
    except FakeRtzrError as exc:
        assert str(exc).startswith("body: ")
        return
    assert non_finite_path(doc, "") is None


# ------------------------------------------------------------ aicall's Twilio codec
twilio_fields = {
    "start": ["streamSid", "callSid", "accountSid", "customParameters", "mediaFormat", "tracks"],
    "media": ["payload", "timestamp", "chunk", "track"],
    "mark": ["name"],
    "dtmf": ["digit", "track"],
    "stop": ["callSid", "accountSid"],
    "connected": [],
}


@st.composite
def twilio_messages(draw):
    """Messages shaped like Twilio's, with any JSON in any field (or the body itself replaced)."""
    event = draw(st.sampled_from(sorted(twilio_fields)) | json_values)
    body = draw(st.fixed_dictionaries({}, optional={f: json_values for f in twilio_fields.get(event, [])}
                                      if isinstance(event, str) else {}))
    msg = {"event": event, "sequenceNumber": draw(json_values), "streamSid": draw(json_values)}
    if isinstance(event, str):
        msg[event] = draw(st.just(body) | json_values)
    return json.dumps(msg, allow_nan=True)


@examples(500, nightly=10000)  # CI's 15 minutes: half of what it was
@given(text=twilio_messages())
def test_any_twilio_message_parses_to_an_event_with_checked_fields(text):
    from aicall import twilio

    event = twilio.parse_message(text)
    if isinstance(event, twilio.Unknown):
        assert event.why.isprintable()
    elif isinstance(event, twilio.Start):
        assert twilio.CALL_SID.fullmatch(event.call_sid) and twilio.STREAM_SID.fullmatch(event.stream_sid)
        assert all(isinstance(v, str) for v in event.custom_parameters.values())
    elif isinstance(event, twilio.Media):
        assert isinstance(event.payload, bytes) and 0 <= event.timestamp_ms <= 2**53 and 0 <= event.chunk <= 2**53
    elif isinstance(event, twilio.MarkEcho):
        assert isinstance(event.name, str)
    elif isinstance(event, twilio.Dtmf):
        assert event.digit in twilio.DTMF_DIGITS
    elif isinstance(event, twilio.Stop):
        assert event.call_sid == "" or twilio.CALL_SID.fullmatch(event.call_sid)
