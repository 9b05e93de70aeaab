"""The aiohttp application: RTZR's endpoints, the control API, and a server you can start.

RTZR routes: ``POST /v1/authenticate``, ``GET /v1/transcribe:streaming`` (WebSocket), and the file API
(``POST /v1/transcribe``, ``GET /v1/transcribe/{id}``).
Control routes live under ``/_fake/``, a prefix RTZR cannot use.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import ssl
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from .appserver import IDLE_CONNECTION_S, AppServer
from .backend import FakeRtzrBackend, FakeRtzrConfig, OpenedStream
from .batch_routes import poll_handler, transcribe_handler
from .connection import StreamConnection
from .shutdown import drain
from .errors import FakeRtzrError
from .fixture import MAX_AUDIO_BYTES, decode_caller_audio, load_fixture, script_from_dict
from .journal import clip
from .validation import loads_strict
from .peers import Peers, merge_journals, merge_states
from callaudio import AudioFormatError
from callaudio.wavfile import parse_wav

log = logging.getLogger("fakertzr")
BACKEND_KEY = web.AppKey("backend", FakeRtzrBackend)
PEERS_KEY = web.AppKey("peers", Peers)  # set on a worker's public app: the control API answers for every worker
CONTROL_PREFIX = "/_fake"


# ------------------------------------------------------------------ RTZR API
async def authenticate(request: web.Request) -> web.Response:
    backend = request.app[BACKEND_KEY]
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:  # over aiohttp's 1 MiB: a 413 says so
        raise
    except Exception:  # noqa: BLE001 - any unreadable body is a bad request
        form = {}
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    status, body = backend.authenticate(fields)
    log.info("event=authenticate client_id=%r status=%s", clip(fields.get("client_id", ""), 64), status)  # repr: escaped
    return web.json_response(body, status=status)


async def transcribe_streaming(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND_KEY]
    outcome = backend.open_stream(request.headers, request.query)
    if not isinstance(outcome, OpenedStream):
        refusal, record = outcome
        log.info("connection=%s event=refused status=%s code=%s msg=%s", record.index, refusal.status, refusal.code, refusal.msg)
        return web.json_response(refusal.body(), status=refusal.status)
    # aiohttp refuses a message of max_msg_size bytes or more; the limit is "over max_frame_bytes"
    ws = web.WebSocketResponse(max_msg_size=backend.config.max_frame_bytes + 1, timeout=5.0, autoping=True)
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
MAX_CONTROL_BODY = 16 << 20  # a call's audio as base64 fits (about 25 minutes of mu-law)
JOURNAL_PAGE = 200  # connection records per GET /_fake/journal unless ?limit= says otherwise


def is_loopback(host: str | None) -> bool:
    """``host`` (a name or address, no port) is this machine: localhost, 127.0.0.0/8 or ::1."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _hostname(authority: str) -> str | None:
    """The host of ``host[:port]`` or of a URL (``http://[::1]:80`` -> ``::1``)."""
    return urlsplit(authority if "://" in authority else f"//{authority}").hostname


CONTROL_EXPOSED = ("anyone who can reach it can read the journal and reset or fault the fake through its control API "
                   f"({CONTROL_PREFIX}/*)")


def exposure_warning(url: str, exposed: str = CONTROL_EXPOSED, also: str = "") -> str | None:
    """The line to print when a fake at ``url`` (``http://host:port``, an IPv6 host bracketed or not) listens
    beyond loopback (``0.0.0.0``, a LAN address): what anyone on the network can do there (``exposed``), the
    control API's Host check being off. None on loopback."""
    host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
    host = host.strip("[]")
    if is_loopback(host):
        return None
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"fakertzr: warning: listening on {where}{also}, beyond loopback: {exposed}"


def cross_site_guard(loopback_only: bool) -> Callable:
    """Refuse control requests a web page could make: a foreign ``Origin`` or ``Sec-Fetch-Site``, a ``Host``
    that is not loopback (DNS rebinding) while the fake listens on loopback, a body that is not JSON."""

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if not request.path.startswith(CONTROL_PREFIX + "/"):
            return await handler(request)
        origin = request.headers.get("Origin")
        if origin is not None and not is_loopback(_hostname(origin)):
            return _refuse(403, f"control API: requests from Origin {clip(origin, 80)!r} are refused")
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return _refuse(403, "control API: cross-site requests are refused")
        if loopback_only and not is_loopback(_hostname(request.host)):
            return _refuse(403, f"control API: Host {clip(request.host, 80)!r} is not this loopback server")
        if request.can_read_body and request.content_type != "application/json":
            return _refuse(415, "control API: the body must be JSON (Content-Type: application/json)")
        return await handler(request)

    return guard


