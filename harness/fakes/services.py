"""The three fakes a handler talks to (RTZR, an OpenAI-compatible LLM and TTS), running together.

One object holds them and says how a handler reaches them: the environment variables a handler
reads, and ``export`` lines to paste into the shell that starts it.
"""

from __future__ import annotations

import shlex
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from fakertzr import FakeRtzrBackend, FakeRtzrServer
from harness.fakes.llm import FakeLlm
from harness.fakes.tts import FakeTts

FAKE_OPENAI_KEY = "sk-harness-fake"  # not a secret: the fakes accept any key


@dataclass
class FakeServices:
    rtzr: FakeRtzrBackend
    llm: FakeLlm
    tts: FakeTts
    rtzr_url: str  # http://127.0.0.1:PORT (the WebSocket is ws:// on the same port)
    llm_url: str  # OpenAI-style base, .../v1
    tts_url: str

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
        }
        return {k: v for k, v in env.items() if k not in without}

    def exports(self) -> str:
        """Ready-to-paste shell lines."""
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in self.env().items())


@asynccontextmanager
async def running_fakes(ports: tuple[int, int, int] = (0, 0, 0), host: str = "127.0.0.1") -> AsyncIterator[FakeServices]:
    """All three fakes on ``ports`` (0: a free port each), stopped on exit."""
    rtzr, llm, tts = FakeRtzrBackend(), FakeLlm(), FakeTts()
    async with AsyncExitStack() as stack:
        r = await stack.enter_async_context(FakeRtzrServer(rtzr, host=host, port=ports[0]))
        l = await stack.enter_async_context(llm.server(host=host, port=ports[1]))
        t = await stack.enter_async_context(tts.server(host=host, port=ports[2]))
        yield FakeServices(rtzr, llm, tts, r.base_url, f"{l.base_url}/v1", f"{t.base_url}/v1")
