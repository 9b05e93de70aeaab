"""A reference Twilio Media Streams handler written the way a product team's FastAPI phone backend is.

One module: ``app = FastAPI()``, module-level clients and ``conversation_sessions`` (by call SID); the
SYNCHRONOUS ``openai.OpenAI`` client (chat not streamed; each sentence of the reply in one TTS request, not
streamed, ``pcm`` 24 kHz -> soxr -> 8 kHz mu-law with numpy) called through ``asyncio.to_thread``; RTZR over the ``websockets``
client, its token with ``requests``; a call's tasks in one ``asyncio.TaskGroup``; errors logged as
``logger.error(traceback.format_exc())``; a post-call summary (one more chat request) logged at the end.

    RTZR_API_BASE=... RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... OPENAI_BASE_URL=... OPENAI_API_KEY=... \\
        TTS_BASE_URL=... python fastapi_handler.py --port 8080     # stream URL: ws://127.0.0.1:8080/media

``MUTANT=<name>`` puts one bug back (``MUTANTS``): the proving ground's mutants.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
import traceback
from contextvars import ContextVar
from typing import Any

import numpy as np
import requests
import soxr
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from openai import DefaultHttpxClient, OpenAI
from starlette.concurrency import run_in_threadpool

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
logger = logging.getLogger("phone")

MUTANTS = (
    "no-credential-check", "silent-refusal", "no-reconnect", "closes-after-first-final", "no-stall-watchdog",
    "resends-finalized-audio", "drops-queued-final", "answers-mid-utterance", "reply-outlives-call", "state-race",
    "swallowed-race", "send-after-close", "silent-send-after-close", "leaves-rtzr-open", "no-stream-sid",
    "binary-media", "wrong-sample-rate", "one-early-clear",
    "words-twice", "no-barge-in", "answers-after-hangup", "sleeps-through-reply",
    "blocks-event-loop", "blocks-on-tts", "one-current-call", "shared-history",  # show only with several calls at once
    "pcm-payload", "audio-twice", "first-sentence-only", "sentences-as-tasks", "forgets-history", "token-once",
    "long-debounce", "keeps-audio", "deaf-while-speaking",
)
MUTANT = os.environ.get("MUTANT", "")
KEPT: list[bytes] = []  # keeps-audio: every call's audio, both ways, kept "for a later upload" that never comes
RTZR_TOKEN = ""  # the latest RTZR token (token-once: fetched once, used for every stream of every call)
if MUTANT and MUTANT not in MUTANTS:
    sys.exit(f"MUTANT={MUTANT!r} is not one of: {', '.join(MUTANTS)}")

_missing = [name for name in ("RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET") if not os.environ.get(name)]
if _missing and MUTANT != "no-credential-check":  # the report's failure 1: find out now, not during a call
    logger.critical("missing environment variable(s): %s: refusing to start", ", ".join(_missing))
    sys.exit(2)

RTZR_API_BASE = os.environ.get("RTZR_API_BASE", "https://openapi.vito.ai").rstrip("/")
RTZR_STREAM_URL = (RTZR_API_BASE.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
                   + "/v1/transcribe:streaming?sample_rate=8000&encoding=MULAW&use_itn=true")
llm = OpenAI()  # OPENAI_BASE_URL, OPENAI_API_KEY
tts = OpenAI(base_url=os.environ.get("TTS_BASE_URL") or None)
llm.chat.completions, tts.audio.speech  # the SDK imports these on first use: not during the first call
MODEL = "gpt-4o-mini"
SYSTEM_PROMPT = "간결하게 한국어로 답하세요."
SORRY = "죄송합니다. 다시 한 번 말씀해 주세요."
NO_STT = "죄송합니다. 지금은 음성 인식을 사용할 수 없습니다. 잠시 후 다시 걸어 주세요."
FRAME_MS = 20
SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
STALL_S = 2.5  # speech sent to RTZR and no result this long: the stream has stalled
PROBE_MS = (100, 300)  # speech in this stretch after a final's end: RTZR cut the caller off, they talk on
EOS_WAIT_S = 5.0
QUIET_S = 3.0  # a held final with no result after it this long is answered

app = FastAPI()
conversation_sessions: dict[str, dict] = {}  # call SID -> history, turns, ...
current_call: "PhoneCall | None" = None  # one-current-call: "the call", overwritten by each call that connects
chat_history = [{"role": "system", "content": SYSTEM_PROMPT}]  # shared-history: one history for every call


class Refused(Exception):
    """RTZR will not take our credentials."""


# ---------------------------------------------------------------- audio
_codes = ~np.arange(256, dtype=np.int32) & 0xFF
_mag = (((_codes & 0x0F) << 3) + 0x84) << ((_codes >> 4) & 0x07)
ULAW_DECODE = np.where(_codes & 0x80, 0x84 - _mag, _mag - 0x84).astype(np.int16)
SPEECH_POWER = (32768 * 10 ** (-40 / 20)) ** 2  # -40 dBFS


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """16-bit PCM -> G.711 mu-law."""
    x = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    x = np.abs(x) + 0x84
    exponent = np.floor(np.log2(x)).astype(np.int32) - 7
    mantissa = (x >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def is_speech(frame: bytes) -> bool:
    pcm = ULAW_DECODE[np.frombuffer(frame, dtype=np.uint8)].astype(np.float64)
    return len(pcm) > 0 and float(pcm @ pcm) > SPEECH_POWER * len(pcm)


def tts_to_twilio(pcm24k: bytes) -> bytes:
    """OpenAI's ``pcm`` (24 kHz 16-bit mono) -> what Twilio plays (8 kHz mu-law)."""
    pcm = np.frombuffer(pcm24k[: len(pcm24k) // 2 * 2], dtype="<i2")
    if MUTANT != "wrong-sample-rate":
        pcm = soxr.resample(pcm, 24000, 8000)
    if MUTANT == "pcm-payload":  # the mu-law step forgotten: 16-bit PCM bytes, which Twilio plays as mu-law
        return pcm.astype("<i2").tobytes()
    return ulaw_encode(pcm)


def new_session() -> dict[str, Any]:
    if MUTANT == "shared-history":  # every session's history is the one module-level list: other calls' words go along
        return {"history": chat_history, "turns": 0, "started": time.time()}
    return {"history": [{"role": "system", "content": SYSTEM_PROMPT}], "turns": 0, "started": time.time()}


reply_scope: ContextVar[dict | None] = ContextVar("reply_scope", default=None)  # the reply a request is for


class CallHttp:
    """The call's own HTTP pool for LLM and TTS. A request blocked in a worker thread cannot be cancelled with
    its task, so ``cut`` shuts the pool's sockets down and keeps the cancelled reply (whose context the
    thread runs in) from sending anything more, the SDK's retries included."""

    def __init__(self) -> None:
        self.sockets: set[socket.socket] = set()
        self.http = DefaultHttpxClient(event_hooks={"request": [self._on_request]})
        self.llm, self.tts = llm.with_options(http_client=self.http), tts.with_options(http_client=self.http)

    def _on_request(self, request: Any) -> None:
        scope = reply_scope.get()
        if scope is not None and scope["cancelled"]:
            raise RuntimeError("the reply was cancelled")
        request.extensions["trace"] = self._trace

    def _trace(self, event: str, info: dict) -> None:
        # the TCP socket, and over https the TLS socket that replaces it (httpcore wraps the first, which is then
        # detached: shutting it down did nothing, so over TLS a cut reply held its request open; `harness --tls`)
        if event.endswith(("connect_tcp.complete", "start_tls.complete")) and info.get("return_value") is not None:
            self.sockets.add(info["return_value"].get_extra_info("socket"))

    def cut(self, scope: dict | None) -> None:
        if scope is not None:
            scope["cancelled"] = True
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self.sockets.discard(sock)


class PhoneCall:
    def __init__(self, ws: WebSocket, call_sid: str, stream_sid: str, tg: asyncio.TaskGroup) -> None:
        self.ws, self.call_sid, self.stream_sid, self.tg = ws, call_sid, stream_sid, tg
        self.upstream, self.ended = CallHttp(), False
        # recognition: the call's audio (20 ms frames), and how far RTZR has covered it
        self.frames: list[bytes] = []
        self.base = self.stream_base = self.sent = 0  # first frame no final covers; the stream's first; sent on it
        self.unanswered: list[int] = []  # stream ms at the end of each speech frame RTZR has not answered yet
        self.unanswered_since: float | None = None
        self.held_finals: list[tuple[int, str]] = []  # (end frame, text) waiting for the audio after them
        self.new_audio, self.last_result, self.closing_stream = asyncio.Event(), time.monotonic(), False
        self.results: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        # conversation
        self.talk_on: list[str] = []  # finals the caller talked on after, joined with the next
        self.queued: list[str] = []  # finals that came during a reply
        self.reply_task: asyncio.Task | None = None
        self.scope: dict | None = None  # the running reply's (see CallHttp)
        self.marks: set[str] = set()  # sent, not echoed yet: the bot is talking
        self.mark_count, self.cleared_once, self.playback_s = 0, False, 0.0  # playback_s: bot audio sent (s)
        self.recognizer = self.results_task = self.quiet_task = None

    # ------------------------------------------------------------ to Twilio
    async def send(self, event: str, **body: Any) -> None:
        if self.ended and MUTANT not in ("send-after-close", "silent-send-after-close"):
            return
        to = current_call if MUTANT == "one-current-call" and current_call else self  # the mutant: the latest call
        message = {"event": event, **({} if MUTANT == "no-stream-sid" else {"streamSid": to.stream_sid}), **body}
        try:
            if MUTANT == "binary-media" and event == "media":
                await to.ws.send_bytes(base64.b64decode(body["media"]["payload"]))
            else:
                await to.ws.send_text(json.dumps(message))
        except Exception:  # noqa: BLE001 - the caller's socket is gone
            if MUTANT == "send-after-close":
                logger.error("call=%s send failed\n%s", self.call_sid, traceback.format_exc())
            elif MUTANT != "silent-send-after-close":
                self.ended = True

    async def speak(self, text: str) -> float:
        """The whole text in one TTS request (not streamed), its audio sent, then a mark; seconds of audio sent."""
        def synthesize() -> bytes:
            return self.upstream.tts.audio.speech.create(model="tts-1", voice="alloy", input=text,
                                                         response_format="pcm").content

        # the mutant: the sync client called on the event loop: every call waits while the TTS answers
        pcm = synthesize() if MUTANT == "blocks-on-tts" else await asyncio.to_thread(synthesize)
        if MUTANT == "keeps-audio":
            KEPT.append(pcm)
        ulaw = tts_to_twilio(pcm)
        for i in range(0, len(ulaw), 160):  # 20 ms a message, as Twilio sends its own
            media = {"payload": base64.b64encode(ulaw[i : i + 160]).decode()}
            await self.send("media", media=media)
            if MUTANT == "audio-twice":  # a second send left in (from a retry that was meant to be on failure)
                await self.send("media", media=media)
        self.mark_count += 1
        self.marks.add(name := f"reply-{self.mark_count}")
        await self.send("mark", mark={"name": name})
        return len(ulaw) / 8000

    # ------------------------------------------------------------ replies
    async def ask_llm(self, session: dict, text: str) -> str:
        """The LLM wrapper: the caller's words go into the history, the history to the LLM (in a thread)."""
        session["history"].append({"role": "user", "content": text})
        messages = [dict(m) for m in session["history"]]
        if MUTANT == "forgets-history":  # the request built afresh: the system prompt and these words, nothing before
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
        if MUTANT == "blocks-event-loop":  # the sync client called on the event loop: every call waits while it runs
            completion = self.upstream.llm.chat.completions.create(model=MODEL, messages=messages)
        else:
            completion = await asyncio.to_thread(self.upstream.llm.chat.completions.create, model=MODEL,
                                                 messages=messages)
        return (completion.choices[0].message.content or "").strip()

    async def answer(self, session: dict, text: str | None) -> None:
        """Replies one at a time; finals that came meanwhile are answered next, joined."""
        self.scope = {"cancelled": False}
        reply_scope.set(self.scope)  # this task's context: the worker threads it starts see it
        while text is not None:
            try:
                if MUTANT == "long-debounce":  # the mutant: waits in case the caller goes on, every turn answered late
                    await asyncio.sleep(2.5)
                said = await self.ask_llm(session, text)
                sentences = [s.strip() for s in SENTENCE_END.split(said) if s.strip()]  # one TTS request each
                if MUTANT == "sentences-as-tasks":  # each sentence's TTS and sending a task of its own: "sooner"
                    speaking = [asyncio.create_task(self.speak(sentence)) for sentence in sentences]
                    self.playback_s += sum(await asyncio.gather(*speaking))
                else:
                    for sentence in sentences:
                        self.playback_s += await self.speak(sentence)
                        if MUTANT == "first-sentence-only":
                            break  # the first sentence is "the answer": the rest is kept in the history, never spoken
                if said:
                    session["history"].append({"role": "assistant", "content": said})
            except Exception:  # noqa: BLE001 - the LLM or TTS failed: apologise, the call goes on
                logger.error("call=%s reply failed\n%s", self.call_sid, traceback.format_exc())
                try:
                    await self.speak(SORRY)
                except Exception:  # noqa: BLE001
                    logger.error("call=%s apology failed\n%s", self.call_sid, traceback.format_exc())
            if MUTANT in ("state-race", "swallowed-race"):
                try:
                    conversation_sessions[self.call_sid]["turns"] += 1
                except KeyError as e:
                    if MUTANT == "state-race":
                        raise RuntimeError(f"call={self.call_sid}: session gone") from e
            text = " ".join(self.queued) if self.queued else None
            self.queued = []

    def start_reply(self, text: str) -> None:
        session = conversation_sessions.setdefault(self.call_sid, new_session())
        if MUTANT == "words-twice":
            session["history"].append({"role": "user", "content": text})
        if MUTANT in ("reply-outlives-call", "state-race", "swallowed-race"):
            self.reply_task = asyncio.create_task(self.answer(session, text))  # not the call's: outlives it
        else:
            self.reply_task = self.tg.create_task(self.answer(session, text))
        self.reply_task.add_done_callback(lambda task: self.reply_task is task and setattr(self, "reply_task", None))

    def cancel_reply(self) -> None:
        if self.reply_task is not None:
            self.reply_task.cancel()
        self.upstream.cut(self.scope)  # what its worker thread still reads is let go of, not just the task

    def busy(self) -> bool:
        """A reply is under way: a cancelled one is not, though its task has not ended yet (a final in the same
        moment as a barge-in was queued for a reply that would never ask again: found by ``harness fuzz
        --calls-at-once 8``, 1 call in 196)."""
        return self.reply_task is not None and not self.reply_task.done() and not self.reply_task.cancelling()

    def on_final(self, text: str, talks_on: bool) -> None:
        logger.info("call=%s final=%r talks_on=%s", self.call_sid, text, talks_on)
        if talks_on:
            self.talk_on.append(text)
            return
        text, self.talk_on = " ".join([*self.talk_on, text]), []
        if self.busy():
            if MUTANT != "drops-queued-final":
                self.queued.append(text)
            return
        self.start_reply(text)

    async def on_partial(self, text: str) -> None:
        """The caller speaks over the bot: clear its playback and stop the reply."""
        if MUTANT == "no-barge-in" or MUTANT == "one-early-clear" and self.cleared_once:
            return
        if MUTANT != "one-early-clear" and not (text.strip() and self.marks):
            return
        self.cleared_once = True
        logger.info("call=%s barge-in: clearing playback", self.call_sid)
        self.marks.clear()
        if self.busy():
            self.cancel_reply()
            if self.queued:
                text, self.queued = " ".join(self.queued), []
                self.start_reply(text)
        await self.send("clear")

    async def handle_results(self) -> None:
        """The results loop: RTZR's finals and partials -> the conversation (ends at None)."""
        while (item := await self.results.get()) is not None:
            kind, value = item
            if kind == "partial":
                await self.on_partial(value)
            else:
                self.on_final(*value)

    async def quiet_timer(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.talk_on and not self.busy() and time.monotonic() - self.last_result > QUIET_S:
                text, self.talk_on = " ".join(self.talk_on), []
                self.start_reply(text)

    # ------------------------------------------------------------ recognition
    def release(self, another_final: bool = False) -> None:
        """Held finals whose following audio has come: speech there means the caller talks on."""
        while self.held_finals:
            end, text = self.held_finals[0]
            probe = self.frames[end + PROBE_MS[0] // FRAME_MS: end + PROBE_MS[1] // FRAME_MS]
            if another_final or MUTANT == "answers-mid-utterance":
                talks_on = another_final and MUTANT != "answers-mid-utterance"
            elif any(is_speech(f) for f in probe):
                talks_on = True
            elif len(probe) >= (PROBE_MS[1] - PROBE_MS[0]) // FRAME_MS or self.ended:
                talks_on = False
            else:
                return  # the audio that tells has not come yet
            self.held_finals.pop(0)
            if self.ended:
                logger.info("call=%s final after the hang-up: %r", self.call_sid, text)
            self.results.put_nowait(("final", (text, talks_on)))

    def on_result(self, result: dict) -> None:
        """RTZR has heard up to a final's end, or at least a partial's start: speech past it is unanswered."""
        final = bool(result.get("final"))
        reach = result.get("start_at", 0) + (result.get("duration", 0) if final else 0)
        self.unanswered = [end for end in self.unanswered if end > reach]
        self.unanswered_since = time.monotonic() if self.unanswered else None
        text = ((result.get("alternatives") or [{}])[0].get("text") or "").strip()
        if not final:
            self.release()
            if text:
                self.results.put_nowait(("partial", text))
            return
        end = self.stream_base + int((result.get("start_at", 0) + result.get("duration", 0)) // FRAME_MS)
        self.base = max(self.base, min(end, len(self.frames)))
        self.release(another_final=True)
        if text:
            self.held_finals.append((end, text))
        self.release()

    def rtzr_token(self) -> str:
        """``POST /v1/authenticate`` (blocking: run in a thread)."""
        global RTZR_TOKEN
        if MUTANT == "token-once" and RTZR_TOKEN:  # the mutant: one token per process, kept past its expire_at
            return RTZR_TOKEN
        resp = requests.post(f"{RTZR_API_BASE}/v1/authenticate", timeout=10, data={
            "client_id": os.environ["RTZR_CLIENT_ID"], "client_secret": os.environ["RTZR_CLIENT_SECRET"]})
        if resp.status_code in (400, 401, 403):
            raise Refused(f"token refused: HTTP {resp.status_code}")
        resp.raise_for_status()
        RTZR_TOKEN = resp.json()["access_token"]
        return RTZR_TOKEN

    async def connect(self) -> Any:
        """A token and a stream, retried with backoff; ``Refused`` when RTZR refuses our credentials twice."""
        refusals = 0
        for attempt in range(8):
            try:
                token = await asyncio.to_thread(self.rtzr_token)
                return await websockets.connect(RTZR_STREAM_URL, additional_headers={"Authorization": f"bearer {token}"},
                                                open_timeout=10, close_timeout=2)
            except Refused as exc:
                refusals, why = refusals + 1, str(exc)
            except websockets.InvalidStatus as exc:
                refusals += exc.response.status_code in (401, 403)
                why = f"stream refused: HTTP {exc.response.status_code}"
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:  # requests' errors are OSErrors
                why = repr(exc)
            if refusals >= 2:
                raise Refused(why)
            logger.warning("call=%s rtzr: %s, trying again", self.call_sid, why)
            await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
        raise RuntimeError("RTZR is unavailable")

    async def recognize(self) -> None:
        """RTZR streams one after another until the call is over and its last words are in."""
        give_up_at = None
        try:
            while True:
                rtzr = await self.connect()
                self.stream_base = 0 if MUTANT == "resends-finalized-audio" else self.base
                self.sent, self.unanswered, self.unanswered_since, self.closing_stream = 0, [], None, False
                async with rtzr:
                    how = await self.converse(rtzr)
                if how in ("finished", "handler closed") or how == "closed" and MUTANT == "no-reconnect":
                    logger.info("call=%s rtzr stream %s", self.call_sid, how)
                    return
                if self.ended:
                    give_up_at = give_up_at or time.monotonic() + EOS_WAIT_S
                    if time.monotonic() > give_up_at:
                        return
                logger.info("call=%s rtzr stream %s: reconnecting", self.call_sid, how)
        finally:
            self.results.put_nowait(None)

    async def converse(self, rtzr: Any) -> str:
        """One stream: audio out (``feed``), results in; how it ended."""
        feeder = asyncio.create_task(self.feed(rtzr))
        closed_by_us = False
        try:
            async for raw in rtzr:
                self.last_result = time.monotonic()
                try:
                    result = json.loads(raw)
                except ValueError:
                    logger.warning("call=%s rtzr sent something that is not JSON: %.80r", self.call_sid, raw)
                    continue
                if isinstance(result, dict):
                    self.on_result(result)
                    if result.get("final") and MUTANT == "closes-after-first-final" and not self.ended:
                        await rtzr.send("EOS")
                        closed_by_us = True
        except websockets.ConnectionClosedError:
            if not self.closing_stream:
                logger.error("call=%s rtzr connection lost\n%s", self.call_sid, traceback.format_exc())
        finally:
            if self.closing_stream:  # the feeder closed it (a stall, or no last final): it says why
                await asyncio.wait([feeder], timeout=1.0)
            feeder.cancel()
        said = feeder.result() if feeder.done() and not feeder.cancelled() and feeder.exception() is None else None
        if said in ("stalled", "finished"):
            return said
        if closed_by_us:
            return "handler closed"
        return "finished" if self.ended and not self.held_finals and rtzr.close_code == 1000 else "closed"

    async def feed(self, rtzr: Any) -> str:
        """Sends what RTZR has not heard yet; watches for a stall; at the hang-up EOS, then waits for the last final."""
        eos_at: float | None = None
        try:
            while True:
                ended = self.ended
                frames = self.frames[self.stream_base + self.sent:]
                for k, frame in enumerate(frames):
                    await rtzr.send(frame)
                    if is_speech(frame):
                        self.unanswered.append((self.sent + k + 1) * FRAME_MS)
                        self.unanswered_since = self.unanswered_since or time.monotonic()
                self.sent += len(frames)
                if (MUTANT != "no-stall-watchdog" and len(self.unanswered) * FRAME_MS >= 100
                        and time.monotonic() - (self.unanswered_since or time.monotonic()) >= STALL_S):
                    logger.warning("call=%s rtzr stalled: reconnecting", self.call_sid)
                    self.closing_stream = True
                    await rtzr.close()
                    return "stalled"
                if ended and eos_at is None and MUTANT != "leaves-rtzr-open":
                    self.release()
                    await rtzr.send("EOS")
                    eos_at = time.monotonic()
                if eos_at is not None and time.monotonic() - eos_at > EOS_WAIT_S:
                    self.closing_stream = True
                    await rtzr.close()
                    return "finished"
                self.new_audio.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.new_audio.wait(), 0.25)  # new audio, or look for a stall again
        except websockets.ConnectionClosed:
            return "closed"

    async def recognize_or_refuse(self) -> None:
        """Recognition for the whole call; if RTZR refuses us, tell the caller and end the call."""
        try:
            return await self.recognize()
        except Refused as exc:
            logger.error("call=%s speech recognition unavailable: %s", self.call_sid, exc)
            if MUTANT != "silent-refusal":
                try:
                    await self.speak(NO_STT)
                except Exception:  # noqa: BLE001
                    logger.error("call=%s apology failed\n%s", self.call_sid, traceback.format_exc())
                deadline = time.monotonic() + 15
                while self.marks and time.monotonic() < deadline and not self.ended:
                    await asyncio.sleep(0.05)  # until Twilio echoes the apology's mark
        except Exception:  # noqa: BLE001 - no recognition, no call
            logger.error("call=%s recognition failed\n%s", self.call_sid, traceback.format_exc())
        self.ended = True
        with contextlib.suppress(Exception):  # the caller's side may have closed it first
            await self.ws.close()

    # ------------------------------------------------------------ the call
    def start(self) -> None:
        if MUTANT == "leaves-rtzr-open":
            self.recognizer = asyncio.create_task(self.recognize_or_refuse())
        else:
            self.recognizer = self.tg.create_task(self.recognize_or_refuse())
        self.results_task = self.tg.create_task(self.handle_results())
        self.quiet_task = self.tg.create_task(self.quiet_timer())

    def on_media(self, payload: str) -> None:
        frame = base64.b64decode(payload)
        if MUTANT == "deaf-while-speaking" and (self.busy() or self.marks):  # replying, or its audio still playing
            frame = b"\xff" * len(frame)  # the mutant: "so the bot does not hear itself", the caller is not heard either
        self.frames.append(frame)
        if MUTANT == "keeps-audio":
            KEPT.append(self.frames[-1])
        self.release()
        self.new_audio.set()

    async def hang_up(self) -> None:
        """Cancel the reply and the results loop, then let recognition finish (EOS, the last final)."""
        logger.info("call=%s event=hangup", self.call_sid)
        self.ended = True
        self.quiet_task.cancel()
        if MUTANT in ("state-race", "swallowed-race"):
            conversation_sessions.pop(self.call_sid, None)  # dropped while its reply runs on
        elif MUTANT not in ("reply-outlives-call", "send-after-close", "silent-send-after-close"):
            self.cancel_reply()
        if MUTANT != "answers-after-hangup":
            self.results_task.cancel()
        if MUTANT == "leaves-rtzr-open":
            return
        self.new_audio.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.recognizer), EOS_WAIT_S + 3)
        except asyncio.TimeoutError:
            self.recognizer.cancel()

    async def summarize(self) -> None:
        """The post-call summary (logged; nobody is left to hear it)."""
        session = conversation_sessions.get(self.call_sid)
        lines = [f"{'어르신' if m['role'] == 'user' else 'AI'}: {m['content']}"
                 for m in (session or {}).get("history", []) if m["role"] in ("user", "assistant")]
        if not lines:
            return
        prompt = "다음 전화 통화 내용을 세 문장 이내로 요약해 주세요.\n\n" + "\n".join(lines)
        try:
            completion = await run_in_threadpool(llm.chat.completions.create, model=MODEL, messages=[
                {"role": "system", "content": "당신은 상담 기록을 요약하는 비서입니다."}, {"role": "user", "content": prompt}])
            logger.info("call=%s summary: %s", self.call_sid, completion.choices[0].message.content)
        except Exception:  # noqa: BLE001
            logger.error("call=%s summary failed\n%s", self.call_sid, traceback.format_exc())


@app.websocket("/media")
async def media(ws: WebSocket) -> None:
    global current_call
    await ws.accept()
    call: PhoneCall | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            try:
                while True:
                    message = json.loads(await ws.receive_text())
                    event = message.get("event")
                    if event == "start" and call is None:
                        start = message["start"]
                        call = PhoneCall(ws, start["callSid"], start["streamSid"], tg)
                        if MUTANT == "one-current-call":
                            current_call = call  # the bot's sends go wherever the latest call is
                        conversation_sessions[call.call_sid] = new_session()
                        logger.info("call=%s event=start stream=%s", call.call_sid, call.stream_sid)
                        call.start()
                    elif call is None:
                        continue
                    elif event == "media":
                        call.on_media(message["media"]["payload"])
                    elif event == "mark":
                        call.marks.discard(message["mark"]["name"])
                    elif event == "dtmf":
                        logger.info("call=%s dtmf=%s", call.call_sid, message["dtmf"].get("digit"))
                    elif event == "stop":
                        break
                    if MUTANT == "sleeps-through-reply" and call.playback_s:
                        seconds, call.playback_s = call.playback_s, 0.0
                        await asyncio.sleep(seconds * 1.2)  # "wait for the bot to finish talking"
            except WebSocketDisconnect:
                pass
            if call is not None:
                await call.hang_up()
        if call is not None:
            await call.summarize()
    finally:
        if call is not None:
            conversation_sessions.pop(call.call_sid, None)
            if not call.busy():  # (always so, unless a reply was let outlive its call)
                call.upstream.http.close()
            logger.info("call=%s event=end", call.call_sid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    logger.info("serving ws://127.0.0.1:%d/media%s", args.port, f" (MUTANT={MUTANT})" if MUTANT else "")
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
