"""RTZR streaming STT for one call: a single connection kept open the whole call, and no lost words.

The report's failure 2 was a recognizer connection that ended (close 1000) after the first final,
after which the caller was never heard again. Here any close - 1000 included - or drop leads to a
reconnect with backoff, and the audio sent since the last final is sent again on the new
connection, so what the caller said while the old one was closing is still recognised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp

from .errors import RtzrAuthError, RtzrUnavailable
from .recognizer_core import (EOS_WAIT_S, KEEPALIVE_AFTER_S, STALL_WAIT_S, AbandonStalled, Delivery, RecognizerCore,
                              SendEos, SendKeepalive, Timings, backoff_s)

log = logging.getLogger("aicall.rtzr")

TOKEN_REFRESH_MARGIN_S = 300  # refresh this long before expire_at
# KEEPALIVE_AFTER_S, EOS_WAIT_S and STALL_WAIT_S are the core's (recognizer_core), read here when a stream
# is made so that a test may shorten them on this module.
STALL_CHECK_S = 0.25  # how often a quiet sender wakes to look for a stall and keep the stream alive
OPEN_TIMEOUT_S = 10.0  # the streaming handshake
CLOSE_TIMEOUT = aiohttp.ClientWSTimeout(ws_close=2.0)  # a stalled stream's close must not hold up the reconnect
TOKEN_UNAVAILABLE_GIVE_UP_S = 15.0  # no token for this long (token endpoint down): give up on the call
CREDENTIALS_REFUSED = (400, 401, 403)  # the token endpoint says no to these credentials: retrying cannot help


class RtzrTokens:
    """Caches one access token for the process, refreshed before expiry; shared by all calls."""

    def __init__(self, session: aiohttp.ClientSession, api_base: str, client_id: str, client_secret: str) -> None:
        self._session = session
        self._url = f"{api_base}/v1/authenticate"
        self._form = {"client_id": client_id, "client_secret": client_secret}
        self._token: str | None = None
        self._expire_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or time.time() >= self._expire_at - TOKEN_REFRESH_MARGIN_S:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        self._token = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The process's HTTP session: the streaming WebSockets are opened on it too."""
        return self._session

    async def _fetch(self) -> None:
        """Refused credentials raise RtzrAuthError; anything that may pass raises RtzrUnavailable."""
        try:
            async with self._session.post(self._url, data=self._form, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    code = body.get("code", "") if isinstance(body, dict) else ""
                    error = RtzrAuthError if resp.status in CREDENTIALS_REFUSED else RtzrUnavailable
                    raise error(f"RTZR token request refused: HTTP {resp.status} {code}".strip())
                token, expire_at = body["access_token"], float(body["expire_at"])
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise RtzrUnavailable(f"RTZR token request failed: {type(exc).__name__}") from None
        self._token, self._expire_at = token, expire_at
        self.fetched += 1


@dataclass(frozen=True)
class StreamConfig:
    ws_base: str
    sample_rate: int = 8000
    encoding: str = "LINEAR16"
    epd_time: float = 0.5
    use_itn: bool = True
    use_disfluency_filter: bool = True
    keywords: str = ""

    def url(self) -> str:
        query = {
            "sample_rate": str(self.sample_rate), "encoding": self.encoding, "model_name": "sommers_ko",
            "use_itn": str(self.use_itn).lower(), "use_disfluency_filter": str(self.use_disfluency_filter).lower(),
            "epd_time": f"{self.epd_time:g}",
        }
        if self.keywords:
            query["keywords"] = self.keywords
        return f"{self.ws_base}/v1/transcribe:streaming?{urlencode(query, safe=':,')}"

    @property
    def bytes_per_ms(self) -> float:
        return self.sample_rate * (2 if self.encoding == "LINEAR16" else 1) / 1000.0


class RecognizerStream:
    """Streams one call's audio to RTZR and hands every result to ``on_result``: the aiohttp shell around
    :class:`~aicall.recognizer_core.RecognizerCore`, which decides what is sent, resent and delivered.

    With each final, ``caller_talks_on`` says whether the caller's audio right after the final's end is
    speech: RTZR cuts an utterance at ``max_utter_duration`` (12 s) while the caller is still talking, and a
    final of that kind is not the end of a turn. A final that comes before ``TALKING_PROBE_MS`` of audio
    after its end has arrived is held (with the results after it) until that audio is there.

    ``send_audio`` never blocks; ``run`` keeps a connection open until ``finish`` (EOS, last final)
    and raises :class:`RtzrAuthError` when credentials or tokens are refused.
    """

    def __init__(self, config: StreamConfig, tokens: RtzrTokens, on_result: Callable[[dict[str, Any]], None],
                 call_id: str = "-") -> None:
        self.config = config
        self.tokens = tokens
        self.on_result = on_result
        self.call_id = call_id
        self.core = RecognizerCore(config.encoding, config.sample_rate, Timings(
            stall_wait_s=STALL_WAIT_S, keepalive_after_s=KEEPALIVE_AFTER_S, eos_wait_s=EOS_WAIT_S))
        self._new_audio = asyncio.Event()
        self._closing_stream = False  # the sender is closing the stream (stalled, or no last final in time)
        self.connections = 0
        self.caller_talks_on = False  # about the final being handed to on_result

    @property
    def stalls(self) -> int:
        return self.core.stalls

    @property
    def lost_ms(self) -> float:
        """Audio dropped because the resend buffer overflowed."""
        return self.core.lost_ms

    # ---------------------------------------------------------------- input
    def send_audio(self, frame: bytes) -> None:
        if self.core.finishing:
            return
        deliveries = self.core.audio(frame)
        self._new_audio.set()
        self._deliver(deliveries)

    def finish(self) -> None:
        """The call is over: send what is left, then EOS, and wait for the last final."""
        deliveries = self.core.finish(time.monotonic())
        self._new_audio.set()
        self._deliver(deliveries)

    def _deliver(self, deliveries: list[Delivery]) -> None:
        """Hand the core's results on, each final with ``caller_talks_on`` set for ``on_result`` to read (the
        core has already moved on: ``on_result`` must not need the stream's state beyond that flag)."""
        for delivery in deliveries:
            if delivery.final:
                self.caller_talks_on = bool(delivery.talks_on)
                if delivery.talks_on:
                    log.info("call=%s event=final_mid_speech", self.call_id)
            self.on_result(delivery.result)

    # ------------------------------------------------------------ connection
    async def run(self) -> None:
        while True:
            try:
                ws = await self._connect()
            except ConnectionError:
                return  # the call ended while we were reconnecting
            self.connections += 1
            async with ws:  # closed however the conversation ends, a cancelled call included
                clean = await self._converse(ws)
            delay = self.core.stream_ended(clean)
            if delay is None:
                return
            log.info("call=%s event=rtzr_reconnect code=%s delay_s=%.2f resend_ms=%.0f", self.call_id,
                     ws.close_code, delay, self.core.buffered_ms)
            if delay:
                await asyncio.sleep(delay)  # backoff before reconnecting

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        """Open a stream; a 401 drops the token and tries once more; other refusals, and a token
        endpoint that fails for a while, back off and retry."""
        refused_401 = 0
        attempt = 0
        unavailable_since: float | None = None
        while True:
            try:
                token = await self.tokens.get()
                unavailable_since = None
            except RtzrUnavailable as exc:
                now = time.monotonic()
                unavailable_since = unavailable_since or now
                if now - unavailable_since >= TOKEN_UNAVAILABLE_GIVE_UP_S:
                    raise RtzrAuthError(f"no RTZR token for {TOKEN_UNAVAILABLE_GIVE_UP_S:g} s: {exc}") from None
                log.warning("call=%s event=rtzr_token_unavailable error=%s", self.call_id, exc)
                if self.core.gave_up_finishing(time.monotonic()):
                    raise ConnectionError("call ended while reconnecting to RTZR") from None
                await asyncio.sleep(backoff_s(attempt) or 0.05)
                attempt += 1
                continue
            try:
                return await asyncio.wait_for(self.tokens.session.ws_connect(
                    self.config.url(), headers={"Authorization": f"Bearer {token}"}, heartbeat=20.0,
                    max_msg_size=2**20, compress=0,  # deflating PCM saves nothing and cost half the CPU at 100 calls
                    timeout=CLOSE_TIMEOUT,
                ), OPEN_TIMEOUT_S)
            except aiohttp.WSServerHandshakeError as exc:
                status = exc.status
                if status == 401:
                    refused_401 += 1
                    if refused_401 >= 2:
                        raise RtzrAuthError("RTZR refused the streaming handshake twice with 401 (token not accepted)") from None
                    self.tokens.invalidate()
                    continue
                log.warning("call=%s event=rtzr_handshake_refused status=%s", self.call_id, status)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.warning("call=%s event=rtzr_connect_failed error=%s", self.call_id, type(exc).__name__)
            if self.core.gave_up_finishing(time.monotonic()):
                raise ConnectionError("call ended while reconnecting to RTZR")
            await asyncio.sleep(backoff_s(attempt) or 0.05)
            attempt += 1

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Send buffered and new audio, receive results; True if the server closed cleanly."""
        self.core.stream_opened()
        self._closing_stream = False
        closed = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            sender = group.create_task(self._send_loop(ws, closed))
            async for message in ws:  # ends at the server's Close, a lost connection, or the sender's close()
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._receive(message.data)
            closed.set()
            if not self._closing_stream:  # a sender in close() finishes the closing handshake: cancelled, it
                sender.cancel()  # would leave the stream open on RTZR's side (in its count of this key's streams)
        return ws.close_code is not None and ws.close_code in (1000, 1001)

    def _receive(self, message: str | bytes) -> None:
        deliveries = self.core.receive(message, time.monotonic())
        if deliveries is None:
            log.warning("call=%s event=rtzr_bad_message text=%.80r", self.call_id, message)
            return
        self._deliver(deliveries)

    async def _abandon_stalled(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.core.abandon()
        log.warning("call=%s event=rtzr_stalled unanswered_speech_ms=%.0f", self.call_id, self.core.unanswered_speech_ms)
        self._closing_stream = True
        await ws.close()  # reconnect and resend what was not transcribed

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse, closed: asyncio.Event) -> None:
        """Send audio as it comes. The loop sleeps on ``_new_audio`` alone (no timeout per frame): a tick
        every ``STALL_CHECK_S`` wakes it to look for a stall and to keep a quiet connection alive."""
        loop = asyncio.get_running_loop()
        ticker: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal ticker
            self._new_audio.set()
            ticker = loop.call_later(STALL_CHECK_S, tick)

        ticker = loop.call_later(STALL_CHECK_S, tick)
        core = self.core
        core.sender_started(time.monotonic())  # resend everything since the last final
        try:
            while True:
                while (next_frame := core.next_frame()) is not None:
                    index, frame = next_frame
                    await ws.send_bytes(frame)
                    core.frame_sent(index, frame, time.monotonic())
                step = core.when_sent(time.monotonic())
                if isinstance(step, AbandonStalled):
                    return await self._abandon_stalled(ws)
                if isinstance(step, SendEos):
                    await ws.send_str("EOS")
                    core.eos_sent(time.monotonic())
                    while core.awaiting_last_final(time.monotonic()):  # the server sends the last final, then closes
                        try:
                            await asyncio.wait_for(closed.wait(), STALL_CHECK_S)
                            return
                        except asyncio.TimeoutError:
                            if core.stalled(time.monotonic()):
                                return await self._abandon_stalled(ws)
                    self._closing_stream = True
                    await ws.close()
                    return
                if isinstance(step, SendKeepalive):
                    await ws.send_bytes(step.frame)
                    core.keepalive_sent(time.monotonic())
                self._new_audio.clear()
                await self._new_audio.wait()  # new audio, finish(), or the tick
        except ConnectionError:  # the server closed or the connection was lost: the reader sees which
            return
        finally:
            if ticker is not None:
                ticker.cancel()
