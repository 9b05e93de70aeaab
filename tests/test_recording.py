"""Recording RTZR streams into fixtures (``fakertzr record``) and replaying a recorded schedule exactly.

No network here: the upstream is a fakertzr answering from the seed call by its rules. A stream recorded
through the proxy, replayed from the recording, must give the same results at the same audio positions
(within one 20 ms frame: a result reaches the proxy after the audio that made it due, and the client may
have sent one more frame by then)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from callaudio.wavfile import mulaw_wav_bytes
from contract_tests.rtzr import client
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrError, FakeRtzrServer, load_fixture
from fakertzr.actions import SendResult
from fakertzr.fixture import CallScript, script_from_dict
from fakertzr.params import parse_stream_params
from fakertzr.record_proxy import RecordingProxy
from fakertzr.recording import StreamRecorder
from fakertzr.redaction import redact
from harness.fixture import load_call

from .support.core import new_session, stream

SEED = "fixtures/calls/seed-three-turns"
FRAME = 320  # 20 ms of 8 kHz LINEAR16


async def stream_paced(base_url: str, ws_url: str, audio: bytes, pace: float = 4.0, query: dict | None = None) -> list[dict]:
    """A client streaming 20 ms frames at ``pace`` times real time, then EOS: every result it got."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        token = await client.token(session, base_url, "fakertzr-client", "fakertzr-secret")
        url = client.ws_url(ws_url, query or {"sample_rate": "8000", "encoding": "LINEAR16"})
        async with session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
            outcome = client.StreamOutcome()
            reader = asyncio.create_task(client.collect(ws, outcome))
            t0 = loop.time()
            for k, i in enumerate(range(0, len(audio), FRAME)):
                delay = t0 + k * 0.02 / pace - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the client's own pacing, not a wait in the test
                await ws.send_bytes(audio[i : i + FRAME])
            await ws.send_str("EOS")
            await asyncio.wait_for(reader, 30)
    return outcome.results


def shape(results: list[dict]) -> list[tuple]:
    return [(r["seq"], r["final"], r["alternatives"][0]["text"]) for r in results]


async def test_a_stream_recorded_through_the_proxy_replays_the_same_results_at_the_same_audio(tmp_path):
    seed = load_fixture(SEED)
    audio = seed.audio.astype("<i2").tobytes()
    upstream = FakeRtzrBackend(FakeRtzrConfig(fixtures=[SEED]))
    async with FakeRtzrServer(upstream) as real, RecordingProxy(real.base_url, tmp_path, name="seed-rec") as proxy:
        through_proxy = await stream_paced(proxy.base_url, proxy.ws_url, audio)
        await upstream.wait_for(lambda j: j.connections and j.connections[0].closed)
    assert len(proxy.written) == 1
    original = upstream.journal.connections[0].messages
    assert shape(through_proxy) == shape([json.loads(m.payload) for m in original]), "the proxy passes results untouched"

    recorded = load_call(proxy.written[0])  # validates against the schema
    assert [u.text for u in recorded.script.utterances] == [u.text for u in seed.utterances]
    replay = FakeRtzrBackend(FakeRtzrConfig(fixtures=[str(proxy.written[0])]))
    async with FakeRtzrServer(replay) as fake:
        replayed = await stream_paced(fake.base_url, fake.ws_url, audio)
        await replay.wait_for(lambda j: j.connections and j.connections[0].closed)
    assert shape(replayed) == shape(through_proxy)
    again = replay.journal.connections[0].messages
    shifts = [b.audio_ms - a.audio_ms for a, b in zip(original, again)]
    assert all(0 <= s <= 20.0 for s in shifts), shifts
    assert [json.loads(m.payload)["start_at"] for m in again] == [json.loads(m.payload)["start_at"] for m in original]


