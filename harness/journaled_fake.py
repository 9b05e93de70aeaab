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


class JournaledFake(Generic[RequestT]):
    """Subclasses add routes in ``add_routes`` and append to ``requests``, calling ``changes.notify()``."""

    def __init__(self) -> None:
        self.changes = ChangeNotifier()
        self.requests: list[RequestT] = []

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
