"""pytest fixtures: ``fake_rtzr`` starts the fake in-process on a free port.

    async def test_my_client(fake_rtzr):
        fake_rtzr.backend.load_fixture("fixtures/calls/seed-three-turns")
        ... point your client at fake_rtzr.base_url with fake_rtzr.client_id/secret ...
        assert fake_rtzr.journal.finals() == [...]

``fake_rtzr_grpc`` is the same fake with RTZR's gRPC API beside it (``grpc_target``; needs the [grpc] extra).
"""

from __future__ import annotations

from typing import AsyncIterator

import pytest_asyncio

from .backend import FakeRtzrBackend, FakeRtzrConfig
from .journal import Journal
from .server import FakeRtzrServer


class FakeRtzr:
    """What the fixture yields: the running server and its backend, as Python objects."""

    def __init__(self, server: FakeRtzrServer, grpc_target: str | None = None) -> None:
        self.server = server
        self.grpc_target = grpc_target  # host:port of the gRPC API (fake_rtzr_grpc), no TLS

    @property
    def backend(self) -> FakeRtzrBackend:
        return self.server.backend

    @property
    def journal(self) -> Journal:
        return self.server.backend.journal

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    @property
    def client_id(self) -> str:
        return self.backend.config.client_id

    @property
    def client_secret(self) -> str:
        return self.backend.config.client_secret


@pytest_asyncio.fixture
async def fake_rtzr() -> AsyncIterator[FakeRtzr]:
    """A fresh fake RTZR on 127.0.0.1 (free port), no scripted delays, stopped after the test."""
    async with FakeRtzrServer(FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0))) as server:
        yield FakeRtzr(server)


@pytest_asyncio.fixture
async def fake_rtzr_grpc() -> AsyncIterator[FakeRtzr]:
    """``fake_rtzr`` with the gRPC API on its backend too: ``grpc.insecure_channel(fake.grpc_target)``."""
    from .grpc import FakeRtzrGrpcServer  # noqa: PLC0415 - optional: the [grpc] extra

    async with FakeRtzrServer(FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0))) as server, \
            FakeRtzrGrpcServer(server.backend) as grpc_server:
        yield FakeRtzr(server, grpc_server.target)
