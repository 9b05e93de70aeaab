"""RTZR's gRPC streaming API for the fake (the [grpc] extra: grpcio and protobuf)."""

from __future__ import annotations

try:
    import grpc  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("fakertzr's gRPC API needs grpcio: pip install -e '.[grpc]'") from exc

from .service import FakeRtzrGrpcServer, OnlineDecoder, config_query, response_for

__all__ = ["FakeRtzrGrpcServer", "OnlineDecoder", "config_query", "response_for"]
