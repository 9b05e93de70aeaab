"""Twilio's side of one Media Streams WebSocket: the messages shaped as Twilio sends them, and what comes back.

The harness's fake Twilio has two layers: this line (connect, ``connected`` and ``start``, ``media`` with
sequence numbers, chunks and timestamps, ``dtmf``, ``stop``, marks echoed, everything received kept with
its time), and ``TwilioPlayer``, which plays a fixture's caller over it. Tests that need a caller the
fixtures do not describe (hold the audio playing, talk over the bot, send raw frames) use the line itself.

Marks are echoed as Twilio does: once the bot audio sent before them would have finished playing at
``pace`` (``None``: at once), or, with ``hold_marks``, only when ``release_marks()`` says it finished; a
``clear`` echoes every pending mark at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
import numpy as np

from callaudio.g711 import pcm16_to_ulaw
from harness.errors import HarnessError
from harness.fakes.twilio_messages import binary_frame, judge_text, protocol_error

FRAME_MS = 20


def handshake_hint(url: str, status: int) -> str:
    """What a refused stream handshake most likely means, for the one-line error."""
    if status == 404:
        return f"{url} answered HTTP 404: is the Media Streams WebSocket at another path? (give it with --path or --url)"
    if status in (401, 403):
        return f"{url} refused the stream handshake: HTTP {status} (does it check X-Twilio-Signature? give --twilio-auth-token)"
    return f"{url} refused the stream handshake: HTTP {status}"


MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a larger message closes the stream with 1009 (message too big), as aiohttp does
MAX_KEPT_MEDIA = 30_000  # messages kept of one call: 10 minutes of 20 ms media frames
MAX_KEPT_AUDIO_MS = 20 * 60_000.0  # ... and at most 20 minutes of bot audio (9.6 MB of mu-law)


def base64_bytes(text: str) -> int:
    """How many bytes ``text`` decodes to (without decoding it)."""
    return len(text) * 3 // 4 - text[-2:].count("=")


@dataclass(frozen=True)
class RedirectFollowed:
    """The handler gave the call new TwiML while it lasted (``POST .../Calls/{Sid}.json`` with ``Twiml`` or ``Url``):
    its stream got ``stop`` at ``at`` (monotonic) and the new TwiML was followed to ``outcome``: "hangup", "end of
    TwiML", "ended" (ended through the REST API first) or "stream" (a new ``<Connect><Stream>``, not followed)."""

    at: float
    by: str  # "twiml" or "url"
    url: str | None = None
    said: tuple[str, ...] = ()  # the <Say> texts Twilio spoke to the caller
    outcome: str = ""
    stream_url: str | None = None  # outcome "stream": the stream it asked for


@dataclass
class PlayerRecord:
    """What the caller side saw, with monotonic wall times."""

    frame_sent: np.ndarray = field(default_factory=lambda: np.zeros(0))  # wall time each frame was sent
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    marks_played: list[tuple[float, str]] = field(default_factory=list)  # when each mark was echoed
    dialled_at: float | None = None  # when Twilio's end began to connect: no stream the handler opened before is this call's
    stop_at: float | None = None
    closed_at: float | None = None
    closed_by_handler: bool = False  # the handler ended the call before the caller hung up
    closed_how: str = ""  # "handler", "twilio after stop", "line dropped"
    close_code: int | None = None  # as the caller side saw it: None or 1006 when the socket just went away
    hung_up_how: str = ""  # "stop" (the caller), "vanished", "api" (Status=completed), "redirect", "handler closed first"
    ended_by_api: bool = False  # the handler ended the call through Twilio's REST API (Status=completed)
    redirect: RedirectFollowed | None = None  # the handler redirected the call (new TwiML through the REST API)
    silence_ms: float = 0.0  # caller silence held while waiting for the bot (``caller.reacts``), not the fixture's
    skipped_ms: float = 0.0  # the fixture's pauses cut short because the bot answered sooner
    reactions: list[dict[str, Any]] = field(default_factory=list)  # each reacting utterance: what it waited for, when
    audio_kept_ms: float = 0.0  # bot audio kept in ``received``
    media_not_kept: int = 0  # media messages past what is kept of one call (counted, played, not kept)
    audio_not_kept_ms: float = 0.0

    def media_after(self, wall: float) -> float | None:
        return next((t for t, m in self.received if t >= wall and m.get("event") == "media"), None)


