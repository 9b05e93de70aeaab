"""A fake RTZR on loopback for the hostile-input suite, with a raw HTTP client for requests a polite
client would never send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest_asyncio

from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer

SEED_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "calls" / "seed-three-turns"


@dataclass
class Fake:
    server: FakeRtzrServer
    session: aiohttp.ClientSession

    @property
    def backend(self) -> FakeRtzrBackend:
        return self.server.backend

    async def control(self, method: str, path: str, body: Any = None, *, data: bytes | str | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, dict]:
        """A control API request: ``body`` as JSON, or raw ``data`` with the given headers."""
        url = f"{self.server.base_url}/_fake{path}"
        kwargs: dict[str, Any] = {"json": body} if data is None else {"data": data}
        async with self.session.request(method, url, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def raw(self, request: bytes, *, read_timeout: float = 10.0) -> bytes:
        """Send bytes on a fresh TCP connection; return all the server answers until it closes."""
        reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
        try:
            writer.write(request)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), read_timeout)
        finally:
            writer.close()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[Fake]:
    backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(SEED_DIR)]))
    async with aiohttp.ClientSession() as session, FakeRtzrServer(backend) as server:
        yield Fake(server, session)
