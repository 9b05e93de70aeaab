"""fakertzr: a faithful, scriptable fake of RTZR's streaming speech-to-text OpenAPI."""

from .backend import FakeRtzrBackend, FakeRtzrConfig
from .errors import FakeRtzrError
from .faults import fault_from_spec
from .fixture import CallScript, load_fixture
from .journal import ConnectionRecord, Journal
from .server import FakeRtzrServer, create_app

__all__ = [
    "CallScript",
    "ConnectionRecord",
    "FakeRtzrBackend",
    "FakeRtzrConfig",
    "FakeRtzrError",
    "FakeRtzrServer",
    "Journal",
    "create_app",
    "fault_from_spec",
    "load_fixture",
]
