"""aicall running against the fakes (RTZR, LLM, TTS) on loopback, with a store in a temporary directory:
the stack the call tests and the hostile-input suite drive with the harness's fake Twilio (a ``TwilioLine``)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from aicall.app import create_app
from aicall.config import load_settings
from aicall.store import CallStore
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer
from fakertzr.appserver import AppServer
from harness.fakes.llm import FakeLlm, FakeLlmConfig
from harness.fakes.tts import FakeTts, FakeTtsConfig
from harness.fakes.twilio_line import TwilioLine

SEED = "fixtures/calls/seed-three-turns"
TEST_CALL_SID = "CA" + "0" * 28 + "7e57"  # Twilio's shape: CA + 32 hex digits
TEST_STREAM_SID = "MZ" + "0" * 28 + "7e57"


@dataclass
class Stack:
    rtzr: FakeRtzrBackend
    llm: FakeLlm
    tts: FakeTts
    store: CallStore
    url: str
    base: str
    session: aiohttp.ClientSession
    app: web.Application

    def driver(self, *, caller: str = "+821012345678", hold_marks: bool = False,
               headers: dict[str, str] | None = None) -> TwilioLine:
        """Twilio's end of a call into aicall: marks echoed at once (or held), audio as fast as aicall reads it."""
        return TwilioLine(self.session, f"{self.url}/twilio/media", call_sid=TEST_CALL_SID, stream_sid=TEST_STREAM_SID,
                          caller=caller, account_sid="ACtest", headers=headers, pace=None, hold_marks=hold_marks)


def env_for(rtzr_url: str, llm_url: str, tts_url: str, **extra: str) -> dict[str, str]:
    return {"RTZR_CLIENT_ID": "fakertzr-client", "RTZR_CLIENT_SECRET": "fakertzr-secret", "RTZR_API_BASE": rtzr_url,
            "OPENAI_BASE_URL": f"{llm_url}/v1", "OPENAI_API_KEY": "sk-test", "TTS_BASE_URL": f"{tts_url}/v1", **extra}


@asynccontextmanager
async def running_stack(tmp_path: Path, *, llm: FakeLlmConfig | None = None, tts: FakeTtsConfig | None = None,
                        env: dict[str, str] | None = None) -> AsyncIterator[Stack]:
    """The whole stack, stopped on exit; ``env`` adds to (or overrides) aicall's settings."""
    rtzr = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[SEED]))
    fake_llm = FakeLlm(llm or FakeLlmConfig())
    fake_tts = FakeTts(tts or FakeTtsConfig())
    store = CallStore(tmp_path / "calls.db")
    try:
        async with FakeRtzrServer(rtzr) as r, fake_llm.server() as l, fake_tts.server() as t:
            settings = load_settings(env_for(r.base_url, l.base_url, t.base_url, **(env or {})), env_file=None)
            async with AppServer(create_app(settings, store)) as app, aiohttp.ClientSession() as session:
                yield Stack(rtzr, fake_llm, fake_tts, store, app.ws_url, app.base_url, session, app.app)
    finally:
        store.close()