def recorded_from_rules(seed) -> CallScript:
    """The seed call as a recorder sees it when the recognizer sends fakertzr's rule-based schedule."""
    recorder = StreamRecorder(parse_stream_params({"sample_rate": "8000", "encoding": "LINEAR16"}), clock=lambda: 0.0)
    audio, sent = seed.audio.astype("<i2").tobytes(), 0
    for action in stream(new_session(seed), seed.audio).actions:
        if isinstance(action, SendResult):
            position = int(action.result.audio_ms * 16)  # 16 bytes per ms of 8 kHz LINEAR16
            recorder.client_audio(audio[sent:position])
            sent = position
            recorder.recognizer_message(json.dumps(action.result.payload, ensure_ascii=False))
    recorder.client_audio(audio[sent:])
    doc, _ = recorder.to_fixture("seed-rec")
    return script_from_dict(doc, seed.audio, "recorded")


def test_a_recorded_schedule_is_replayed_only_for_audio_that_arrived():
    """A stream that starts after the first utterance (a reconnect) gets only what its audio holds; the whole
    call gets every final, with the start_at the recognizer sent."""
    seed = load_fixture(SEED)
    recorded = recorded_from_rules(seed)
    original = stream(new_session(seed), seed.audio)
    whole = stream(new_session(recorded), seed.audio)
    assert whole.final_texts == [u.text for u in seed.utterances]
    assert [r["start_at"] for r in whole.finals] == [r["start_at"] for r in original.finals]
    late_start = seed.utterances[0].end_ms + 600  # after the first utterance and its final
    tail = stream(new_session(recorded), seed.audio[int(late_start * 8) :])
    assert tail.final_texts == [u.text for u in seed.utterances[1:]]
    assert tail.finals[0]["start_at"] == original.finals[1]["start_at"] - round(late_start)


def test_eos_mid_utterance_finalizes_the_recorded_utterance_at_once():
    seed = load_fixture(SEED)
    recorded = recorded_from_rules(seed)
    cut = (seed.utterances[1].start_ms + seed.utterances[1].end_ms) / 2
    run = stream(new_session(recorded), seed.audio[: int(cut * 8)])
    assert run.final_texts == [u.text for u in seed.utterances[:2]]


def test_redaction_replaces_numbers_and_says_how_many():
    counts: dict[str, int] = {}
    text = "제 번호는 010-1234-5678 이고 주민번호는 900101-1234567, 카드는 1234 5678 9012 3456 입니다"
    out = redact(text, ("rrn", "card", "phone"), counts)
    assert out == "제 번호는 <phone> 이고 주민번호는 <rrn>, 카드는 <card> 입니다"
    assert counts == {"rrn": 1, "card": 1, "phone": 1}


async def test_a_redacted_recording_passes_the_schema_and_replays(tmp_path):
    seed = load_fixture(SEED)
    audio = seed.audio.astype("<i2").tobytes()
    doc = json.loads(open(f"{SEED}/call.json", encoding="utf-8").read())
    doc["utterances"][1]["text"] = "010 1234 5678 입니다"
    doc["utterances"][1].pop("words", None)  # split from the text: the number comes in three words
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone" / "call.json").write_text(json.dumps({**doc, "name": "phone", "audio": {"file": "caller.wav"}}))
    (tmp_path / "phone" / "caller.wav").write_bytes(open(f"{SEED}/caller.wav", "rb").read())
    upstream = FakeRtzrBackend(FakeRtzrConfig(fixtures=[str(tmp_path / "phone")]))
    async with FakeRtzrServer(upstream) as real, \
            RecordingProxy(real.base_url, tmp_path / "out", name="redacted", redact=("phone",)) as proxy:
        await stream_paced(proxy.base_url, proxy.ws_url, audio, pace=8.0)
    written = json.loads((proxy.written[0] / "call.json").read_text())
    redacted = written["authoring"]["redacted"]
    assert redacted["phone"] >= 1 and redacted["digits in partials"] >= 1, redacted
    assert not any(c.isdigit() for r in written["recognizer"]["recorded"] for c in r["text"]), "a digit of the number was kept"
    number_final = next(r for r in written["recognizer"]["recorded"] if r["final"] and "<phone>" in r["text"])
    assert "words" not in number_final, "words would hold the number piece by piece"
    assert [u["text"] for u in written["utterances"]][1] == "<phone> 입니다"
    replay = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(proxy.written[0])]))
    async with FakeRtzrServer(replay) as fake:
        replayed = await stream_paced(fake.base_url, fake.ws_url, audio, pace=8.0)
    assert [r["alternatives"][0]["text"] for r in replayed if r["final"]][1] == "<phone> 입니다"


