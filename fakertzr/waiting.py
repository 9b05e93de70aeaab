"""Wait for a condition on a fake's state without polling: writers ``notify()``, tests ``wait_for``."""

from __future__ import annotations

import asyncio
from typing import Callable, TypeVar

T = TypeVar("T")


class ChangeNotifier:
    """Wakes every waiter whenever the state it watches may have changed."""

    def __init__(self) -> None:
        self._changed: asyncio.Event | None = None

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def next_change(self) -> None:
        """Return at the next ``notify()`` (whatever changed)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds; raise TimeoutError after ``timeout`` seconds."""

        async def until() -> None:
            while not predicate():
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
