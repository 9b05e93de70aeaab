"""A gRPC client written the way RTZR's Python sample is (vito-ai/python-tutorial, python-stt-sample/src/
sample_stt.py): a token from ``POST /v1/authenticate`` (requests), a channel, ``OnlineDecoderStub.Decode`` with
a request iterator - the config first, then the audio file's bytes in ``io.DEFAULT_BUFFER_SIZE`` chunks, WAV
header and all, as fast as gRPC takes them - and the token as access-token call credentials. Only the
endpoint and the credentials differ: the fake has no TLS, so the token goes as ``authorization`` metadata
(gRPC sends call credentials on secure channels only). Synchronous, as the sample is: run it in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import DEFAULT_BUFFER_SIZE
from pathlib import Path

import grpc
import requests

from contract_tests.rtzr.protos import vito_stt_client_pb2 as pb
from contract_tests.rtzr.protos import vito_stt_client_pb2_grpc as pb_grpc


@dataclass
class SampleRun:
    finals: list[tuple[float, float, str]] = field(default_factory=list)  # (start s, end s, text), as it prints
    partials: int = 0


def token(api_base: str, client_id: str, client_secret: str) -> str:
    resp = requests.post(api_base + "/v1/authenticate", data={"client_id": client_id, "client_secret": client_secret}, timeout=10)
    resp.raise_for_status()
    return resp.json()["access_token"]


def channel(target: str, secure: bool) -> grpc.Channel:
    return grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)


def transcribe_file(target: str, secure: bool, access_token: str, path: Path, config: pb.DecoderConfig,
                    timeout: float = 60.0) -> SampleRun:
    run = SampleRun()
    with channel(target, secure) as ch:
        stub = pb_grpc.OnlineDecoderStub(ch)

        def requests_iter():
            yield pb.DecoderRequest(streaming_config=config)
            with open(path, "rb") as f:
                while buff := f.read(DEFAULT_BUFFER_SIZE):
                    yield pb.DecoderRequest(audio_content=buff)

        if secure:
            responses = stub.Decode(requests_iter(), credentials=grpc.access_token_call_credentials(access_token), timeout=timeout)
        else:
            responses = stub.Decode(requests_iter(), metadata=(("authorization", f"Bearer {access_token}"),), timeout=timeout)
        for resp in responses:
            for res in resp.results:
                if res.is_final:
                    run.finals.append((res.start_at / 1000, (res.start_at + res.duration) / 1000, res.alternatives[0].text))
                else:
                    run.partials += 1
    return run


def sample_config(**stream) -> pb.DecoderConfig:
    """The sample's own config (its keywords included), at the fixture's 8 kHz."""
    config = pb.DecoderConfig(sample_rate=8000, encoding=pb.DecoderConfig.AudioEncoding.LINEAR16, use_itn=True,
                              use_disfluency_filter=False, use_profanity_filter=False,
                              keywords=["농협은행:5.0", "넘 예쁘네:-5.0", "리턴제로"])
    if stream:
        config.stream_config.CopyFrom(pb.RuntimeStreamConfig(**stream))
    return config
