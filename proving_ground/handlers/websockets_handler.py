"""A reference Twilio Media Streams handler on a plain ``websockets`` server (asyncio; no web framework).

Twilio -> RTZR streaming (the ``websockets`` client) -> an OpenAI-compatible LLM (SSE over aiohttp) ->
TTS (``pcm``, 24 kHz, resampled with soxr) -> mu-law back to Twilio. The decisions are
:mod:`call_core`'s; here is only I/O, every task of a call in its TaskGroup. Logs: stdlib logging,
``%(asctime)s [%(levelname)s] %(name)s: %(message)s``.

    RTZR_API_BASE=... RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... OPENAI_BASE_URL=... TTS_BASE_URL=... \\
        python websockets_handler.py --port 8080        # stream URL: ws://127.0.0.1:8080/media

``MUTANT=<name>`` puts one bug back (``call_core.MUTANTS``): the proving ground's mutants.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
import time
from http import HTTPStatus

import aiohttp
import requests  # the blocks-event-loop mutant's synchronous client
import websockets
from websockets.asyncio.server import ServerConnection, serve

from call_core import (APOLOGY, DEBOUNCE_S, EOS_WAIT_S, MUTED, SYSTEM, Conversation, Final, Recognition, SpeechEncoder,
                       delta_of, handshake_retry, mutant, parse_result, sentences)

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
log = logging.getLogger("media")
BUG = mutant()
CALLS: dict[str, "Call"] = {}  # by call SID; the race mutants drop a call from it while its reply runs on
LEAKED: set[asyncio.Task] = set()  # tasks a mutant lets outlive their call
CURRENT: "Call | None" = None  # one-current-call: "the call", overwritten by each call that connects
HISTORY = [{"role": "system", "content": SYSTEM}]  # shared-history: one conversation for every call of the process
KEPT: list[bytes] = []  # keeps-audio: every call's audio, both ways, kept "for a later upload" that never comes
TOKEN = ""  # the latest RTZR token (token-once: fetched once, used for every stream of every call)


class Refused(Exception):
    """RTZR will not take these credentials."""


def settings() -> dict[str, str]:
    missing = [n for n in ("RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET") if not os.environ.get(n)]
    if missing and BUG != "no-credential-check":
        log.critical("missing environment variable(s): %s", ", ".join(missing))
        raise SystemExit(2)
    return {"rtzr": os.environ.get("RTZR_API_BASE", "https://openapi.vito.ai").rstrip("/"),
            "llm": os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/"),
            "tts": os.environ.get("TTS_BASE_URL", "https://api.openai.com/v1").rstrip("/"),
            "key": os.environ.get("OPENAI_API_KEY", "")}


CONFIG = settings()


class Call:
    def __init__(self, ws: ServerConnection, call_sid: str, stream_sid: str, http: aiohttp.ClientSession,
                 group: asyncio.TaskGroup) -> None:
        self.ws, self.call_sid, self.stream_sid, self.http, self.group = ws, call_sid, stream_sid, http, group
        self.audio = Recognition(BUG)
        self.talk = Conversation(BUG)
        if BUG == "shared-history":  # every call's turns in the one module-level list: other calls' words go to the LLM
            self.talk.history = HISTORY
        self.new_audio = asyncio.Event()
        self.ended = False
        self.reply: asyncio.Task | None = None
        self.marks = 0
        self.last_result = time.monotonic()
        self.history_sent = 0
        self.spoken_ms = 0.0  # bot audio sent (sleeps-through-reply waits it out)

    def spawn(self, coro, *, leak: bool = False) -> asyncio.Task:
        if leak:  # the mutant's bug: a task that outlives its call
            task = asyncio.create_task(coro)
            LEAKED.add(task)
            task.add_done_callback(LEAKED.discard)
            return task
        return self.group.create_task(coro)

    # ------------------------------------------------------------ to Twilio
    async def send(self, event: str, **body) -> None:
        if self.ended and BUG not in ("send-after-close", "silent-send-after-close"):
            return
        to = CURRENT if BUG == "one-current-call" and CURRENT else self  # the mutant: the latest call's socket
        message = {"event": event, **({} if BUG == "no-stream-sid" else {"streamSid": to.stream_sid}), **body}
        try:
            if BUG == "binary-media" and event == "media":
                await to.ws.send(base64.b64decode(body["media"]["payload"]))
            else:
                await to.ws.send(json.dumps(message))
        except websockets.ConnectionClosed:
            if BUG == "send-after-close":
                log.error("call=%s send failed: %s", self.call_sid, "the socket is closed")
            elif BUG != "silent-send-after-close":
                self.ended = True

    async def speak(self, text: str) -> None:
        """One sentence: TTS (pcm 24 kHz) -> 8 kHz mu-law -> media, then a mark."""
        self.talk.sending += 1
        try:
            await self._speak(text)
        finally:
            self.talk.sending -= 1
        self.marks += 1
        name = f"m{self.marks}"
        self.talk.marks.add(name)
        await self.send("mark", mark={"name": name})

    async def _speak(self, text: str) -> None:
        encoder = SpeechEncoder(BUG)
        if BUG == "blocks-on-tts":  # a synchronous client called straight from the coroutine: while the TTS is
            # slow to answer, the event loop, and so every call of this process, waits with it
            resp = requests.post(f"{CONFIG['tts']}/audio/speech", json={
                "model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}, stream=True, timeout=60,
                headers={"Authorization": f"Bearer {CONFIG['key']}"})
            with resp:
                resp.raise_for_status()
                for chunk in resp.iter_content(chunk_size=None):
                    payload = encoder.push(chunk)
                    if payload:
                        self.spoken_ms += len(payload) * 3 / 4 / 8
                        await self.send("media", media={"payload": payload})
                        if BUG == "audio-twice":
                            await self.send("media", media={"payload": payload})
            return
        async with self.http.post(f"{CONFIG['tts']}/audio/speech", json={
                "model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"},
                headers={"Authorization": f"Bearer {CONFIG['key']}"}) as resp:
            resp.raise_for_status()
            async for chunk in resp.content.iter_any():
                if BUG == "keeps-audio":
                    KEPT.append(chunk)
                payload = encoder.push(chunk)
                if payload:
                    self.spoken_ms += len(payload) * 3 / 4 / 8  # base64 of 8 kHz mu-law
                    await self.send("media", media={"payload": payload})
                    if BUG == "audio-twice":  # the mutant: a send left in twice, each chunk played twice
                        await self.send("media", media={"payload": payload})

    async def answer(self, messages: list[dict[str, str]] | None) -> None:
        """Replies, one after another, while finals keep coming in."""
        while messages is not None:
            said = ""
            try:
                if BUG == "long-debounce":  # the mutant: waits in case the caller goes on, every turn answered late
                    await asyncio.sleep(DEBOUNCE_S)
                self.spoken_ms = 0.0
                said = await self._reply(messages)
                if BUG == "sleeps-through-reply":  # waits out the reply's playback by the clock, as some teams do
                    await asyncio.sleep(self.spoken_ms * 1.2 / 1000)
            except (aiohttp.ClientError, requests.RequestException) as exc:  # the LLM or TTS failed: apologise, go on
                log.error("call=%s reply failed: %r", self.call_sid, exc)
                await self.speak("죄송합니다. 다시 한 번 말씀해 주세요.")
            if BUG in ("state-race", "swallowed-race"):
                try:
                    CALLS[self.call_sid].history_sent += 1  # the report's failure 3: KeyError once the call is gone
                except Exception:  # noqa: BLE001 - as the report's code did: log it and carry on
                    if BUG == "state-race":
                        log.exception("call=%s reply bookkeeping failed", self.call_sid)
            messages = self.talk.replied(said)

    async def _reply(self, messages: list[dict[str, str]]) -> str:
        if BUG == "words-twice":  # the caller's words, already the history's last message, added again
            messages = [*messages, {"role": "user", "content": messages[-1]["content"]}]
        body = {"model": "gpt-4o-mini", "messages": messages, "stream": True}
        for attempt in range(2):  # one retry of a 5xx, as the openai SDK does
            if BUG == "blocks-event-loop":  # a synchronous client called straight from the coroutine, no thread:
                # while it waits on the LLM, the event loop, and so every call of this process, waits with it
                resp = requests.post(f"{CONFIG['llm']}/chat/completions", json=body, stream=True, timeout=60,
                                     headers={"Authorization": f"Bearer {CONFIG['key']}"})
                if resp.status_code >= 500 and attempt == 0:
                    log.warning("call=%s llm status=%d, retrying", self.call_sid, resp.status_code)
                    continue
                resp.raise_for_status()
                with resp:
                    return await self._say(_blocking(resp.iter_lines(chunk_size=None)))  # each read blocks the loop too
            async with self.http.post(f"{CONFIG['llm']}/chat/completions", json=body,
                                      headers={"Authorization": f"Bearer {CONFIG['key']}"}) as resp:
                if resp.status >= 500 and attempt == 0:
                    log.warning("call=%s llm status=%d, retrying", self.call_sid, resp.status)
                    continue
                resp.raise_for_status()
                return await self._say(resp.content)
        return ""

    async def _say(self, lines) -> str:
        """The streamed completion's SSE lines, spoken sentence by sentence as they come; the whole text."""
        text, buffer, spoken = "", "", []
        async for line in lines:
            delta = delta_of(line)
            if delta is None:
                continue
            text, buffer = text + delta, buffer + delta
            done, buffer = sentences(buffer)
            for sentence in done:
                spoken.append(await self._sentence(sentence, len(spoken)))
        if buffer.strip():
            spoken.append(await self._sentence(buffer.strip(), len(spoken)))
        if BUG == "sentences-as-tasks":
            await asyncio.gather(*spoken)  # the reply is over once every sentence's task is
        return text

    async def _sentence(self, sentence: str, before: int) -> asyncio.Task | None:
        """Speak one sentence of a reply (``before`` of it spoken already); the mutants' ways of getting it wrong."""
        if BUG == "first-sentence-only" and before:
            return None  # only the first sentence is spoken: the rest of the reply is read, and dropped
        if BUG == "sentences-as-tasks":  # each sentence its own task, not awaited: two sentences' audio interleaves
            return self.spawn(self.speak(sentence))
        await self.speak(sentence)
        return None

    def ask(self, messages: list[dict[str, str]] | None) -> None:
        if messages is not None:
            self.reply = self.spawn(self.answer(messages), leak=BUG in ("reply-outlives-call", "state-race", "swallowed-race"))

    def on_final(self, final: Final) -> None:
        log.info("call=%s final=%r talks_on=%s", self.call_sid, final.text, final.talks_on)
        self.ask(self.talk.final(final))

    async def clear(self) -> None:
        self.talk.marks.clear()
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()
            self.ask(self.talk.replied(""))
        await self.send("clear")

    # ------------------------------------------------------------ recognition
    async def token(self) -> str:
        global TOKEN
        if BUG == "token-once" and TOKEN:  # the mutant: one token per process, kept past its expire_at
            return TOKEN
        TOKEN = await self._token()
        return TOKEN

    async def _token(self) -> str:
        for attempt in range(8):
            try:
                async with self.http.post(f"{CONFIG['rtzr']}/v1/authenticate", data={
                        "client_id": os.environ["RTZR_CLIENT_ID"], "client_secret": os.environ["RTZR_CLIENT_SECRET"]}) as resp:
                    if resp.status in (400, 401, 403):
                        raise Refused(f"token refused: HTTP {resp.status}")
                    if resp.status == 200:
                        return (await resp.json())["access_token"]
                    log.warning("call=%s rtzr token status=%d, retrying", self.call_sid, resp.status)
            except aiohttp.ClientError as exc:
                log.warning("call=%s rtzr token: %r, retrying", self.call_sid, exc)
            await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))  # backoff
        raise Refused("no token from RTZR")

    async def recognize(self) -> None:
        """Streams, one after another, until the call is over and its last words are in."""
        url = CONFIG["rtzr"].replace("http", "ws", 1) + "/v1/transcribe:streaming?sample_rate=8000&encoding=MULAW&use_itn=true"
        refusals, busy, give_up_at = 0, 0, None
        while True:
            token = await self.token()
            try:
                rtzr = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                                open_timeout=10, close_timeout=2)
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
                refusals, busy = refusals + (status == 401), busy + (status != 401)
                wait = handshake_retry(status, refusals, busy)
                if wait is None:
                    raise Refused(f"RTZR refused the stream: HTTP {status}") from None
                log.warning("call=%s rtzr stream refused: HTTP %d, trying again", self.call_sid, status)
                await asyncio.sleep(wait)  # backoff
                continue
            self.audio.open_stream()
            async with rtzr:
                how = await self._converse(rtzr)
            if how in ("finished", "handler closed") or how == "closed" and BUG == "no-reconnect":
                log.info("call=%s rtzr stream %s", self.call_sid, how)
                return
            if self.ended:
                give_up_at = give_up_at or time.monotonic() + EOS_WAIT_S
                if time.monotonic() > give_up_at:
                    return
            log.info("call=%s rtzr stream %s: reconnecting", self.call_sid, how)

    async def _converse(self, rtzr) -> str:
        sender = asyncio.create_task(self._send_audio(rtzr))
        closed_by_us = False
        try:
            async for raw in rtzr:
                self.last_result = time.monotonic()  # alive, even when what it said cannot be read
                result = parse_result(raw)
                if result is None:
                    log.warning("call=%s rtzr sent a message that is not a result: %.80r", self.call_sid, raw)
                    continue
                finals = self.audio.result(result, time.monotonic())
                if BUG == "answers-after-hangup" and self.ended:  # no audio comes after the hang-up: hand it on
                    finals += self.audio.release(finishing=True)
                for final in finals:
                    self.on_final(final)
                text = (result.get("alternatives") or [{}])[0].get("text", "")
                if not result.get("final") and self.talk.barges_in(text):
                    await self.clear()
                if result.get("final") and BUG == "closes-after-first-final" and not self.ended:
                    await rtzr.send("EOS")  # the mutant's stream ends with its first final, and is never reopened
                    closed_by_us = True
        except websockets.ConnectionClosed:
            pass
        finally:
            await asyncio.wait([sender], timeout=1.0)  # a sender that closed the stream says why
            sender.cancel()
        said = sender.result() if sender.done() and not sender.cancelled() and not sender.exception() else None
        if said in ("stalled", "finished"):
            return said
        if closed_by_us:
            return "handler closed"
        return "finished" if self.ended and not self.audio.held and rtzr.close_code == 1000 else "closed"

    async def _send_audio(self, rtzr) -> str:
        eos_sent: float | None = None
        while True:
            ended = self.ended  # read first: the sends below yield, and frames may come (then the hang-up) meanwhile
            frames = self.audio.next_frames()
            for frame in frames:
                await rtzr.send(frame)
            self.audio.note_sent(frames, time.monotonic())
            if self.audio.stalled(time.monotonic()):
                log.warning("call=%s rtzr stalled: reconnecting", self.call_sid)
                await rtzr.close()
                return "stalled"
            if ended and eos_sent is None and BUG != "leaves-rtzr-open":
                for final in self.audio.release(finishing=True):
                    self.on_final(final)
                await rtzr.send("EOS")
                eos_sent = time.monotonic()
            if eos_sent is not None and time.monotonic() - eos_sent > EOS_WAIT_S:
                await rtzr.close()  # the last final did not come: let go
                return "finished"
            self.new_audio.clear()
            try:
                await asyncio.wait_for(self.new_audio.wait(), 0.25)  # new audio, or look for a stall again
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------ the call
    async def refuse(self, why: Exception) -> None:
        """RTZR will not recognise this call: tell the caller, then end the call."""
        log.error("call=%s speech recognition unavailable: %s", self.call_sid, why)
        if BUG != "silent-refusal":
            await self.speak(APOLOGY)
            deadline = time.monotonic() + 15
            while self.talk.marks and time.monotonic() < deadline and not self.ended:
                await asyncio.sleep(0.05)  # until Twilio echoes the apology's mark
        self.ended = True
        await self.ws.close()

    async def recognize_or_refuse(self) -> None:
        try:
            await self.recognize()
        except Refused as exc:
            await self.refuse(exc)

    async def quiet_timer(self) -> None:
        """A held final with nothing after it for 3 s is answered."""
        while True:
            await asyncio.sleep(0.5)
            if self.talk.held and time.monotonic() - self.last_result > 3.0:
                self.ask(self.talk.quiet())

    async def run(self) -> None:
        recognizer = self.spawn(self.recognize_or_refuse(), leak=BUG == "leaves-rtzr-open")
        quiet = self.spawn(self.quiet_timer())
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                event = message.get("event")
                if event == "media":
                    frame = base64.b64decode(message["media"]["payload"])
                    if BUG == "deaf-while-speaking" and (self.reply is not None and not self.reply.done() or self.talk.marks):
                        frame = MUTED  # the mutant: "so the bot does not hear itself", the caller is not heard either
                    self.audio.add(frame)
                    if BUG == "keeps-audio":
                        KEPT.append(self.audio.frames[-1])
                    for final in self.audio.release():
                        self.on_final(final)
                    self.new_audio.set()
                elif event == "mark":
                    self.talk.marks.discard(message["mark"]["name"])
                elif event == "stop":
                    break
        except websockets.ConnectionClosed:
            pass
        log.info("call=%s event=hangup", self.call_sid)
        self.ended = self.talk.ended = True
        quiet.cancel()
        if BUG in ("state-race", "swallowed-race"):
            CALLS.pop(self.call_sid, None)  # the state goes while the reply runs on
        elif self.reply is not None and BUG not in ("reply-outlives-call", "send-after-close", "silent-send-after-close"):
            self.reply.cancel()
        if BUG == "leaves-rtzr-open":
            return  # the recognizer runs on, its stream open
        self.new_audio.set()
        try:
            await asyncio.wait_for(asyncio.shield(recognizer), EOS_WAIT_S + 3)
        except asyncio.TimeoutError:
            recognizer.cancel()


