"""Hardening of the fakes (issue items 14-16): a warning when a fake listens beyond loopback, journals bounded
in bytes as well as by count, and faults that reach open streams after a reset."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer, load_fixture
from fakertzr.actions import Close
from fakertzr.journal import ConnectionRecord, Journal, SentMessage
from harness.fakes.llm import FakeLlm, LlmRequest
from harness.fakes.tts import FakeTts, TtsRequest

SEED_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "calls" / "seed-three-turns"
FAKERTZR = [sys.executable, "-m", "fakertzr.cli"]


# ------------------------------------------------ 14: a fake beyond loopback says so
async def _started_then_stopped(*args: str) -> tuple[str, str]:
    """Run ``fakertzr ARGS`` until its first stdout line (it listens), then stop it: (that line, all of stderr)."""
    proc = await asyncio.create_subprocess_exec(*FAKERTZR, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    return first, err.decode()


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fakertzr: warning:")]


async def test_serve_beyond_loopback_warns_once_naming_the_address_and_the_control_api():
    first, stderr = await _started_then_stopped("serve", "--host", "0.0.0.0", "--port", "0")
    port = first.split("http://0.0.0.0:", 1)[1].split()[0]
    warnings = _warnings(stderr)
    assert len(warnings) == 1, stderr
    assert warnings[0].startswith(f"fakertzr: warning: listening on 0.0.0.0:{port}, beyond loopback:"), warnings
    assert "/_fake/" in warnings[0] and "journal" in warnings[0] and "reset" in warnings[0], warnings


async def test_serve_on_loopback_says_no_warning():
    first, stderr = await _started_then_stopped("serve", "--host", "127.0.0.1", "--port", "0")
    assert "listening on http://127.0.0.1:" in first
    assert "warning" not in stderr, stderr


async def test_record_beyond_loopback_warns_once(tmp_path):
    first, stderr = await _started_then_stopped("record", "--host", "0.0.0.0", "--port", "0",
                                                "--upstream", "http://127.0.0.1:9", "--out", str(tmp_path))
    assert "listening on http://0.0.0.0:" in first
    warnings = _warnings(stderr)
    assert len(warnings) == 1 and "0.0.0.0:" in warnings[0] and "beyond loopback" in warnings[0], stderr


def test_the_warning_is_for_addresses_beyond_loopback_only(capsys):
    from fakertzr.cli import _banner  # the banner of both serve and serve --workers

    backend = FakeRtzrBackend()
    for url in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765", "http://::1:8765"):
        _banner(url, backend)
        assert "warning" not in capsys.readouterr().err, url
    for url, where in (("http://0.0.0.0:8765", "0.0.0.0:8765"), ("http://[::]:8765", "[::]:8765"),
                       ("http://:::8765", "[::]:8765"), ("http://192.168.1.5:8765", "192.168.1.5:8765")):
        _banner(url, backend, "; 2 workers", "0.0.0.0:50051")
        warnings = _warnings(capsys.readouterr().err)
        assert len(warnings) == 1 and f"listening on {where}" in warnings[0], (url, warnings)
        assert "gRPC" in warnings[0] and "0.0.0.0:50051" in warnings[0]


# ------------------------------------------------ 15: journals bounded in bytes too
def _llm_bytes(request: LlmRequest) -> int:
    """What a request holds in the fake LLM's journal: its messages and its reply, as UTF-8."""
    texts = [request.model, request.reply, *(m["content"] + m["role"] for m in request.messages)]
    return sum(len(t.encode()) for t in texts)


def _llm_request(k: int, chars: int = 16_000, ended: bool = True) -> LlmRequest:
    entry = LlmRequest([{"role": "user", "content": f"{k} " + "가" * (chars - len(str(k)) - 1)}], "fake-model")
    entry.ended_at = time.monotonic() if ended else None
    return entry


