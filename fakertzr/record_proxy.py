"""``fakertzr record``: a recording proxy in front of RTZR (or any fakertzr).

It serves the same token endpoint and streaming WebSocket, forwards each to the upstream with the client's
own credentials, and writes every stream that carried audio as a fixture (``call.json`` with a recorded
schedule, and ``caller.wav``). The client's token and the upstream's answers to ``/v1/authenticate`` pass
through untouched and are never written.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from callaudio.wavfile import mulaw_wav_bytes

from .appserver import AppServer
from .params import ParamError, parse_stream_params
from .recording import StreamRecorder

log = logging.getLogger("fakertzr.record")
STATE = web.AppKey("record_state", dict)


class RecordingProxy(AppServer):
    """``async with RecordingProxy(upstream, out_dir) as proxy``: point clients at ``proxy.base_url``."""

    def __init__(self, upstream: str, out_dir: str | Path, *, name: str = "recorded", redact: tuple[str, ...] = (),
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.out_dir = Path(out_dir)
        self.name = name
        self.redact = redact
        self.written: list[Path] = []
        self._numbers = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        app = web.Application()
        app.router.add_post("/v1/authenticate", self._authenticate)
        app.router.add_get("/v1/transcribe:streaming", self._stream)
        super().__init__(app, host, port)

    async def start(self) -> "RecordingProxy":
        self._session = aiohttp.ClientSession()
        await super().start()
        return self

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()

    # ----------------------------------------------------------------- token
    async def _authenticate(self, request: web.Request) -> web.Response:
        assert self._session is not None
        form = await request.post()
        try:
            async with self._session.post(f"{self.upstream}/v1/authenticate", data=dict(form)) as resp:
                body = await resp.read()
                return web.Response(body=body, status=resp.status, content_type=resp.content_type)
        except aiohttp.ClientError as exc:
            return web.json_response({"code": "E500", "msg": f"fakertzr record: upstream unreachable: {exc}"}, status=502)

    # ---------------------------------------------------------------- stream
    async def _stream(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        try:
            params = parse_stream_params(request.query)
        except ParamError:
            params = None  # the upstream says why; nothing is recorded
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        url = self.upstream.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + request.path_qs
        try:
            upstream = await self._session.ws_connect(url, headers=headers, max_msg_size=0, autoclose=False)
        except aiohttp.WSServerHandshakeError as exc:
            return web.json_response({"code": "", "msg": exc.message}, status=exc.status)
        except aiohttp.ClientError as exc:
            return web.json_response({"code": "E500", "msg": f"fakertzr record: upstream unreachable: {exc}"}, status=502)
        client = web.WebSocketResponse(max_msg_size=0, autoclose=False)
        await client.prepare(request)
        recorder = StreamRecorder(params) if params is not None else None
        async with asyncio.TaskGroup() as group:
            group.create_task(self._client_to_upstream(client, upstream, recorder))
            group.create_task(self._upstream_to_client(upstream, client, recorder))
        if recorder is not None and recorder.audio_bytes:
            self._write(recorder)
        return client

    async def _client_to_upstream(self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse,
                                  recorder: StreamRecorder | None) -> None:
        async for msg in client:
            if msg.type == WSMsgType.BINARY:
                if recorder is not None:
                    recorder.client_audio(msg.data)
                await upstream.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await upstream.send_str(msg.data)
            elif msg.type == WSMsgType.CLOSE:
                await upstream.close(code=client.close_code or 1000)
                break
        if not upstream.closed:
            await upstream.close()

    async def _upstream_to_client(self, upstream: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse,
                                  recorder: StreamRecorder | None) -> None:
        async for msg in upstream:
            if msg.type == WSMsgType.TEXT:
                if recorder is not None:
                    recorder.recognizer_message(msg.data)
                if not client.closed:
                    await client.send_str(msg.data)
            elif msg.type == WSMsgType.CLOSE:
                await client.close(code=upstream.close_code or 1000, message=(msg.extra or "").encode()[:120])
                break
        if not client.closed:
            await client.close(code=1011 if upstream.close_code is None else upstream.close_code)

    def _write(self, recorder: StreamRecorder) -> Path:
        name = f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}-{next(self._numbers)}"
        doc, ulaw = recorder.to_fixture(name, redact_kinds=self.redact, upstream=self.upstream)
        directory = self.out_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "caller.wav").write_bytes(mulaw_wav_bytes(ulaw))
        (directory / "call.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        self.written.append(directory)
        log.info("event=recorded fixture=%s results=%d audio_ms=%s", directory, recorder.results,
                 doc["audio"]["duration_ms"])
        return directory


def recorded_summary(directory: Path) -> dict[str, Any]:
    """What a written recording holds, for the CLI's one line per stream."""
    doc = json.loads((directory / "call.json").read_text(encoding="utf-8"))
    recorded = doc["recognizer"]["recorded"]
    return {"fixture": str(directory), "audio_ms": doc["audio"]["duration_ms"],
            "finals": sum(r["final"] for r in recorded), "partials": sum(not r["final"] for r in recorded)}
