"""TLS for the fakes: a certificate authority made for one run, trusted by the handler the standard way.

``RunTrust`` makes a CA with trustme (python-trio's library for exactly this) and one server certificate
for loopback (``127.0.0.1``, ``::1``, ``localhost``) and every vendor host the harness fakes
(:data:`VENDOR_HOSTS`), so a client that connects to ``https://127.0.0.1:PORT`` and one steered there for
``https://openapi.vito.ai`` (:mod:`harness.fakes.steering`) both verify the fake as they would the real
service. The CA's private key never leaves memory; what is written is the CA's *certificate* (public),
as a bundle with the CAs the machine already trusts, in a temporary directory removed when the run ends:
never in a report or a fixture.

The handler is told through the variables its ecosystem already reads (:meth:`RunTrust.env`):

- ``SSL_CERT_FILE``: OpenSSL's default verify paths, so Python's ``ssl.create_default_context()`` and
  everything built on it (aiohttp, websockets, urllib) (https://docs.python.org/3/library/ssl.html#ssl.get_default_verify_paths);
  grpcio reads it too where ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` is unset.
- ``REQUESTS_CA_BUNDLE`` (and ``CURL_CA_BUNDLE``): requests, which otherwise trusts certifi alone
  (https://requests.readthedocs.io/en/latest/user/advanced/#ssl-cert-verification).
- ``SSL_CERT_FILE`` for httpx as well (its ``trust_env`` default; the openai SDK builds on httpx)
  (https://www.python-httpx.org/environment_variables/).
- ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``: grpcio's roots for ``grpc.ssl_channel_credentials()``.
- ``NODE_EXTRA_CA_CERTS``: Node.js's ``tls``, ``https``, the ``ws`` package and ``fetch``
  (https://nodejs.org/api/cli.html#node_extra_ca_certsfile).

Which of these each client library honours is tested against the library itself (tests/harness/test_tls.py).
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# The hosts a handler may hard-code, by the fake that answers for them (``harness.fakes.steering``).
VENDOR_HOSTS: dict[str, str] = {
    "openapi.vito.ai": "rtzr",  # RTZR's token endpoint and streaming WebSocket
    "grpc-openapi.vito.ai": "rtzr-grpc",  # RTZR's gRPC streaming API
    "api.openai.com": "openai",  # chat completions and audio/speech on one host
    "naveropenapi.apigw.ntruss.com": "tts",  # Naver Clova Voice (harness.fakes.clova_tts)
    "api.twilio.com": "twilio",  # Twilio's REST API
}
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


def _system_bundle() -> str:
    """The CAs the machine already trusts, so the bundle adds the run's CA rather than replacing them."""
    try:
        import certifi

        return Path(certifi.where()).read_text(encoding="ascii")
    except (ImportError, OSError):
        cafile = ssl.get_default_verify_paths().cafile
        return Path(cafile).read_text(encoding="ascii") if cafile and Path(cafile).is_file() else ""


@dataclass
class RunTrust:
    """One run's CA and server certificate; ``with RunTrust() as trust`` removes the bundle on exit."""

    hosts: tuple[str, ...] = (*LOOPBACK_NAMES, *VENDOR_HOSTS)
    _dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import trustme

        self._ca = trustme.CA(organization_name="rtzr-call-testkit run CA")
        self._leaf = self._ca.issue_cert(*self.hosts)

    def server_context(self) -> ssl.SSLContext:
        """What a fake serves TLS with (HTTP/1.1 only: the fakes are aiohttp servers)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._leaf.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the run's CA (the harness's own probes, tests)."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    @property
    def ca_pem(self) -> bytes:
        """The CA's certificate (public; its key stays in memory)."""
        return self._ca.cert_pem.bytes()

    def server_pem(self) -> tuple[bytes, bytes]:
        """(private key, certificate chain) for servers that take PEM bytes (gRPC)."""
        return self._leaf.private_key_pem.bytes(), b"".join(blob.bytes() for blob in self._leaf.cert_chain_pems)

    @property
    def bundle(self) -> Path:
        """The CA bundle a handler is pointed at: the machine's CAs and the run's, in a private temporary folder."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="harness-tls-")
            path = Path(self._dir.name) / "run-ca-bundle.pem"
            path.write_text(_system_bundle() + "\n" + self.ca_pem.decode("ascii"), encoding="ascii")
        return Path(self._dir.name) / "run-ca-bundle.pem"

    def env(self) -> dict[str, str]:
        """The variables that make the handler's TLS clients trust the fakes."""
        path = str(self.bundle)
        return {name: path for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "NODE_EXTRA_CA_CERTS")}

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "RunTrust":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
