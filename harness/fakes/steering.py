"""Vendor hosts steered to the fakes, everything else refused by name: an HTTP proxy for the handler.

A handler that hard-codes ``https://openapi.vito.ai`` or ``api.openai.com`` is started with the standard
proxy variables pointing here (:meth:`SteeringProxy.env`). Its client asks the proxy to ``CONNECT
openapi.vito.ai:443``; the proxy opens the tunnel to the fake that answers for that host
(:data:`harness.fakes.tls.VENDOR_HOSTS`), which serves TLS with a certificate for that very name signed by
the run's CA (:mod:`harness.fakes.tls`), so the client verifies it as it would the real host and speaks
to it unchanged. A ``CONNECT`` to any other host, and any plain-HTTP request through the proxy, is answered
``403`` and journaled (:class:`Refused`): "the handler tried to reach api.elevenlabs.io: not faked,
refused". Nothing real is called.

This is how mitmproxy's regular mode and Hoverfly's simulate mode meet a client: the client opts in through
``HTTPS_PROXY``, which requests, httpx (so the openai SDK), websockets (14 and later), grpcio and
``aiohttp.ClientSession(trust_env=True)`` read. A client that ignores the proxy variables (aiohttp's
default session, so LiveKit's RTZR plugin; Node's ``fetch``, ``ws`` and ``https`` before Node 24) is steered
one level down, where it resolves or connects: a hook the harness loads into the handler's runtime
(``steer_hooks/sitecustomize.py`` on ``PYTHONPATH``, ``steer_hooks/steer.cjs`` in ``NODE_OPTIONS``) sends a
vendor host to its *forwarder* (a port per host on 127.0.0.1 that pipes to the fake, journaled as a
``Steered(via="resolver")``) and tells the proxy any other host, which it refuses and journals as it would
a ``CONNECT``. See docs/handlers.md for the table, each row tested in tests/harness/test_steering.py.

The request head is parsed by h11; after the ``200`` the bytes are copied both ways untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterable

import h11

from fakertzr.waiting import ChangeNotifier
from harness.fakes.tls import LOOPBACK_NAMES

HOOKS = Path(__file__).resolve().parent / "steer_hooks"  # sitecustomize.py (Python), steer.cjs (Node)
HOOK_VARIABLE = "RTZR_TESTKIT_STEER"  # the hooks' configuration: the proxy's address and each host's forwarder
HEAD_LIMIT = 16 * 1024  # a request head longer than this is not a client's CONNECT
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Steered:
    """A tunnel opened to a fake for a vendor host."""

    host: str
    port: int
    fake: str
    at: float = field(default_factory=time.monotonic)
    via: str = "proxy"  # "proxy" (the client sent CONNECT) or "resolver" (a runtime hook sent it to a forwarder)


@dataclass(frozen=True)
class Refused:
    """A connection the handler tried to a host nothing fakes: refused, never made."""

    host: str
    port: int
    how: str  # "CONNECT" or the plain-HTTP method and URL
    at: float = field(default_factory=time.monotonic)

    def __str__(self) -> str:
        return f"the handler tried to reach {self.host}" + ("" if self.port in (80, 443) else f":{self.port}") \
            + ": not faked, refused"


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` of a CONNECT (``[::1]:443`` too) as (lowercased host, port); ValueError if it is not one."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"not host:port: {target[:100]!r}")
    return host.strip("[]").lower().rstrip("."), int(port)


class SteeringProxy:
    """``async with SteeringProxy({"openapi.vito.ai": ("rtzr", "127.0.0.1", 8443)}) as proxy``; its journal is
    ``proxy.steered`` and ``proxy.refused``. Add a route to a running proxy with :meth:`route`."""

    def __init__(self, routes: dict[str, tuple[str, str, int]], host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes = {name.lower(): where for name, where in routes.items()}  # vendor host -> (fake, host, port)
        self.host, self.port = host, port
        self.steered: list[Steered] = []
        self.refused: list[Refused] = []
        self.changes = ChangeNotifier()
        self._server: asyncio.Server | None = None
        self._forwarders: dict[str, asyncio.Server] = {}  # vendor host -> its listener for the runtime hooks
        self._tasks: set[asyncio.Task[None]] = set()
        self._taken = 0  # refusals charged to a call so far (``take_refused``)
        self.on_refused: Callable[[Refused], None] = lambda refusal: None  # ``harness fakes`` prints each one

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The proxy variables, both spellings (curl and Python read lower case first, Go and others upper);
        loopback is left out (``NO_PROXY``) so the handler reaches a fake it is given by address directly."""
        env: dict[str, str] = {}
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "GRPC_PROXY", "WSS_PROXY", "WS_PROXY"):
            env[name] = env[name.lower()] = self.url
        env["NO_PROXY"] = env["no_proxy"] = ",".join(LOOPBACK_NAMES)
        env["NODE_USE_ENV_PROXY"] = "1"  # Node 24 and later: fetch and http(s) read the variables (Node 20 ignores it)
        # the runtime hooks, for clients that ignore the variables above; added to what the machine already sets
        env[HOOK_VARIABLE] = json.dumps({"proxy": f"{self.host}:{self.port}", "hosts": self.forwarders})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH", "")) if p)
        env["NODE_OPTIONS"] = " ".join(o for o in (f"--require {json.dumps(str(HOOKS / 'steer.cjs'))}",
                                                   os.environ.get("NODE_OPTIONS", "")) if o)
        return env

    @property
    def forwarders(self) -> dict[str, int]:
        """Each vendor host's forwarder port on ``host`` (where the runtime hooks send it)."""
        return {name: server.sockets[0].getsockname()[1] for name, server in self._forwarders.items()}

    async def route(self, name: str, fake: str, host: str, port: int) -> None:
        """Steer vendor host ``name`` to the fake at ``host:port`` from now on (its forwarder opened if new)."""
        name = name.lower()
        self.routes[name] = (fake, host, port)
        if self._server is not None and name not in self._forwarders:
            def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                self._spawn(self._forward(name, reader, writer))

            self._forwarders[name] = await asyncio.start_server(accepted, self.host, 0)

    def take_refused(self, until: float) -> list[Refused]:
        """The refusals up to ``until`` not taken before: each is charged to one call, the first judged after
        it (one that came while the handler started, or between calls, goes to the next call)."""
        taken = [r for r in self.refused[self._taken:] if r.at <= until]
        self._taken += len(taken)
        return taken

    async def start(self) -> "SteeringProxy":
        self._server = await asyncio.start_server(self._accepted, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        for name, (fake, host, port) in list(self.routes.items()):
            await self.route(name, fake, host, port)
        return self

    async def stop(self) -> None:
        servers = [s for s in (self._server, *self._forwarders.values()) if s is not None]
        for server in servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        self._server = None
        self._forwarders.clear()

    async def __aenter__(self) -> "SteeringProxy":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._serve(reader, writer))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection a runtime hook sent to ``name``'s forwarder: piped to its fake as a tunnel would be."""
        fake, to_host, to_port = self.routes[name]
        try:
            up_reader, up_writer = await asyncio.open_connection(to_host, to_port)
        except OSError:
            writer.close()
            return
        self.steered.append(Steered(name, 443, fake, via="resolver"))
        self.changes.notify()
        try:
            await _splice(reader, writer, up_reader, up_writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError):
            pass  # the client went away or spoke something else: nothing to steer
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        event = await _request(conn, reader)
        if event is None:
            return
        method, target = event.method.decode("ascii", "replace"), event.target.decode("ascii", "replace")
        if method != "CONNECT":
            host, port = _plain_host(target, event.headers)
            self._refuse(Refused(host, port, f"{method} {target[:200]}"))
            await _answer(writer, conn, 403, f"not faked, refused: {host} (the harness steers TLS only)\n")
            return
        try:
            host, port = split_target(target)
        except ValueError as exc:
            await _answer(writer, conn, 400, f"{exc}\n")
            return
        route = self.routes.get(host)
        if route is None:
            self._refuse(Refused(host, port, "CONNECT"))
            await _answer(writer, conn, 403, f"not faked, refused: {host}\n")
            return
        fake, to_host, to_port = route
        try:
            up_reader, up_writer = await asyncio.open_connection(to_host, to_port)
        except OSError as exc:
            await _answer(writer, conn, 502, f"the fake for {host} is not reachable: {exc}\n")
            return
        self.steered.append(Steered(host, port, fake))
        self.changes.notify()
        writer.write(conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection established")))
        leftover, _ = conn.trailing_data  # a client that sent its TLS hello before the 200 came
        if leftover:
            up_writer.write(leftover)
        await _splice(reader, writer, up_reader, up_writer)

    def _refuse(self, refusal: Refused) -> None:
        self.refused.append(refusal)
        self.changes.notify()
        self.on_refused(refusal)


async def _request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(CHUNK)
            if not data:
                return None
            conn.receive_data(data)
            continue
        return event if isinstance(event, h11.Request) else None


def _plain_host(target: str, headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, int]:
    """The host a plain-HTTP proxy request is for: its absolute URL's, else its Host header's."""
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    if parts.hostname:
        return parts.hostname.lower(), parts.port or 80
    host = next((v.decode("ascii", "replace") for k, v in headers if k.lower() == b"host"), "")
    try:
        return split_target(host)
    except ValueError:
        return host.lower() or "(no host)", 80


async def _answer(writer: asyncio.StreamWriter, conn: h11.Connection, status: int, text: str) -> None:
    body = text.encode()
    writer.write(conn.send(h11.Response(status_code=status, headers=[
        ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), ("Connection", "close")])))
    writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                  up_writer: asyncio.StreamWriter) -> None:
    """The client's connection and the fake's, copied both ways until both are done; the fake's closed after."""
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pipe(reader, up_writer))
            group.create_task(_pipe(up_reader, writer))
    finally:
        up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close (TLS close_notify and the rest pass through untouched)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:  # reset, or the other side already gone (ENOTCONN on the half-close)
        writer.close()
