"""``harness record`` and ``fakertzr record`` together, proven without the real services: aicall answers the
seed call through both recording proxies (the fake Twilio on one side, a fakertzr as "RTZR" on the other);
the recorded fixture, replayed, must give the same finals and the same checks, at real time and at x4, and its
utterances must sit where the seed's do in the audio (within 20 ms of audio time: deterministic, unlike the
turn latencies measured on the wall clock, which a busy machine moves by tens of ms and which no test asserts)."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import aiohttp

import pytest

from aicall.app import create_app, wait_for_calls_to_end
from aicall.config import load_settings
from aicall.store import CallStore
from fakertzr.appserver import AppServer
from fakertzr.recording import fixture_directory
from harness.fakes.services import FakeServices, running_fakes
from harness.fakes.twilio_line import TwilioLine
from harness.fixture import load_call
from harness.authoring.recorder import TwilioCallRecorder, aicall_between_recorders, mask_number
from harness.replay.targets import free_port
from harness.replay.runner import ErrorLog, replay
from tests.support.budget import PROFILE

SEED = Path("fixtures/calls/seed-three-turns")


def verdicts(run) -> dict[str, bool]:
    return {c.name: c.ok for c in run.checks}


@pytest.mark.parametrize("pace", [
    pytest.param(1.0, id="real time", marks=pytest.mark.skipif(
        PROFILE != "nightly", reason="nightly (HYPOTHESIS_PROFILE=nightly): 31 s of a real-time call; CI replays it at x4")),
    pytest.param(4.0, id="x4")])
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
        text = (written / "call.json").read_text()
        assert original.call_sid not in text and "MZ" + original.call_sid[2:] not in text and "ACharness" not in text
        assert "sk-harness" not in text and "eyJ" not in text, "no key, no token"
        doc = json.loads(text)
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
    placed = [(a.text, a.start_ms, a.end_ms, b.start_ms, b.end_ms)
              for a, b in zip(seed.script.utterances, recorded.script.utterances)]
    assert len(placed) == len(recorded.script.utterances) == 3, placed
    assert all(a.text == b.text for a, b in zip(seed.script.utterances, recorded.script.utterances)), placed
    assert all(abs(s0 - s1) <= 20.0 and abs(e0 - e1) <= 20.0 for _, s0, e0, s1, e1 in placed), placed
    assert all(t.speech_end_to_first_audio_ms is not None for t in original.turns + again.turns), "every turn answered"


def test_caller_numbers_are_masked():
    assert mask_number("+821012345678") == "+8210****5678"
    assert mask_number("01012345678") == "0101***5678"
    assert mask_number("1234") == "****"


def test_record_modes_name_fixtures_as_vcr_does(tmp_path):
    assert fixture_directory(tmp_path, "call", "new_episodes") == tmp_path / "call"
    (tmp_path / "call").mkdir()
    assert fixture_directory(tmp_path, "call", "new_episodes") == tmp_path / "call-2"
    assert fixture_directory(tmp_path, "call", "once") is None, "once: NAME exists, nothing is recorded"
    assert fixture_directory(tmp_path, "call", "all") == tmp_path / "call", "all: NAME is overwritten"
    assert fixture_directory(tmp_path, "call", "none") is None
    assert fixture_directory(tmp_path, "other", "once") == tmp_path / "other"


@asynccontextmanager
async def record_cli(tmp_path: Path, name: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, FakeServices, str, object]]:
    """``harness record`` as a team runs it, in a subprocess (Ctrl-C at its default), between the fake Twilio and
    aicall, with the fakes standing in for RTZR: (the process, the fakes, where Twilio connects, aicall's app)."""
    async with running_fakes() as fakes:
        rtzr_port = free_port()
        env = {**fakes.env(), "RTZR_API_BASE": f"http://127.0.0.1:{rtzr_port}"}
        store = CallStore(tmp_path / "calls.db")
        try:
            async with AppServer(create_app(load_settings(env, env_file=None), store)) as app:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "harness.cli", "record", "--target", f"{app.ws_url}/twilio/media",
                    "--rtzr-upstream", fakes.rtzr_url, "--rtzr-port", str(rtzr_port), "--port", "0",
                    "--out", str(tmp_path / "rec"), "--name", name, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
                try:
                    banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
                    await asyncio.wait_for(proc.stdout.readline(), 30)  # the RTZR_API_BASE line
                    await asyncio.wait_for(proc.stdout.readline(), 30)  # where Twilio connects
                    yield proc, fakes, banner.split(" -> ")[1].replace("/<any path>", "/twilio/media"), app
                finally:
                    if proc.returncode is None:
                        proc.terminate()
                        await proc.wait()
        finally:
            store.close()


async def test_harness_record_from_the_command_line(tmp_path):
    """What a team types, with the fakes standing in for RTZR and Twilio: the handler's RTZR_API_BASE points at
    harness record's RTZR port, Twilio at its port; each call is printed and written."""
    async with record_cli(tmp_path, "seed") as (proc, fakes, twilio_url, app):
        run = await replay(load_call(SEED), twilio_url, rtzr=fakes.rtzr, llm=fakes.llm, tts=fakes.tts,
                           pace=8.0, handler_done=lambda t: wait_for_calls_to_end(app.app, t))
        assert run.ok, run.failures()
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert line.startswith(f"recorded {tmp_path / 'rec' / 'seed'}:") and "3 final(s)" in line, line
    assert [u.text for u in load_call(tmp_path / "rec" / "seed").script.utterances] == load_call(SEED).expect["finals"]


def test_the_twilio_side_recorder_holds_hostile_frames_and_redacts_keypad_digits():
    clock = [0.0]
    call = TwilioCallRecorder(clock=lambda: clock[0])
    frame = base64.b64encode(b"\x7f" * 160).decode()
    call.from_twilio(json.dumps({"event": "start", "start": {"customParameters": {"caller": "+821012345678"}}}))
    for k in range(50):
        clock[0] = k * 0.02
        call.from_twilio(json.dumps({"event": "media", "media": {"timestamp": str(k * 20), "payload": frame}}))
    for hostile in ({"event": "media", "media": {"timestamp": "99999999999", "payload": frame}},
                    {"event": "media", "media": {"timestamp": "-40", "payload": frame}},
                    {"event": "media", "media": {"payload": "!!"}}, {"event": "dtmf"}, "[" * 5000):
        call.from_twilio(hostile if isinstance(hostile, str) else json.dumps(hostile))
    call.from_twilio(json.dumps({"event": "dtmf", "dtmf": {"digit": "7"}}))
    call.from_twilio(json.dumps({"event": "dtmf", "dtmf": {"digit": "#"}}))
    clock[0] = 1.0 + 0.5  # the caller listened half a second before hanging up
    call.from_twilio(json.dumps({"event": "stop", "stop": {}}))
    assert call.malformed == 5 and len(call.ulaw) == 50 * 160 + 25 * 160, "hostile frames change nothing; the listening is silence"
    doc, _ = call.to_fixture("x", [], redact_kinds=("dtmf",))
    assert doc["caller"]["dtmf"] == [{"at_ms": 1000.0, "digit": "0"}, {"at_ms": 1000.0, "digit": "#"}]
    assert doc["authoring"]["redacted"] == {"dtmf": 1}
    assert doc["caller"]["hangup_ms"] == doc["audio"]["duration_ms"] == 1500 and "vanish" not in doc["caller"]


def test_a_call_the_handler_ended_keeps_the_caller_on_the_line():
    """A handler that refuses the call closes first: the recording must not say the caller hung up or dropped
    (a replay would then take the line away before the handler could refuse)."""
    call = TwilioCallRecorder()
    call.from_twilio(json.dumps({"event": "media", "media": {"timestamp": "0", "payload": base64.b64encode(b"\x7f" * 320).decode()}}))
    call.handler_closed()
    call.line_ended()
    doc, _ = call.to_fixture("refused", [])
    assert doc["caller"] == {} and not call.vanished
    dropped = TwilioCallRecorder()
    dropped.from_twilio(json.dumps({"event": "media", "media": {"timestamp": "0", "payload": base64.b64encode(b"\x7f" * 320).decode()}}))
    dropped.line_ended()
    dropped.handler_closed()
    assert dropped.to_fixture("dropped", [])[0]["caller"] == {"hangup_ms": 40.0, "vanish": True}


def test_timestamps_running_ahead_of_the_time_the_stream_was_open_are_capped_and_counted(caplog):
    # 60 frames each a minute ahead made a one-hour caller.wav (issue 22, item 15): Twilio stamps real time
    clock = [0.0]
    frame = base64.b64encode(b"\x7f" * 160).decode()
    for ahead_ms, step_ms in ((59_000, 59_000), (30_000, 20)):  # each a minute further, or all 30 s early
        call = TwilioCallRecorder(clock=lambda: clock[0])
        for k in range(60):
            clock[0] = k * 0.02
            stamp = ahead_ms + k * step_ms
            call.from_twilio(json.dumps({"event": "media", "media": {"timestamp": str(stamp), "payload": frame}}))
        assert call.capped_timestamps >= 1 and call.capped_timestamps + call.malformed == 60
        assert call.audio_ms <= 60 * 20 + 2 * 1000 + 40, call.audio_ms  # the time open, a second early at most, twice
        doc, _ = call.to_fixture("x", [])
        assert doc["authoring"]["capped_timestamps"] == call.capped_timestamps
    assert call.capped_timestamps == 60  # 30 s early, each: every frame kept, placed in time
    warned = [r for r in caplog.records if "ahead of the time the stream has been open" in r.getMessage()]
    assert len(warned) == 2  # once a call
    lost = TwilioCallRecorder(clock=lambda: clock[0])  # a real gap (frames lost on the way) is kept as silence
    lost.from_twilio(json.dumps({"event": "media", "media": {"timestamp": "0", "payload": frame}}))
    clock[0] += 3.0
    lost.from_twilio(json.dumps({"event": "media", "media": {"timestamp": "3000", "payload": frame}}))
    assert lost.capped_timestamps == 0 and lost.audio_ms == 3020


# Hardening round three, 3: Ctrl-C with a call in flight writes it as far as it got (it was dropped, exit 0, silently).
async def test_ctrl_c_with_a_call_in_flight_writes_it_cut_short(tmp_path):
    async with record_cli(tmp_path, "cut") as (proc, fakes, twilio_url, app), aiohttp.ClientSession() as session:
        line = TwilioLine(session, twilio_url, call_sid="CA" + "7" * 32, stream_sid="MZ" + "7" * 32, pace=None)
        await line.open()
        await line.play(load_call(SEED).script.audio[: 8000 * 5])  # the first utterance
        await line.wait_for(lambda l: l.last_media_at > 0, timeout=30)  # answered: it went through
        proc.send_signal(signal.SIGINT)  # the caller is still on the line
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        await line.close()
    assert proc.returncode == 0 and b"a call in flight was cut short" in err, err.decode()
    written = tmp_path / "rec" / "cut"
    assert f"recorded {written}:".encode() in out, out.decode()
    doc = json.loads((written / "call.json").read_text(encoding="utf-8"))
    assert "cut short" in doc["description"] and doc["audio"]["duration_ms"] >= 4000