async def test_no_secret_reaches_a_recording(tmp_path):
    seed = load_fixture(SEED)
    upstream = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[SEED]))
    async with FakeRtzrServer(upstream) as real, RecordingProxy(real.base_url, tmp_path) as proxy:
        await stream_paced(proxy.base_url, proxy.ws_url, seed.audio[:24000].astype("<i2").tobytes(), pace=8.0)
    assert len(proxy.written) == 1
    text = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert "fakertzr-secret" not in text and "Bearer" not in text and "eyJ" not in text  # no secret, no JWT


def test_a_recorded_schedule_that_goes_back_in_time_is_refused():
    seed = load_fixture(SEED)
    doc = {"version": 1, "name": "bad", "audio": {"file": "caller.wav"}, "utterances": [],
           "recognizer": {"recorded": [{"call_ms": 900, "final": False, "text": "a", "start_ms": 0, "end_ms": 900},
                                       {"call_ms": 800, "final": True, "text": "a", "start_ms": 0, "end_ms": 700}]}}
    with pytest.raises(FakeRtzrError, match=r"recorded\[1\]: call_ms goes back in time"):
        script_from_dict(doc, seed.audio, "bad")
    doc["recognizer"]["recorded"] = [{"call_ms": 500, "final": True, "text": "a", "start_ms": 0, "end_ms": 700}]
    with pytest.raises(FakeRtzrError, match="a result comes after its audio"):
        script_from_dict(doc, seed.audio, "bad")


async def test_recorded_lags_are_replayed_scaled_by_time_scale(tmp_path):
    """Each result waits its recorded lag (times time_scale) after the audio that made it due arrived."""
    seed = load_fixture(SEED)
    clock = [0.0]
    recorder = StreamRecorder(parse_stream_params({"sample_rate": "8000", "encoding": "LINEAR16"}), clock=lambda: clock[0])
    audio, sent = seed.audio.astype("<i2").tobytes(), 0
    for action in stream(new_session(seed), seed.audio).actions:
        if isinstance(action, SendResult):
            position = int(action.result.audio_ms * 16)
            recorder.client_audio(audio[sent:position])
            sent = position
            clock[0] += 0.25 if action.result.final else 0.05  # the recognizer's lag: finals 250 ms, partials 50 ms
            recorder.recognizer_message(json.dumps(action.result.payload, ensure_ascii=False))
    recorder.client_audio(audio[sent:])
    doc, ulaw = recorder.to_fixture("lagged")
    (tmp_path / "lagged").mkdir()
    (tmp_path / "lagged" / "call.json").write_text(json.dumps(doc, ensure_ascii=False))
    (tmp_path / "lagged" / "caller.wav").write_bytes(mulaw_wav_bytes(ulaw))
    replay = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.1, fixtures=[str(tmp_path / "lagged")]))
    async with FakeRtzrServer(replay) as fake:
        await stream_paced(fake.base_url, fake.ws_url, audio, pace=16.0)
    messages = replay.journal.connections[0].messages
    assert {m.delay_ms for m in messages if m.kind == "final"} == {25.0}  # 250 ms recorded, x0.1
    assert {m.delay_ms for m in messages if m.kind == "partial"} == {5.0}
