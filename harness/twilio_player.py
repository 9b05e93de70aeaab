"""The fake Twilio: plays a fixture's caller audio into a Media Streams WebSocket, as Twilio does.

``connected``, ``start`` (callSid, streamSid, customParameters, mediaFormat), ``media`` every 20 ms
with sequence numbers and timestamps, ``dtmf``, ``mark`` echoed when the bot audio sent before it
would have finished playing (at once after a ``clear``), then ``stop``, and then, as Twilio does when
the call ends, it closes the WebSocket itself (after ``CLOSE_AFTER_STOP_S`` for messages in flight):
a handler that waits for the socket to close rather than reading ``stop`` ends its call all the same.
A ``vanish`` hang-up drops the line without ``stop`` or a close frame, but only after every frame
sent reached the handler's socket (a TCP FIN), so the verdict never depends on what was still queued.
Pacing is real time times ``pace`` (2.0 plays twice as fast), or ``None``: as fast as the handler reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from callaudio.g711 import pcm16_to_ulaw

from .errors import HarnessError
from .fixture import CallFixture

FRAME_MS = 20
FAST_ANSWER_WAIT_S = 3.0  # fast pacing waits this long for each turn's answer before talking on
QUIET_S = 0.3  # the bot counts as done speaking after this long without a message
LISTEN_LIMIT_S = 10.0  # at most this long listening to the end of the bot's reply before hanging up
CLOSE_AFTER_STOP_S = 0.5  # Twilio closes the socket once the call has ended; what the handler had in flight still arrives
VANISH_DRAIN_S = 10.0  # after a dropped line, how long the handler has to notice the end of the stream


_FRAMES: "OrderedDict[int, tuple[np.ndarray, list[str]]]" = OrderedDict()


def caller_frames(fixture: CallFixture) -> list[str]:
    """The fixture's caller audio as Twilio's 20 ms mu-law media payloads (base64), made once per fixture
    (a load run plays the same few fixtures thousands of times)."""
    audio = fixture.script.audio
    cached = _FRAMES.get(id(audio))
    if cached is not None and cached[0] is audio:
        _FRAMES.move_to_end(id(audio))
        return cached[1]
    ulaw = pcm16_to_ulaw(audio)
    frames = [base64.b64encode(ulaw[i : i + 160]).decode() for i in range(0, len(ulaw), 160)]
    _FRAMES[id(audio)] = (audio, frames)
    while len(_FRAMES) > 32:
        _FRAMES.popitem(last=False)
    return frames


def new_call_sid() -> str:
    """A Twilio-shaped call SID (``CA`` + 32 hex digits), fresh for every replay."""
    return "CA" + uuid.uuid4().hex


def handshake_hint(url: str, status: int) -> str:
    """What a refused stream handshake most likely means, for the one-line error."""
    if status == 404:
        return f"{url} answered HTTP 404: is the Media Streams WebSocket at another path? (give it with --path or --url)"
    if status in (401, 403):
        return f"{url} refused the stream handshake: HTTP {status} (does it check X-Twilio-Signature? give --twilio-auth-token)"
    return f"{url} refused the stream handshake: HTTP {status}"


@dataclass
class PlayerRecord:
    """What the caller side saw, with monotonic wall times."""

    frame_sent: np.ndarray = field(default_factory=lambda: np.zeros(0))  # wall time each frame was sent
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    marks_played: list[tuple[float, str]] = field(default_factory=list)  # when each mark was echoed
    stop_at: float | None = None
    closed_at: float | None = None
    closed_by_handler: bool = False  # the handler ended the call before the caller hung up
    closed_how: str = ""  # "handler", "twilio after stop", "line dropped"
    close_code: int | None = None  # as the caller side saw it: None or 1006 when the socket just went away
    hung_up_how: str = ""

    def media_after(self, wall: float) -> float | None:
        return next((t for t, m in self.received if t >= wall and m.get("event") == "media"), None)


class TwilioPlayer:
    def __init__(self, session: aiohttp.ClientSession, url: str, fixture: CallFixture, *, pace: float | None = 1.0,
                 call_sid: str | None = None, stream_sid: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.session, self.url, self.fixture, self.pace = session, url, fixture, pace
        self.call_sid = call_sid or new_call_sid()
        self.stream_sid = stream_sid or "MZ" + self.call_sid[2:]
        self._sid_json = json.dumps(self.stream_sid)
        self.headers = headers or {}
        self.record = PlayerRecord()
        self._seq = 0
        self._play_until = 0.0
        self._pending_marks: list[tuple[str, asyncio.TimerHandle]] = []
        self._answered = 0
        self._awaiting_answer = False
        self._answer = asyncio.Event()
        self._echo_tasks: set[asyncio.Task[None]] = set()
        self._activity = asyncio.Event()
        self._leaving = False

    def hang_up_now(self) -> None:
        """End the call early, as a caller who hangs up: no more audio, then ``stop`` (a load run's end)."""
        self._leaving = True

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        """Open the stream as Twilio does; every failure names the URL tried."""
        try:
            return await self.session.ws_connect(self.url, headers=self.headers, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            raise HarnessError(handshake_hint(self.url, exc.status)) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise HarnessError(f"could not open {self.url}: {str(exc) or type(exc).__name__}") from None

    async def run(self) -> PlayerRecord:
        ws = self.ws = await self.connect()
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self._send("start", start={
            "streamSid": self.stream_sid, "accountSid": "ACharness", "callSid": self.call_sid, "tracks": ["inbound"],
            "customParameters": {"caller": "+821000000000"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        reader = asyncio.create_task(self._read())
        try:
            await self._play()
            caller = self.fixture.caller
            if caller.hangup_ms is None and not caller.hangup_after_turns and not self._leaving:
                await self._listen_to_the_end()
            await self._hang_up()
            self.record.closed_by_handler = self.record.stop_at is None
            await self._end(reader)
            self.record.close_code = ws.close_code
        finally:
            for _, handle in self._pending_marks:
                handle.cancel()
            if not reader.done():
                reader.cancel()
            if not ws.closed:
                await ws.close()
        return self.record

    async def _send(self, event: str, **body: Any) -> bool:
        self._seq += 1
        return await self._send_text(json.dumps({"event": event, "sequenceNumber": str(self._seq),
                                                 "streamSid": self.stream_sid, **body}))

    async def _send_media(self, k: int, payload: str) -> bool:
        """``_send("media", ...)`` from a template: a load run sends tens of thousands a second."""
        self._seq += 1
        return await self._send_text(
            f'{{"event": "media", "sequenceNumber": "{self._seq}", "streamSid": {self._sid_json}, "media": '
            f'{{"track": "inbound", "chunk": "{k + 1}", "timestamp": "{k * FRAME_MS}", "payload": "{payload}"}}}}')

    async def _send_text(self, text: str) -> bool:
        if self.ws.closed or self.record.hung_up_how == "vanished":  # a dropped line carries nothing more
            return False
        try:
            await self.ws.send_str(text)
        except ConnectionResetError:  # the handler's end went away without a close frame
            if self.record.closed_at is None:
                self.record.closed_at = time.monotonic()
            return False
        return True

    async def _play(self) -> None:
        fixture, caller = self.fixture, self.fixture.caller
        frames = caller_frames(fixture)
        n = len(frames)
        self.record.frame_sent = np.full(n, np.nan)
        end_frames = {int(np.ceil(u.end_ms / FRAME_MS)) for u in fixture.script.utterances}
        hangup_frame = n if caller.hangup_ms is None else min(n, int(caller.hangup_ms / FRAME_MS))
        dtmf = {int(at / FRAME_MS): digit for at, digit in caller.dtmf}
        t0 = time.monotonic()
        for k in range(hangup_frame):
            if self.ws.closed or self.record.closed_at is not None or self._leaving:
                return
            if self.pace:
                delay = t0 + k * FRAME_MS / 1000 / self.pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the simulated phone line's pace
            self.record.frame_sent[k] = time.monotonic()
            await self._send_media(k, frames[k])
            if k in dtmf:
                await self._send("dtmf", dtmf={"track": "inbound_track", "digit": dtmf[k]})
            if k + 1 in end_frames:
                self._awaiting_answer, self._answer = True, asyncio.Event()
            if caller.hangup_after_turns and self._answered >= caller.hangup_after_turns:
                return
            if self.pace is None and self._awaiting_answer and k + 1 - 35 in end_frames:
                try:  # fast pacing still lets each turn be answered before the caller talks on
                    await asyncio.wait_for(self._answer.wait(), FAST_ANSWER_WAIT_S)
                except asyncio.TimeoutError:
                    pass

    async def _listen_to_the_end(self) -> None:
        """Like a caller who has said everything: wait until the bot stops talking (or ends the call)."""
        deadline = time.monotonic() + LISTEN_LIMIT_S
        while not self.ws.closed and self.record.closed_at is None and time.monotonic() < deadline:
            self._activity.clear()
            try:
                await asyncio.wait_for(self._activity.wait(), QUIET_S)
            except asyncio.TimeoutError:
                if not self._pending_marks:
                    return

    async def _hang_up(self) -> None:
        if self.ws.closed or self.record.closed_at is not None:
            self.record.hung_up_how = "handler closed first"  # the caller never hung up
            return
        self.record.stop_at = time.monotonic()
        if self.fixture.caller.vanish:
            self.record.hung_up_how = "vanished"
            return
        self.record.hung_up_how = "stop"
        await self._send("stop", stop={"accountSid": "ACharness", "callSid": self.call_sid})

    async def _end(self, reader: asyncio.Task[None]) -> None:
        """The end of the call on Twilio's side: the socket closes, whatever the handler does."""
        if self.record.hung_up_how == "handler closed first":
            await asyncio.wait_for(reader, CLOSE_AFTER_STOP_S + 10)
            self.record.closed_how = "handler"
            return
        if self.record.hung_up_how == "vanished":
            for _, handle in self._pending_marks:
                handle.cancel()  # nobody is left to echo them
            connection = self.ws._response.connection
            transport = connection.transport if connection else None
            if transport is not None and transport.can_write_eof():
                transport.write_eof()  # FIN after everything queued: no close frame, no audio lost
                try:
                    await asyncio.wait_for(asyncio.shield(reader), VANISH_DRAIN_S)
                except asyncio.TimeoutError:
                    pass
            if transport is not None:
                transport.abort()
            self.record.closed_how = "line dropped"
            if self.record.closed_at is None:
                self.record.closed_at = time.monotonic()
            return
        try:  # messages the handler had in flight when it got ``stop`` still arrive
            await asyncio.wait_for(asyncio.shield(reader), CLOSE_AFTER_STOP_S)
            self.record.closed_how = "handler"
            return
        except asyncio.TimeoutError:
            pass
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass
        self.record.closed_how = "twilio after stop"
        await self.ws.close(code=1000)  # the handler's answer to the close frame is awaited (aiohttp's timeout)
        self.record.closed_at = time.monotonic()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for msg in self.ws:
            now = time.monotonic()
            if msg.type != aiohttp.WSMsgType.TEXT:
                self.record.received.append((now, {"event": "binary", "bytes": len(msg.data)}))
                continue
            try:
                message = json.loads(msg.data)
            except json.JSONDecodeError:
                message = {"event": "invalid-json", "text": msg.data[:100]}
            self.record.received.append((now, message))
            self._activity.set()
            event = message.get("event")
            if event == "media":
                ms = len(base64.b64decode(message.get("media", {}).get("payload", ""))) / 8
                self._play_until = max(now, self._play_until) + (ms / 1000 / self.pace if self.pace else 0.0)
                if self._awaiting_answer:
                    self._awaiting_answer = False
                    self._answered += 1
                    self._answer.set()
            elif event == "mark":
                name = message.get("mark", {}).get("name", "")
                handle = loop.call_at(loop.time() + max(0.0, self._play_until - now), self._echo_later, name)
                self._pending_marks.append((name, handle))
            elif event == "clear":
                pending, self._pending_marks = self._pending_marks, []
                for name, handle in pending:
                    handle.cancel()
                    await self._echo(name)
                self._play_until = now
        self.record.closed_at = time.monotonic()
        self._activity.set()

    def _echo_later(self, name: str) -> None:
        task = asyncio.ensure_future(self._echo(name))
        self._echo_tasks.add(task)
        task.add_done_callback(self._echo_tasks.discard)

    async def _echo(self, name: str) -> None:
        self._pending_marks = [(n, h) for n, h in self._pending_marks if n != name]
        try:
            if await self._send("mark", mark={"name": name}):
                self.record.marks_played.append((time.monotonic(), name))
        except ConnectionResetError:
            pass  # the handler closed the call while the audio was "playing"