async def test_the_llm_journal_over_http_stays_within_its_byte_budget():
    fake = FakeLlm()
    fake.journal_max_bytes = 400_000
    async with fake.server() as server, aiohttp.ClientSession() as session:
        for k in range(40):  # 40 KB asked, about as much answered (the default reply repeats the caller's words)
            body = {"messages": [{"role": "user", "content": f"{k} " + "가" * 13_000}], "stream": k % 2 == 0}
            async with session.post(f"{server.base_url}/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                await resp.read()
    kept = sum(_llm_bytes(r) for r in fake.requests)
    assert kept <= 400_000, f"{len(fake.requests)} requests kept, {kept} bytes"
    assert fake.dropped == fake.received - len(fake.requests) and fake.received == 40 and fake.dropped > 30
    assert fake.requests[-1].last_user.startswith("39 ")


def test_the_llm_journal_by_default_keeps_at_most_8_mib_of_requests():
    fake = FakeLlm()
    for k in range(300):  # 300 of 48 KB: 14 MB, far under the count limit of 1000
        fake.record(_llm_request(k))
    kept = sum(_llm_bytes(r) for r in fake.requests)
    assert kept <= 8 << 20, f"{len(fake.requests)} requests kept, {kept} bytes"
    assert fake.dropped == 300 - len(fake.requests) > 0 and fake.requests[-1].index == 299


def test_the_byte_budget_never_lets_go_of_a_request_in_flight():
    fake = FakeLlm()
    fake.journal_max_bytes = 100_000
    live = _llm_request(0, ended=False)
    fake.record(live)
    for k in range(1, 21):
        fake.record(_llm_request(k))
    assert fake.requests[0] is live, "the request still being answered was let go"
    assert fake.dropped == 21 - len(fake.requests) and fake.dropped >= 18
    finished = [r for r in fake.requests if r is not live]
    assert sum(_llm_bytes(r) for r in [live, *finished]) <= 100_000 or len(finished) <= 1
    fake.clear()
    assert fake.requests == [] and fake.dropped == 0
    for k in range(2):  # after a clear the budget counts from nothing again
        fake.record(_llm_request(k, chars=1000))
    assert len(fake.requests) == 2 and fake.dropped == 0


def test_the_tts_journal_is_bounded_in_bytes_too():
    fake = FakeTts()
    for k in range(1000):  # 1000 of 4096 characters (12 KB): 12 MB, at the count limit
        entry = TtsRequest("가" * 4096, "pcm")
        entry.ended_at = time.monotonic()
        fake.record(entry)
    kept = sum(len(r.text.encode()) + len(r.error.encode()) for r in fake.requests)
    assert kept <= 8 << 20 and fake.dropped == 1000 - len(fake.requests) > 0


def _record_json_bytes(record: ConnectionRecord) -> int:
    return len(json.dumps(record.to_dict(), ensure_ascii=False).encode())


def _big_record(index: int, messages: int = 20) -> ConnectionRecord:
    record = ConnectionRecord(index=index, headers={"User-Agent": "x" * 300}, query={"sample_rate": "8000"})
    text = "안녕하세요 무엇을 도와드릴까요 " * 20
    payload = json.dumps({"seq": 0, "final": True, "alternatives": [{"text": text}]}, ensure_ascii=False)
    record.messages = [SentMessage("final", i, text, 1000.0 * i, 1.0, 1.0, 0.0, payload) for i in range(messages)]
    return record


def test_fakertzrs_journal_is_bounded_in_bytes_and_keeps_open_streams():
    journal = Journal(limit=2000, max_bytes=200_000)
    open_one = _big_record(0)
    journal.add(open_one)
    for index in range(1, 31):  # each about 40 KB once closed
        record = _big_record(index)
        journal.add(record)
        record.closed_wall = time.monotonic()
        journal.closed(record)
    kept = [c for c in journal.connections if c.closed]
    assert journal.connections[0] is open_one, "a live stream's record was let go"
    assert sum(_record_json_bytes(c) for c in kept) <= 200_000, len(kept)
    assert journal.dropped == 31 - len(journal.connections) and journal.dropped > 20
    assert journal.dropped_finals == 20 * journal.dropped and journal.total == 31


def test_fakertzrs_backend_measures_a_stream_when_it_closes():
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0))
    backend.journal.max_bytes = 100_000
    for _ in range(10):
        opened = _open(backend)
        opened.record.messages = _big_record(0).messages  # what the shell would have sent and journaled
        backend.stream_closed(opened)
    assert sum(_record_json_bytes(c) for c in backend.journal.connections) <= 100_000
    assert backend.journal.dropped == 10 - len(backend.journal.connections) > 0


# ------------------------------------------------ 16: faults reach the streams open at a reset
def _open(backend: FakeRtzrBackend):
    _, body = backend.authenticate({"client_id": backend.config.client_id, "client_secret": backend.config.client_secret})
    return backend.open_stream({"Authorization": f"Bearer {body['access_token']}"},
                               {"sample_rate": "8000", "encoding": "LINEAR16"})


def _closes(opened, audio: np.ndarray) -> list[Close]:
    pcm = audio.astype("<i2").tobytes()
    actions = [a for i in range(0, len(pcm), 320) for a in opened.session.receive_audio(pcm[i : i + 320])]
    return [a for a in actions if isinstance(a, Close)]


def test_a_fault_added_after_clear_faults_or_reset_reaches_a_stream_already_open():
    seed = load_fixture(SEED_DIR)
    for forget in ("clear_faults", "reset"):
        backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(SEED_DIR)]))
        opened = _open(backend)
        getattr(backend, forget)()
        backend.add_fault({"type": "close", "code": 1011, "at_ms": 500})
        assert [c.code for c in _closes(opened, seed.audio)] == [1011], f"after {forget}() the open stream missed it"


async def test_a_fault_added_through_the_control_api_after_a_reset_closes_an_open_stream():
    seed = load_fixture(SEED_DIR)
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(SEED_DIR)]))
    async with FakeRtzrServer(backend) as server, aiohttp.ClientSession() as session:
        async with session.post(f"{server.base_url}/v1/authenticate",
                                data={"client_id": backend.config.client_id,
                                      "client_secret": backend.config.client_secret}) as resp:
            token = (await resp.json())["access_token"]
        ws = await session.ws_connect(f"{server.ws_url}/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16",
                                      headers={"Authorization": f"Bearer {token}"})
        for method, path, body in (("POST", "/_fake/reset", None), ("DELETE", "/_fake/faults", None),
                                   ("POST", "/_fake/faults", {"type": "close", "code": 1011, "at_ms": 500})):
            async with session.request(method, f"{server.base_url}{path}", json=body) as resp:
                assert resp.status == 200, await resp.text()
        pcm = seed.audio.astype("<i2").tobytes()
        for i in range(0, len(pcm), 3200):
            await ws.send_bytes(pcm[i : i + 3200])
        await ws.send_str("EOS")  # without the fault: the finals, then a normal close
        while (await asyncio.wait_for(ws.receive(), 10)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        assert ws.close_code == 1011, f"the stream open at the reset never saw the fault (closed {ws.close_code})"
        await ws.close()
