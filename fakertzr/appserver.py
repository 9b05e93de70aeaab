"""Serve an aiohttp application on a free port: in the caller's event loop or in a thread."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .errors import FakeRtzrError

IDLE_CONNECTION_S = 20.0  # a socket with no complete request this long is closed (slowloris; idle keep-alive)


class ClientErrorsOnOneLine(logging.Filter):
    """aiohttp logs a traceback for every unparseable request (a 100 KB query, a 64 KB header): the client's
    mistake, not ours. Such records become one INFO line saying what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "%s: %s %s", (record.getMessage(), exc.code, str(exc.message)[:200])
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def http_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, ClientErrorsOnOneLine) for f in logger.filters):
        logger.addFilter(ClientErrorsOnOneLine())
    return logger


class AppServer:
    """``async with AppServer(app) as s`` in your loop, or ``with AppServer(app) as s`` for sync code."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0,
                 *, handler_cancellation: bool = False, idle_connection_s: float = IDLE_CONNECTION_S,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.ssl_context = ssl_context  # TLS: served as https:// and wss:// (``harness.fakes.tls``)
        self.idle_connection_s = idle_connection_s
        self.handler_cancellation = handler_cancellation  # cancel a handler when its client goes away
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` (``https://`` when served with TLS)."""
        return f"{'https' if self.ssl_context else 'http'}://{self._where}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self._where}"

    @property
    def _where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> "AppServer":
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=2.0,
                                     handler_cancellation=self.handler_cancellation,
                                     keepalive_timeout=self.idle_connection_s, logger=http_logger("fakertzr.http"))
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context).start()
        self.port = self._runner.addresses[0][1]  # the real port when 0 was asked for
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self):
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not started.wait(timeout=30):
            raise FakeRtzrError(f"{type(self).__name__} did not start within 30 s")
        if failure:
            raise failure[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)


class RelayServer(AppServer):
    """An AppServer that talks on to another service: its HTTP client session lives as long as the server."""

    session: aiohttp.ClientSession | None = None

    async def start(self) -> "RelayServer":
        self.session = aiohttp.ClientSession()
        await super().start()
        return self

    async def stop(self) -> None:
        await super().stop()
        if self.session is not None:
            await self.session.close()
            self.session = None
