"""What every HTTP fake shares: a journal of requests that tests can wait on, and a server to run it."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, TypeVar

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


class JournaledFake(Generic[RequestT]):
    """Subclasses add routes in ``add_routes`` and ``record`` each request, calling ``changes.notify()`` as
    it goes on. The journal is bounded (``journal_limit``): a long load run must not grow the fake's memory
    with every request it ever took."""

    def __init__(self, journal_limit: int = JOURNAL_LIMIT) -> None:
        self.changes = ChangeNotifier()
        self.requests: list[RequestT] = []
        self.journal_limit = journal_limit
        self.received = 0  # requests taken since ``clear``: a request's index (the scripts' "request 0, 1, ...")
        self.dropped = 0  # finished requests let go of to keep the journal within its limit

    def record(self, entry: RequestT) -> int:
        """Journal ``entry``; its index since the last ``clear``."""
        index, self.received = self.received, self.received + 1
        self.requests.append(entry)
        if len(self.requests) > self.journal_limit:
            finished = [r for r in self.requests if getattr(r, "ended_at", None) is not None]
            gone = {id(r) for r in finished[: len(self.requests) - self.journal_limit]}
            self.requests[:] = [r for r in self.requests if id(r) not in gone]
            self.dropped += len(gone)
        self.changes.notify()
        return index

    def clear(self) -> None:
        """A fresh journal: indices count from 0 again."""
        self.requests.clear()
        self.received = self.dropped = 0

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

    def in_flight(self) -> bool:
        """A request the fake is still answering (its client has not let go)."""
        return any(getattr(r, "ended_at", 0.0) is None for r in self.requests)

    def last_activity(self) -> float:
        """When the fake last took or finished a request (0.0: none): a handler's aftermath follows it."""
        return max((max(r.at, r.ended_at or r.at) for r in self.requests), default=0.0)  # type: ignore[attr-defined]

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def app(self) -> web.Application:
        app = web.Application()
        self.add_routes(app)
        return app

    def server(self, host: str = "127.0.0.1", port: int = 0) -> AppServer:
        """This fake on a free port; a client that goes away is journaled as abandoned."""
        return AppServer(self.app(), host, port, handler_cancellation=True)