def _refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` (the rest of the app keeps aiohttp's 1 MiB)."""
    if (request.content_length or 0) > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _control(handler: Callable[[FakeRtzrBackend, dict[str, Any]], Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        body: dict[str, Any] = {}
        raw: bytes | None = None
        try:
            if request.can_read_body:
                raw = await _read_body(request, MAX_CONTROL_BODY)
                if raw is None:
                    return _refuse(413, f"control API: a body is at most {MAX_CONTROL_BODY >> 20} MiB")
                body = loads_strict(raw, "request body")
                if not isinstance(body, dict):
                    raise FakeRtzrError("request body must be a JSON object")
            body.update(request.match_info)
            result = handler(request.app[BACKEND_KEY], body)
        except (FakeRtzrError, AudioFormatError) as exc:
            return _refuse(400, str(exc))
        peers = request.app.get(PEERS_KEY)
        if peers is not None and peers.urls:  # applied here: now on every other worker
            others = await peers.send(request.method, request.path, request.query_string, raw)
            if request.method == "GET":
                result = merge_states(result, peers.index, others)
            failed = [(i, status, answer) for i, status, answer in others if status >= 300]
            if failed:
                i, status, answer = failed[0]
                why = answer.get("error", "") if isinstance(answer, dict) else ""
                return _refuse(502, f"applied on worker {peers.index}, but worker {i} answered {status}: {why}".rstrip(": "))
        return web.json_response(result if result is not None else {"ok": True})

    return wrapped


async def journal(request: web.Request) -> web.Response:
    """``GET /_fake/journal[?since=N][&limit=N][&connection=N...]``: one page of connection records."""
    query = request.query

    def number(name: str, raw: str, low: int, high: int) -> int:
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            raise FakeRtzrError(f"?{name}= must be a whole number {low}-{high}, got {clip(raw, 20)!r}")
        return int(raw)

    try:
        since = number("since", query.get("since", "0"), 0, 10**12)
        limit = number("limit", query.get("limit", str(JOURNAL_PAGE)), 1, 10_000)
        only = [number("connection", raw, 0, 10**12) for raw in query.getall("connection", [])] or None
    except FakeRtzrError as exc:
        return _refuse(400, str(exc))
    peers = request.app.get(PEERS_KEY)
    if peers is not None and peers.urls:  # every worker's page of the same query, merged
        others = await peers.send("GET", request.path, request.query_string, None)
        failed = [i for i, status, _ in others if status != 200]
        if failed:
            return _refuse(502, f"journal: worker {failed[0]} did not answer")
        own = request.app[BACKEND_KEY].journal.to_dict(since, limit, only)
        merged = merge_journals([own, *(page for _, _, page in others)], limit)
        return web.Response(text=json.dumps(merged, ensure_ascii=False), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    for piece in request.app[BACKEND_KEY].journal.json_pieces(since, limit, only):
        await response.write(piece.encode())
        await asyncio.sleep(0)  # live streams run between pieces
    await response.write_eof()
    return response


def _state(backend: FakeRtzrBackend, _: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": backend.mode,
        "scripts": [s.name for s in backend.scripts],
        "faults": [dict(id=i, **f.describe()) for i, f in enumerate(backend.faults)],
        "active_streams": backend.active_streams(),
        "batch_jobs": len(backend.batch.jobs),  # the file API's jobs held (until they expire)
        "connections": len(backend.journal.connections),
        "connections_total": backend.journal.total,
        "tasks": len(asyncio.all_tasks()),  # the server's event loop: a leak shows here
        "pid": os.getpid(),
        "config": {name: getattr(backend.config, name) for name in FakeRtzrConfig.UPDATABLE},
    }


def _load_script(backend: FakeRtzrBackend, body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - {"replace", "fixture_dir", "call", "audio_b64"}
    if unknown:
        raise FakeRtzrError(f"scripts: unknown field {sorted(unknown)[0][:40]!r} (takes fixture_dir, or call and audio_b64; replace)")
    if not isinstance(body.get("replace", False), bool):
        raise FakeRtzrError("replace: must be true or false")
    if "fixture_dir" in body:
        if not isinstance(body["fixture_dir"], str):
            raise FakeRtzrError("fixture_dir: must be a string (a directory holding call.json)")
        script = load_fixture(body["fixture_dir"])
    elif "call" in body and "audio_b64" in body:
        if not isinstance(body["audio_b64"], str) or len(body["audio_b64"]) > MAX_AUDIO_BYTES * 4 // 3 + 4:
            raise FakeRtzrError("audio_b64: must be a string of base64 (a WAV file)")
        try:
            blob = base64.b64decode(body["audio_b64"], validate=True)
        except ValueError:
            raise FakeRtzrError("audio_b64: not valid base64") from None
        audio = decode_caller_audio(parse_wav(blob, source="audio_b64"), "audio_b64")
        script = script_from_dict(body["call"], audio, "control API call")
    else:
        raise FakeRtzrError('give {"fixture_dir": "<dir>"} or {"call": {...}, "audio_b64": "<WAV>"}')
    if body.get("replace"):
        backend.clear_scripts()
    backend.load_script(script)
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


def create_app(backend: FakeRtzrBackend | None = None, *, loopback_only: bool = True) -> web.Application:
    """The fake as an aiohttp application around ``backend`` (a new one if not given). ``loopback_only``:
    the control API answers only requests addressed to a loopback Host (off when serving elsewhere)."""
    app = web.Application(middlewares=[cross_site_guard(loopback_only)])
    app[BACKEND_KEY] = backend or FakeRtzrBackend()
    app.router.add_post("/v1/authenticate", authenticate)
    app.router.add_get("/v1/transcribe:streaming", transcribe_streaming)
    app.router.add_post("/v1/transcribe", transcribe_handler(lambda r: r.app[BACKEND_KEY]))
    app.router.add_get("/v1/transcribe/{id}", poll_handler(lambda r: r.app[BACKEND_KEY], lambda r: r.app.get(PEERS_KEY)))
    p = CONTROL_PREFIX
    app.router.add_get(f"{p}/state", _control(_state))
    app.router.add_get(f"{p}/journal", journal)
    app.router.add_post(f"{p}/reset", _control(lambda b, _: b.reset()))
    app.router.add_post(f"{p}/scripts", _control(_load_script))
    app.router.add_delete(f"{p}/scripts", _control(lambda b, _: b.clear_scripts()))
    app.router.add_post(f"{p}/auto", _control(_auto))
    app.router.add_post(f"{p}/faults", _control(_add_fault))
    app.router.add_delete(f"{p}/faults", _control(lambda b, _: b.clear_faults()))
    app.router.add_delete(f"{p}/faults/{{id:\\d+}}", _control(_delete_fault))
    app.router.add_post(f"{p}/config", _control(lambda b, body: b.update_config(body)))
    app.router.add_post(f"{p}/tokens/revoke", _control(lambda b, _: b.tokens.revoke_all()))
    return app


class FakeRtzrServer(AppServer):
    """A running fake: ``await start()`` in your loop, or ``with FakeRtzrServer.in_thread()``. Stopping it closes
    every open stream with a close frame (``shutdown_code``, 1001 going away) and waits ``drain_s`` at most."""

    def __init__(self, backend: FakeRtzrBackend | None = None, host: str = "127.0.0.1", port: int = 0, *,
                 idle_connection_s: float = IDLE_CONNECTION_S, drain_s: float = 2.0, shutdown_code: int = 1001,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.backend = backend or FakeRtzrBackend()
        self.drain_s, self.shutdown_code = drain_s, shutdown_code
        self.drained: tuple[int, int] = (0, 0)  # (streams closed, streams still open when the drain ran out)
        super().__init__(create_app(self.backend, loopback_only=is_loopback(host)), host, port,
                         idle_connection_s=idle_connection_s, ssl_context=ssl_context)

    async def start(self) -> "FakeRtzrServer":
        self.backend.shutting_down = False  # a backend served again after a stop takes streams again
        await super().start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            self.drained = await drain(self.backend, self.shutdown_code, self.drain_s)
        await super().stop()

    @classmethod
    def in_thread(cls, backend: FakeRtzrBackend | None = None, host: str = "127.0.0.1", port: int = 0) -> "FakeRtzrServer":
        return cls(backend, host, port)
