"""What every HTTP fake shares: a journal of requests that tests can wait on, and a server to run it."""

from __future__ import annotations

import asyncio
import ssl
import time
from contextlib import contextmanager
from typing import Any, Callable, Generic, Iterator, TypeVar

from aiohttp import web

from fakertzr.appserver import AppServer
from fakertzr.waiting import ChangeNotifier

RequestT = TypeVar("RequestT")


async def json_body(request: web.Request) -> object:
    """The request's JSON, or None when it is not JSON (or nested too deep for Python to read: that was a 500)."""
    try:
        return await request.json()
    except (ValueError, RecursionError):
        return None


JOURNAL_LIMIT = 1000  # requests a fake keeps, at most: the oldest finished ones go first (``dropped`` counts them)
JOURNAL_MAX_BYTES = 8 << 20  # ... and the bytes of text they hold, at most (1000 requests of 40 KB held 63 MB)


def text_bytes(value: object) -> int:
    """The UTF-8 bytes of the text in ``value`` (strings, in lists and dicts): what a journal entry holds."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (list, tuple)):
        return sum(text_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(text_bytes(k) + text_bytes(v) for k, v in value.items())
    return 0


class JournaledFake(Generic[RequestT]):
    """Subclasses add routes in ``add_routes`` and ``record`` each request, calling ``changes.notify()`` as
    it goes on. The journal is bounded by count (``journal_limit``) and by the text it holds
    (``journal_max_bytes``): a long load run must not grow the fake's memory with every request it ever took."""

    def __init__(self, journal_limit: int = JOURNAL_LIMIT, journal_max_bytes: int = JOURNAL_MAX_BYTES) -> None:
        self.changes = ChangeNotifier()
        self.requests: list[RequestT] = []
        self.journal_limit = journal_limit
        self.journal_max_bytes = journal_max_bytes
        self.journal_bytes = 0  # the text the kept requests hold, each measured once (``text_bytes``)
        self._sizes: dict[int, int] = {}  # id of a kept request -> its bytes (ids are unique while it is kept)
        self.received = 0  # requests taken since ``clear``: a request's index (the scripts' "request 0, 1, ...")
        self.dropped = 0  # finished requests let go of to keep the journal within its limits

    def record(self, entry: RequestT) -> int:
        """Journal ``entry``; its index since the last ``clear``."""
        index, self.received = self.received, self.received + 1
        entry.index = index  # type: ignore[attr-defined]
        self.requests.append(entry)
        self._sizes[id(entry)] = size = text_bytes(list(vars(entry).values()))
        self.journal_bytes += size
        self._trim()
        self.changes.notify()
        return index

    def grown(self, entry: RequestT, text: str) -> None:
        """``entry`` now holds ``text`` too (an answer written after it was recorded): counted in its size."""
        if id(entry) in self._sizes:  # still kept (not cleared meanwhile)
            size = text_bytes(text)
            self._sizes[id(entry)] += size
            self.journal_bytes += size
            self._trim()

    def _trim(self) -> None:
        """Over either limit, let go of the oldest finished requests (never one still being answered)."""
        excess = len(self.requests) - self.journal_limit
        if excess <= 0 and self.journal_bytes <= self.journal_max_bytes:
            return
        kept = []
        for r in self.requests:
            if (excess > 0 or self.journal_bytes > self.journal_max_bytes) and getattr(r, "ended_at", None) is not None:
                excess -= 1
                self.journal_bytes -= self._sizes.pop(id(r), 0)
                self.dropped += 1
            else:
                kept.append(r)
        self.requests[:] = kept

    def clear(self) -> None:
        """A fresh journal: indices count from 0 again."""
        self.requests.clear()
        self._sizes.clear()
        self.received = self.dropped = self.journal_bytes = 0

    async def next_change(self) -> None:
        """Return at the journal's next change (a request taken, answered or let go)."""
        await self.changes.next_change()

    async def wait_for(self, predicate: Callable[["JournaledFake[RequestT]"], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds (no polling)."""
        await self.changes.wait_until(lambda: predicate(self), timeout)

    @contextmanager
    def answering(self, entry) -> Iterator[None]:
        """Around writing a response: a client that goes away marks ``entry.abandoned`` (not an error
        of the fake); waiters are woken whatever happens."""
        try:
            yield
        except ConnectionResetError:
            entry.abandoned = True
        except asyncio.CancelledError:
            entry.abandoned = True
            raise
        finally:
            entry.ended_at = time.monotonic()
            self.changes.notify()

    async def stall(self, entry, stall_s: float | None) -> None:
        """A scripted stall of ``entry`` (which has ``stalled_until``): until the client lets go (``stall_s`` None),
        or for ``stall_s`` wall seconds, never scaled by the pace."""
        if stall_s is None:
            entry.stalled_until = float("inf")  # until the client lets go (its ``ended_at``)
            self.changes.notify()
            await asyncio.Event().wait()
        entry.stalled_until = time.monotonic() + stall_s
        self.changes.notify()
        await asyncio.sleep(stall_s)  # the scripted stall itself: a service that answers this late

    def in_flight(self) -> bool:
        """A request the fake is still answering (its client has not let go)."""
        return any(getattr(r, "ended_at", 0.0) is None for r in self.requests)

    def last_activity(self) -> float:
        """When the fake last took or finished a request (0.0: none): a handler's aftermath follows it."""
        return max((max(r.at, r.ended_at or r.at) for r in self.requests), default=0.0)  # type: ignore[attr-defined]

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def page(self, since: int = 0, limit: int = 100) -> dict:
        """A page of the journal, as fakertzr's ``GET /_fake/journal`` gives one: the requests from index
        ``since`` on, ``next`` (the following page's ``since``, or None), ``total`` taken, ``dropped``."""
        kept = [r for r in self.requests if r.index >= since]  # type: ignore[attr-defined]
        shown = kept[:limit]
        return {"requests": [{k: v for k, v in vars(r).items()} for r in shown],
                "next": kept[limit].index if len(kept) > limit else None,  # type: ignore[attr-defined]
                "total": self.received, "dropped": self.dropped}

    async def _journal(self, request: web.Request) -> web.Response:
        try:
            since, limit = int(request.query.get("since", 0)), int(request.query.get("limit", 100))
        except ValueError:
            return web.json_response({"error": "since and limit are whole numbers"}, status=400)
        if since < 0 or not 1 <= limit <= 1000:
            return web.json_response({"error": "since >= 0 and 1 <= limit <= 1000"}, status=400)
        return web.json_response(self.page(since, limit))

    def app(self, *, loopback_only: bool = True) -> web.Application:
        """The fake's API, and ``GET /_fake/journal`` behind fakertzr's control guard (no web page reads it)."""
        from fakertzr.server import cross_site_guard

        app = web.Application(middlewares=[cross_site_guard(loopback_only)])
        self.add_routes(app)
        app.router.add_get("/_fake/journal", self._journal)
        return app

    def server(self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None,
               also: "tuple[JournaledFake[Any], ...]" = ()) -> AppServer:
        """This fake on a free port (TLS with ``ssl_context``); a client that goes away is journaled as
        abandoned. ``also``: other fakes whose routes this server serves too (OpenAI's chat and speech on
        one base URL)."""
        from fakertzr.server import is_loopback

        app = self.app(loopback_only=is_loopback(host))
        for other in also:
            other.add_routes(app)
        return AppServer(app, host, port, handler_cancellation=True, ssl_context=ssl_context)
