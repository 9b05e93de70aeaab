"""The fakes over TLS, trusted through the variables each client library reads, tried with the libraries
themselves in processes of their own: each variable alone, so a row proves which variable that library
honours (and that the others do not make it trust the fakes)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from fakertzr import FakeRtzrBackend
from fakertzr.grpc.service import FakeRtzrGrpcServer
from harness.fakes.services import running_fakes
from harness.fakes.tls import RunTrust
from tests.support.client_probe import machine_env, probe

ROOT = Path(__file__).resolve().parents[2]
WS_MODULE = ROOT / "proving_ground" / "handlers" / "node_handler" / "node_modules" / "ws"

# Each client asks the fake RTZR for a token (or opens its stream, or the LLM's chat), and prints ok or why not.
PYTHON_CLIENTS = r'''
import asyncio, json, sys
base, grpc_target, cid, secret = sys.argv[1:5]
form = {"client_id": cid, "client_secret": secret}
def urllib_():
    import urllib.parse, urllib.request
    urllib.request.urlopen(base + "/v1/authenticate", urllib.parse.urlencode(form).encode(), timeout=5).read()
def requests_():
    import requests
    requests.post(base + "/v1/authenticate", data=form, timeout=5).raise_for_status()
def httpx_():
    import httpx
    httpx.post(base + "/v1/authenticate", data=form, timeout=5).raise_for_status()
def aiohttp_():
    import aiohttp
    async def go():
        async with aiohttp.ClientSession() as s, s.post(base + "/v1/authenticate", data=form) as r:
            r.raise_for_status()
    asyncio.run(go())
def websockets_():
    from websockets.asyncio.client import connect
    async def go():
        async with connect(base.replace("https", "wss") + "/v1/transcribe:streaming", open_timeout=5) as w:
            pass
    try:
        asyncio.run(go())
    except Exception as exc:  # the fake refuses a stream without a token: reaching that refusal is TLS working
        if "401" not in str(exc) and "403" not in str(exc):
            raise
def grpcio_():
    import grpc
    channel = grpc.secure_channel(grpc_target, grpc.ssl_channel_credentials(),
                                  options=[("grpc.ssl_target_name_override", "localhost")])
    grpc.channel_ready_future(channel).result(timeout=1.5)
out = {}
for name, fn in [("urllib", urllib_), ("requests", requests_), ("httpx", httpx_), ("aiohttp", aiohttp_),
                 ("websockets", websockets_), ("grpcio", grpcio_)]:
    try:
        fn(); out[name] = "ok"
    except BaseException as exc:
        out[name] = type(exc).__name__
print(json.dumps(out))
'''

NODE_CLIENTS = r'''
const [base, wsPath] = process.argv.slice(1);
const WebSocket = require(wsPath);
const out = {};
fetch(base + "/v1/authenticate", {method: "POST", body: new URLSearchParams({client_id: "x", client_secret: "y"})})
  .then(() => { out.fetch = "ok"; }, (e) => { out.fetch = String((e.cause && e.cause.code) || e); })
  .then(() => new Promise((done) => {
    const w = new WebSocket(base.replace("https", "wss") + "/v1/transcribe:streaming");
    w.on("unexpected-response", () => { out.ws = "ok"; done(); });  // refused for want of a token: TLS worked
    w.on("open", () => { out.ws = "ok"; w.close(); done(); });
    w.on("error", (e) => { out.ws = out.ws || String(e.code || e); done(); });
  }))
  .then(() => { console.log(JSON.stringify(out)); process.exit(0); });  // not waiting out kept-alive sockets
'''

PYTHON_ROWS = {  # the variable given alone -> the libraries it makes trust the fakes (every other one must fail)
    "SSL_CERT_FILE": {"urllib", "httpx", "aiohttp", "websockets"},
    "REQUESTS_CA_BUNDLE": {"requests"},
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": {"grpcio"},
}






async def test_each_python_library_trusts_the_fakes_by_the_variable_it_reads() -> None:
    async with running_fakes(tls=True) as fakes:
        assert fakes.trust is not None and fakes.rtzr_url.startswith("https://")
        key, chain = fakes.trust.server_pem()
        async with FakeRtzrGrpcServer(FakeRtzrBackend(), tls=(key, chain)) as grpc_server:
            bundle = str(fakes.trust.bundle)
            args = (fakes.rtzr_url, grpc_server.target, fakes.rtzr.config.client_id, fakes.rtzr.config.client_secret)
            rows = await asyncio.gather(*(  # one process per variable, all at once
                probe(sys.executable, "-c", PYTHON_CLIENTS, *args, env={**machine_env(), variable: bundle})
                for variable in PYTHON_ROWS))
            for (variable, trusting), got in zip(PYTHON_ROWS.items(), rows):
                assert {name for name, how in got.items() if how == "ok"} == trusting, (variable, got)
            everything = await probe(sys.executable, "-c", PYTHON_CLIENTS, *args, env={**machine_env(), **fakes.env()})
            assert set(everything.values()) == {"ok"}, everything


@pytest.mark.skipif(shutil.which("node") is None or not WS_MODULE.is_dir(),
                    reason="needs node and `npm ci` in proving_ground/handlers/node_handler")
async def test_node_fetch_and_ws_trust_the_fakes_by_node_extra_ca_certs() -> None:
    async with running_fakes(tls=True) as fakes:
        assert fakes.trust is not None
        bundle = str(fakes.trust.bundle)
        command = ("node", "-e", NODE_CLIENTS, fakes.rtzr_url, str(WS_MODULE))
        assert await probe(*command, env={**machine_env(), "NODE_EXTRA_CA_CERTS": bundle}) == {"fetch": "ok", "ws": "ok"}
        refused = await probe(*command, env={**machine_env(), "SSL_CERT_FILE": bundle})  # OpenSSL's variable: not Node's
        assert "ok" not in refused.values(), refused


def test_the_bundle_holds_no_private_key_and_is_gone_after_the_run() -> None:
    with RunTrust() as trust:
        text = trust.bundle.read_text(encoding="ascii")
        assert trust.ca_pem.decode("ascii") in text
        assert "PRIVATE KEY" not in text
        folder = trust.bundle.parent
        assert set(trust.env().values()) == {str(trust.bundle)}
    assert not folder.exists()


async def test_one_openai_base_url_answers_chat_and_speech() -> None:
    """A handler with one ``OpenAI()`` client sends speech where it sends chat: both answer there."""
    openai = pytest.importorskip("openai")
    async with running_fakes() as fakes:
        client = openai.AsyncOpenAI(base_url=fakes.env()["OPENAI_BASE_URL"], api_key="k", max_retries=0)
        chat = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "안녕"}])
        speech = await client.audio.speech.create(model="tts-1", voice="alloy", input="안녕하세요", response_format="wav")
        assert "안녕" in (chat.choices[0].message.content or "")
        assert speech.content[:4] == b"RIFF"
        assert [r.text for r in fakes.tts.requests] == ["안녕하세요"]  # journaled where the tone tracing reads it
        await client.close()
