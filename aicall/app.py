"""The aiohttp application: Twilio's voice webhook, the Media Streams WebSocket, and a health check."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from importlib import resources
from typing import AsyncIterator

import aiohttp
from aiohttp import WSCloseCode, web

from . import twilio
from .call import CallDeps, CallSession
from .config import Settings, load_settings
from .llm import ChatClient
from .rtzr_client import RtzrTokens
from .store import CallStore
from .tts import EspeakTts, OpenAiTts, Tts

log = logging.getLogger("aicall")
SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", CallDeps)
CALLS = web.AppKey("calls", set)
CALLS_CHANGED = web.AppKey("calls_changed", asyncio.Condition)

MEDIA_PATH = "/twilio/media"
CLOSE_WAIT_S = 5.0  # after our Close, how long the peer has to answer with its own

def apology_audio() -> bytes:
    return resources.files("aicall.prompts").joinpath("apology_ko.ulaw").read_bytes()


def make_tts(settings: Settings, session: aiohttp.ClientSession) -> Tts:
    if settings.tts_engine == "espeak":
        return EspeakTts(settings.espeak_voice)
    return OpenAiTts(session, settings.tts_base_url, settings.tts_api_key, settings.tts_model,
                     settings.tts_voice, settings.tts_sample_rate)


def _public_url(request: web.Request, path: str, *, websocket: bool) -> str:
    settings = request.app[SETTINGS]
    base = settings.public_url or f"{request.scheme}://{request.host}"
    if websocket:
        base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}{path}"


def _signed(request: web.Request, url: str, params: dict[str, str] | None) -> bool:
    token = request.app[SETTINGS].twilio_auth_token
    if not token:
        return True
    return twilio.signature_is_valid(token, url, params, request.headers.get("X-Twilio-Signature"))


async def voice(request: web.Request) -> web.Response:
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if not _signed(request, _public_url(request, request.path_qs, websocket=False), form):
        log.warning("event=voice_refused reason=bad_signature")
        return web.Response(status=403, text="invalid X-Twilio-Signature")
    stream_url = _public_url(request, MEDIA_PATH, websocket=True)
    twiml = twilio.connect_twiml(stream_url, {"caller": form.get("From", "")})
    return web.Response(text=twiml, content_type="application/xml")


async def media(request: web.Request) -> web.StreamResponse:
    if not _signed(request, _public_url(request, MEDIA_PATH, websocket=True), None):
        log.warning("event=media_refused reason=bad_signature")
        return web.Response(status=403, text="invalid X-Twilio-Signature")
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 20, timeout=CLOSE_WAIT_S)
    await ws.prepare(request)
    call = CallSession(ws, request.app[DEPS])
    request.app[CALLS].add(call)
    try:
        await call.run()
    finally:
        request.app[CALLS].discard(call)
        async with request.app[CALLS_CHANGED]:
            request.app[CALLS_CHANGED].notify_all()
    return ws


async def wait_for_calls_to_end(app: web.Application, timeout: float) -> bool:
    """Wait until no call is in progress (every call's tasks done); False if ``timeout`` passed first."""
    condition = app[CALLS_CHANGED]
    try:
        async with condition:
            await asyncio.wait_for(condition.wait_for(lambda: not app[CALLS]), timeout)
        return True
    except asyncio.TimeoutError:
        return False


async def wait_for_call_to_end(app: web.Application, call_sid: str, timeout: float) -> bool:
    """Wait until the call with ``call_sid`` is over (its tasks done); False if ``timeout`` passed first."""
    condition = app[CALLS_CHANGED]
    try:
        async with condition:
            await asyncio.wait_for(condition.wait_for(lambda: all(c.call_sid != call_sid for c in app[CALLS])), timeout)
        return True
    except asyncio.TimeoutError:
        return False


async def close_calls(app: web.Application) -> None:
    """The server is stopping (SIGTERM, Ctrl-C): every call ends with a close frame (1001 going away) and is
    stored as ended by "shutdown", within ``shutdown_drain_s``; then what is still running is cancelled."""
    calls = list(app[CALLS])
    if not calls:
        return  # (a server that never listened is cleaned up so too: nothing to say)
    for call in calls:
        call.end_reason = "shutdown"  # before the socket closes: its read loop would say "socket closed"
    await asyncio.gather(*(call.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                           for call in calls), return_exceptions=True)
    drained = await wait_for_calls_to_end(app, app[SETTINGS].shutdown_drain_s)
    log.info("event=shutdown calls=%d drained=%s", len(calls), drained)


async def healthz(request: web.Request) -> web.Response:
    sockets = request.app[CALLS]
    return web.json_response({"ok": True, "calls": sum(1 for c in sockets if c.call_id), "sockets": len(sockets),
                              "tasks": len(asyncio.all_tasks())})


def create_app(settings: Settings, store: CallStore | None = None) -> web.Application:
    """The app; its HTTP session, clients and store live as long as it does."""
    app = web.Application()
    app[SETTINGS] = settings
    app[CALLS] = set()
    app[CALLS_CHANGED] = asyncio.Condition()

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        # no pool limit: every call holds one RTZR WebSocket from it for its whole length
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            owned = store is None
            call_store = store or CallStore(settings.db_path)
            app[DEPS] = CallDeps(
                settings=settings,
                tokens=RtzrTokens(session, settings.rtzr_api_base, settings.rtzr_client_id, settings.rtzr_client_secret),
                chat=ChatClient(session, settings.openai_base_url, settings.openai_api_key, settings.llm_model),
                tts=make_tts(settings, session),
                store=call_store,
                apology_ulaw=apology_audio(),
            )
            yield
            if owned:
                call_store.close()

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(close_calls)
    app.router.add_post("/twilio/voice", voice)
    app.router.add_get(MEDIA_PATH, media)
    app.router.add_get("/healthz", healthz)
    return app


def settings_for_serving() -> Settings:
    """The settings from the environment (or ``.env``), and a store that opens with them: a bad setting or an
    unusable store fails here, before any port opens (raises ``AicallError``)."""
    settings = load_settings(os.environ)
    CallStore(settings.db_path).close()
    return settings


async def from_env() -> web.Application:
    """The app for a process manager that builds it in each worker it forks, configured as ``aicall serve``
    is (the environment, or ``.env``): one aicall on every core, e.g.
    ``gunicorn 'aicall.app:from_env' --worker-class aiohttp.GunicornUVLoopWebWorker --workers 4``.
    The workers share the port and the call store (SQLite in WAL mode takes their writes in turn).
    ``AICALL_LOG_LEVEL`` (default INFO) sets what reaches stderr; each line names its worker's pid."""
    settings = settings_for_serving()  # a bad setting stops the worker's boot, and gunicorn with it
    logging.basicConfig(level=os.environ.get("AICALL_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s")
    app = create_app(settings)
    gc.freeze()  # what start-up made lives as long as the worker: full collections need not walk it
    return app
