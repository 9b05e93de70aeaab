"""RTZR's gRPC streaming API (``online_decoder.OnlineDecoder/Decode``) on the fake's one backend.

The messages are ``decoder.proto``'s, wire-identical to RTZR's current proto (rtzr/rtzr-api,
``protos/rtzr-stt.proto``), a superset of the older one (vito-ai/openapi-grpc): a client compiled from
either talks to the fake unchanged.

The same scripts, faults, journal and control API as the WebSocket: the first request's
``DecoderConfig`` becomes the WebSocket's query parameters, the ``authorization`` metadata its
header, and the stream runs in :class:`~fakertzr.connection.StreamConnection` with gRPC as the
transport. How the WebSocket's outcomes map to gRPC:

- a refused handshake: ``INVALID_ARGUMENT`` (400), ``UNAUTHENTICATED`` (401), ``PERMISSION_DENIED``
  (403), ``RESOURCE_EXHAUSTED`` (429), ``UNAVAILABLE`` (anything else), details ``"<code>: <msg>"``;
- the client's half-close: ``EOS`` (the open utterance's final, then the stream completes, ``OK``);
- ``streaming_control`` with ``DECODER_CMD_FINALIZE``: the WebSocket's ``{"type": "Finalize"}`` (the open
  utterance's final at once, the stream stays open); any other command is ignored, with one log line;
- a close: completion, ``OK`` for 1000, else ``UNAVAILABLE`` (1001), ``INTERNAL`` (1011) or ``UNKNOWN``;
- a drop: ``UNAVAILABLE`` "connection dropped" (grpcio gives a handler no way to cut the HTTP/2
  connection itself; this is the status a client sees when it is cut);
- a stall: nothing more is sent, the stream stays open;
- a malformed message: a response with ``error`` set;
- a request that is not a ``DecoderRequest`` (bytes protobuf cannot parse): ``INVALID_ARGUMENT``, one
  log line (grpcio's own deserializer logged a traceback and answered ``UNKNOWN``);
- a call that sends nothing, not even its config, for ``idle_timeout_s``: ended as the WebSocket's idle
  close is, by its ``idle_close_code``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator

from google.protobuf.message import DecodeError

import grpc
from grpc import aio

from ..actions import SendRaw, SendResult
from ..backend import FakeRtzrBackend, OpenedStream
from ..connection import StreamConnection
from ..shutdown import drain
from . import decoder_pb2 as pb

REFUSAL_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                  403: grpc.StatusCode.PERMISSION_DENIED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED}
CLOSE_STATUS = {1000: grpc.StatusCode.OK, 1001: grpc.StatusCode.UNAVAILABLE, 1011: grpc.StatusCode.INTERNAL}
DEFAULT_MODEL_ALIAS = "default"  # the proto's comment: "'default' for Korean"
SERVICE, METHOD = "online_decoder.OnlineDecoder", "Decode"
log = logging.getLogger("fakertzr.grpc")


class Unreadable:
    """A request message protobuf could not parse (what the deserializer hands on instead of raising)."""

    def __init__(self, size: int, why: str) -> None:
        self.size, self.why = size, why


def parse_request(raw: bytes) -> pb.DecoderRequest | Unreadable:
    try:
        return pb.DecoderRequest.FromString(raw)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        return Unreadable(len(raw), str(exc) or type(exc).__name__)


def unreadable_details(request: Unreadable) -> str:
    return f"H0001: a request of {request.size} bytes is not a DecoderRequest ({request.why[:80]})"


def config_query(config: pb.DecoderConfig) -> dict[str, str]:
    """A ``DecoderConfig`` as the WebSocket's query parameters (fields left unset are left out)."""
    encoding = pb.DecoderConfig.AudioEncoding.Name(config.encoding)
    query = {"sample_rate": str(config.sample_rate)}
    if config.encoding != pb.DecoderConfig.ENCODING_UNSPECIFIED:
        query["encoding"] = "LINEAR16" if encoding == "WAV" else encoding  # WAV: LINEAR16 behind a RIFF header
    if config.HasField("model_name"):
        query["model_name"] = "sommers_ko" if config.model_name == DEFAULT_MODEL_ALIAS else config.model_name
    for flag in ("use_itn", "use_disfluency_filter", "use_profanity_filter", "use_punctuation"):
        if config.HasField(flag):
            query[flag] = str(getattr(config, flag)).lower()
    if config.HasField("language"):
        query["language"] = config.language
    if config.HasField("domain"):
        query["domain"] = config.domain  # checked as the WebSocket's: CALL or MEETING, else H0001
    if config.keywords:
        query["keywords"] = ",".join(config.keywords)
    if config.HasField("stream_config"):
        stream = config.stream_config
        if stream.HasField("epd_time"):
            query["epd_time"] = f"{stream.epd_time:.6g}"  # a float32: 0.8 arrives as 0.800000011920929
        if stream.HasField("max_utter_duration"):
            query["max_utter_duration"] = str(stream.max_utter_duration)
    return query


