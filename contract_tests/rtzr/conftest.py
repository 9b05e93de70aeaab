"""The target of the RTZR contract: the fake (default) or the real service (``--rtzr-live``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer, load_fixture
from fakertzr.fixture import CallScript

from . import client

SEED_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "calls" / "seed-three-turns"
REAL_BASE = "https://openapi.vito.ai"
REAL_GRPC = "grpc-openapi.vito.ai:443"


@dataclass
class RtzrTarget:
    base_url: str
    ws_base: str
    client_id: str
    client_secret: str
    session: aiohttp.ClientSession
    backend: FakeRtzrBackend | None

    @property
    def live(self) -> bool:
        return self.backend is None

    @property
    def fake(self) -> FakeRtzrBackend:
        """The fake's backend; tests that need it are skipped against the real service."""
        return self.require_fake()

    def require_fake(self) -> FakeRtzrBackend:
        if self.backend is None:
            pytest.skip("needs the fake's control API or journal")
        return self.backend

    async def token(self) -> str:
        return await client.token(self.session, self.base_url, self.client_id, self.client_secret)

    def url(self, query: dict[str, str] | str | None = None) -> str:
        return client.ws_url(self.ws_base, query if query is not None else {"sample_rate": "8000", "encoding": "LINEAR16"})

    async def connect(self, query: dict[str, str] | str | None = None, token: str | None = None):
        token = token or await self.token()
        return await self.session.ws_connect(self.url(query), headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="session")
def seed() -> CallScript:
    return load_fixture(SEED_DIR)


@pytest_asyncio.fixture
async def rtzr(request) -> AsyncIterator[RtzrTarget]:
    async with aiohttp.ClientSession() as session:
        if request.config.getoption("--rtzr-live"):
            client_id, secret = os.environ.get("RTZR_CLIENT_ID"), os.environ.get("RTZR_CLIENT_SECRET")
            if not client_id or not secret:
                pytest.skip("--rtzr-live needs RTZR_CLIENT_ID and RTZR_CLIENT_SECRET")
            base = os.environ.get("RTZR_API_BASE", REAL_BASE)
            ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
            yield RtzrTarget(base, ws_base, client_id, secret, session, None)
            return
        backend = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[str(SEED_DIR)]))
        async with FakeRtzrServer(backend) as server:
            yield RtzrTarget(server.base_url, server.ws_url, backend.config.client_id,
                             backend.config.client_secret, session, backend)


@dataclass
class GrpcTarget:
    """Where RTZR's gRPC API is: the fake's (on the same backend as ``rtzr``, no TLS) or the real one (TLS)."""

    target: str
    secure: bool
    rtzr: RtzrTarget


@pytest_asyncio.fixture
async def rtzr_grpc(rtzr) -> AsyncIterator[GrpcTarget]:
    if rtzr.live:
        yield GrpcTarget(os.environ.get("RTZR_GRPC_TARGET", REAL_GRPC), True, rtzr)
        return
    from fakertzr.grpc import FakeRtzrGrpcServer

    async with FakeRtzrGrpcServer(rtzr.fake) as server:
        yield GrpcTarget(server.target, False, rtzr)
