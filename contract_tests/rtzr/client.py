"""A minimal RTZR streaming client on aiohttp, used by the contract tests against either target."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import websockets


@dataclass
class StreamOutcome:
    messages: list[Any] = field(default_factory=list)  # parsed JSON, or the raw text if not JSON
    close_code: int | None = None

    @property
    def results(self) -> list[dict]:
        return [m for m in self.messages if isinstance(m, dict)]

    @property
    def finals(self) -> list[str]:
        return [m["alternatives"][0]["text"] for m in self.results if m.get("final")]


def ws_url(ws_base: str, query: dict[str, str] | str) -> str:
    qs = query if isinstance(query, str) else urlencode(query)
    return f"{ws_base}/v1/transcribe:streaming?{qs}"


async def token(session: aiohttp.ClientSession, base_url: str, client_id: str, client_secret: str) -> str:
    async with session.post(f"{base_url}/v1/authenticate", data={"client_id": client_id, "client_secret": client_secret}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body["access_token"]


async def handshake(session: aiohttp.ClientSession, url: str, authorization: str | None) -> tuple[int, dict | None]:
    """Send a WebSocket upgrade request and report the HTTP status and JSON body (if refused)."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    if authorization is not None:
        headers["Authorization"] = authorization
    http_url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    async with session.get(http_url, headers=headers) as resp:
        if resp.status == 101:
            return 101, None
        try:
            return resp.status, await resp.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            return resp.status, None


async def collect(ws: aiohttp.ClientWebSocketResponse, outcome: StreamOutcome) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            try:
                outcome.messages.append(json.loads(msg.data))
            except json.JSONDecodeError:
                outcome.messages.append(msg.data)
    outcome.close_code = ws.close_code


async def stream(ws: aiohttp.ClientWebSocketResponse, audio: bytes, chunk: int = 320, eos: bool = True,
                 timeout: float = 30.0) -> StreamOutcome:
    """Send ``audio`` (as fast as the socket takes it), then EOS; collect until the server closes."""
    outcome = StreamOutcome()
    reader = asyncio.create_task(collect(ws, outcome))
    for i in range(0, len(audio), chunk):
        await ws.send_bytes(audio[i : i + chunk])
    if eos:
        await ws.send_str("EOS")
    await asyncio.wait_for(reader, timeout)
    return outcome


async def stream_through_a_close(url: str, token: str, audio: bytes) -> tuple[int, int | None]:
    """A client (``websockets``, as RTZR's Python sample uses) streaming as fast as the socket takes it, still
    sending when the fake's Close arrives: (finals received, the close code the server sent)."""
    finals = 0
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:

        async def send() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                for i in range(0, len(audio), 640):
                    await ws.send(audio[i : i + 640])

        sender = asyncio.create_task(send())
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in ws:
                finals += json.loads(message)["final"]
        await sender
    return finals, ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None


async def process_exited(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (not a child of ours: a fake's worker) is gone within ``timeout``: its pidfd turns
    readable when it exits, an event to wait on rather than a poll."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        await asyncio.wait_for(gone.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)