def response_for(payload: dict[str, Any]) -> pb.DecoderResponse:
    """One WebSocket result as a ``DecoderResponse`` (no ``seq`` in gRPC). Each word carries a ``confidence``,
    as RTZR's gRPC docs show it: the fake scores whole utterances, so a word has its final's."""
    alternatives = [
        pb.SpeechRecognitionAlternative(
            text=alt.get("text", ""), confidence=alt.get("confidence", 0.0),
            words=[pb.WordInfo(text=w["text"], start_at=w["start_at"], duration=w["duration"],
                               confidence=w.get("confidence", alt.get("confidence", 0.0))) for w in alt.get("words", ())],
        )
        for alt in payload.get("alternatives", ())
    ]
    result = pb.StreamingRecognitionResult(alternatives=alternatives, is_final=bool(payload.get("final")),
                                           duration=int(payload.get("duration", 0)), start_at=int(payload.get("start_at", 0)))
    return pb.DecoderResponse(results=[result])


class GrpcStreamConnection(StreamConnection):
    """One accepted ``Decode`` call: the WebSocket connection's shell with gRPC reading and writing."""

    def __init__(self, context: aio.ServicerContext, requests: AsyncIterator[pb.DecoderRequest],
                 opened: OpenedStream, backend: FakeRtzrBackend) -> None:
        super().__init__(None, opened, backend, None)  # type: ignore[arg-type]
        self.context = context
        self.requests = requests
        self.status: tuple[grpc.StatusCode, str] = (grpc.StatusCode.OK, "")

    async def _read_loop(self) -> None:
        async for request in self.requests:
            if isinstance(request, Unreadable):
                log.info("connection=%s event=grpc_unreadable bytes=%d", self.record.index, request.size)
                self._end("client_error", None, "a request that is not a DecoderRequest")
                self.status = (grpc.StatusCode.INVALID_ARGUMENT, unreadable_details(request))
                return
            kind = request.WhichOneof("streaming_request")
            if kind == "audio_content":
                self.last_audio_at = time.monotonic()
                self.record.audio_frames += 1
                self._enqueue(self.session.receive_audio(request.audio_content))
            elif kind == "streaming_control":
                self._control(request.streaming_control.command)
        self._end_of_audio()

    def _control(self, command: int) -> None:
        """``DECODER_CMD_FINALIZE``: the WebSocket's ``{"type": "Finalize"}``; anything else is ignored."""
        name = pb.DecoderControl.DecoderCommand.Name(command) if command in pb.DecoderControl.DecoderCommand.values() \
            else str(command)
        if len(self.record.text_frames) < self.record.MAX_TEXT_FRAMES:
            self.record.text_frames.append(f"(control {name})")
        if command == pb.DecoderControl.DECODER_CMD_FINALIZE:
            self._enqueue(self.session.receive_text('{"type": "Finalize"}'))
        else:
            log.info("connection=%s event=grpc_control_ignored command=%s", self.record.index, name)

    def _end_of_audio(self) -> None:
        """The client half-closed: the WebSocket's ``EOS``."""
        if len(self.record.text_frames) < self.record.MAX_TEXT_FRAMES:
            self.record.text_frames.append("(half-close)")
        if self.record.eos_wall is None:
            self.record.eos_wall = time.monotonic()
        self._enqueue(self.session.receive_text("EOS"))

    async def _drop(self) -> None:
        self.status = (grpc.StatusCode.UNAVAILABLE, "connection dropped")
        self._reader.cancel()

    async def _close(self, code: int, reason: str) -> None:
        self.status = (CLOSE_STATUS.get(code, grpc.StatusCode.UNKNOWN), f"{code} {reason}".strip())
        self._reader.cancel()

    async def _transmit(self, action: SendResult | SendRaw) -> str | None:
        if isinstance(action, SendResult):
            payload, response = json.dumps(action.result.payload, ensure_ascii=False), response_for(action.result.payload)
        else:
            payload, response = action.text, pb.DecoderResponse(error=True)
        try:
            await self.context.write(response)
        except Exception:  # noqa: BLE001 - the call is over (cancelled, or done): the reader sees it
            return None
        return payload


