"""The aiohttp application: RTZR's endpoints, the control API, and a server you can start.

RTZR routes: ``POST /v1/authenticate`` and ``GET /v1/transcribe:streaming`` (WebSocket).
Control routes live under ``/_fake/``, a prefix RTZR cannot use.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from .appserver import AppServer
from .backend import FakeRtzrBackend, FakeRtzrConfig, OpenedStream
from .connection import StreamConnection
from .errors import FakeRtzrError
from .fixture import decode_caller_audio, script_from_dict
from callaudio import AudioFormatError
from callaudio.wavfile import parse_wav

log = logging.getLogger("fakertzr")
BACKEND_KEY = web.AppKey("backend", FakeRtzrBackend)
CONTROL_PREFIX = "/_fake"


# ------------------------------------------------------------------ RTZR API
async def authenticate(request: web.Request) -> web.Response:
    backend = request.app[BACKEND_KEY]
    try:
        form = await request.post()
    except Exception:  # noqa: BLE001 - any unreadable body is a bad request
        form = {}
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    status, body = backend.authenticate(fields)
    log.info("event=authenticate client_id=%s status=%s", fields.get("client_id", ""), status)
    return web.json_response(body, status=status)


async def transcribe_streaming(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND_KEY]
    outcome = backend.open_stream(request.headers, request.query)
    if not isinstance(outcome, OpenedStream):
        refusal, record = outcome
        log.info("connection=%s event=refused status=%s code=%s msg=%s", record.index, refusal.status, refusal.code, refusal.msg)
        return web.json_response(refusal.body(), status=refusal.status)
    ws = web.WebSocketResponse(max_msg_size=backend.config.max_frame_bytes, timeout=5.0, autoping=True)
    try:
        await ws.prepare(request)
        log.info("connection=%s event=open mode=%s", outcome.record.index, outcome.record.mode)
        await StreamConnection(ws, outcome, backend, request.transport).run()
    finally:
        backend.stream_closed(outcome)
        log.info("connection=%s event=end ended=%s finals=%d", outcome.record.index,
                 (outcome.record.ended or {}).get("how"), len(outcome.record.finals))
    return ws


# --------------------------------------------------------------- control API
def _control(handler: Callable[[FakeRtzrBackend, dict[str, Any]], Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return web.json_response({"error": "request body must be JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "request body must be a JSON object"}, status=400)
        body.update(request.match_info)
        try:
            result = handler(request.app[BACKEND_KEY], body)
        except (FakeRtzrError, AudioFormatError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result if result is not None else {"ok": True})

    return wrapped


def _state(backend: FakeRtzrBackend, _: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": backend.mode,
        "scripts": [s.name for s in backend.scripts],
        "faults": [dict(id=i, **f.describe()) for i, f in enumerate(backend.faults)],
        "active_streams": backend.active_streams(),
        "connections": len(backend.journal.connections),
        "config": {name: getattr(backend.config, name) for name in FakeRtzrConfig.UPDATABLE},
    }


def _load_script(backend: FakeRtzrBackend, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("replace"):
        backend.clear_scripts()
    if "fixture_dir" in body:
        script = backend.load_fixture(body["fixture_dir"])
    elif "call" in body and "audio_b64" in body:
        try:
            blob = base64.b64decode(body["audio_b64"], validate=True)
        except ValueError:
            raise FakeRtzrError("audio_b64: not valid base64") from None
        audio = decode_caller_audio(parse_wav(blob, source="audio_b64"), "audio_b64")
        script = backend.load_script(script_from_dict(body["call"], audio, "control API call"))
    else:
        raise FakeRtzrError('give {"fixture_dir": "<dir>"} or {"call": {...}, "audio_b64": "<WAV>"}')
    return {"loaded": script.name, "scripts": [s.name for s in backend.scripts]}


def _auto(backend: FakeRtzrBackend, body: dict[str, Any]) -> dict[str, Any]:
    texts = body.get("texts", [])
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise FakeRtzrError("texts must be a list of strings")
    backend.set_auto_texts(texts)
    return {"mode": "auto", "texts": len(texts)}


def _add_fault(backend: FakeRtzrBackend, body: dict[str, Any]) -> dict[str, Any]:
    fault = backend.add_fault(body)
    return {"id": len(backend.faults) - 1, **fault.describe()}


def _delete_fault(backend: FakeRtzrBackend, body: dict[str, Any]) -> None:
    index = int(body["id"])
    if not 0 <= index < len(backend.faults):
        raise FakeRtzrError(f"no fault with id {index}")
    backend.faults.pop(index)


def create_app(backend: FakeRtzrBackend | None = None) -> web.Application:
    """The fake as an aiohttp application around ``backend`` (a new one if not given)."""
    app = web.Application()
    app[BACKEND_KEY] = backend or FakeRtzrBackend()
    app.router.add_post("/v1/authenticate", authenticate)
    app.router.add_get("/v1/transcribe:streaming", transcribe_streaming)
    p = CONTROL_PREFIX
    app.router.add_get(f"{p}/state", _control(_state))
    app.router.add_get(f"{p}/journal", _control(lambda b, _: b.journal.to_dict()))
    app.router.add_post(f"{p}/reset", _control(lambda b, _: b.reset()))
    app.router.add_post(f"{p}/scripts", _control(_load_script))
    app.router.add_delete(f"{p}/scripts", _control(lambda b, _: b.clear_scripts()))
    app.router.add_post(f"{p}/auto", _control(_auto))
    app.router.add_post(f"{p}/faults", _control(_add_fault))
    app.router.add_delete(f"{p}/faults", _control(lambda b, _: b.clear_faults()))
    app.router.add_delete(f"{p}/faults/{{id:\\d+}}", _control(_delete_fault))
    app.router.add_post(f"{p}/config", _control(lambda b, body: b.update_config(body)))
    return app


class FakeRtzrServer(AppServer):
    """A running fake: ``await start()`` in your loop, or ``with FakeRtzrServer.in_thread()``."""

    def __init__(self, backend: FakeRtzrBackend | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.backend = backend or FakeRtzrBackend()
        super().__init__(create_app(self.backend), host, port)

    @classmethod
    def in_thread(cls, backend: FakeRtzrBackend | None = None, host: str = "127.0.0.1", port: int = 0) -> "FakeRtzrServer":
        return cls(backend, host, port)
