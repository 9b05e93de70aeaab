"""RTZR streaming STT for one call: a single connection kept open the whole call, and no lost words.

The report's failure 2 was a recognizer connection that ended (close 1000) after the first final,
after which the caller was never heard again. Here any close - 1000 included - or drop leads to a
reconnect with backoff, and the audio sent since the last final is sent again on the new
connection, so what the caller said while the old one was closing is still recognised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

import aiohttp
import numpy as np

from callaudio.g711 import ULAW_TO_PCM16

from .errors import RtzrAuthError, RtzrUnavailable

log = logging.getLogger("aicall.rtzr")

TOKEN_REFRESH_MARGIN_S = 300  # refresh this long before expire_at
MAX_BUFFER_MS = 60_000  # audio kept for resending since the last final
KEEPALIVE_AFTER_S = 5.0  # send 20 ms of silence when no audio has gone out for this long
EOS_WAIT_S = 5.0  # how long the last final may take after EOS
STALL_MIN_SPEECH_MS = 100  # caller speech (a short "네" is ~200 ms) sent since the recognizer last said anything ...
STALL_WAIT_S = 2.5  # ... and nothing back this long after the first of it: stalled (RTZR answers speech within ~1 s)
STALL_CHECK_S = 0.25  # how often a quiet sender looks for a stall
SPEECH_POWER = (32768 * 10 ** (-40 / 20)) ** 2  # -40 dBFS: a frame loud enough to be speech
ULAW_POWER = ULAW_TO_PCM16.astype(np.float64) ** 2  # each mu-law byte's power: the speech check is one lookup
BACKOFF_S = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
OPEN_TIMEOUT_S = 10.0  # the streaming handshake
CLOSE_TIMEOUT = aiohttp.ClientWSTimeout(ws_close=2.0)  # a stalled stream's close must not hold up the reconnect
TALKING_GUARD_MS = 100.0  # after a final's end, the tail of its last word (word ends are approximate)
TALKING_PROBE_MS = 200.0  # caller audio looked at past that: voiced there, the caller talks on
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
    """Streams one call's audio to RTZR and hands every result to ``on_result``.

    With each final, ``caller_talks_on`` says whether the caller's audio right after the final's end is
    speech: RTZR cuts an utterance at ``max_utter_duration`` (12 s) while the caller is still talking, and a
    final of that kind is not the end of a turn. A final that comes before ``TALKING_PROBE_MS`` of audio
    after its end has arrived is held (with the results after it) until that audio is there.

    ``send_audio`` never blocks; ``run`` keeps a connection open until ``finish`` (EOS, last final)
    and raises :class:`RtzrAuthError` when credentials or tokens are refused.
    """

    def __init__(self, config: StreamConfig, tokens: RtzrTokens, on_result: Callable[[dict], None],
                 call_id: str = "-") -> None:
        self.config = config
        self.tokens = tokens
        self.on_result = on_result
        self.call_id = call_id
        self._frames: deque[bytes] = deque()  # audio since the last final, oldest first
        self._base = 0  # index of _frames[0] among all frames of the call
        self._buffered_ms = 0.0
        self._new_audio = asyncio.Event()
        self._finishing = False
        self._finish_at = 0.0
        self.connections = 0
        self.stalls = 0
        self.lost_ms = 0.0  # audio dropped because the resend buffer overflowed
        self._unanswered_speech_ms = 0.0
        # speech not yet answered: (connection ms at its end, ms, since when it waits: sent, or the last result)
        self._speech_sent: deque[tuple[float, float, float]] = deque()
        self._stalled_now = False
        self._closing_stream = False  # the sender is closing the stream (stalled, or no last final in time)
        self._held: list[dict] = []  # a final waiting for the audio after it, and the results after it
        self.caller_talks_on = False  # about the final being handed to on_result

    # ---------------------------------------------------------------- input
    def send_audio(self, frame: bytes) -> None:
        if self._finishing:
            return
        self._frames.append(frame)
        self._buffered_ms += len(frame) / self.config.bytes_per_ms
        while self._buffered_ms > MAX_BUFFER_MS and len(self._frames) > 1:
            dropped = self._frames.popleft()
            self._base += 1
            self._buffered_ms -= len(dropped) / self.config.bytes_per_ms
            self.lost_ms += len(dropped) / self.config.bytes_per_ms
        self._new_audio.set()
        if self._held:
            self._release_held(self._talking_after())

    def finish(self) -> None:
        """The call is over: send what is left, then EOS, and wait for the last final."""
        self._finishing = True
        self._finish_at = time.monotonic()
        self._new_audio.set()
        if self._held:
            self._release_held(False)  # no more audio will come to tell

    def _gave_up_finishing(self) -> bool:
        """After the call ended, reconnecting (to get the last words recognised) has EOS_WAIT_S."""
        return self._finishing and time.monotonic() - self._finish_at >= EOS_WAIT_S

    # ------------------------------------------------------------ connection
    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                ws = await self._connect()
            except ConnectionError:
                return  # the call ended while we were reconnecting
            self.connections += 1
            async with ws:  # closed however the conversation ends, a cancelled call included
                clean = await self._converse(ws)
            if self._finishing and not self._stalled_now:
                return
            delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] if not clean else 0.0
            attempt = 0 if clean else attempt + 1
            log.info("call=%s event=rtzr_reconnect code=%s delay_s=%.2f resend_ms=%.0f", self.call_id,
                     ws.close_code, delay, self._buffered_ms)
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
                if self._gave_up_finishing():
                    raise ConnectionError("call ended while reconnecting to RTZR") from None
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] or 0.05)  # backoff
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
            if self._gave_up_finishing():
                raise ConnectionError("call ended while reconnecting to RTZR")
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] or 0.05)  # backoff
            attempt += 1

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Send buffered and new audio, receive results; True if the server closed cleanly."""
        sent: deque[tuple[int, float]] = deque()  # (frame index, connection ms at its end)
        self._unanswered_speech_ms = 0.0
        self._speech_sent.clear()
        self._stalled_now = False
        self._closing_stream = False
        closed = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            sender = group.create_task(self._send_loop(ws, sent, closed))
            async for message in ws:  # ends at the server's Close, a lost connection, or the sender's close()
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._receive(message.data, sent)
            closed.set()
            if not self._closing_stream:  # a sender in close() finishes the closing handshake: cancelled, it
                sender.cancel()  # would leave the stream open on RTZR's side (in its count of this key's streams)
        return ws.close_code is not None and ws.close_code in (1000, 1001)

    def _stalled(self) -> bool:
        """``STALL_MIN_SPEECH_MS`` of speech went out and nothing came back for ``STALL_WAIT_S`` since. Speech
        waiting that long is counted, not all of it: a wisp left unanswered (the last speech frame straddling
        the end of the words a final reached) and speech that follows seconds later are no stall the moment
        that speech goes out (harness fuzz found aicall reconnecting then, as the next final came)."""
        cutoff = time.monotonic() - STALL_WAIT_S
        waited = 0.0
        for _, ms, since in self._speech_sent:
            if since > cutoff:
                break
            waited += ms
            if waited >= STALL_MIN_SPEECH_MS:
                return True
        return False

    async def _abandon_stalled(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.stalls += 1
        self._stalled_now = True
        log.warning("call=%s event=rtzr_stalled unanswered_speech_ms=%.0f", self.call_id, self._unanswered_speech_ms)
        self._closing_stream = True
        await ws.close()  # reconnect and resend what was not transcribed

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse, sent: deque[tuple[int, float]],
                         closed: asyncio.Event) -> None:
        """Send audio as it comes. The loop sleeps on ``_new_audio`` alone (no timeout per frame): a tick
        every ``STALL_CHECK_S`` wakes it to look for a stall and to keep a quiet connection alive."""
        loop = asyncio.get_running_loop()
        ticker: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal ticker
            self._new_audio.set()
            ticker = loop.call_later(STALL_CHECK_S, tick)

        ticker = loop.call_later(STALL_CHECK_S, tick)
        position = self._base  # resend everything since the last final
        conn_ms = 0.0
        last_send = time.monotonic()
        per_byte_ms = 1.0 / self.config.bytes_per_ms
        try:
            while True:
                while position < self._base + len(self._frames):
                    position = max(position, self._base)
                    frame = self._frames[position - self._base]
                    await ws.send_bytes(frame)
                    frame_ms = len(frame) * per_byte_ms
                    conn_ms += frame_ms
                    sent.append((position, conn_ms))
                    position += 1
                    last_send = time.monotonic()
                    if self._is_speech(frame):
                        self._unanswered_speech_ms += frame_ms
                        self._speech_sent.append((conn_ms, frame_ms, last_send))
                if self._stalled():
                    return await self._abandon_stalled(ws)
                if self._finishing:
                    await ws.send_str("EOS")
                    deadline = time.monotonic() + EOS_WAIT_S
                    while time.monotonic() < deadline:  # the server sends the last final, then closes
                        try:
                            await asyncio.wait_for(closed.wait(), STALL_CHECK_S)
                            return
                        except asyncio.TimeoutError:
                            if self._stalled():
                                return await self._abandon_stalled(ws)
                    self._closing_stream = True
                    await ws.close()
                    return
                if time.monotonic() - last_send >= KEEPALIVE_AFTER_S:
                    silence = (b"\x00\x00" if self.config.encoding == "LINEAR16" else b"\xff") * (self.config.sample_rate // 50)
                    await ws.send_bytes(silence)
                    conn_ms += 20.0
                    last_send = time.monotonic()
                self._new_audio.clear()
                await self._new_audio.wait()  # new audio, finish(), or the tick
        except ConnectionError:  # the server closed or the connection was lost: the reader sees which
            return
        finally:
            if ticker is not None:
                ticker.cancel()

    def _is_speech(self, frame: bytes) -> bool:
        """Mean power above -40 dBFS (the check runs on every frame, so mu-law is one table lookup)."""
        if self.config.encoding == "LINEAR16":
            samples = np.frombuffer(frame[: len(frame) // 2 * 2], dtype="<i2").astype(np.float64)
            return len(samples) > 0 and float(samples @ samples) > SPEECH_POWER * len(samples)
        return len(frame) > 0 and float(ULAW_POWER.take(np.frombuffer(frame, dtype=np.uint8)).sum()) > SPEECH_POWER * len(frame)

    def _answered(self, result: dict) -> None:
        """The recognizer is alive, and has heard the audio up to where this result reaches (a final: its
        end; a partial: at least its utterance's start). Speech sent past that is still unanswered, from
        now: audio sent faster than real time must not hide a stall behind one early partial."""
        try:
            reach = float(result.get("start_at", 0)) + (float(result.get("duration", 0)) if result.get("final") else 0.0)
        except (TypeError, ValueError):
            reach = float("inf")
        while self._speech_sent and self._speech_sent[0][0] <= reach:
            self._speech_sent.popleft()
        now = time.monotonic()
        self._speech_sent = deque((end, ms, now) for end, ms, _ in self._speech_sent)
        self._unanswered_speech_ms = sum(ms for _, ms, _ in self._speech_sent)

    def _receive(self, message: str | bytes, sent: deque[tuple[int, float]]) -> None:
        try:
            result = json.loads(message)
            alternatives = result["alternatives"]
        except (ValueError, KeyError, TypeError):
            # says nothing of what was heard: the speech sent stays unanswered (a stream that stalls after
            # it, or sends nothing else, is still found stalled; harness fuzz found one that was not)
            log.warning("call=%s event=rtzr_bad_message text=%.80r", self.call_id, message)
            return
        self._answered(result if isinstance(result, dict) else {})
        if result.get("final") and self._held:
            self._release_held(True)  # another final: the caller did talk on after the held one
        if result.get("final"):
            end_ms = float(result.get("start_at", 0)) + float(result.get("duration", 0))
            while sent and sent[0][1] <= end_ms:  # this audio is transcribed: no need to resend it
                index, _ = sent.popleft()
                while self._base <= index and self._frames:
                    dropped = self._frames.popleft()
                    self._base += 1
                    self._buffered_ms -= len(dropped) / self.config.bytes_per_ms
        if not alternatives:
            return
        if self._held or result.get("final"):
            self._held.append(result)
            self._release_held(self._talking_after() if not self._finishing else False)
        else:
            self.on_result(result)

    def _talking_after(self) -> bool | None:
        """Is the audio after the last final's end speech? None until it is here (guard and probe)."""
        seen = 0.0
        for frame in self._frames:  # the frames after the last final's end (the first may straddle it)
            seen += len(frame) / self.config.bytes_per_ms
            if seen <= TALKING_GUARD_MS:
                continue
            if self._is_speech(frame):
                return True
            if seen >= TALKING_GUARD_MS + TALKING_PROBE_MS:
                return False
        return None

    def _release_held(self, talks_on: bool | None) -> None:
        if talks_on is None:
            return
        held, self._held = self._held, []
        for result in held:
            if result.get("final"):
                self.caller_talks_on = talks_on
                if talks_on:
                    log.info("call=%s event=final_mid_speech", self.call_id)
            self.on_result(result)
