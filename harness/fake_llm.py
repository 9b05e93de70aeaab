"""A fake OpenAI-compatible LLM: streaming chat completions from a script, with a journal."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

from .journaled_fake import JournaledFake


@dataclass
class LlmRequest:
    messages: list[dict[str, str]]
    model: str
    at: float = field(default_factory=time.monotonic)
    status: int = 200
    reply: str = ""  # what the fake answered (or would have)
    tokens_sent: int = 0
    completed: bool = False
    abandoned: bool = False  # the client went away before the reply was complete

    @property
    def last_user(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


def default_reply(request: LlmRequest) -> str:
    return f"네, 말씀하신 '{request.last_user}' 잘 들었습니다. 더 도와드릴까요?"


@dataclass
class FakeLlmConfig:
    reply: Callable[[LlmRequest], str] = default_reply
    first_token_ms: float = 0.0
    token_ms: float = 0.0
    chars_per_token: int = 3
    time_scale: float = 1.0
    fail_requests: dict[int, int] = field(default_factory=dict)  # request index -> HTTP status
    stall_requests: set[int] = field(default_factory=set)  # never answered until the client gives up


class FakeLlm(JournaledFake[LlmRequest]):
    """State and journal; ``app()`` serves ``POST /v1/chat/completions``."""

    def __init__(self, config: FakeLlmConfig | None = None) -> None:
        super().__init__()
        self.config = config or FakeLlmConfig()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)

    async def _sleep(self, ms: float) -> None:
        if ms and self.config.time_scale:
            await asyncio.sleep(ms * self.config.time_scale / 1000.0)  # scripted latency

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        entry = LlmRequest(body.get("messages", []), body.get("model", ""))
        index = len(self.requests)
        self.requests.append(entry)
        self.changes.notify()
        if index in self.config.fail_requests:
            entry.status = self.config.fail_requests[index]
            return web.json_response({"error": {"message": "scripted failure"}}, status=entry.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        with self.answering(entry):  # the client may be gone before the headers go out
            await response.prepare(request)
            if index in self.config.stall_requests:
                await asyncio.Event().wait()  # a stalled model: only the client's cancel ends it
            text = entry.reply = self.config.reply(entry)
            step = self.config.chars_per_token
            await self._sleep(self.config.first_token_ms)
            for i in range(0, len(text), step):
                if i:
                    await self._sleep(self.config.token_ms)
                chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text[i : i + step]}}]}
                await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                entry.tokens_sent += 1
                self.changes.notify()
            await response.write(b"data: [DONE]\n\n")
            entry.completed = True
        return response