HTTP: aiohttp.ClientSession | None = None  # one pool for every call's HTTP (token, LLM, TTS)


async def _blocking(lines):
    """A synchronous iterator as an async one (the blocks-event-loop mutant's): each ``next`` blocks the event loop."""
    for line in lines:
        yield line


async def media(ws: ServerConnection) -> None:
    global CURRENT
    assert HTTP is not None
    async for raw in ws:
        message = json.loads(raw)
        if message.get("event") != "start":
            continue
        start = message["start"]
        async with asyncio.TaskGroup() as group:  # the call's tasks: none outlives it (but a mutant's)
            call = CALLS[start["callSid"]] = Call(ws, start["callSid"], start["streamSid"], HTTP, group)
            if BUG == "one-current-call":
                CURRENT = call  # the bot's sends go wherever the latest call is
            log.info("call=%s event=start", call.call_sid)
            await call.run()
        if BUG not in ("state-race", "swallowed-race"):
            CALLS.pop(call.call_sid, None)
        log.info("call=%s event=end", call.call_sid)
        return


def only_media_path(connection: ServerConnection, request) -> object | None:
    if request.path != "/media":
        return connection.respond(HTTPStatus.NOT_FOUND, "not the media stream\n")
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    global HTTP
    async with aiohttp.ClientSession() as HTTP, serve(media, "127.0.0.1", args.port, process_request=only_media_path,
                                                      max_size=2**20):
        log.info("listening on ws://127.0.0.1:%d/media%s", args.port, f" (mutant {BUG})" if BUG else "")
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
