"""A fault's ``times`` may be ``"unlimited"``: it fires on every attempt and is never spent (revoked
credentials are refused however often a handler retries); any other value that is not 1 to 1000000 is
refused naming the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fakertzr import FakeRtzrBackend, FakeRtzrConfig
from fakertzr.errors import FakeRtzrError
from fakertzr.faults import UNLIMITED, fault_from_spec
from fakertzr.fixture import load_fixture

from .support.core import new_session, stream
from .support.synth import SynthUtterance, synth_call

SEED_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "calls" / "seed-three-turns"
CALL = synth_call(11, [SynthUtterance(800, (300,)), SynthUtterance(1200, (300,))])
ATTEMPTS = 50


def _backend(*faults: dict) -> FakeRtzrBackend:
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0))
    for spec in faults:
        backend.add_fault(spec)
    return backend


def _credentials(backend: FakeRtzrBackend) -> dict[str, str]:
    return {"client_id": backend.config.client_id, "client_secret": backend.config.client_secret}


def test_the_constant_is_the_word_the_schema_takes():
    assert UNLIMITED == "unlimited"
    assert fault_from_spec({"type": "drop", "at_ms": 0, "times": UNLIMITED}).times == UNLIMITED


def test_an_unlimited_token_refusal_refuses_every_request():
    backend = _backend({"type": "auth_failure", "status": 401, "times": UNLIMITED})
    statuses = [backend.authenticate(_credentials(backend))[0] for _ in range(ATTEMPTS)]
    assert statuses == [401] * ATTEMPTS
    (fault,) = backend.faults
    assert fault.fired == ATTEMPTS and not fault.spent
    assert fault.describe()["times"] == "unlimited"  # the control API lists it as it was given


def test_an_unlimited_handshake_refusal_refuses_every_connection_with_a_fresh_token_each_time():
    backend = _backend({"type": "reject_handshake", "status": 401, "times": UNLIMITED})
    refused = []
    for _ in range(ATTEMPTS):
        status, body = backend.authenticate(_credentials(backend))
        assert status == 200
        opened = backend.open_stream({"Authorization": f"Bearer {body['access_token']}"},
                                     {"sample_rate": "8000", "encoding": "LINEAR16"})
        assert isinstance(opened, tuple), "a connection was let in"
        refused.append(opened[0].status)
    assert refused == [401] * ATTEMPTS
    assert [c.index for c in backend.journal.connections] == list(range(ATTEMPTS))


def test_a_counted_refusal_is_spent_where_an_unlimited_one_goes_on():
    counted = _backend({"type": "auth_failure", "status": 503, "times": 2})
    statuses = [counted.authenticate(_credentials(counted))[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 200]


def test_an_unlimited_close_closes_every_stream():
    fault = fault_from_spec({"type": "close", "code": 1011, "after_finals": 1, "times": UNLIMITED})
    for connection in range(ATTEMPTS):
        session = new_session(CALL, faults=[fault])
        session.connection_index = connection
        run = stream(session, CALL.audio)
        assert run.final_texts == ["w0"], connection
    assert fault.fired == ATTEMPTS and not fault.spent


def test_a_fixture_may_say_unlimited(tmp_path):
    fixture = tmp_path / "call"
    shutil.copytree(SEED_DIR, fixture)
    doc = json.loads((fixture / "call.json").read_text(encoding="utf-8"))
    doc["faults"] = [{"type": "reject_handshake", "status": 401, "times": "unlimited"}]
    (fixture / "call.json").write_text(json.dumps(doc), encoding="utf-8")
    assert load_fixture(fixture).faults[0]["times"] == "unlimited"
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0))
    backend.load_fixture(fixture)  # its faults are built as the backend would run them


@pytest.mark.parametrize("bad", ["forever", "Unlimited", "", -1, 0, 1_000_001, 1.5, True, None, [1]])
def test_any_other_times_is_refused_saying_what_is_allowed(bad):
    with pytest.raises(FakeRtzrError) as caught:
        fault_from_spec({"type": "auth_failure", "status": 401, "times": bad}, "faults[0]")
    text = str(caught.value)
    assert text.startswith("faults[0].times: "), text
    assert 'a whole number from 1 to 1000000, or "unlimited"' in text, text


def test_a_control_api_fault_with_a_bad_times_is_refused_and_not_added():
    backend = _backend()
    with pytest.raises(FakeRtzrError, match=r"times: 'forever' is not allowed"):
        backend.add_fault({"type": "reject_handshake", "status": 401, "times": "forever"})
    assert backend.faults == []


def test_a_fixture_with_a_bad_times_is_refused_naming_the_file_and_field(tmp_path):
    fixture = tmp_path / "call"
    shutil.copytree(SEED_DIR, fixture)
    doc = json.loads((fixture / "call.json").read_text(encoding="utf-8"))
    doc["faults"] = [{"type": "stall", "at_ms": 0, "times": "forever"}]
    (fixture / "call.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(FakeRtzrError, match=r"faults\[0\]\.times: 'forever' is not allowed: a whole number"):
        load_fixture(fixture)
