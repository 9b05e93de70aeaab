"""Faults in the streaming core: each fires at its point, once unless told otherwise."""

from __future__ import annotations

import pytest

from fakertzr.actions import Close, Drop, RevokeTokens, SendRaw, SendResult, Stall
from fakertzr.errors import FakeRtzrError
from fakertzr.faults import fault_from_spec

from .support.core import new_session, stream
from .support.synth import SynthUtterance, synth_call

CALL = synth_call(11, [SynthUtterance(800, (300,)), SynthUtterance(1200, (300,)), SynthUtterance(1200, (300,))])


def run_with(*specs, connection_index=0):
    faults = [fault_from_spec(s) for s in specs]
    session = new_session(CALL, faults=faults)
    session.connection_index = connection_index
    return stream(session, CALL.audio), faults


def test_close_after_first_final_sends_the_final_then_closes_and_nothing_more():
    run, _ = run_with({"type": "close", "code": 1000, "after_finals": 1})
    assert run.final_texts == ["w0"]
    assert run.actions[-1] == Close(1000, "fakertzr fault: close 1000")
    assert isinstance(run.actions[-2], SendResult) and run.actions[-2].result.final


def test_close_at_an_audio_point():
    run, faults = run_with({"type": "close", "code": 1011, "at_ms": 2500})
    assert run.final_texts == ["w0"]
    assert isinstance(run.actions[-1], Close) and run.actions[-1].code == 1011
    assert faults[0].spent


@pytest.mark.parametrize("kind,action", [("drop", Drop()), ("stall", Stall())])
def test_drop_and_stall_end_output(kind, action):
    run, _ = run_with({"type": kind, "after_finals": 2})
    assert run.final_texts == ["w0", "w1"]
    assert run.actions[-1] == action


def test_malformed_message_at_a_point_and_stream_goes_on():
    run, _ = run_with({"type": "malformed", "at_ms": 100, "payload": "not json"})
    raw = [a for a in run.actions if isinstance(a, SendRaw)]
    assert raw == [SendRaw("not json", pytest.approx(100, abs=20))]
    assert run.final_texts == ["w0", "w1", "w2"]


def test_delay_finals_adds_to_every_final_only():
    run, _ = run_with({"type": "delay_finals", "delay_ms": 1500})
    delays = {(a.result.final, a.result.delay_ms) for a in run.actions if isinstance(a, SendResult)}
    assert delays == {(False, 0.0), (True, 1500.0)}


def test_expire_tokens_revokes_and_the_stream_continues():
    run, _ = run_with({"type": "expire_tokens", "at_ms": 500})
    assert RevokeTokens() in run.actions
    assert run.final_texts == ["w0", "w1", "w2"]


def test_connection_filter_and_times():
    run, faults = run_with({"type": "close", "after_finals": 1, "connection": 1}, connection_index=0)
    assert run.final_texts == ["w0", "w1", "w2"] and faults[0].fired == 0
    run, faults = run_with({"type": "close", "after_finals": 1, "connection": 1}, connection_index=1)
    assert run.final_texts == ["w0"] and faults[0].spent


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"code": 1000}, "needs a 'type'"),
        ({"type": "explode"}, "unknown fault 'explode'"),
        ({"type": "close"}, "needs at_ms or after_finals"),
        ({"type": "close", "after_finals": 1, "code": 1006}, "fault.code: 1006 is not allowed: a close code a server can send"),
        ({"type": "reject_handshake", "status": 200}, "fault.status: 200 is less than the minimum of 400"),
        ({"type": "close", "at_ms": "x"}, "fault.at_ms: 'x' is not of type 'number'"),
        ({"type": "close", "at_ms": float("nan")}, "fault.at_ms: must be a finite number"),
        ({"type": "delay_finals", "delay_ms": "x"}, "fault.delay_ms: 'x' is not of type 'number'"),
        ({"type": "reject_handshake", "status": "x"}, "fault.status: 'x' is not of type 'integer'"),
        ({"type": "close", "after_finals": True}, "fault.after_finals: True is not of type 'integer'"),
        ({"type": "close", "after_finals": 1, "code": "x"}, "fault.code: 'x' is not of type 'integer'"),
        ({"type": "drop", "after_finals": 1, "colour": "red"}, "takes no colour"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec, message):
    with pytest.raises(FakeRtzrError, match=message):
        fault_from_spec(spec)
