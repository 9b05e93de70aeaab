"""The floor the aicall benchmarks compare against: the least a Twilio Media Streams handler on RTZR can do.

Per call it opens one RTZR stream (mu-law, as Twilio sends it), forwards every caller frame, and answers each
final at once with 100 ms of prepared audio and a mark: no LLM, no TTS, no store, no checks. What is left is
the two WebSockets a call needs, aiohttp and the event loop.

    RTZR_API_BASE=... python bench/floor_handler.py --port 8080 [--loop auto|uvloop|asyncio]

Serves ``/twilio/media``; prints ``floor handler listening on ...`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fakertzr.loops import LOOPS, loop_factory  # noqa: E402

REPLY = base64.b64encode(b"\xff" * 800).decode()  # 100 ms of mu-law silence
TOKEN = web.AppKey("token", dict)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def token(app: web.Application) -> str:
    cached = app[TOKEN]
    if "value" not in cached:
        form = {"client_id": os.environ["RTZR_CLIENT_ID"], "client_secret": os.environ["RTZR_CLIENT_SECRET"]}
        async with app[SESSION].post(f"{os.environ['RTZR_API_BASE']}/v1/authenticate", data=form) as resp:
            cached["value"] = (await resp.json())["access_token"]
    return cached["value"]


async def media(request: web.Request) -> web.WebSocketResponse:
    twilio = web.WebSocketResponse()
    await twilio.prepare(request)
    app = request.app
    stream_sid = ""
    url = os.environ["RTZR_API_BASE"].replace("http", "ws", 1) + "/v1/transcribe:streaming?sample_rate=8000&encoding=MULAW"
    rtzr = await app[SESSION].ws_connect(url, headers={"Authorization": f"Bearer {await token(app)}"})

    async def answer() -> None:
        async for msg in rtzr:
            if msg.type == WSMsgType.TEXT and json.loads(msg.data).get("final") and not twilio.closed:
                await twilio.send_str(json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": REPLY}}))
                await twilio.send_str(json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": "reply"}}))

    answering = asyncio.create_task(answer())
    try:
        async for msg in twilio:
            if msg.type != WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            kind = event.get("event")
            if kind == "media":
                await rtzr.send_bytes(base64.b64decode(event["media"]["payload"]))
            elif kind == "start":
                stream_sid = event["start"]["streamSid"]
            elif kind == "stop":
                break
        await rtzr.send_str("EOS")
        await asyncio.wait_for(answering, 5)
    except asyncio.TimeoutError:
        pass
    finally:
        answering.cancel()
        await rtzr.close()
        await twilio.close()
    return twilio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--loop", choices=LOOPS, default="auto")
    args = parser.parse_args()

    async def serve() -> None:
        app = web.Application()
        app[TOKEN] = {}
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        app.router.add_get("/twilio/media", media)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(f"floor handler listening on http://127.0.0.1:{args.port}", flush=True)
        await asyncio.Event().wait()

    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
