"""Benchmarks of aicall (reported in closing notes; never asserted in tests).

    python bench/aicall_bench.py overhead --calls 20    # zero-latency fakes: final -> first media out
    python bench/aicall_bench.py calls --n 200          # N concurrent calls at real-time pace

Three processes: the fakes (fakertzr with the seed call, LLM and TTS, zero latency), ``aicall
serve``, and this driver, which plays the Twilio side. ``overhead`` reads aicall's own per-turn log
line (final received -> first media frame out). ``calls`` measures at the driver each turn's true
latency: from the frame that ends the caller's speech to the first bot media frame (it includes
the recognizer's epd_time, 0.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callaudio.g711 import pcm16_to_ulaw  # noqa: E402
from fakertzr.fixture import load_fixture  # noqa: E402
from bench.benchlib import cpu_seconds, percentile, report  # noqa: E402
from harness.targets import free_port  # noqa: E402

SEED = ROOT / "fixtures" / "calls" / "seed-three-turns"
FAKES = """
import asyncio, sys
sys.path.insert(0, {root!r})
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer
from harness.fake_llm import FakeLlm, FakeLlmConfig
from harness.fake_tts import FakeTts

async def main():
    rtzr = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, max_streams=100000, fixtures=[{seed!r}]))
    llm = FakeLlm(FakeLlmConfig(reply=lambda r: "네, 알겠습니다. 도와드릴게요."))
    async with FakeRtzrServer(rtzr) as r, llm.server() as l, FakeTts().server() as t:
        print(r.base_url, l.base_url, t.base_url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def start_stack(workdir: Path, extra_env: dict[str, str] | None = None):
    fakes = await asyncio.create_subprocess_exec(sys.executable, "-c", FAKES.format(root=str(ROOT), seed=str(SEED)),
                                                 stdout=asyncio.subprocess.PIPE)
    rtzr_url, llm_url, tts_url = (await fakes.stdout.readline()).decode().split()
    port = free_port()
    env = {**os.environ, "RTZR_CLIENT_ID": "fakertzr-client", "RTZR_CLIENT_SECRET": "fakertzr-secret",
           "RTZR_API_BASE": rtzr_url, "OPENAI_BASE_URL": f"{llm_url}/v1", "OPENAI_API_KEY": "bench",
           "TTS_BASE_URL": f"{tts_url}/v1", "AICALL_DB": str(workdir / "calls.db"), **(extra_env or {})}
    log = (workdir / "aicall.log").open("w")
    aicall = await asyncio.create_subprocess_exec(sys.executable, "-m", "aicall.cli", "serve", "--port", str(port),
                                                  env=env, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=workdir)
    await aicall.stdout.readline()
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # the port opens after the banner
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)  # waiting for a process we started to listen
    return fakes, aicall, f"ws://127.0.0.1:{port}/twilio/media"


def call_sid(i: int) -> str:
    return f"CA{i:032x}"  # Twilio's shape: aicall refuses any other


def stream_sid(i: int) -> str:
    return f"MZ{i:032x}"


