"""``fakertzr record``: a recording proxy in front of RTZR (or any fakertzr).

It serves the same token endpoint and streaming WebSocket, forwards each to the upstream with the client's
own credentials, and writes every stream that carried audio as a fixture (``call.json`` with a recorded
schedule, and ``caller.wav``). The client's token and the upstream's answers to ``/v1/authenticate`` pass
through untouched and are never written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from callaudio.wavfile import mulaw_wav_bytes

from .appserver import RelayServer
from .params import ParamError, parse_stream_params
from .recording import REDACTIONS, StreamRecorder, fixture_directory

log = logging.getLogger("fakertzr.record")


@dataclass
class RecordedStream:
    """A stream as the proxy saw it: when it opened, what it carried (or the status that refused its
    handshake), and whether it has ended."""

    opened: float
    recorder: StreamRecorder | None
    refused: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class RecordedAuthFailure:
    at: float
    status: int


class RecordingProxy(RelayServer):
    """``async with RecordingProxy(upstream, out_dir) as proxy``: point clients at ``proxy.base_url``."""

    def __init__(self, upstream: str, out_dir: str | Path | None, *, name: str = "recorded", redact: tuple[str, ...] = REDACTIONS,
                 mode: str = "new_episodes", host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.out_dir = Path(out_dir) if out_dir is not None else None  # None: keep streams in memory only
        self.streams: list[RecordedStream] = []  # kept for a caller to claim (harness record) when not written
        self.auth_failures: list[RecordedAuthFailure] = []
        self.changed = asyncio.Condition()  # notified when a stream opens or ends
        self.name = name
        self.redact = redact
        self.mode = mode
        self.written: list[Path] = []
        app = web.Application()
        app.router.add_post("/v1/authenticate", self._authenticate)
        app.router.add_get("/v1/transcribe:streaming", self._stream)
        super().__init__(app, host, port)

    # ----------------------------------------------------------------- token
    async def _authenticate(self, request: web.Request) -> web.Response:
        assert self.session is not None
        form = await request.post()
        try:
            async with self.session.post(f"{self.upstream}/v1/authenticate", data=dict(form)) as resp:
                body = await resp.read()
                if resp.status != 200 and self.out_dir is None:
                    self.auth_failures.append(RecordedAuthFailure(time.monotonic(), resp.status))
                return web.Response(body=body, status=resp.status, content_type=resp.content_type)
        except aiohttp.ClientError as exc:
            return web.json_response({"code": "E500", "msg": f"fakertzr record: upstream unreachable: {exc}"}, status=502)

    # ---------------------------------------------------------------- stream
    async def _stream(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        try:
            params = parse_stream_params(request.query)
        except ParamError:
            params = None  # the upstream says why; nothing is recorded
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        url = self.upstream.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + request.path_qs
        try:
            upstream = await self.session.ws_connect(url, headers=headers, max_msg_size=0, autoclose=False)
        except aiohttp.WSServerHandshakeError as exc:
            refused = RecordedStream(time.monotonic(), None, refused=exc.status)
            refused.done.set()
            await self._keep(refused)
            return web.json_response({"code": "", "msg": exc.message}, status=exc.status)
        except aiohttp.ClientError as exc:
            return web.json_response({"code": "E500", "msg": f"fakertzr record: upstream unreachable: {exc}"}, status=502)
        client = web.WebSocketResponse(max_msg_size=0, autoclose=False)
        await client.prepare(request)
        recorder = StreamRecorder(params) if params is not None else None
        entry = RecordedStream(time.monotonic(), recorder) if recorder is not None else None
        if entry is not None:
            await self._keep(entry)
        try:
            client_done = asyncio.Event()  # EOS or a Close from the client: what ends after it is not a fault
            async with asyncio.TaskGroup() as group:
                group.create_task(self._client_to_upstream(client, upstream, recorder, client_done))
                group.create_task(self._upstream_to_client(upstream, client, recorder, client_done,
                                                           lambda: request.transport and request.transport.abort()))
            if recorder is not None and recorder.audio_bytes and self.out_dir is not None:
                self._write(recorder)
        finally:
            if entry is not None:
                entry.done.set()
                await self._notify()
        return client

    async def _keep(self, entry: RecordedStream) -> None:
        if self.out_dir is None:  # written files need nothing kept; harness record claims these
            self.streams.append(entry)
        await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _client_to_upstream(self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse,
                                  recorder: StreamRecorder | None, client_done: asyncio.Event) -> None:
        async for msg in client:  # ends at the client's Close
            if msg.type == WSMsgType.BINARY:
                if recorder is not None:
                    recorder.client_audio(msg.data)
                await upstream.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                if msg.data.strip() == "EOS":
                    client_done.set()
                    if recorder is not None:
                        recorder.client_eos()
                await upstream.send_str(msg.data)
        if recorder is not None and not upstream.closed:
            recorder.client_abandoned()
        client_done.set()
        if not upstream.closed:
            await upstream.close(code=client.close_code or 1000)

    async def _upstream_to_client(self, upstream: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse,
                                  recorder: StreamRecorder | None, client_done: asyncio.Event,
                                  drop: Callable[[], None]) -> None:
        async for msg in upstream:  # ends at the upstream's Close, or when its socket goes
            if msg.type == WSMsgType.TEXT:
                if recorder is not None:
                    recorder.recognizer_message(msg.data)
                if not client.closed:
                    await client.send_str(msg.data)
        code = upstream.close_code
        dropped = code in (None, WSCloseCode.ABNORMAL_CLOSURE)
        if recorder is not None and not client_done.is_set():  # the recognizer ended it first: a fault to replay
            recorder.upstream_ended("drop" if dropped else "close", code)
        if dropped and not client_done.is_set():
            drop()  # the client sees what the proxy saw: no close frame
        elif not client.closed:
            await client.close(code=code or 1000)

    def _write(self, recorder: StreamRecorder) -> Path | None:
        assert self.out_dir is not None
        directory = fixture_directory(self.out_dir, self.name, self.mode)
        if directory is None:
            log.info("event=not_recorded mode=%s name=%s", self.mode, self.name)
            return None
        doc, ulaw = recorder.to_fixture(directory.name, redact_kinds=self.redact, upstream=self.upstream)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "caller.wav").write_bytes(mulaw_wav_bytes(ulaw))
        (directory / "call.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        self.written.append(directory)
        log.info("event=recorded fixture=%s results=%d audio_ms=%s", directory, recorder.results,
                 doc["audio"]["duration_ms"])
        return directory

