"""Plays Twilio's side of a Media Streams call into a handler, for tests (event-driven, no sleeps).

The harness (issue 4) grows the full fake Twilio; this one sends ``connected``, ``start``, 20 ms
``media`` frames with sequence numbers and timestamps, ``dtmf`` and ``stop``, collects everything
the handler sends, and echoes marks at once (``hold_marks`` keeps them, as if audio were playing).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
import numpy as np

from callaudio.g711 import pcm16_to_ulaw


@dataclass
class Received:
    at: float
    message: dict[str, Any]
    after_stop: bool


TEST_CALL_SID = "CA" + "0" * 28 + "7e57"  # Twilio's shape: CA + 32 hex digits
TEST_STREAM_SID = "MZ" + "0" * 28 + "7e57"


@dataclass
class TwilioDriver:
    session: aiohttp.ClientSession
    url: str
    call_sid: str = TEST_CALL_SID
    stream_sid: str = TEST_STREAM_SID
    caller: str = "+821012345678"
    hold_marks: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> "TwilioDriver":
        self.ws = await self.session.ws_connect(self.url, headers=self.headers)
        self._seq = 0
        self._chunk = 0
        self._stopped = False
        self._changed = asyncio.Event()
        self.held: list[str] = []
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self._send("start", start={"streamSid": self.stream_sid, "accountSid": "ACtest", "callSid": self.call_sid,
                                         "tracks": ["inbound"], "customParameters": {"caller": self.caller},
                                         "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.ws.closed:
            await self.ws.close()
        await self._reader

    async def _send(self, event: str, **body: Any) -> None:
        self._seq += 1
        await self.ws.send_str(json.dumps({"event": event, "sequenceNumber": str(self._seq), "streamSid": self.stream_sid, **body}))

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            self.received.append(Received(time.monotonic(), message, self._stopped))
            if message.get("event") == "mark":
                name = message["mark"]["name"]
                if self.hold_marks:
                    self.held.append(name)
                else:
                    await self._echo(name)
            elif message.get("event") == "clear":  # Twilio echoes every pending mark after a clear
                for name in self.held:
                    await self._echo(name)
                self.held = []
            self._changed.set()
        self.closed.set()
        self._changed.set()

    async def _echo(self, name: str) -> None:
        if not self.ws.closed:
            await self._send("mark", mark={"name": name})

    async def release_marks(self) -> None:
        """The held audio has finished playing."""
        for name in self.held:
            await self._echo(name)
        self.held = []

    async def play(self, pcm: np.ndarray) -> None:
        """Send caller audio (int16, 8 kHz) as 20 ms media frames, as fast as the handler reads."""
        ulaw = pcm16_to_ulaw(pcm)
        for i in range(0, len(ulaw), 160):
            self._chunk += 1
            media = {"track": "inbound", "chunk": str(self._chunk), "timestamp": str((self._chunk - 1) * 20),
                     "payload": base64.b64encode(ulaw[i : i + 160]).decode()}
            await self._send("media", media=media)

    async def dtmf(self, digit: str) -> None:
        await self._send("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    async def hang_up(self) -> None:
        """Twilio's ``stop``; the handler must then go quiet and close."""
        await self._send("stop", stop={"accountSid": "ACtest", "callSid": self.call_sid})
        self._stopped = True

    async def wait_for(self, predicate: Callable[["TwilioDriver"], bool], timeout: float = 20.0) -> None:
        async def until() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    # views
    def events(self, name: str) -> list[dict[str, Any]]:
        return [r.message for r in self.received if r.message.get("event") == name]

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in self.events("mark")]

    def after_stop(self) -> list[dict[str, Any]]:
        return [r.message for r in self.received if r.after_stop]
