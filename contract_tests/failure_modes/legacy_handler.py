"""The report's original handler, bugs included - test support only, never part of aicall.

It reproduces, in the shape of the report's code (section 3):
1. credentials read lazily, at call time ("RTZR credentials are required" mid-call);
2. ``break`` after the first recognition result: the stream ends after one utterance;
3. a module-level ``conversation_sessions`` dict deleted in ``finally`` while the background
   reply task still runs (and writes to it);
4. TTS audio sent to Twilio without checking that the socket is still open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Mapping

import aiohttp
import websockets
from aiohttp import web

from aicall import twilio
from aicall.llm import ChatClient
from aicall.tts import OpenAiTts
from callaudio.g711 import ulaw_to_pcm16

logger = logging.getLogger("aicall.legacy")
conversation_sessions: dict[str, list[dict[str, str]]] = {}  # bug 3: module-level, shared by every call
ENV = web.AppKey("env", dict)
TASKS = web.AppKey("tasks", set)  # test scaffolding, not the report's code: what the app cancels at cleanup
SESSIONS = web.AppKey("sessions", list)


async def get_token(env: Mapping[str, str], session: aiohttp.ClientSession) -> str:
    client_id, secret = env.get("RTZR_CLIENT_ID"), env.get("RTZR_CLIENT_SECRET")
    if not client_id or not secret:  # bug 1: only discovered when a call arrives
        logger.error("RTZR_CLIENT_ID 또는 RTZR_CLIENT_SECRET이 설정되지 않았습니다!")
        raise RuntimeError("RTZR credentials are required")
    async with session.post(f"{env['RTZR_API_BASE']}/v1/authenticate",
                            data={"client_id": client_id, "client_secret": secret}) as resp:
        return (await resp.json())["access_token"]


async def transcribe_streaming(env, session, audio_queue: asyncio.Queue):
    token = await get_token(env, session)
    ws_url = env["RTZR_API_BASE"].replace("http", "ws", 1) + "/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"bearer {token}"}) as websocket:

        async def send_audio_loop():
            while True:
                chunk = await audio_queue.get()
                if chunk is None:
                    await websocket.send("EOS")
                    break
                await websocket.send(chunk)

        send_task = asyncio.create_task(send_audio_loop())
        async for message in websocket:
            result = json.loads(message)
            if result.get("final"):
                yield result
                break  # bug 2: only the first utterance is ever recognised
        send_task.cancel()


async def media_stream_handler(request: web.Request) -> web.WebSocketResponse:
    env = request.app[ENV]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    call_sid, stream_sid = None, ""
    audio_queue: asyncio.Queue = asyncio.Queue()
    session = aiohttp.ClientSession()
    chat = ChatClient(session, env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"], "legacy")
    tts = OpenAiTts(session, env["TTS_BASE_URL"], env["OPENAI_API_KEY"], "tts-1", "alloy")

    async def process_rtzr_results():
        try:
            async for result in transcribe_streaming(env, session, audio_queue):
                text = result["alternatives"][0]["text"]
                conversation_sessions[call_sid].append({"role": "user", "content": text})
                ai_response = ""
                async for delta in chat.stream(conversation_sessions[call_sid]):
                    ai_response += delta
                conversation_sessions[call_sid].append({"role": "assistant", "content": ai_response})  # bug 3
                async for chunk in tts.synthesize(ai_response):
                    await ws.send_str(twilio.media_message(stream_sid, chunk))  # bug 4: no check of the socket
        except Exception as exc:  # noqa: BLE001 - as the report's code did: log and carry on
            logger.exception("문장 처리 오류: %r", exc)

    rtzr_task = None
    try:
        async for msg in ws:
            event = twilio.parse_message(msg.data)
            if isinstance(event, twilio.Start):
                call_sid, stream_sid = event.call_sid, event.stream_sid
                conversation_sessions[call_sid] = []
                rtzr_task = asyncio.create_task(process_rtzr_results())  # never cancelled, never awaited
                request.app[TASKS].add(rtzr_task)
            elif isinstance(event, twilio.Media):
                await audio_queue.put(ulaw_to_pcm16(event.payload).astype("<i2").tobytes())
            elif isinstance(event, twilio.Stop):
                break
    finally:
        await audio_queue.put(None)
        del conversation_sessions[call_sid]  # bug 3: the reply task may still need it
        request.app[SESSIONS].append(session)  # closed with the app: a leak is not one of the report's bugs
    return ws


def create_legacy_app(env: Mapping[str, str]) -> web.Application:
    app = web.Application()
    app[ENV] = dict(env)
    app[TASKS] = set()
    app[SESSIONS] = []

    async def cancel_leftovers(app: web.Application) -> None:  # only so the test process stays tidy
        for task in app[TASKS]:
            task.cancel()
        await asyncio.gather(*app[TASKS], return_exceptions=True)
        for session in app[SESSIONS]:
            await session.close()

    app.on_cleanup.append(cancel_leftovers)
    app.router.add_get("/twilio/media", media_stream_handler)
    return app