class TwilioLine:
    """One Media Streams socket, Twilio's end. ``async with`` opens it (``connected`` and ``start``) and, on
    leaving, closes it if the handler has not."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, call_sid: str, stream_sid: str,
                 caller: str = "+821000000000", account_sid: str = "ACharness", headers: dict[str, str] | None = None,
                 pace: float | None = 1.0, hold_marks: bool = False) -> None:
        self.session, self.url, self.pace, self.hold_marks = session, url, pace, hold_marks
        self.call_sid, self.stream_sid, self.caller, self.account_sid = call_sid, stream_sid, caller, account_sid
        self.headers = headers or {}
        self.custom_parameters: dict[str, str] = {"caller": caller}  # a webhook's TwiML gives its <Parameter>s instead
        self.record = PlayerRecord()
        self.closed = asyncio.Event()  # the socket is gone (either side)
        self.on_media: Callable[[], None] = lambda: None  # called for each bot media frame
        self.vanished = False  # a dropped line carries nothing more
        self.held: list[str] = []  # with hold_marks: marks whose audio is still "playing"
        self._sid_json = json.dumps(stream_sid)
        self._seq = 0
        self._chunk = 0
        self._play_until = 0.0
        self.last_media_at = 0.0  # when the last bot audio arrived
        self._pending_marks: deque[tuple[str, asyncio.TimerHandle]] = deque()
        self._echo_tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ opening
    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        """Open the stream as Twilio does; every failure names the URL tried."""
        try:
            self.ws = await self.session.ws_connect(self.url, headers=self.headers, max_msg_size=MAX_MESSAGE_BYTES)
        except aiohttp.WSServerHandshakeError as exc:
            raise HarnessError(handshake_hint(self.url, exc.status)) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise HarnessError(f"could not open {self.url}: {str(exc) or type(exc).__name__}") from None
        return self.ws

    async def open(self) -> "TwilioLine":
        """Connect, send ``connected`` and ``start``, and start reading."""
        self.record.dialled_at = time.monotonic()
        ws = await self.connect()
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.send("start", start={
            "streamSid": self.stream_sid, "accountSid": self.account_sid, "callSid": self.call_sid, "tracks": ["inbound"],
            "customParameters": self.custom_parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aenter__(self) -> "TwilioLine":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Twilio's end of the socket goes away (a close frame) and the reader ends."""
        self.cancel_pending_marks()
        if not self.ws.closed:
            await self.ws.close()
        if not self.reader.done():
            await self.reader

    # ------------------------------------------------------------------ sending
    async def send(self, event: str, **body: Any) -> bool:
        """One message in Twilio's shape (sequence number, streamSid); False if the line is gone."""
        self._seq += 1
        return await self.send_text(json.dumps({"event": event, "sequenceNumber": str(self._seq),
                                                "streamSid": self.stream_sid, **body}))

    async def send_media(self, payload: str) -> bool:
        """One 20 ms frame (base64 mu-law), from a template: a load run sends tens of thousands a second."""
        self._seq += 1
        self._chunk += 1
        k = self._chunk
        return await self.send_text(
            f'{{"event": "media", "sequenceNumber": "{self._seq}", "streamSid": {self._sid_json}, "media": '
            f'{{"track": "inbound", "chunk": "{k}", "timestamp": "{(k - 1) * FRAME_MS}", "payload": "{payload}"}}}}')

    async def send_text(self, text: str) -> bool:
        if self.ws.closed or self.vanished:
            return False
        try:
            await self.ws.send_str(text)
        except ConnectionResetError:  # the handler's end went away without a close frame
            if self.record.closed_at is None:
                self.record.closed_at = time.monotonic()
            return False
        return True

    async def play(self, pcm: np.ndarray) -> None:
        """Caller audio (int16, 8 kHz) as 20 ms media frames, as fast as the handler reads them."""
        ulaw = pcm16_to_ulaw(pcm)
        for i in range(0, len(ulaw), 160):
            await self.send_media(base64.b64encode(ulaw[i : i + 160]).decode())

    def wake(self) -> None:
        """Wake whoever waits on the line's activity (the call changed at Twilio: ended, redirected)."""
        self._changed.set()

    async def dtmf(self, digit: str) -> bool:
        return await self.send("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    async def stop(self) -> bool:
        """Twilio's ``stop``: the caller hung up."""
        self.record.stop_at = time.monotonic()
        return await self.send("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})

    # ------------------------------------------------------------------ reading
    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for msg in self.ws:
            now = time.monotonic()
            if msg.type != aiohttp.WSMsgType.TEXT:  # Twilio drops binary frames; a protocol error ends the stream
                error = msg.type == aiohttp.WSMsgType.ERROR
                rejection = protocol_error(msg.data) if error else binary_frame(len(msg.data or b""))
                self.record.received.append((now, rejection.as_event()))
                self._changed.set()
                if error:
                    break
                continue
            message, rejection = judge_text(msg.data, self.stream_sid)
            if rejection is not None:  # as Twilio would: a dropped message is neither played nor echoed
                self.record.received.append((now, rejection.as_event(msg.data)))
            if message is None:
                self._changed.set()
                continue
            event = message.get("event")
            if event != "media":
                self.record.received.append((now, message))
            if event == "media":
                payload = message.get("media", {}).get("payload", "")
                ms = base64_bytes(payload) / 8 if isinstance(payload, str) else 0.0  # 8 kHz mu-law
                self._keep_media(now, message, ms)
                self._play_until = max(now, self._play_until) + (ms / 1000 / self.pace if self.pace else 0.0)
                self.last_media_at = now
                self.on_media()
            elif event == "mark":
                name = message.get("mark", {}).get("name", "")
                if self.hold_marks:
                    self.held.append(name)
                else:
                    handle = loop.call_at(loop.time() + max(0.0, self._play_until - now), self._echo_later, name)
                    self._pending_marks.append((name, handle))
            elif event == "clear":  # Twilio echoes every pending mark at once
                pending, self._pending_marks = self._pending_marks, deque()
                for name, handle in pending:
                    handle.cancel()
                    await self._echo(name)
                await self.release_marks()
                self._play_until = now
            self._changed.set()
        self.record.closed_at = time.monotonic()
        self.closed.set()
        self._changed.set()

    def _keep_media(self, now: float, message: dict[str, Any], ms: float) -> None:
        """Bot audio is kept up to ``MAX_KEPT_AUDIO_MS`` and ``MAX_KEPT_MEDIA`` messages a call; past either it is
        counted (and still played), so a handler that floods the line costs bounded memory."""
        record = self.record
        if record.media_not_kept or len(record.received) >= MAX_KEPT_MEDIA or record.audio_kept_ms + ms > MAX_KEPT_AUDIO_MS:
            if not record.media_not_kept:
                record.received.append((now, {"event": "harness_note", "note": (
                    f"the handler sent more than the harness keeps of one call ({MAX_KEPT_MEDIA} messages or "
                    f"{MAX_KEPT_AUDIO_MS / 60000:.0f} min of audio): later media is counted, not kept")}))
            record.media_not_kept += 1
            record.audio_not_kept_ms += ms
            return
        record.audio_kept_ms += ms
        media = message.get("media")  # only what the judge reads: a message's other fields cost memory per frame
        record.received.append((now, {"event": "media", "streamSid": message.get("streamSid"),
                                      "media": {"payload": media.get("payload", "")} if isinstance(media, dict) else {}}))

    def _echo_later(self, name: str) -> None:
        task = asyncio.ensure_future(self._echo(name))
        self._echo_tasks.add(task)
        task.add_done_callback(self._echo_tasks.discard)

    async def _echo(self, name: str) -> None:
        pending = self._pending_marks  # echoed in the order they came: the first is the one, almost always
        if pending and pending[0][0] == name:
            pending.popleft()
        else:
            self._pending_marks = deque((n, h) for n, h in pending if n != name)
        if await self.send("mark", mark={"name": name}):
            self.record.marks_played.append((time.monotonic(), name))
            self._changed.set()  # a wait on what has been played goes on

    async def release_marks(self) -> None:
        """The held audio has finished playing: echo its marks."""
        held, self.held = self.held, []
        for name in held:
            await self._echo(name)

    @property
    def playing_until(self) -> float:
        """When the bot audio received so far has finished playing (monotonic; a ``clear`` ends it at once)."""
        return self._play_until

    @property
    def marks_pending(self) -> bool:
        return bool(self._pending_marks or self.held)

    def cancel_pending_marks(self) -> None:
        """Nobody is left to echo them (the line dropped, the call ended)."""
        for _, handle in self._pending_marks:
            handle.cancel()

    # -------------------------------------------------------------------- views
    async def wait_for(self, predicate: Callable[["TwilioLine"], bool], timeout: float = 20.0) -> None:
        """Until ``predicate(line)`` holds (checked whenever something arrives); TimeoutError after ``timeout``."""
        async def until() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def wait_for_activity(self, timeout: float) -> bool:
        """Until the next message (True) or ``timeout`` (False)."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for _, m in self.record.received if m.get("event") == name]

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in self.events("mark")]

    def after_stop(self) -> list[dict[str, Any]]:
        """What the handler sent once the caller had hung up (Twilio would drop it)."""
        stop = self.record.stop_at
        return [] if stop is None else [m for t, m in self.record.received if t >= stop]