class Call:
    """The Twilio side of one call: paced media out, marks echoed, first media per turn timed."""

    def __init__(self, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.index, self.ws = index, ws
        self.seq = 0
        self.speech_end_sent: dict[int, float] = {}
        self.first_media: dict[int, float] = {}
        self.answered = asyncio.Event()
        self.turn = 0

    async def send(self, event: str, **body) -> None:
        self.seq += 1
        await self.ws.send_str(json.dumps({"event": event, "sequenceNumber": str(self.seq), "streamSid": stream_sid(self.index), **body}))

    async def read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data["event"] == "media" and self.turn and self.turn not in self.first_media:
                self.first_media[self.turn] = time.monotonic()
                self.answered.set()
            elif data["event"] == "mark":
                await self.send("mark", mark={"name": data["mark"]["name"]})


async def run_calls(n: int, ws_url: str, paced: bool, ramp_s: float) -> tuple[list[Call], float]:
    script = load_fixture(SEED)
    ulaw = pcm16_to_ulaw(script.audio)
    frames = [base64.b64encode(ulaw[i : i + 160]).decode() for i in range(0, len(ulaw), 160)]
    ends = [int(np.ceil(u.end_ms / 20)) for u in script.utterances]  # frame index completing each utterance
    calls = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for i in range(n):
            call = Call(i, await session.ws_connect(ws_url))
            await call.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await call.send("start", start={"streamSid": stream_sid(i), "accountSid": "AC", "callSid": call_sid(i),
                                            "tracks": ["inbound"], "customParameters": {}, "mediaFormat":
                                            {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
            calls.append(call)
        readers = [asyncio.create_task(c.read()) for c in calls]
        gc.collect()
        gc.freeze()
        t0 = time.monotonic() + 0.2
        offsets = [ramp_s * i / n for i in range(n)]
        next_frame = [0] * n
        wall0 = time.monotonic()
        while any(k < len(frames) for k in next_frame):
            now = time.monotonic()
            for i, call in enumerate(calls):
                k = next_frame[i]
                if k < len(frames) and (not paced or now >= t0 + offsets[i] + k * 0.02):
                    await call.send("media", media={"track": "inbound", "chunk": str(k + 1), "timestamp": str(k * 20), "payload": frames[k]})
                    if k + 1 in ends:
                        turn = ends.index(k + 1) + 1
                        call.speech_end_sent[turn] = time.monotonic()
                        call.turn = turn
                        call.answered.clear()
                    if not paced and k + 1 - 35 in ends:  # 700 ms after the speech: wait for the reply
                        await asyncio.wait_for(call.answered.wait(), 30)
                    next_frame[i] = k + 1
            if paced:
                await asyncio.sleep(0.005)  # the pacing tick of the simulated phone network
        wall = time.monotonic() - wall0
        for call in calls:
            await call.send("stop", stop={"accountSid": "AC", "callSid": call_sid(call.index)})
        await asyncio.wait_for(asyncio.gather(*readers), 60)
    return calls, wall


async def bench(kind: str, n: int, ramp_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        fakes, aicall, ws_url = await start_stack(workdir)
        cpu0_aicall, cpu0_fakes = cpu_seconds(aicall.pid), cpu_seconds(fakes.pid)
        try:
            if kind == "calls":
                calls, wall = await run_calls(n, ws_url, paced=True, ramp_s=ramp_s)
            else:  # one call after another, audio as fast as aicall takes it
                calls, wall = [], 0.0
                for _ in range(n):
                    one, took = await run_calls(1, ws_url, paced=False, ramp_s=0.0)
                    calls, wall = calls + one, wall + took
        finally:
            cpu_aicall, cpu_fakes = cpu_seconds(aicall.pid) - cpu0_aicall, cpu_seconds(fakes.pid) - cpu0_fakes
            for proc in (aicall, fakes):
                proc.terminate()
                await proc.wait()
        log = (workdir / "aicall.log").read_text()
    overhead = [float(m) for m in re.findall(r"final_to_first_media_ms=([\d.]+)", log)]
    latencies = [(c.first_media[t] - c.speech_end_sent[t]) * 1000 for c in calls for t in c.first_media if t in c.speech_end_sent]
    answered = sum(len(c.first_media) for c in calls)
    return {
        "bench": kind, "calls": n, "turns_answered": answered, "turns_expected": 3 * n,
        "errors_logged": len(re.findall(r" ERROR | event=\w+_failed", log)),
        "handler_final_to_first_media_ms_p50": percentile(overhead, 50),
        "handler_final_to_first_media_ms_p99": percentile(overhead, 99),
        "turn_latency_ms_p50": percentile(latencies, 50), "turn_latency_ms_p99": percentile(latencies, 99),
        "wall_s": round(wall, 2),
        "aicall_cpu_percent": round(100 * cpu_aicall / wall, 1), "fakes_cpu_percent": round(100 * cpu_fakes / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    o = sub.add_parser("overhead", help="calls one after another, audio as fast as aicall takes it")
    o.add_argument("--calls", type=int, default=20)
    c = sub.add_parser("calls", help="concurrent calls at real-time pace")
    c.add_argument("--n", type=int, default=200)
    c.add_argument("--ramp", type=float, default=2.0)
    args = parser.parse_args()
    if args.command == "overhead":
        result = asyncio.run(bench("overhead", args.calls, 0.0))
    else:
        result = asyncio.run(bench("calls", args.n, args.ramp))
    report(f"aicall_{result['bench']}", result)

if __name__ == "__main__":
    main()
