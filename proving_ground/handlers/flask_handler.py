"""A reference Twilio Media Streams handler in Twilio's own Python sample style: synchronous Flask with
flask-sock on werkzeug's threaded server, a thread per job (no asyncio anywhere).

Twilio -> RTZR streaming (``websockets``' sync client, in the call's recognizer thread) -> an
OpenAI-compatible LLM (``requests``, SSE) -> TTS (``pcm`` 24 kHz, resampled with soxr) -> mu-law back
to Twilio. The decisions are :mod:`call_core`'s. Logs: ``print`` for the call's progress, Flask's
``app.logger`` for errors (``[time] ERROR in module: message``); a thread that dies prints its
traceback as Python's ``threading`` does.

    RTZR_API_BASE=... RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... OPENAI_BASE_URL=... TTS_BASE_URL=... \\
        python flask_handler.py --port 8080        # stream URL: ws://127.0.0.1:8080/media

``MUTANT=<name>`` puts one bug back (``call_core.MUTANTS``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Iterator

import requests
from flask import Flask
from flask_sock import ConnectionClosed, Sock
from websockets.exceptions import ConnectionClosed as RtzrClosed, InvalidStatus
from websockets.sync.client import connect

from call_core import (APOLOGY, DEBOUNCE_S, EOS_WAIT_S, MUTED, SYSTEM, Conversation, Final, Recognition, SpeechEncoder,
                       delta_of, handshake_retry, mutant, parse_result, sentences)

BUG = mutant()
app = Flask(__name__)
sock = Sock(app)
CALLS: dict[str, "Call"] = {}
HTTP = requests.Session()
# blocks-event-loop, as a thread-per-call server has it: one shared LLM client behind one lock, held for the whole
# request; while one call's LLM request hangs, every other call's reply waits on the lock (nothing else blocks here)
LLM_LOCK = threading.Lock()
TTS_LOCK = threading.Lock()  # blocks-on-tts: the same for one shared TTS client, held while its audio is read
CURRENT: "Call | None" = None  # one-current-call: "the call", overwritten by each call that connects
HISTORY = [{"role": "system", "content": SYSTEM}]  # shared-history: one conversation for every call of the process
KEPT: list[bytes] = []  # keeps-audio: every call's audio, both ways, kept "for a later upload" that never comes
TOKEN = ""  # the latest RTZR token (token-once: fetched once, used for every stream of every call)

if BUG != "no-credential-check":
    for name in ("RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET"):
        if not os.environ.get(name):
            print(f"Please set the {name} environment variable", flush=True)
            raise SystemExit(1)
RTZR = os.environ.get("RTZR_API_BASE", "https://openapi.vito.ai").rstrip("/")
LLM = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
TTS = os.environ.get("TTS_BASE_URL", "https://api.openai.com/v1").rstrip("/")
AUTH = {"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}"}


class Refused(Exception):
    pass


class Call:
    def __init__(self, ws, call_sid: str, stream_sid: str) -> None:
        self.ws, self.call_sid, self.stream_sid = ws, call_sid, stream_sid
        self.lock = threading.RLock()  # the call's state: touched by the socket, recognizer and reply threads
        self.send_lock = threading.Lock()
        self.audio = Recognition(BUG)
        self.talk = Conversation(BUG)
        if BUG == "shared-history":  # every call's turns in the one module-level list: other calls' words go to the LLM
            self.talk.history = HISTORY
        self.ended = threading.Event()
        self.reply: tuple[threading.Thread, threading.Event] | None = None
        self.marks = 0
        self.last_result = time.monotonic()
        self.bookkeeping = 0
        self.responses: set[requests.Response] = set()  # the LLM and TTS streams being read

    @contextmanager
    def reading(self, resp: requests.Response) -> Iterator[requests.Response]:
        self.responses.add(resp)
        try:
            with resp:
                yield resp
        finally:
            self.responses.discard(resp)

    def stop_reply(self) -> None:
        """A blocking read cannot be cancelled: shutting its socket down from here ends it."""
        if self.reply is not None:
            self.reply[1].set()
        for resp in list(self.responses):
            connection = getattr(resp.raw, "connection", None)
            if getattr(connection, "sock", None) is not None:
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            resp.close()

    # ------------------------------------------------------------ to Twilio
    def send(self, event: str, **body) -> None:
        if self.ended.is_set() and BUG not in ("send-after-close", "silent-send-after-close"):
            return
        to = CURRENT if BUG == "one-current-call" and CURRENT else self  # the mutant: the latest call's socket
        message = {"event": event, **({} if BUG == "no-stream-sid" else {"streamSid": to.stream_sid}), **body}
        try:
            with to.send_lock:
                if BUG == "binary-media" and event == "media":
                    to.ws.send(base64.b64decode(body["media"]["payload"]))
                else:
                    to.ws.send(json.dumps(message))
        except ConnectionClosed:
            if BUG == "send-after-close":
                app.logger.error("call %s: could not send %s, the socket is closed", self.call_sid, event)
            elif BUG != "silent-send-after-close":
                self.ended.set()

    def speak(self, text: str, stop: threading.Event) -> None:
        with self.lock:
            self.talk.sending += 1
        try:
            encoder = SpeechEncoder(BUG)
            with TTS_LOCK if BUG == "blocks-on-tts" else nullcontext(), \
                    self.reading(HTTP.post(f"{TTS}/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text,
                                           "response_format": "pcm"}, headers=AUTH, stream=True)) as resp:
                resp.raise_for_status()
                for chunk in resp.iter_content(chunk_size=None):
                    if BUG == "keeps-audio":
                        KEPT.append(chunk)
                    if stop.is_set():
                        return
                    payload = encoder.push(chunk)
                    if payload:
                        self.send("media", media={"payload": payload})
                        if BUG == "audio-twice":  # the mutant: a send left in twice, each chunk played twice
                            self.send("media", media={"payload": payload})
        except (requests.RequestException, OSError, ValueError):
            if stop.is_set():  # its response was closed under it (a barge-in): the speech was stopped
                return
            raise
        finally:
            with self.lock:
                self.talk.sending -= 1
        with self.lock:
            self.marks += 1
            name = f"mark-{self.marks}"
            self.talk.marks.add(name)
        self.send("mark", mark={"name": name})

    # ------------------------------------------------------------ replies
    def ask(self, messages: list[dict[str, str]] | None) -> None:
        if messages is None:
            return
        stop = threading.Event()
        worker = threading.Thread(target=self.answer, args=(messages, stop), name=f"reply-{self.call_sid[-6:]}")
        self.reply = (worker, stop)
        worker.start()

    def answer(self, messages: list[dict[str, str]] | None, stop: threading.Event) -> None:
        while messages is not None and not stop.is_set():
            said = ""
            if BUG == "long-debounce" and stop.wait(DEBOUNCE_S):  # the mutant: waits in case the caller goes on
                return
            try:
                said = self.generate(messages, stop)
            except (requests.RequestException, AttributeError, OSError, ValueError) as exc:
                if stop.is_set():  # its response was closed under it: the reply was stopped
                    return
                app.logger.error("call %s: reply failed: %s", self.call_sid, exc)
                self.speak("죄송합니다. 다시 한 번 말씀해 주세요.", stop)
            if BUG == "state-race":
                CALLS[self.call_sid].bookkeeping += 1  # the report's failure 3: KeyError once the call is gone
            elif BUG == "swallowed-race":
                try:
                    CALLS[self.call_sid].bookkeeping += 1
                except KeyError:
                    pass
            if stop.is_set():
                return
            with self.lock:
                messages = self.talk.replied(said)

    def generate(self, messages: list[dict[str, str]], stop: threading.Event) -> str:
        if BUG == "words-twice":  # the caller's words, already the history's last message, added again
            messages = messages + [{"role": "user", "content": messages[-1]["content"]}]
        body = {"model": "gpt-4o-mini", "messages": messages, "stream": True}
        with LLM_LOCK if BUG == "blocks-event-loop" else nullcontext():  # the mutant: one LLM request at a time
            return self._generate(body, stop)

    def _generate(self, body: dict, stop: threading.Event) -> str:
        for attempt in range(2):  # one retry of a 5xx
            with self.reading(HTTP.post(f"{LLM}/chat/completions", json=body, headers=AUTH, stream=True)) as resp:
                if resp.status_code >= 500 and attempt == 0:
                    print(f"call {self.call_sid}: LLM said {resp.status_code}, retrying", flush=True)
                    continue
                resp.raise_for_status()
                text, buffer, spoken = "", "", []
                for line in resp.iter_lines():
                    if stop.is_set():
                        return text
                    delta = delta_of(line)
                    if delta is None:
                        continue
                    text, buffer = text + delta, buffer + delta
                    done, buffer = sentences(buffer)
                    for sentence in done:
                        spoken.append(self.sentence(sentence, stop, len(spoken)))
                if buffer.strip() and not stop.is_set():
                    spoken.append(self.sentence(buffer.strip(), stop, len(spoken)))
                for worker in spoken:
                    if worker is not None:  # sentences-as-tasks: the reply is over once every sentence's thread is
                        worker.join()
                return text
        return ""

    def sentence(self, text: str, stop: threading.Event, before: int) -> threading.Thread | None:
        """Speak one sentence of a reply (``before`` of it spoken already); the mutants' ways of getting it wrong."""
        if BUG == "first-sentence-only" and before:
            return None  # only the first sentence is spoken: the rest of the reply is read, and dropped
        if BUG == "sentences-as-tasks":  # each sentence its own thread, not waited for: two sentences' audio interleaves
            worker = threading.Thread(target=self.speak, args=(text, stop), name=f"sentence-{self.call_sid[-6:]}")
            worker.start()
            return worker
        self.speak(text, stop)
        return None

    def on_final(self, final: Final) -> None:
        print(f"call {self.call_sid}: final {final.text!r}{' (caller talks on)' if final.talks_on else ''}", flush=True)
        with self.lock:
            messages = self.talk.final(final)
        self.ask(messages)

    def barge_in(self) -> None:
        with self.lock:
            self.talk.marks.clear()
            running = self.reply
            messages = None
            if running is not None and running[0].is_alive():
                self.stop_reply()
                messages = self.talk.replied("")
        self.send("clear")
        self.ask(messages)

    # ------------------------------------------------------------ recognition
    def token(self) -> str:
        global TOKEN
        if BUG == "token-once" and TOKEN:  # the mutant: one token per process, kept past its expire_at
            return TOKEN
        TOKEN = self._token()
        return TOKEN

    def _token(self) -> str:
        for attempt in range(8):
            try:
                resp = HTTP.post(f"{RTZR}/v1/authenticate", data={"client_id": os.environ["RTZR_CLIENT_ID"],
                                                                 "client_secret": os.environ["RTZR_CLIENT_SECRET"]})
                if resp.status_code in (400, 401, 403):
                    raise Refused(f"token refused ({resp.status_code})")
                if resp.ok:
                    return resp.json()["access_token"]
                print(f"call {self.call_sid}: RTZR token endpoint said {resp.status_code}, retrying", flush=True)
            except requests.ConnectionError as exc:
                print(f"call {self.call_sid}: RTZR token endpoint: {exc}, retrying", flush=True)
            time.sleep(min(2.0, 0.1 * 2 ** attempt))  # backoff
        raise Refused("no token")

    def recognize(self) -> None:
        url = RTZR.replace("http", "ws", 1) + "/v1/transcribe:streaming?sample_rate=8000&encoding=MULAW&use_itn=true"
        refusals, busy, give_up_at = 0, 0, None
        while True:
            token = self.token()
            try:
                rtzr = connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10, close_timeout=2)
            except InvalidStatus as exc:
                status = exc.response.status_code
                refusals, busy = refusals + (status == 401), busy + (status != 401)
                wait = handshake_retry(status, refusals, busy)
                if wait is None:
                    raise Refused(f"streaming refused ({status})") from None
                print(f"call {self.call_sid}: RTZR refused the stream ({status}), trying again", flush=True)
                time.sleep(wait)  # backoff
                continue
            with self.lock:
                self.audio.open_stream()
            with rtzr:
                how = self.converse(rtzr)
            print(f"call {self.call_sid}: RTZR stream {how}", flush=True)
            if how in ("finished", "handler closed") or how == "closed" and BUG == "no-reconnect":
                return
            if self.ended.is_set():
                give_up_at = give_up_at or time.monotonic() + EOS_WAIT_S
                if time.monotonic() > give_up_at:
                    return

    def converse(self, rtzr) -> str:
        eos_at = None
        while True:
            ended = self.ended.is_set()  # read first: every frame that came before the hang-up is in what follows
            with self.lock:
                frames = self.audio.next_frames()
            try:
                for frame in frames:
                    rtzr.send(frame)
            except RtzrClosed:  # RTZR ended the stream: what it still sent is read below
                frames = []
            now = time.monotonic()
            with self.lock:
                self.audio.note_sent(frames, now)
                stalled = self.audio.stalled(now)
            if stalled:
                print(f"call {self.call_sid}: RTZR stalled, reconnecting", flush=True)
                rtzr.close()
                return "stalled"
            if ended and eos_at is None and BUG != "leaves-rtzr-open":
                with self.lock:
                    finals = self.audio.release(finishing=True)
                for final in finals:
                    self.on_final(final)
                try:
                    rtzr.send("EOS")
                except RtzrClosed:
                    pass
                eos_at = now
            if eos_at is not None and now - eos_at > EOS_WAIT_S:
                rtzr.close()
                return "finished"
            try:
                raw = rtzr.recv(timeout=0.02)
            except TimeoutError:
                continue
            except RtzrClosed:
                return "finished" if self.ended.is_set() and rtzr.close_code == 1000 else "closed"
            self.last_result = time.monotonic()  # alive, even when what it said cannot be read
            result = parse_result(raw)
            if result is None:
                app.logger.warning("call %s: rtzr sent a message that is not a result: %.80r", self.call_sid, raw)
                continue
            with self.lock:
                finals = self.audio.result(result, self.last_result)
                if BUG == "answers-after-hangup" and self.ended.is_set():  # no audio comes after the hang-up: hand it on
                    finals += self.audio.release(finishing=True)
                text = (result.get("alternatives") or [{}])[0].get("text", "")
                barge = not result.get("final") and self.talk.barges_in(text)
            for final in finals:
                self.on_final(final)
            if barge:
                self.barge_in()
            if result.get("final") and BUG == "closes-after-first-final" and not self.ended.is_set():
                rtzr.send("EOS")
                try:
                    for _ in rtzr:
                        pass
                except RtzrClosed:
                    pass
                return "handler closed"

    def recognize_or_refuse(self) -> None:
        try:
            self.recognize()
        except Refused as exc:
            app.logger.error("call %s: speech recognition unavailable: %s", self.call_sid, exc)
            if BUG != "silent-refusal":
                self.speak(APOLOGY, threading.Event())
                deadline = time.monotonic() + 15
                while self.talk.marks and time.monotonic() < deadline and not self.ended.is_set():
                    time.sleep(0.05)  # until Twilio echoes the apology's mark
            self.ended.set()
            try:
                self.ws.close()
            except ConnectionClosed:
                pass  # the caller's line went first: simple-websocket raises on closing a closed socket

    def watch_quiet(self) -> None:
        while not self.ended.wait(0.5):
            if self.talk.held and time.monotonic() - self.last_result > 3.0:
                with self.lock:
                    messages = self.talk.quiet()
                self.ask(messages)


