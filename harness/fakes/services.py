"""The three fakes a handler talks to (RTZR, an OpenAI-compatible LLM and TTS), running together.

One object holds them and says how a handler reaches them: the environment variables a handler
reads, and ``export`` lines to paste into the shell that starts it. What OpenAI serves on one host the
fakes serve on one base URL: ``OPENAI_BASE_URL`` answers chat completions *and* ``audio/speech`` (a
handler with one ``OpenAI()`` client for both); ``TTS_BASE_URL`` stays for handlers that split them.

With ``tls`` every fake serves https/wss with a CA made for the run (:mod:`harness.fakes.tls`); with
``steer`` a proxy sends the vendor hosts a handler hard-codes to the fakes and refuses every other host
by name (:mod:`harness.fakes.steering`).
"""

from __future__ import annotations

import shlex
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator
from urllib.parse import urlsplit

from fakertzr import FakeRtzrBackend, FakeRtzrServer
from harness.fakes.llm import FakeLlm
from harness.fakes.steering import SteeringProxy
from harness.fakes.tls import VENDOR_HOSTS, RunTrust
from harness.fakes.tts import FakeTts
from harness.fakes.twilio_rest import FakeTwilioRest

FAKE_OPENAI_KEY = "sk-harness-fake"  # not a secret: the fakes accept any key


@dataclass
class FakeServices:
    rtzr: FakeRtzrBackend
    llm: FakeLlm
    tts: FakeTts
    rtzr_url: str  # http://127.0.0.1:PORT (the WebSocket is ws:// on the same port)
    llm_url: str  # OpenAI-style base, .../v1
    tts_url: str
    trust: RunTrust | None = None  # TLS: the run's CA
    proxy: SteeringProxy | None = None  # vendor hosts steered here, every other host refused
    twilio: FakeTwilioRest = field(default_factory=FakeTwilioRest)  # Twilio's REST API (Calls)
    twilio_url: str = ""  # its base URL (https://api.twilio.com's stand-in)
    twilio_env: bool = False  # tell the handler its Twilio account (calls started at its voice webhook)

    def env(self, *, without: tuple[str, ...] = ()) -> dict[str, str]:
        """What a handler needs to use the fakes, in the names the report's handler, aicall, the openai
        SDK and pipecat read; ``without`` leaves some out (a handler started without its credentials)."""
        env = {
            "RTZR_API_BASE": self.rtzr_url,
            "RTZR_CLIENT_ID": self.rtzr.config.client_id,
            "RTZR_CLIENT_SECRET": self.rtzr.config.client_secret,
            "OPENAI_BASE_URL": self.llm_url,
            "OPENAI_API_KEY": FAKE_OPENAI_KEY,
            "TTS_BASE_URL": self.tts_url,
            # for handlers that build https://{host}/... themselves
            "RTZR_API_HOST": _netloc(self.rtzr_url),
            "OPENAI_API_HOST": _netloc(self.llm_url),
        }
        if self.twilio_env:  # only then: a handler with TWILIO_AUTH_TOKEN may demand signatures (aicall does)
            env.update({"TWILIO_ACCOUNT_SID": self.twilio.core.account_sid, "TWILIO_AUTH_TOKEN": self.twilio.core.auth_token,
                        "TWILIO_API_BASE": self.twilio_url})
        if self.trust is not None:
            env.update(self.trust.env())
        if self.proxy is not None:  # steered: the real services' addresses, which the proxy sends to the fakes
            env.update(self.proxy.env())
            env.update({"RTZR_API_BASE": "https://openapi.vito.ai", "OPENAI_BASE_URL": "https://api.openai.com/v1",
                        "TTS_BASE_URL": "https://api.openai.com/v1", "RTZR_API_HOST": "openapi.vito.ai",
                        "OPENAI_API_HOST": "api.openai.com"})
            if self.twilio_env:
                env["TWILIO_API_BASE"] = "https://api.twilio.com"
        return {k: v for k, v in env.items() if k not in without}

    def exports(self) -> str:
        """Ready-to-paste shell lines."""
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in self.env().items())


@dataclass(frozen=True)
class FakeNetwork:
    """How the fakes meet the handler: plain HTTP (the default), TLS (``tls``), or TLS behind the steering proxy
    (``steer``: the vendor hosts a handler hard-codes reach the fakes, every other host is refused by name)."""

    tls: bool = False
    steer: bool = False
    twilio: bool = False  # calls start at the handler's voice webhook: it is told its (fake) Twilio account
    twilio_auth_token: str | None = None  # that account's auth token (else one made for the run)

    def fakes(self, ports: tuple[int, int, int] = (0, 0, 0)) -> "AbstractAsyncContextManager[FakeServices]":
        return running_fakes(ports, tls=self.tls, steer=self.steer, twilio=self.twilio,
                             twilio_auth_token=self.twilio_auth_token)


def _netloc(url: str) -> str:
    return urlsplit(url).netloc


@asynccontextmanager
async def running_fakes(ports: tuple[int, int, int] = (0, 0, 0), host: str = "127.0.0.1", *,
                        tls: bool = False, steer: bool = False, twilio: bool = False,
                        twilio_auth_token: str | None = None) -> AsyncIterator[FakeServices]:
    """All three fakes on ``ports`` (0: a free port each) and Twilio's REST API on a free one, stopped on exit;
    TLS with ``tls``, and the steering proxy in front of them with ``steer`` (which serves TLS: the vendor hosts
    are https); ``twilio``: the handler is told its Twilio account (``TWILIO_*``)."""
    rtzr, llm, tts = FakeRtzrBackend(), FakeLlm(), FakeTts()
    rest = FakeTwilioRest(auth_token=twilio_auth_token)
    async with AsyncExitStack() as stack:
        trust = stack.enter_context(RunTrust()) if tls or steer else None
        context = trust.server_context() if trust else None
        r = await stack.enter_async_context(FakeRtzrServer(rtzr, host=host, port=ports[0], ssl_context=context))
        l = await stack.enter_async_context(llm.server(host=host, port=ports[1], ssl_context=context, also=(tts,)))
        t = await stack.enter_async_context(tts.server(host=host, port=ports[2], ssl_context=context))
        w = await stack.enter_async_context(rest.server(host=host, ssl_context=context))
        proxy = None
        if steer:
            by_fake = {"rtzr": r, "openai": l, "tts": t, "twilio": w}
            routes = {name: (fake, host, by_fake[fake].port) for name, fake in VENDOR_HOSTS.items() if fake in by_fake}
            proxy = await stack.enter_async_context(SteeringProxy(routes))
        yield FakeServices(rtzr, llm, tts, r.base_url, f"{l.base_url}/v1", f"{t.base_url}/v1", trust, proxy, rest,
                           w.base_url, twilio)
