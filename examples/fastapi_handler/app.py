"""A small FastAPI Twilio Media Streams handler in the report's fixed style (a third-party handler:
it imports nothing from this project).

Twilio audio -> RTZR streaming STT (websockets, reconnect on any close) -> OpenAI chat (openai SDK,
streamed) -> OpenAI TTS (``response_format=wav``) -> mu-law back to Twilio. Credentials are checked
at start-up; each call's tasks live in one TaskGroup; nothing is sent after the call ends.
What it does *not* do (the harness shows it): barge-in, a stall watchdog, resending audio after a
reconnect, retrying a refused RTZR token, storing transcripts.

    RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... OPENAI_API_KEY=... uvicorn app:app --port 8000
    # stream URL: ws://127.0.0.1:8000/media-stream
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import sys
import wave

import aiohttp
import numpy as np
import soxr
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from openai import AsyncOpenAI

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
log = logging.getLogger("media-stream")

REQUIRED = ("RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET", "OPENAI_API_KEY")
missing = [name for name in REQUIRED if not os.environ.get(name)]
if missing:  # the report's failure 1: find out at start-up, not in the middle of a call
    log.critical("missing environment variable(s): %s", ", ".join(missing))
    raise SystemExit(2)

RTZR_API = os.environ.get("RTZR_API_BASE", "https://openapi.vito.ai").rstrip("/")
RTZR_WS = RTZR_API.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
STREAM_QUERY = "sample_rate=8000&encoding=MULAW&use_itn=true"
openai = AsyncOpenAI(base_url=os.environ.get("TTS_BASE_URL") or None)  # TTS base; chat below
chat = AsyncOpenAI()
app = FastAPI()


async def rtzr_token() -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{RTZR_API}/v1/authenticate", data={
                "client_id": os.environ["RTZR_CLIENT_ID"], "client_secret": os.environ["RTZR_CLIENT_SECRET"]}) as resp:
            resp.raise_for_status()
            return (await resp.json())["access_token"]


def to_ulaw(pcm: np.ndarray) -> bytes:
    """G.711 mu-law (numpy; ``audioop`` is gone from Python 3.13)."""
    x = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    x = np.abs(x) + 0x84
    exponent = np.floor(np.log2(x)).astype(np.int32) - 7
    mantissa = (x >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


class Call:
    def __init__(self, ws: WebSocket, call_sid: str, stream_sid: str) -> None:
        self.ws, self.call_sid, self.stream_sid = ws, call_sid, stream_sid
        self.audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.finals: asyncio.Queue[str] = asyncio.Queue()
        self.history = [{"role": "system", "content": "간결하게 한국어로 답하세요."}]
        self.open = True

    async def recognize(self) -> None:
        """One RTZR stream after another: RTZR may end a stream at any time (the report's failure 2)."""
        while self.open:
            token = await rtzr_token()
            url = f"{RTZR_WS}/v1/transcribe:streaming?{STREAM_QUERY}"
            async with websockets.connect(url, additional_headers={"Authorization": f"bearer {token}"}) as rtzr:
                sender = asyncio.create_task(self._send_audio(rtzr))
                try:
                    async for message in rtzr:
                        result = json.loads(message)
                        text = result.get("alternatives", [{}])[0].get("text", "").strip()
                        if result.get("final") and text:
                            log.info("call=%s final=%r", self.call_sid, text)
                            await self.finals.put(text)
                finally:
                    sender.cancel()
            if self.audio.empty() and not self.open:
                return

    async def _send_audio(self, rtzr) -> None:
        while (chunk := await self.audio.get()) is not None:
            await rtzr.send(chunk)
        await rtzr.send("EOS")

    async def answer(self) -> None:
        while True:
            text = await self.finals.get()
            self.history.append({"role": "user", "content": text})
            stream = await chat.chat.completions.create(model="gpt-4o-mini", messages=self.history, stream=True)
            reply = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            self.history.append({"role": "assistant", "content": reply})
            if reply.strip():
                await self.speak(reply)

    async def speak(self, text: str) -> None:
        speech = await openai.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav")
        with wave.open(io.BytesIO(speech.content)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            rate = w.getframerate()
        ulaw = to_ulaw(soxr.resample(pcm, rate, 8000))
        for i in range(0, len(ulaw), 160):
            if not self.open:  # the report's failure 4: never send after the call ended
                return
            payload = base64.b64encode(ulaw[i : i + 160]).decode()
            await self.ws.send_text(json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}))
        await self.ws.send_text(json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": "reply"}}))


@app.websocket("/media-stream")
async def media_stream(ws: WebSocket) -> None:
    await ws.accept()
    call: Call | None = None
    try:
        async with asyncio.TaskGroup() as tasks:  # the report's failure 3: the call owns its tasks
            try:
                while True:
                    message = json.loads(await ws.receive_text())
                    event = message.get("event")
                    if event == "start":
                        start = message["start"]
                        call = Call(ws, start["callSid"], start["streamSid"])
                        log.info("call=%s event=start", call.call_sid)
                        recognizer, replies = tasks.create_task(call.recognize()), tasks.create_task(call.answer())
                    elif event == "media" and call is not None:
                        await call.audio.put(base64.b64decode(message["media"]["payload"]))
                    elif event == "stop":
                        break
            except WebSocketDisconnect:
                pass
            if call is not None:
                call.open = False
                replies.cancel()
                await call.audio.put(None)  # EOS: the last words are still recognised ...
                try:
                    await asyncio.wait_for(asyncio.shield(recognizer), 5)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - ... for up to 5 s
                    recognizer.cancel()
                log.info("call=%s event=end", call.call_sid)
    finally:
        if call is not None:
            call.open = False