class OnlineDecoder:
    """The servicer of ``online_decoder.OnlineDecoder``; see the module docstring."""

    def __init__(self, backend: FakeRtzrBackend) -> None:
        self.backend = backend

    async def Decode(self, request_iterator: AsyncIterator[pb.DecoderRequest], context: aio.ServicerContext) -> None:  # noqa: N802
        requests = request_iterator.__aiter__()
        idle = self.backend.config.idle_timeout_s
        try:  # the stream's idle close begins with the stream: a call that never sends its config is closed too
            first = await asyncio.wait_for(anext(requests, None), idle)
        except asyncio.TimeoutError:
            code = self.backend.config.idle_close_code
            log.info("event=grpc_idle_before_config idle_s=%g", idle)
            status = CLOSE_STATUS.get(code, grpc.StatusCode.UNKNOWN)
            if status == grpc.StatusCode.OK:
                return  # 1000: the call completes, as a closed stream does
            await context.abort(status, f"{code} no config or audio for {idle:g} s")
        if isinstance(first, Unreadable):
            log.info("event=grpc_unreadable bytes=%d", first.size)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, unreadable_details(first))
        if first is None or first.WhichOneof("streaming_request") != "streaming_config":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "H0001: the first request must carry streaming_config")
        metadata = {key.lower(): value for key, value in context.invocation_metadata() or ()}
        headers = {"Authorization": metadata["authorization"]} if "authorization" in metadata else {}
        outcome = self.backend.open_stream(headers, config_query(first.streaming_config), api="grpc")
        if not isinstance(outcome, OpenedStream):
            refusal, _ = outcome
            await context.abort(REFUSAL_STATUS.get(refusal.status, grpc.StatusCode.UNAVAILABLE), f"{refusal.code}: {refusal.msg}")
        stream = GrpcStreamConnection(context, requests, outcome, self.backend)
        try:
            await stream.run()
        finally:
            self.backend.stream_closed(outcome)
        code, details = stream.status
        if code != grpc.StatusCode.OK:
            await context.abort(code, details)


class FakeRtzrGrpcServer:
    """The gRPC API of a backend on ``host:port`` (0: a free port): ``async with``, or ``start``/``stop``."""

    def __init__(self, backend: FakeRtzrBackend, host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False,
                 tls: tuple[bytes, bytes] | None = None) -> None:
        """``reuse_port`` for ``fakertzr serve --workers`` (every worker on one port); otherwise a port in use is an error.
        ``tls``: (private key, certificate chain) as PEM, to serve gRPC over TLS (``harness.fakes.tls``)."""
        self.backend, self.host, self.port = backend, host, port
        self.reuse_port = reuse_port
        self.tls = tls
        self._server: aio.Server | None = None

    @property
    def target(self) -> str:
        """What a client's channel connects to (``grpc.insecure_channel(server.target)``)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        server = aio.server(options=[("grpc.so_reuseport", int(self.reuse_port))])
        # the generated registration, but with a deserializer that never raises (see ``parse_request``)
        decode = grpc.stream_stream_rpc_method_handler(OnlineDecoder(self.backend).Decode, request_deserializer=parse_request,
                                                      response_serializer=pb.DecoderResponse.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: decode}),))
        address = f"{self.host}:{self.port}"
        self.port = (server.add_secure_port(address, grpc.ssl_server_credentials([self.tls])) if self.tls
                     else server.add_insecure_port(address))
        if self.port == 0:
            raise OSError(f"cannot listen on {self.host} for gRPC")
        await server.start()
        self._server = server

    async def stop(self, grace: float = 1.0, *, drain_s: float = 2.0, shutdown_code: int = 1001) -> None:
        """Every open call ended as a closed stream is (``shutdown_code`` 1001: ``UNAVAILABLE``), waiting
        ``drain_s`` at most, then the server stopped (calls still running after ``grace`` are cancelled)."""
        if self._server is not None:
            await drain(self.backend, shutdown_code, drain_s)
            await self._server.stop(grace)
            self._server = None

    async def __aenter__(self) -> "FakeRtzrGrpcServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
