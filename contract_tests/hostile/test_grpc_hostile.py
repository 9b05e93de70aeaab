"""The gRPC API holds requests a polite client never sends (issue 22, item 8): bytes that are not a
``DecoderRequest`` are refused with ``INVALID_ARGUMENT`` and one log line (grpcio's own deserializer logged
a traceback and answered ``UNKNOWN``), and a call that sends nothing at all is closed as an idle stream is."""

from __future__ import annotations

import asyncio
import logging
import threading

import grpc
import pytest

from fakertzr import FakeRtzrBackend, FakeRtzrConfig
from contract_tests.rtzr.protos import vito_stt_client_pb2 as pb
from fakertzr.grpc.service import FakeRtzrGrpcServer

from .conftest import SEED_DIR

METHOD = "/online_decoder.OnlineDecoder/Decode"
GARBAGE = b"\xff\xff\xff\xff\x0f" * 20  # no protobuf message parses from this


def call_raw(target: str, messages: list[bytes], *, hold: threading.Event | None = None,
             token: str = "") -> tuple[grpc.StatusCode, str]:
    """A Decode call sending these raw bytes as its messages (then holding the call open on ``hold``, if given)."""
    def requests():
        yield from messages
        if hold is not None:
            hold.wait(30)

    with grpc.insecure_channel(target) as channel:
        decode = channel.stream_stream(METHOD, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
        call = decode(requests(), timeout=20, metadata=(("authorization", f"Bearer {token}"),) if token else ())
        try:
            for _ in call:
                pass
        except grpc.RpcError:
            pass
        finally:
            if hold is not None:
                hold.set()
        return call.code(), call.details() or ""


@pytest.mark.parametrize("first", [True, False])
async def test_bytes_that_are_not_a_request_are_invalid_argument_and_one_log_line(first, caplog):
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(SEED_DIR)]))
    config = pb.DecoderRequest(streaming_config=pb.DecoderConfig(sample_rate=8000, encoding=pb.DecoderConfig.LINEAR16))
    messages = [GARBAGE] if first else [config.SerializeToString(), pb.DecoderRequest(audio_content=b"\0" * 320).SerializeToString(), GARBAGE]
    caplog.set_level(logging.INFO)
    token = backend.tokens.issue("fakertzr-client").access_token  # past the config, the stream needs one
    async with FakeRtzrGrpcServer(backend) as server:
        code, details = await asyncio.to_thread(call_raw, server.target, messages, token=token)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a DecoderRequest" in details, (code, details)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert len([r for r in caplog.records if "grpc_unreadable" in r.getMessage()]) == 1


async def test_a_call_that_sends_nothing_is_closed_as_an_idle_stream():
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(SEED_DIR)], idle_timeout_s=0.5,
                                             idle_close_code=1001))
    async with FakeRtzrGrpcServer(backend) as server:
        code, details = await asyncio.to_thread(call_raw, server.target, [], hold=threading.Event())
    assert code == grpc.StatusCode.UNAVAILABLE and "no config or audio" in details, (code, details)  # not the client's deadline
