"""The floor the fakertzr benchmarks compare against: the least an aiohttp server can do for a stream.

It speaks just enough of RTZR's API for the benchmark client (a token, the streaming WebSocket), reads
every frame, and sends the same results fakertzr would send for the seed call (same count, same JSON
shape, ~150 bytes each) once the bytes received reach each result's due position. No recognition, no
alignment, no faults, no journal: what is left is aiohttp, the event loop and the sockets.

    python bench/floor_rtzr.py [--port 0] [--workers N] [--loop auto|uvloop|asyncio]

Prints ``floor listening on http://127.0.0.1:PORT`` once every worker listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import sys
from pathlib import Path

from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fakertzr.loops import LOOPS, loop_factory  # noqa: E402
from fakertzr.fixture import load_fixture  # noqa: E402

SEED = ROOT / "fixtures" / "calls" / "seed-three-turns"
EPD_MS = 500


def schedule(bytes_per_ms: float = 16.0) -> list[tuple[int, str]]:
    """(byte position at which it is due, result JSON) for the seed call, in due order: a partial at each word's
    end, a final at each utterance's end + epd (the results fakertzr sends for it)."""
    script = load_fixture(SEED)
    due = []
    for seq, utt in enumerate(script.utterances):
        start = round(utt.start_ms)
        for k, word in enumerate(utt.words):
            text = " ".join(w.text for w in utt.words[: k + 1])
            due.append((word.end_ms, {"seq": seq, "start_at": start, "duration": 0, "final": False,
                                      "alternatives": [{"text": text, "confidence": 0.9}]}))
        words = [{"text": "|" + w.text, "start_at": round(w.start_ms) - start, "duration": round(w.end_ms - w.start_ms)}
                 for w in utt.words]
        due.append((utt.end_ms + EPD_MS, {"seq": seq, "start_at": start, "duration": round(utt.end_ms) - start,
                                          "final": True, "alternatives": [{"text": utt.text, "confidence": 0.95,
                                                                           "words": words}]}))
    due.sort(key=lambda d: d[0])
    return [(int(at_ms * bytes_per_ms), json.dumps(result, ensure_ascii=False)) for at_ms, result in due]


SCHEDULE = schedule()
PERIOD = len(load_fixture(SEED).audio) * 2  # the seed call's bytes: audio beyond it is the call again


async def authenticate(request: web.Request) -> web.Response:
    await request.post()
    return web.json_response({"access_token": "floor", "expire_at": 4102444800})


async def streaming(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    await ws.prepare(request)
    received, i, n = 0, 0, len(SCHEDULE)
    next_due = SCHEDULE[0][0]
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            received += len(msg.data)
            while next_due <= received:  # the seed's results, again for every repeat of its audio
                await ws.send_str(SCHEDULE[i % n][1])
                i += 1
                next_due = SCHEDULE[i % n][0] + (i // n) * PERIOD
        elif msg.type == WSMsgType.TEXT and msg.data == "EOS":
            for k in range(i, -(-i // n) * n):  # the rest of the call in progress
                await ws.send_str(SCHEDULE[k % n][1])
            await ws.close()
    return ws


def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/v1/authenticate", authenticate)
    application.router.add_get("/v1/transcribe:streaming", streaming)
    return application


def _serve(port: int, loop: str, ready: multiprocessing.Queue) -> None:
    async def main() -> None:
        runner = web.AppRunner(app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
        ready.put(port)
        await asyncio.Event().wait()

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", choices=LOOPS, default="auto")
    args = parser.parse_args()
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    probe.bind(("127.0.0.1", args.port))
    port = probe.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()
    workers = [ctx.Process(target=_serve, args=(port, args.loop, ready), daemon=True) for _ in range(args.workers)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=60)
    probe.close()
    print(f"floor listening on http://127.0.0.1:{port} ({args.workers} worker(s))", flush=True)
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
