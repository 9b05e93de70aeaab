"""Resolver-level steering for Python handlers: on ``PYTHONPATH`` when the harness steers (``--steer``).

A client that ignores ``HTTPS_PROXY`` (aiohttp's default session, so LiveKit's RTZR plugin; anything that opens
its own sockets) still resolves the host it connects to, through ``socket.getaddrinfo`` (asyncio's
``loop.getaddrinfo`` and aiohttp's default resolver call it too). Here a vendor host the harness fakes resolves to
its forwarder on 127.0.0.1 (the port included), and TLS keeps the vendor's name, which the run's certificate
names; any other host fails to resolve, as an unknown name does, and the harness is told its name (a ``CONNECT``
to its proxy, refused and journaled). Loopback, passive (bind) lookups and numeric loopback addresses are left
alone. A ``sitecustomize`` this one shadows is run after it.
"""

from __future__ import annotations

import json
import os
import socket
import sys

_CONFIG = json.loads(os.environ.get("RTZR_TESTKIT_STEER") or "null")
_LOCAL = {"", "localhost", "0.0.0.0", "::", "::1"}


def _local(host: str) -> bool:
    return host in _LOCAL or host.startswith("127.") or host.endswith(".localhost")


def _tell(proxy: str, host: str, port: object) -> None:
    """Tell the harness (its proxy journals a refused ``CONNECT``); never fail the caller for it."""
    address, _, number = proxy.rpartition(":")
    try:
        with _original_create_connection((address, int(number)), timeout=2) as s:
            s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            s.recv(1024)
    except OSError:
        pass


def _steer(hosts: dict[str, int], proxy: str):  # type: ignore[no-untyped-def]
    original = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
        name = (host.decode("idna") if isinstance(host, bytes) else host or "").lower().rstrip(".").strip("[]")
        if host is None or flags & socket.AI_PASSIVE or _local(name):
            return original(host, port, family, type, proto, flags)
        forwarder = hosts.get(name)
        if forwarder is not None:
            kind = type or socket.SOCK_STREAM
            return [(socket.AF_INET, kind, proto or (socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else 0), "",
                     ("127.0.0.1", forwarder))]
        _tell(proxy, name, port)
        raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known ({name}: not faked, refused by "
                                                 "the harness)")

    socket.getaddrinfo = getaddrinfo


_original_create_connection = socket.create_connection
if isinstance(_CONFIG, dict) and _CONFIG.get("hosts") and _CONFIG.get("proxy"):
    _steer({k.lower(): int(v) for k, v in _CONFIG["hosts"].items()}, str(_CONFIG["proxy"]))


def _run_the_shadowed_one() -> None:
    """Run the next ``sitecustomize`` on the path (a distribution's or a virtualenv's), as if this one were not."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_run_the_shadowed_one()
