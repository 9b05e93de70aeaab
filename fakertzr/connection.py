"""The I/O shell of one streaming connection: moves frames between aiohttp and the session.

A reader task feeds the session; a sender task performs its actions in order, waiting out each
result's scripted processing delay (scaled by ``time_scale``) from the moment its audio arrived.
Both live in one TaskGroup; nothing outlives the connection. The gRPC stream
(:mod:`fakertzr.grpc.service`) is this class with another transport: reading, sending, closing and
dropping are the methods it overrides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import WSMsgType, web

from .actions import Action, Close, Drop, RevokeTokens, SendRaw, SendResult, Stall
from .backend import FakeRtzrBackend, OpenedStream
from .journal import SentMessage
from .session import is_eos

log = logging.getLogger("fakertzr")


class StreamConnection:
    """Runs one accepted stream until the client leaves or a close, drop or stall ends it."""

    def __init__(self, ws: web.WebSocketResponse, opened: OpenedStream, backend: FakeRtzrBackend,
                 transport: asyncio.BaseTransport | None) -> None:
        self.ws = ws
        self.session = opened.session
        self.record = opened.record
        self.backend = backend
        self.transport = transport
        self.queue: asyncio.Queue[tuple[Action, float]] = asyncio.Queue()
        self.server_closing = False
        self.stalled = False
        self.last_audio_at = time.monotonic()
        self._closing: asyncio.Future | None = None  # a shutdown's close of a stalled stream

    async def run(self) -> None:
        self.backend.live_streams.add(self)
        try:
            async with asyncio.TaskGroup() as group:
                self._reader = group.create_task(self._read_loop())
                self._sender = sender = group.create_task(self._send_loop())
                watchdog = group.create_task(self._idle_watchdog())
                await asyncio.wait([self._reader])  # it ends when the client leaves, or is stopped for a close
                watchdog.cancel()
                if not self.server_closing:
                    sender.cancel()
            if self._closing is not None:
                await self._closing
        finally:
            self.backend.live_streams.discard(self)
            if self.record.ended is None:  # no close frame from either side
                self._end("client_vanished", None, "connection lost without a close frame")

    def shut_down(self, code: int, reason: str = "going away") -> None:
        """The server is stopping: the client gets a close frame with ``code`` (after what is already queued),
        as a close fault sends one; a stalled stream, whose sender has stopped, is closed at once."""
        if self.server_closing and not self.stalled:
            return  # a close (or drop) is on its way already
        self._end("shutdown", code, reason)
        self.server_closing = True
        if self.stalled or self._sender.done():
            self._closing = asyncio.ensure_future(self._close(code, reason))
        else:
            self.queue.put_nowait((Close(code, reason), time.monotonic()))

    def _end(self, how: str, code: int | None = None, reason: str = "") -> None:
        self.record.end(how, code, reason)
        self.backend.journal_changed()

    # ----------------------------------------------------------------- reading
    async def _idle_watchdog(self) -> None:
        """Close the stream once no audio has arrived for ``idle_timeout_s`` (one timer, not one per frame)."""
        while True:
            idle = self.backend.config.idle_timeout_s
            remaining = self.last_audio_at + idle - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)  # the fake's own timer, re-armed lazily
                continue
            if not (self.stalled or self.server_closing):
                self._end("idle_timeout", self.backend.config.idle_close_code, f"no audio for {idle:g} s")
                self._enqueue([Close(self.backend.config.idle_close_code, "idle timeout")])
            return

    async def _read_loop(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                self.last_audio_at = time.monotonic()
                self.record.audio_frames += 1
                self._enqueue(self.session.receive_audio(msg.data))
            elif msg.type == WSMsgType.TEXT:
                if len(self.record.text_frames) < self.record.MAX_TEXT_FRAMES:
                    self.record.text_frames.append(msg.data[:200])
                if is_eos(msg.data) and self.record.eos_wall is None:
                    self.record.eos_wall = time.monotonic()
                self._enqueue(self.session.receive_text(msg.data))
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the conversation is over
                if msg.type == WSMsgType.CLOSE:
                    self._end("client_closed", msg.data, msg.extra or "")
                elif msg.type == WSMsgType.ERROR:
                    log.info("connection=%s event=ws_error error=%s", self.record.index, self.ws.exception())
                return

    def _enqueue(self, actions: list[Action]) -> None:
        self.record.audio_bytes = self.session.audio_bytes
        self.record.audio_ms = round(self.session.audio_ms, 1)
        now = time.monotonic() if actions else 0.0
        for action in actions:
            if isinstance(action, (Close, Drop)):
                self.server_closing = True
            elif isinstance(action, Stall):
                self.stalled = True
            self.queue.put_nowait((action, now))
        self.backend.journal_changed()

    # ----------------------------------------------------------------- sending
    async def _send_loop(self) -> None:
        not_before = 0.0
        while True:
            action, arrived = await self.queue.get()
            if isinstance(action, (SendResult, SendRaw)):
                scale = self.backend.config.time_scale  # read live: the control API may change it
                delay_ms = action.result.delay_ms if isinstance(action, SendResult) else action.delay_ms
                not_before = max(not_before, arrived + delay_ms * scale / 1000.0)
                wait = not_before - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # the scripted processing delay, not a test wait
                await self._send(action, arrived, delay_ms * scale)
            elif isinstance(action, RevokeTokens):
                self.backend.revoke_tokens()
            elif isinstance(action, Stall):
                self._end("stalled", None, "fault: stall")
                return
            elif isinstance(action, Drop):
                self._end("dropped", None, "fault: drop")
                await self._drop()
                return
            elif isinstance(action, Close):
                self._end("server_closed", action.code, action.reason)
                await self._close(action.code, action.reason)
                return

    async def _drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _close(self, code: int, reason: str) -> None:
        """The closing handshake, as RFC 6455 has it: send Close, then read (and drop) what the client still
        sends until its Close, and only then close TCP. Closing TCP at once, while the client's audio is
        still arriving, resets the connection, and a client busy sending loses the final and the Close frame
        it had not read yet (a clean close would look like a drop). aiohttp does the reading when no one
        else is reading, so the reader is stopped first (it would be handed the close and cut it short)."""
        self._reader.cancel()
        await asyncio.wait([self._reader])
        message = reason.encode()[:120].decode("utf-8", "ignore").encode()  # a control frame, cut on a character
        await self.ws.close(code=code, message=message)  # reads until the client's Close, 5 s at most
        self.record.client_close_code = self.ws.close_code  # the client's answer (1006 when it never came)
        self.backend.journal_changed()

    async def _send(self, action: SendResult | SendRaw, arrived: float, delay_ms: float) -> None:
        if isinstance(action, SendResult):
            kind = "final" if action.result.final else "partial"
            seq, audio_ms = action.result.payload["seq"], action.result.audio_ms
            text = action.result.payload["alternatives"][0]["text"]
        else:
            kind, seq, audio_ms, text = "raw", None, action.audio_ms, action.text
        payload = await self._transmit(action)
        if payload is None:
            return  # the client went away; the reader will see it
        self.record.messages.append(
            SentMessage(kind, seq, text, round(audio_ms, 1), arrived, time.monotonic(), round(delay_ms, 1), payload)
        )
        self.backend.journal_changed()

    async def _transmit(self, action: SendResult | SendRaw) -> str | None:
        """Send one message; what was sent, for the journal (None: the client is gone)."""
        payload = json.dumps(action.result.payload, ensure_ascii=False) if isinstance(action, SendResult) else action.text
        try:
            await self.ws.send_str(payload)
        except (ConnectionResetError, RuntimeError):
            return None
        return payload