@sock.route("/media")
def media(ws) -> None:
    global CURRENT
    call = None
    recognizer = None
    try:
        while True:
            message = json.loads(ws.receive())
            event = message["event"]
            if event == "start":
                call = CALLS[message["start"]["callSid"]] = Call(ws, message["start"]["callSid"], message["streamSid"])
                if BUG == "one-current-call":
                    CURRENT = call  # the bot's sends go wherever the latest call is
                print(f"call {call.call_sid}: started", flush=True)
                recognizer = threading.Thread(target=call.recognize_or_refuse, name=f"rtzr-{call.call_sid[-6:]}",
                                              daemon=BUG == "leaves-rtzr-open")
                recognizer.start()
                threading.Thread(target=call.watch_quiet, daemon=True).start()
            elif event == "media" and call is not None:
                with call.lock:
                    frame = base64.b64decode(message["media"]["payload"])
                    if BUG == "deaf-while-speaking" and (call.reply is not None and call.reply[0].is_alive() or call.talk.marks):
                        frame = MUTED  # the mutant: "so the bot does not hear itself", the caller is not heard either
                    call.audio.add(frame)
                    if BUG == "keeps-audio":
                        KEPT.append(call.audio.frames[-1])
                    finals = call.audio.release()
                for final in finals:
                    call.on_final(final)
            elif event == "mark" and call is not None:
                with call.lock:
                    call.talk.marks.discard(message["mark"]["name"])
            elif event == "stop":
                break
    except ConnectionClosed:
        pass
    if call is None:
        return
    print(f"call {call.call_sid}: hung up", flush=True)
    call.ended.set()
    with call.lock:
        call.talk.ended = True
    if BUG in ("state-race", "swallowed-race"):
        CALLS.pop(call.call_sid, None)  # the state goes while the reply runs on
    elif BUG not in ("reply-outlives-call", "send-after-close", "silent-send-after-close"):
        call.stop_reply()
    if recognizer is not None and BUG != "leaves-rtzr-open":
        recognizer.join(EOS_WAIT_S + 3)
    CALLS.pop(call.call_sid, None)
    print(f"call {call.call_sid}: ended", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    app.run(host="127.0.0.1", port=parser.parse_args().port, threaded=True)
