"""One phone call, from Twilio's ``start`` to release (the I/O shell around :mod:`aicall.turns`).

Every task that works for the call - recognition, each LLM reply, each sentence's TTS, the
speaker - lives in this call's TaskGroup. The call ends in one order: stop sending to Twilio,
cancel LLM and TTS work, send EOS to RTZR (keeping its last finals), persist, release. So nothing
writes to a closed socket (the report's failure 4) and nothing touches the call's state after it
is released (failure 3); there is no module-level session dict to race on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from callaudio.g711 import ulaw_to_linear16

from . import twilio
from .config import Settings
from .errors import RtzrAuthError
from .llm import ChatClient, LlmError
from .rtzr_client import RecognizerStream, RtzrTokens, StreamConfig
from .store import CallStore
from .tts import Tts, TtsError
from .turns import (AskLlm, AwaitCaller, CallerFinal, CallerPartial, CallerQuiet, CancelLlm, HangUp, LlmDone, LlmFailed,
                    LlmText, Persist, Played, Speak, StopSpeaking, TurnAction, TurnTaker)

log = logging.getLogger("aicall")
APOLOGY_MARK = "apology"
APOLOGY_WAIT_S = 15.0
CALLER_QUIET_S = 3.0  # a held final (the caller talked on) is answered after this long without a result


@dataclass
class CallDeps:
    """What every call shares: settings, clients, the store and the apology prompt."""

    settings: Settings
    tokens: RtzrTokens
    chat: ChatClient
    tts: Tts
    store: CallStore
    apology_ulaw: bytes


@dataclass
class _Sentence:
    turn: int
    mark: str
    audio: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    producer: asyncio.Task[None] | None = None
    cancelled: bool = False


@dataclass
class _TurnTiming:
    final_at: float
    llm_request_at: float | None = None
    llm_first_token_at: float | None = None
    tts_first_audio_at: float | None = None
    first_media_at: float | None = None


class CallSession:
    """Runs one Twilio Media Streams connection; see the module docstring."""

    def __init__(self, ws: web.WebSocketResponse, deps: CallDeps) -> None:
        self.ws = ws
        self.deps = deps
        self.settings = deps.settings
        self.call_sid = "-"
        self.call_id = 0  # the store's row for this stream
        self.stream_sid = ""
        self.bad_messages = 0  # from Twilio's side: the first is logged, the rest counted
        self.sending = False  # the one gate every write to Twilio passes
        self.turns = TurnTaker(self.settings.llm_system_prompt, barge_in=self.settings.barge_in)
        self.recognizer: RecognizerStream | None = None
        self.group: asyncio.TaskGroup | None = None
        self.llm_tasks: dict[int, asyncio.Task[None]] = {}
        self.quiet_timer: asyncio.Task[None] | None = None  # see _await_caller
        self.speaker_queue: asyncio.Queue[_Sentence] = asyncio.Queue()
        self.sentences: list[_Sentence] = []
        self.current: _Sentence | None = None
        self.timings: dict[int, _TurnTiming] = {}
        self.end_reason = "unknown"
        self.apology_played = asyncio.Event()
        self.released = False
        self.last_message_at = 0.0  # loop time of Twilio's last message (see _read_until_silent)

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        try:
            start = await asyncio.wait_for(self._wait_for_start(), self.settings.twilio_start_timeout_s)
        except asyncio.TimeoutError:
            start = None
            log.warning("call=- event=no_start waited_s=%g bad_messages=%d", self.settings.twilio_start_timeout_s,
                        self.bad_messages)
        if start is None:
            await self.ws.close(code=1008, message=b"no valid start")
            return
        self.call_sid, self.stream_sid = start.call_sid, start.stream_sid  # validated: Twilio's SID shapes
        caller = start.custom_parameters.get("caller", "")
        self.call_id = self.deps.store.call_started(self.call_sid, self.stream_sid, caller)
        self.sending = True
        log.info("call=%s event=start stream=%s", self.call_sid, self.stream_sid)
        s = self.settings
        config = StreamConfig(s.rtzr_ws_base, 8000, s.rtzr_encoding, s.rtzr_epd_time, s.rtzr_use_itn,
                              s.rtzr_use_disfluency_filter, s.rtzr_keywords)
        self.recognizer = RecognizerStream(config, self.deps.tokens, self._on_result, self.call_sid)
        try:
            async with asyncio.TaskGroup() as group:
                self.group = group
                recognition = group.create_task(self._recognize())
                speaker = group.create_task(self._speak_loop())
                await self._read_until_silent()
                self._hang_up()
                speaker.cancel()
                await recognition  # EOS sent, last finals kept (bounded wait)
        finally:
            self.sending = False
            self.deps.store.call_ended(self.call_id, self.end_reason)
            if self.deps.store.lost[self.call_id]:
                log.error("call=%s event=store_lost writes=%d (its row, lines or end: not in the store)", self.call_sid,
                          self.deps.store.lost[self.call_id])
            self.released = True
            if self.bad_messages > 1:
                log.warning("call=%s event=twilio_bad_messages count=%d", self.call_sid, self.bad_messages)
            log.info("call=%s event=end reason=%s", self.call_sid, self.end_reason)
        if self.end_reason == "twilio went silent":
            await self.ws.close()  # persisted first: a peer that never answers the Close cannot hold that up

    async def _wait_for_start(self) -> twilio.Start | None:
        """The first valid ``start`` (a ``stop`` or the socket's end first: None)."""
        async for msg in self.ws:
            event = twilio.parse_message(msg.data) if msg.type == WSMsgType.TEXT else None
            if isinstance(event, twilio.Start):
                return event
            if isinstance(event, twilio.Stop):
                return None
            if event is None or isinstance(event, twilio.Unknown):
                self._bad_message(event.why if event else f"a {msg.type.name.lower()} frame")
        return None

    def _bad_message(self, why: str) -> None:
        """Twilio never sends these; log the first (``why`` is escaped) and count the rest: a flood of them
        cannot flood the log."""
        self.bad_messages += 1
        if self.bad_messages == 1:
            log.warning("call=%s event=twilio_bad_message why=%s", self.call_sid, why)

    async def _read_until_silent(self) -> None:
        """:meth:`_read_twilio`, ended when Twilio sends nothing for ``twilio_silence_s``. One timer per call
        looks at when the last message came, instead of a timeout around every receive (with 50 messages a
        second per call, those timeouts were 8 % of aicall's CPU at 200 calls)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.current_task()
        assert reader is not None
        silence_s = self.settings.twilio_silence_s
        self.last_message_at = loop.time()
        went_silent = False

        def look() -> None:
            nonlocal watchdog, went_silent
            quiet_s = loop.time() - self.last_message_at
            if quiet_s < silence_s:
                watchdog = loop.call_at(self.last_message_at + silence_s, look)
            else:
                went_silent = True
                reader.cancel()

        watchdog = loop.call_at(self.last_message_at + silence_s, look)
        try:
            await self._read_twilio()
        except asyncio.CancelledError:
            if not went_silent or reader.uncancel() > 0:  # cancelled by someone else too: the call is being cancelled
                raise
            self.end_reason = "twilio went silent"
            log.warning("call=%s event=twilio_silent seconds=%g", self.call_sid, silence_s)
        finally:
            watchdog.cancel()

    async def _read_twilio(self) -> None:
        """Until ``stop`` or the socket closes: audio to RTZR, mark echoes to the turn core."""
        assert self.recognizer is not None
        linear = self.settings.rtzr_encoding == "LINEAR16"
        loop = asyncio.get_running_loop()
        while True:
            msg = await self.ws.receive()
            self.last_message_at = loop.time()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if msg.type != WSMsgType.TEXT:
                self._bad_message(f"a {msg.type.name.lower()} frame")
                continue
            event = twilio.parse_message(msg.data)
            if isinstance(event, twilio.Media):
                frame = ulaw_to_linear16(event.payload) if linear else event.payload
                self.recognizer.send_audio(frame)
            elif isinstance(event, twilio.MarkEcho):
                if event.name == APOLOGY_MARK:
                    self.apology_played.set()
                else:
                    self._apply(self.turns.handle(Played(event.name)))
            elif isinstance(event, twilio.Stop):
                self.end_reason = "caller hung up"
                return
            elif isinstance(event, twilio.Dtmf):
                self.deps.store.add_line(self.call_id, self.turns.turn, "event", f"DTMF {event.digit}")
            elif isinstance(event, twilio.Unknown):
                self._bad_message(event.why)
            elif isinstance(event, twilio.Start):
                self._bad_message("a second start on a started stream")
        if self.end_reason == "unknown":
            self.end_reason = "socket closed"

    def _hang_up(self) -> None:
        """Stop sending first; then cancel replies and TTS; then let RTZR finish (EOS)."""
        self.sending = False
        self._apply(self.turns.handle(HangUp()))
        if self.quiet_timer is not None:
            self.quiet_timer.cancel()
        for task in self.llm_tasks.values():
            task.cancel()
        for sentence in self.sentences:
            self._cancel_sentence(sentence)
        if self.recognizer is not None:
            self.recognizer.finish()

    # ---------------------------------------------------------- recognition
    async def _recognize(self) -> None:
        assert self.recognizer is not None
        try:
            await self.recognizer.run()
        except RtzrAuthError as exc:
            log.error("call=%s event=rtzr_auth_failed error=%s", self.call_sid, exc)
            self.deps.store.add_line(self.call_id, self.turns.turn, "event", f"speech recognition unavailable: {exc}")
            self.end_reason = "speech recognition unavailable"
            await self._apologise_and_close()

    async def _apologise_and_close(self) -> None:
        """Tell the caller (pre-rendered prompt), then close the stream so Twilio hangs up."""
        if not self.sending:
            return
        self._stop_speaking(tuple(self.llm_tasks))
        await self._send(twilio.clear_message(self.stream_sid))  # before the apology: a clear after it would cut it
        for i in range(0, len(self.deps.apology_ulaw), 800):
            await self._send(twilio.media_message(self.stream_sid, self.deps.apology_ulaw[i : i + 800]))
        await self._send(twilio.mark_message(self.stream_sid, APOLOGY_MARK))
        try:
            await asyncio.wait_for(self.apology_played.wait(), APOLOGY_WAIT_S)
        except asyncio.TimeoutError:
            pass
        self.sending = False
        await self.ws.close()

    def _on_result(self, result: dict[str, Any]) -> None:
        text = result["alternatives"][0].get("text", "").strip()
        if not text:
            return
        if result.get("final"):
            if self.turns.ended:  # reached us after the hang-up: keep it, nobody will answer it
                self.deps.store.add_line(self.call_id, self.turns.turn, "caller", text, note="after hang-up")
                return
            log.info("call=%s event=final text_chars=%d", self.call_sid, len(text))
            self.timings[self.turns.turn + 1] = _TurnTiming(time.monotonic())
            self._apply(self.turns.handle(CallerFinal(text, talks_on=self.recognizer is not None
                                                      and self.recognizer.caller_talks_on)))
        else:
            self._apply(self.turns.handle(CallerPartial(text)))

    # -------------------------------------------------------------- actions
    def _apply(self, actions: list[TurnAction]) -> None:
        for action in actions:
            if isinstance(action, AskLlm):
                timing = self.timings.setdefault(action.turn, _TurnTiming(time.monotonic()))
                timing.llm_request_at = time.monotonic()
                assert self.group is not None
                self.llm_tasks[action.turn] = self.group.create_task(self._llm(action))
            elif isinstance(action, CancelLlm):
                task = self.llm_tasks.get(action.turn)
                if task is not None:
                    task.cancel()
            elif isinstance(action, Speak):
                self._enqueue_sentence(action)
            elif isinstance(action, StopSpeaking):
                self._stop_speaking(action.turns)
                if self.sending:
                    self._send_nowait(twilio.clear_message(self.stream_sid))
            elif isinstance(action, Persist):
                self.deps.store.add_line(self.call_id, action.turn, action.role, action.text, action.note)
            elif isinstance(action, AwaitCaller):
                self._await_caller()

    def _stop_speaking(self, turns: tuple[int, ...]) -> None:
        """Drop every sentence of these turns not yet sent (the caller of this sends the clear)."""
        for sentence in self.sentences:
            if sentence.turn in turns:
                self._cancel_sentence(sentence)

    def _await_caller(self) -> None:
        """(Re)start the wait after which a held final is answered even if no final follows it."""
        if self.quiet_timer is not None:
            self.quiet_timer.cancel()
        assert self.group is not None

        async def quiet() -> None:
            await asyncio.sleep(CALLER_QUIET_S)
            self.quiet_timer = None
            self._apply(self.turns.handle(CallerQuiet()))

        self.quiet_timer = self.group.create_task(quiet())

    async def _llm(self, ask: AskLlm) -> None:
        timing = self.timings[ask.turn]
        log.info("call=%s turn=%d event=llm_request final_to_llm_ms=%.1f", self.call_sid, ask.turn,
                 (timing.llm_request_at - timing.final_at) * 1000)  # type: ignore[operator]
        try:
            async for delta in self.deps.chat.stream(ask.messages):
                if timing.llm_first_token_at is None:
                    timing.llm_first_token_at = time.monotonic()
                self._apply(self.turns.handle(LlmText(ask.turn, delta)))
        except LlmError as exc:
            log.error("call=%s turn=%d event=llm_failed error=%s", self.call_sid, ask.turn, exc)
            self._apply(self.turns.handle(LlmFailed(ask.turn, str(exc))))
            return
        self._apply(self.turns.handle(LlmDone(ask.turn)))

    # ---------------------------------------------------------------- speech
    def _enqueue_sentence(self, speak: Speak) -> None:
        assert self.group is not None
        sentence = _Sentence(speak.turn, speak.mark)
        sentence.producer = self.group.create_task(self._synthesize(sentence, speak.text))
        self.sentences.append(sentence)
        self.speaker_queue.put_nowait(sentence)

    def _cancel_sentence(self, sentence: _Sentence) -> None:
        sentence.cancelled = True
        if sentence.producer is not None:
            sentence.producer.cancel()
        sentence.audio.put_nowait(None)

    async def _synthesize(self, sentence: _Sentence, text: str) -> None:
        timing = self.timings.get(sentence.turn)
        try:
            async for chunk in self.deps.tts.synthesize(text):
                if timing is not None and timing.tts_first_audio_at is None:
                    timing.tts_first_audio_at = time.monotonic()
                sentence.audio.put_nowait(chunk)
        except TtsError as exc:
            log.error("call=%s turn=%d event=tts_failed error=%s", self.call_sid, sentence.turn, exc)
        finally:
            sentence.audio.put_nowait(None)

    async def _speak_loop(self) -> None:
        """Send sentences in order, each followed by its mark; skip cancelled ones."""
        while True:
            sentence = await self.speaker_queue.get()
            self.current = sentence
            while not sentence.cancelled:
                chunk = await sentence.audio.get()
                if chunk is None or sentence.cancelled:
                    break
                await self._send(twilio.media_message(self.stream_sid, chunk))
                self._note_first_media(sentence.turn)
            if not sentence.cancelled:
                await self._send(twilio.mark_message(self.stream_sid, sentence.mark))
            self.sentences.remove(sentence)
            self.current = None

    def _note_first_media(self, turn: int) -> None:
        timing = self.timings.get(turn)
        if timing is None or timing.first_media_at is not None:
            return
        timing.first_media_at = now = time.monotonic()

        def ms(at: float | None) -> float:
            return -1.0 if at is None else (at - timing.final_at) * 1000

        log.info("call=%s turn=%d event=first_media final_to_llm_ms=%.1f llm_first_token_ms=%.1f "
                 "first_tts_audio_ms=%.1f final_to_first_media_ms=%.1f", self.call_sid, turn,
                 ms(timing.llm_request_at), ms(timing.llm_first_token_at), ms(timing.tts_first_audio_at), ms(now))

    # ------------------------------------------------------------------ I/O
    async def _send(self, text: str) -> None:
        if not self.sending or self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except ConnectionResetError:
            self.sending = False

    def _send_nowait(self, text: str) -> None:
        assert self.group is not None
        self.group.create_task(self._send(text))
