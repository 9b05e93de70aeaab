"""Stopping without losing a stream: on SIGTERM or Ctrl-C a fake stops taking streams, closes every open one
with a close frame (1001 going away, or the code it is told), waits a bounded time for them to end, and only
then exits. ``fakertzr serve`` does it in its one process and in each worker of ``--workers``."""

from __future__ import annotations

import asyncio
import signal
import sys

from .backend import FakeRtzrBackend


async def drain(backend: FakeRtzrBackend, code: int = 1001, timeout: float = 5.0) -> tuple[int, int]:
    """Stop taking streams, close every live one with a close frame (``code``: 1001 going away), and wait, at
    most ``timeout``, until they are gone: (streams closed, streams still open at the timeout)."""
    backend.shutting_down = True
    closing = list(backend.live_streams)
    for stream in closing:
        stream.shut_down(code)
    try:
        await backend.wait_for(lambda journal: not backend.live_streams, timeout)
    except (TimeoutError, asyncio.TimeoutError):
        pass
    return len(closing), len(backend.live_streams)


async def until_stopped() -> None:
    """Until SIGTERM or SIGINT (the event loop's handlers: the shutdown that follows runs, not an exception)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def shut_down(backend: FakeRtzrBackend, code: int, drain_s: float, who: str = "fakertzr") -> None:
    """Every open stream closed with a frame, bounded by ``drain_s``; one line on stderr says how it went."""
    closed, left = await drain(backend, code, drain_s)
    print(f"{who}: stopping: {closed} open stream(s) closed with {code}"
          + (f", {left} still open after {drain_s:g} s" if left else ""), file=sys.stderr, flush=True)
