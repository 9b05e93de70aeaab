"""The event loop a fakertzr process runs on: uvloop's when it is installed (or asked for), else asyncio's."""

from __future__ import annotations

import asyncio
from typing import Callable

from .errors import FakeRtzrError

LOOPS = ("auto", "uvloop", "asyncio")  # --loop: uvloop when installed, or either one asked for


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for ``uvloop`` (and for ``auto`` when it is installed); None: asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise FakeRtzrError("--loop uvloop: uvloop is not installed (pip install 'rtzr-call-testkit[fast]')") from None
        return None
    return uvloop.new_event_loop
