"""The steering proxy with the client libraries themselves, each in a process of its own started with
nothing but the fakes' variables: the vendor hosts they hard-code reach the fakes, any other host is refused
by name. The clients that ignore the proxy variables (aiohttp's default session, Node 20's fetch, ws and
https) are steered by the runtime hooks (``steer_hooks``), and shown to go around the proxy without them (on a
``.invalid`` host, RFC 6761, so a client that goes around it resolves nothing real)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from fakertzr.grpc.service import FakeRtzrGrpcServer
from harness.fakes.services import running_fakes
from harness.fakes.steering import Refused, SteeringProxy, split_target
from tests.support.client_probe import hard_coding_env, probe

ROOT = Path(__file__).resolve().parents[2]
WS_MODULE = ROOT / "proving_ground" / "handlers" / "node_handler" / "node_modules" / "ws"

PYTHON_CLIENTS = r'''
import asyncio, json, sys
cid, secret, invalid, chosen = sys.argv[1:5]
form = {"client_id": cid, "client_secret": secret}
out = {}
def attempt(name, fn):
    if name not in chosen.split(","):
        return
    try:
        out[name] = fn()
    except BaseException as exc:
        out[name] = type(exc).__name__
def requests_():
    import requests
    return requests.post("https://openapi.vito.ai/v1/authenticate", data=form, timeout=5).status_code
def openai_():
    import openai
    client = openai.OpenAI(max_retries=0)  # api.openai.com, as the SDK's default
    chat = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="hello", response_format="wav")
    return "ok" if chat.choices[0].message.content and speech.content[:4] == b"RIFF" else "wrong answer"
def websockets_():
    from websockets.asyncio.client import connect
    async def go():
        async with connect("wss://openapi.vito.ai/v1/transcribe:streaming", open_timeout=5):
            pass
    try:
        asyncio.run(go())
    except Exception as exc:
        return "ok" if "401" in str(exc) else repr(exc)[:200]  # the fake RTZR's refusal without a token
    return "ok"
def aiohttp_(trust_env, host=None):
    import aiohttp
    async def go():
        async with aiohttp.ClientSession(trust_env=trust_env) as s:
            async with s.post(f"https://{host or invalid}/v1/authenticate", data=form) as r:
                return r.status
    return asyncio.run(go())
def grpcio_():
    import grpc
    channel = grpc.secure_channel("grpc-openapi.vito.ai:443", grpc.ssl_channel_credentials())
    grpc.channel_ready_future(channel).result(timeout=5)
    return "ok"
def unfaked():
    import requests
    return requests.get("https://api.elevenlabs.io/v1/voices", timeout=5).status_code
attempt("requests", requests_)
attempt("openai", openai_)
attempt("websockets", websockets_)
attempt("aiohttp trust_env", lambda: aiohttp_(True))
attempt("aiohttp default", lambda: aiohttp_(False))
attempt("aiohttp default to an unfaked host", lambda: aiohttp_(False, "api.elevenlabs.io"))
attempt("grpcio", grpcio_)
attempt("unfaked host", unfaked)
print(json.dumps(out))
'''

NODE_CLIENTS = r'''
const [host, wsPath, unfaked] = process.argv.slice(1);
const WebSocket = require(wsPath);
const https = require("https");
const out = {};
const failed = (e) => String((e.cause && e.cause.code) || e.code || e);
fetch(`https://${host}/v1/authenticate`, {method: "POST"}).then(
  (r) => { out.fetch = r.status; }, (e) => { out.fetch = failed(e); })
  .then(() => new Promise((done) => {
    const w = new WebSocket(`wss://${host}/v1/transcribe:streaming`);
    w.on("unexpected-response", (req, res) => { out.ws = res.statusCode; done(); });
    w.on("open", () => { out.ws = "open"; done(); });
    w.on("error", (e) => { out.ws = out.ws || failed(e); done(); });
  }))
  .then(() => new Promise((done) => {
    https.get(`https://${host}/v1/authenticate`, (res) => { out.https = res.statusCode; res.resume(); done(); })
      .on("error", (e) => { out.https = failed(e); done(); });
  }))
  .then(() => unfaked && fetch(`https://${unfaked}/v1/voices`).then(
    (r) => { out.unfaked = r.status; }, (e) => { out.unfaked = failed(e); }))
  .then(() => { console.log(JSON.stringify(out)); process.exit(0); });
'''
NEEDS_NODE = pytest.mark.skipif(shutil.which("node") is None or not WS_MODULE.is_dir(),
                                reason="needs node and `npm ci` in proving_ground/handlers/node_handler")

EVERY_CLIENT = ("requests", "openai", "websockets", "aiohttp trust_env", "grpcio", "unfaked host")
INVALID = "rtzr.steering-test.invalid"  # routed by the proxy, resolvable by nothing else


async def test_python_clients_reach_the_fakes_by_the_vendor_hosts_and_nothing_else() -> None:
    async with running_fakes(steer=True) as fakes, \
            FakeRtzrGrpcServer(fakes.rtzr, tls=fakes.trust.server_pem() if fakes.trust else None) as grpc_fake:
        assert fakes.proxy is not None
        await fakes.proxy.route("grpc-openapi.vito.ai", "rtzr-grpc", grpc_fake.host, grpc_fake.port)
        got = await probe(sys.executable, "-c", PYTHON_CLIENTS, fakes.rtzr.config.client_id,
                         fakes.rtzr.config.client_secret, "openapi.vito.ai", ",".join(EVERY_CLIENT), env=hard_coding_env(fakes))
        assert got["requests"] == 200, got
        assert got["openai"] == "ok", got
        assert got["websockets"] == "ok", got
        assert got["aiohttp trust_env"] == 200, got
        assert got["grpcio"] == "ok", got
        assert got["unfaked host"] == "ProxyError", got
        assert [str(r) for r in fakes.proxy.refused] == ["the handler tried to reach api.elevenlabs.io: not faked, refused"]
        assert {s.host for s in fakes.proxy.steered} == {"openapi.vito.ai", "api.openai.com", "grpc-openapi.vito.ai"}
        assert {s.via for s in fakes.proxy.steered} == {"proxy"}  # each of these reads the proxy variables
        assert [r.text for r in fakes.tts.requests] == ["hello"]  # speech sent to api.openai.com reached the fake TTS


async def test_aiohttp_default_session_is_steered_by_the_resolver_hook() -> None:
    """aiohttp reads the proxy variables only with ``trust_env=True``; its default session (LiveKit's RTZR
    plugin's) resolves the vendor host itself, and the Python hook answers with the host's forwarder. An
    unfaked host fails to resolve and is journaled by name."""
    async with running_fakes(steer=True) as fakes:
        assert fakes.proxy is not None
        got = await probe(sys.executable, "-c", PYTHON_CLIENTS, fakes.rtzr.config.client_id,
                          fakes.rtzr.config.client_secret, "openapi.vito.ai",
                          "aiohttp default,aiohttp default to an unfaked host", env=hard_coding_env(fakes))
        assert got == {"aiohttp default": 200, "aiohttp default to an unfaked host": "ClientConnectorDNSError"}, got
        assert [(s.host, s.via) for s in fakes.proxy.steered] == [("openapi.vito.ai", "resolver")]
        assert [str(r) for r in fakes.proxy.refused] == ["the handler tried to reach api.elevenlabs.io: not faked, refused"]


async def test_aiohttp_default_session_goes_around_the_proxy_without_the_hook() -> None:
    """Without the hook the default session is not steered (shown on a host only the proxy knows)."""
    async with running_fakes(steer=True) as fakes:
        assert fakes.proxy is not None
        await fakes.proxy.route(INVALID, *fakes.proxy.routes["openapi.vito.ai"])
        got = await probe(sys.executable, "-c", PYTHON_CLIENTS, fakes.rtzr.config.client_id,
                          fakes.rtzr.config.client_secret, INVALID, "aiohttp default,aiohttp trust_env",
                          env=hard_coding_env(fakes, hooks=False))
        assert got["aiohttp default"] == "ClientConnectorDNSError", got
        assert got["aiohttp trust_env"] != "ClientConnectorDNSError", got  # through the proxy it got past DNS


@NEEDS_NODE
async def test_node_fetch_ws_and_https_are_steered_by_the_connect_hook() -> None:
    """Node 20 ignores the proxy variables; the ``--require`` hook steers its sockets: fetch (undici), the ``ws``
    package and core ``https`` reach the fake RTZR at openapi.vito.ai (the token endpoint refuses an empty form,
    the streaming endpoint a missing token: the fake's answers), and fetch to an unfaked host fails unresolved."""
    async with running_fakes(steer=True) as fakes:
        assert fakes.proxy is not None
        got = await probe("node", "-e", NODE_CLIENTS, "openapi.vito.ai", str(WS_MODULE), "api.elevenlabs.io",
                          env=hard_coding_env(fakes))
        assert got == {"fetch": 400, "ws": 401, "https": 405, "unfaked": "ENOTFOUND"}, got
        assert {(s.host, s.via) for s in fakes.proxy.steered} == {("openapi.vito.ai", "resolver")}
        assert [str(r) for r in fakes.proxy.refused] == ["the handler tried to reach api.elevenlabs.io: not faked, refused"]


@NEEDS_NODE
async def test_node_before_24_ignores_the_proxy_variables_without_the_hook() -> None:
    async with running_fakes(steer=True) as fakes:
        assert fakes.proxy is not None
        await fakes.proxy.route(INVALID, *fakes.proxy.routes["openapi.vito.ai"])
        got = await probe("node", "-e", NODE_CLIENTS, INVALID, str(WS_MODULE), env=hard_coding_env(fakes, hooks=False))
        assert got == {"fetch": "ENOTFOUND", "ws": "ENOTFOUND", "https": "ENOTFOUND"}, got
        assert fakes.proxy.steered == [] and fakes.proxy.refused == []


async def test_plain_http_and_garbage_are_refused_and_named() -> None:
    async with SteeringProxy({}) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        head = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        assert head.startswith(b"HTTP/1.1 403") and b"example.com" in head
        assert proxy.refused == [Refused("example.com", 80, "GET http://example.com/x", proxy.refused[0].at)]
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"CONNECT nonsense HTTP/1.1\r\nHost: nonsense\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(4096), 5)).startswith(b"HTTP/1.1 400")
        writer.close()


def test_connect_targets() -> None:
    assert split_target("OpenAPI.vito.ai:443") == ("openapi.vito.ai", 443)
    assert split_target("[::1]:8443") == ("::1", 8443)
    for bad in ("openapi.vito.ai", ":443", "host:https"):
        with pytest.raises(ValueError):
            split_target(bad)


def test_a_refusal_is_told_as_it_happens() -> None:
    """``harness fakes --steer`` prints each refused host while a developer works against the fakes."""
    told: list[str] = []

    async def go() -> None:
        async with SteeringProxy({}) as proxy:
            proxy.on_refused = lambda refusal: told.append(str(refusal))
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"CONNECT api.elevenlabs.io:443 HTTP/1.1\r\nHost: api.elevenlabs.io:443\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(4096), 5)).startswith(b"HTTP/1.1 403")
            writer.close()

    asyncio.run(go())
    assert told == ["the handler tried to reach api.elevenlabs.io: not faked, refused"]
