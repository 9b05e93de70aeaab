"""RTZR's gRPC streaming API (``online_decoder.OnlineDecoder/Decode``): RTZR's own sample unchanged but for its
endpoint and credentials, auth by the access token in the call's metadata, faults as gRPC statuses, and one
backend (journal, scripts, faults) with the WebSocket. Against the real service with ``--rtzr-live``."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from grpc import aio

from fakertzr import load_fixture
from contract_tests.rtzr.protos import vito_stt_client_pb2 as pb
from contract_tests.rtzr.protos import vito_stt_client_pb2_grpc as pb_grpc

from . import client, grpc_client
from .test_standalone import write_wav
from .test_streaming import LONG_DIR, SEED_TEXTS, pcm

CHUNK = 1600  # 100 ms of 8 kHz LINEAR16


async def decode(g, audio: bytes, config: pb.DecoderConfig | None = None, *, token: str | None = "default",
                 half_close: bool = True) -> tuple[list[pb.StreamingRecognitionResult], grpc.StatusCode, str]:
    """One Decode call: (results, status, details). With grpcio's synchronous API in a thread, as RTZR's samples
    use it: its asyncio client reports INTERNAL "Internal error from Core" instead of the server's status when a
    write races the end of the call (grpc/grpc#36066; the fix, grpc/grpc#43486, is open)."""
    if token == "default":
        token = await g.rtzr.token()
    return await asyncio.to_thread(_decode, g, audio, config or grpc_client.sample_config(), token, half_close)


def _decode(g, audio: bytes, config: pb.DecoderConfig, token: str | None, half_close: bool):
    results: list[pb.StreamingRecognitionResult] = []
    done = threading.Event()

    def requests():
        yield pb.DecoderRequest(streaming_config=config)
        for i in range(0, len(audio), CHUNK):
            yield pb.DecoderRequest(audio_content=audio[i : i + CHUNK])
        if not half_close:
            done.wait(60)  # keep the call open, sending nothing, until the server ends it

    if g.secure:
        auth = {"credentials": grpc.access_token_call_credentials(token or "")}
    else:
        auth = {"metadata": (("authorization", f"Bearer {token}"),) if token else ()}
    with grpc_client.channel(g.target, g.secure) as channel:
        call = pb_grpc.OnlineDecoderStub(channel).Decode(requests(), timeout=60, **auth)
        try:
            for response in call:
                results.extend(response.results)
        except grpc.RpcError:
            pass
        finally:
            done.set()
        return results, call.code(), call.details() or ""


def texts(results) -> list[str]:
    return [r.alternatives[0].text for r in results if r.is_final]


async def test_rtzrs_grpc_sample_gets_the_seeds_three_finals(rtzr_grpc, seed, tmp_path):
    """RTZR's sample as it is written (sync gRPC, WAV bytes as read, its keywords), but for endpoint and token."""
    g = rtzr_grpc
    wav = write_wav(tmp_path / "seed.wav", seed.audio)
    token = await asyncio.to_thread(grpc_client.token, g.rtzr.base_url, g.rtzr.client_id, g.rtzr.client_secret)
    run = await asyncio.to_thread(grpc_client.transcribe_file, g.target, g.secure, token, wav, grpc_client.sample_config())
    if g.rtzr.live:
        assert run.finals
        return
    assert [text for _, _, text in run.finals] == SEED_TEXTS
    assert [(start, end) for start, end, _ in run.finals] == [(u.start_ms / 1000, u.end_ms / 1000) for u in seed.utterances]
    assert run.partials > 0
    record = g.rtzr.fake.journal.connections[-1]
    assert record.api == "grpc" and record.ended["how"] == "server_closed" and record.text_frames == ["(half-close)"]
    assert record.query["keywords"] == "농협은행:5.0,넘 예쁘네:-5.0,리턴제로" and record.query["use_itn"] == "true"


async def test_results_carry_what_the_websocket_sends_but_seq(rtzr_grpc, seed):
    results, code, _ = await decode(rtzr_grpc, pcm(seed))
    assert code == grpc.StatusCode.OK
    if rtzr_grpc.rtzr.live:
        return
    assert texts(results) == SEED_TEXTS
    ws = await client.stream(await rtzr_grpc.rtzr.connect(), pcm(seed))
    ws_finals = [m for m in ws.results if m["final"]]
    assert len(ws_finals) == len(SEED_TEXTS)  # zip below would compare fewer
    for got, want in zip([r for r in results if r.is_final], ws_finals):
        assert (got.start_at, got.duration) == (want["start_at"], want["duration"])
        assert [(w.text, w.start_at, w.duration) for w in got.alternatives[0].words] == \
            [(w["text"], w["start_at"], w["duration"]) for w in want["alternatives"][0]["words"]]
        assert got.alternatives[0].confidence == pytest.approx(want["alternatives"][0]["confidence"], abs=1e-6)
        # gRPC words carry a confidence, as RTZR's gRPC docs show them (the WebSocket's words have none)
        assert all(w.confidence == got.alternatives[0].confidence > 0 for w in got.alternatives[0].words)


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no token", "bad token"])
async def test_a_missing_or_bad_token_is_unauthenticated(rtzr_grpc, seed, token):
    results, code, details = await decode(rtzr_grpc, pcm(seed, 0, 1000), token=token)
    assert code != grpc.StatusCode.OK and not results, details
    if not rtzr_grpc.rtzr.live:  # the status and details are the fake's guess
        assert code == grpc.StatusCode.UNAUTHENTICATED and details.startswith("H0002")


async def test_a_first_request_without_config_is_invalid(rtzr_grpc, seed):
    g = rtzr_grpc
    if g.rtzr.live:
        pytest.skip("not sent to the real service: the fake's answer is a [guess]")
    async with aio.insecure_channel(g.target) as channel:
        call = pb_grpc.OnlineDecoderStub(channel).Decode(metadata=(("authorization", f"Bearer {await g.rtzr.token()}"),))
        await call.write(pb.DecoderRequest(audio_content=pcm(seed, 0, 100)))
        await call.done_writing()
        with pytest.raises(grpc.RpcError):
            async for _ in call:
                pass
        assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("status,grpc_status", [(429, grpc.StatusCode.RESOURCE_EXHAUSTED), (401, grpc.StatusCode.UNAUTHENTICATED),
                                                (503, grpc.StatusCode.UNAVAILABLE), (400, grpc.StatusCode.INVALID_ARGUMENT)])
async def test_a_refused_handshake_is_a_grpc_status(rtzr_grpc, seed, status, grpc_status):
    rtzr_grpc.rtzr.fake.add_fault({"type": "reject_handshake", "status": status})
    results, code, _ = await decode(rtzr_grpc, pcm(seed, 0, 1000))
    assert code == grpc_status and not results


async def test_concurrent_streams_over_the_limit_are_resource_exhausted(rtzr_grpc, seed):
    fake = rtzr_grpc.rtzr.fake
    fake.update_config({"max_streams": 1})
    ws = await rtzr_grpc.rtzr.connect()  # the WebSocket's stream counts against the same key
    results, code, details = await decode(rtzr_grpc, pcm(seed, 0, 1000))
    await ws.close()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("A0001")


async def test_a_close_fault_completes_the_stream_after_one_final(rtzr_grpc, seed):
    rtzr_grpc.rtzr.fake.add_fault({"type": "close", "code": 1000, "after_finals": 1})
    results, code, _ = await decode(rtzr_grpc, pcm(seed), half_close=False)
    assert code == grpc.StatusCode.OK and texts(results) == SEED_TEXTS[:1]


async def test_a_close_with_another_code_is_an_error_status(rtzr_grpc, seed):
    rtzr_grpc.rtzr.fake.add_fault({"type": "close", "code": 1011, "at_ms": 4500})
    results, code, details = await decode(rtzr_grpc, pcm(seed), half_close=False)
    assert code == grpc.StatusCode.INTERNAL and texts(results) == SEED_TEXTS[:1] and details.startswith("1011")


async def test_a_drop_is_unavailable(rtzr_grpc, seed):
    rtzr_grpc.rtzr.fake.add_fault({"type": "drop", "at_ms": 4500})
    results, code, _ = await decode(rtzr_grpc, pcm(seed), half_close=False)
    assert code == grpc.StatusCode.UNAVAILABLE and texts(results) == SEED_TEXTS[:1]
    assert rtzr_grpc.rtzr.fake.journal.connections[-1].ended["how"] == "dropped"


async def test_a_malformed_message_fault_is_a_response_with_error_set(rtzr_grpc, seed):
    rtzr_grpc.rtzr.fake.add_fault({"type": "malformed", "after_finals": 1})
    results, code, _ = await decode(rtzr_grpc, pcm(seed))
    assert code == grpc.StatusCode.OK
    assert texts(results)[:1] == SEED_TEXTS[:1]


async def test_stream_config_reaches_the_recognizer(rtzr_grpc):
    """``stream_config.max_utter_duration`` (and ``epd_time``, a float32) as the WebSocket's query parameters."""
    g = rtzr_grpc
    long = load_fixture(LONG_DIR)
    g.rtzr.fake.load_fixture(LONG_DIR)
    cut, _, _ = await decode(g, pcm(long), grpc_client.sample_config())
    whole, _, _ = await decode(g, pcm(long), grpc_client.sample_config(max_utter_duration=30, epd_time=0.8))
    assert len(texts(cut)) == 2 and texts(whole) == [long.utterances[0].text]
    query = g.rtzr.fake.journal.connections[-1].query
    assert query["max_utter_duration"] == "30" and query["epd_time"] == "0.8"


async def test_one_backend_for_the_three_apis(rtzr_grpc, seed):
    """One journal shows the WebSocket, gRPC and file API sessions; one fault list serves all three."""
    from .test_batch import SEED_WAV, poll, upload

    g = rtzr_grpc
    fake = g.rtzr.fake
    await client.stream(await g.rtzr.connect(), pcm(seed))
    await decode(g, pcm(seed))
    _, job = await upload(g.rtzr, SEED_WAV.read_bytes(), {})
    assert (await poll(g.rtzr, job["id"]))[1]["status"] == "completed"
    records = fake.journal.connections
    assert [r.api for r in records] == ["websocket", "grpc", "batch"]
    assert [[m.text for m in r.finals] for r in records] == [SEED_TEXTS] * 3
    fake.add_fault({"type": "reject_handshake", "status": 429, "times": 3})  # the next three, whichever API
    ws_status, _ = await client.handshake(g.rtzr.session, g.rtzr.url(), f"Bearer {await g.rtzr.token()}")
    _, grpc_code, _ = await decode(g, pcm(seed, 0, 1000))
    batch_status, _ = await upload(g.rtzr, SEED_WAV.read_bytes(), {})
    assert (ws_status, grpc_code, batch_status) == (429, grpc.StatusCode.RESOURCE_EXHAUSTED, 429)
