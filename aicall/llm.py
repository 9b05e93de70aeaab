"""OpenAI-compatible streaming chat completions (``POST {base}/chat/completions``, SSE)."""

from __future__ import annotations

import json
from typing import AsyncIterator, Sequence

import aiohttp

from .errors import AicallError


class LlmError(AicallError):
    """The LLM endpoint failed; the message never carries the API key."""


class ChatClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str, model: str,
                 timeout_s: float = 60.0) -> None:
        self._session = session
        self._url = f"{base_url}/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.model = model
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_read=timeout_s)

    async def stream(self, messages: Sequence[dict[str, str]]) -> AsyncIterator[str]:
        """Yield the reply's text deltas as they arrive."""
        body = {"model": self.model, "messages": list(messages), "stream": True}
        try:
            async with self._session.post(self._url, json=body, headers=self._headers, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise LlmError(f"LLM endpoint {self._url} answered HTTP {resp.status}")
                async for raw in resp.content:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        delta = json.loads(data)["choices"][0].get("delta", {}).get("content")
                    except (ValueError, KeyError, IndexError, TypeError):
                        raise LlmError(f"LLM endpoint sent a malformed chunk: {data[:80]!r}") from None
                    if delta:
                        yield delta
        except aiohttp.ClientError as exc:
            raise LlmError(f"LLM endpoint {self._url} unreachable: {type(exc).__name__}") from None

    async def check(self) -> str:
        """One tiny request, for ``aicall check``: the reply's first words."""
        text = ""
        async for delta in self.stream([{"role": "user", "content": "ping"}]):
            text += delta
            if len(text) > 40:
                break
        return text.strip()
