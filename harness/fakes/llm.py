"""A fake OpenAI-compatible LLM: chat completions from a script, streamed (SSE) or whole, with a journal.

Chunks and completions carry the fields OpenAI's SDKs read (``id``, ``created``, ``model``,
``finish_reason``, ``usage`` when ``stream_options.include_usage``); a scripted failure answers
with OpenAI's error shape, so the SDK's own retries happen as they would against OpenAI.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

from harness.fakes.journal import JournaledFake, json_body
from harness.fakes.tts import openai_error


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
    stream: bool = True
    ended_at: float | None = None  # when the fake was done with it (answered, refused or abandoned)
    lane: str = ""  # the call it was told to (several calls at once: ``harness.replay.lanes``)
    stalled_until: float | None = None  # a scripted stall held it until then (inf: until the client let go)

    @property
    def delivered(self) -> bool:
        """The request reached the model: a failed one (status >= 400) delivered nothing, its retry may."""
        return self.status < 400

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
    stall_requests: set[int] = field(default_factory=set)  # never answered until the client gives up ...
    stall_s: float | None = None  # ... or, if set, answered after this many wall seconds (a stall is no latency: unscaled)


Route = Callable[[LlmRequest], "tuple[FakeLlmConfig, int] | None"]  # a request -> its call's config and index there


class FakeLlm(JournaledFake[LlmRequest]):
    """State and journal; ``app()`` serves ``POST /v1/chat/completions``."""

    def __init__(self, config: FakeLlmConfig | None = None) -> None:
        super().__init__()
        self.config = config or FakeLlmConfig()
        self.route: Route | None = None  # several calls at once: each request answered by its own call's script

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)

    @staticmethod
    async def _sleep(config: FakeLlmConfig, ms: float) -> None:
        if ms and config.time_scale:
            await asyncio.sleep(ms * config.time_scale / 1000.0)  # scripted latency

    def _script_for(self, entry: LlmRequest, index: int) -> tuple[FakeLlmConfig, int]:
        routed = self.route(entry) if self.route is not None else None
        return routed if routed is not None else (self.config, index)

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        why = refusal(body)
        if why is not None:
            self.record(LlmRequest([], "", status=400, ended_at=time.monotonic()))
            return openai_error(*why)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        entry = LlmRequest([{"role": str(m.get("role", ""))[:40], "content": _text(m.get("content"))[:MAX_MESSAGE_CHARS]}
                            for m in messages], str(body.get("model", ""))[:200], stream=bool(body.get("stream")))
        config, index = self._script_for(entry, self.record(entry))
        if index in config.fail_requests:
            entry.status = config.fail_requests[index]
            entry.ended_at = time.monotonic()
            return openai_error("scripted failure", entry.status)
        if not entry.stream:
            return await self._whole(request, entry, index, config)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        with self.answering(entry):  # the client may be gone before the headers go out
            await response.prepare(request)
            if index in config.stall_requests:
                await self.stall(entry, config.stall_s)
            text = entry.reply = config.reply(entry)
            self.grown(entry, text)  # the default reply repeats the caller's words: as big as the request
            step = config.chars_per_token
            await self._sleep(config, config.first_token_ms)
            envelope = {"id": f"chatcmpl-fake{index}", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": entry.model or "fake-llm"}
            for i in range(0, len(text), step):
                if i:
                    await self._sleep(config, config.token_ms)
                delta = {"content": text[i : i + step], **({"role": "assistant"} if i == 0 else {})}
                await self._event(response, {**envelope, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                entry.tokens_sent += 1
                self.changes.notify()
            await self._event(response, {**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                await self._event(response, {**envelope, "choices": [], "usage": _usage(entry)})
            await response.write(b"data: [DONE]\n\n")
            entry.completed = True
        return response

    async def _whole(self, request: web.Request, entry: LlmRequest, index: int,
                     config: FakeLlmConfig) -> web.StreamResponse:
        """``stream: false``: the whole completion as one JSON body, after the scripted time to generate it."""
        with self.answering(entry):
            if index in config.stall_requests:
                await self.stall(entry, config.stall_s)
            text = entry.reply = config.reply(entry)
            self.grown(entry, text)  # the default reply repeats the caller's words: as big as the request
            tokens = -(-len(text) // config.chars_per_token)
            await self._sleep(config, config.first_token_ms + max(0, tokens - 1) * config.token_ms)
            entry.tokens_sent = tokens
            response = web.json_response({
                "id": f"chatcmpl-fake{index}", "object": "chat.completion", "created": int(time.time()),
                "model": entry.model or "fake-llm", "usage": _usage(entry),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
            await response.prepare(request)
            await response.write_eof()
            entry.completed = True
        return response

    @staticmethod
    async def _event(response: web.StreamResponse, chunk: dict) -> None:
        await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())


MAX_MESSAGE_CHARS = 16_000  # of each message, in the journal and for the scripted reply


def refusal(body: object) -> tuple[str, int, str | None] | None:
    """Why OpenAI would answer 400 (message, status, param), or None: checked before any of it is used."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return "'messages' must be a list of messages", 400, "messages"
    if not isinstance(body.get("stream", False), bool):
        return "Invalid type for 'stream': expected a boolean", 400, "stream"
    options = body.get("stream_options")
    if options is not None and not (isinstance(options, dict) and isinstance(options.get("include_usage", False), bool)):
        return "Invalid type for 'stream_options': expected an object with a boolean include_usage", 400, "stream_options"
    return None


def _text(content: object) -> str:
    """A message's text: a string, or the text parts of OpenAI's content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _usage(entry: LlmRequest) -> dict[str, int]:
    prompt = sum(len(m["content"]) for m in entry.messages) // 3
    return {"prompt_tokens": prompt, "completion_tokens": entry.tokens_sent, "total_tokens": prompt + entry.tokens_sent}
