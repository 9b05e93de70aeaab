"""Soak: hostile and churning clients against ``fakertzr serve`` and ``aicall serve`` (a benchmark, never a test).

    python bench/soak.py fakertzr [--cycles 10000 --aborts 2000 --closes 300]
    python bench/soak.py aicall [--hostile 1000]
    python bench/soak.py shutdown [--cycles 40 --streams 10]

Each server runs in its own process. Before, during and after the load, a normal client measures its own
latency (fakertzr: a whole seed call streamed as fast as the fake takes it, to the close after EOS; aicall: the
seed call played by the harness's fake Twilio as fast as aicall takes it, its first turn from the frame that ends
the caller's speech to the first bot media frame), so the "before" column is the same run's baseline. RSS and open file descriptors come from /proc,
tasks from the server (``/_fake/state``, ``/healthz``). ``fakertzr`` also loops the clean close of the
hardening issue (close 1000 after the first final, a client still streaming) and counts lost finals.
``shutdown`` cycles ``fakertzr serve`` through its four ends (SIGTERM of one process; SIGTERM of a fake with two
workers; one worker SIGKILLed; the supervisor SIGKILLed), each with streams open, and counts the streams that got
a close frame, those lost without one (only a killed worker's own may be), and processes left alive.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchlib import percentile, report  # noqa: E402
from bench.fakertzr_bench import get_token, start_server  # noqa: E402
from contract_tests.rtzr.client import process_exited, stream_through_a_close  # noqa: E402
from callaudio.g711 import pcm16_to_ulaw  # noqa: E402
from fakertzr.fixture import load_fixture  # noqa: E402
from harness.fixture import load_call  # noqa: E402
from harness.load.stats import turn_outcomes  # noqa: E402
from harness.replay.targets import free_port  # noqa: E402
from harness.fakes.twilio_player import TwilioPlayer  # noqa: E402

SEED = ROOT / "fixtures" / "calls" / "seed-three-turns"

SCRIPT = load_fixture(SEED)
PCM = SCRIPT.audio.astype("<i2").tobytes()
CONCURRENCY = 50


FAKES = """
import asyncio, sys
sys.path.insert(0, {root!r})
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer
from harness.fakes.llm import FakeLlm, FakeLlmConfig
from harness.fakes.tts import FakeTts

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


def resources(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def bounded(n: int, one: Callable[[int], Awaitable[None]], progress: str) -> dict[str, int]:
    """Run ``one(i)`` for i < n, CONCURRENCY at a time; count the outcomes by exception type."""
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded(i: int) -> None:
        async with gate:
            try:
                await one(i)
                key = "ok"
            except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
                key = type(exc).__name__
            outcomes[key] = outcomes.get(key, 0) + 1
            if (i + 1) % max(1, n // 10) == 0:
                print(f"  {progress}: {i + 1}/{n}", file=sys.stderr, flush=True)

    await asyncio.gather(*(guarded(i) for i in range(n)))
    return outcomes


async def sample_during(measure: Callable[[], Awaitable[float]], load: Awaitable[dict[str, int]]) -> tuple[list[float], dict[str, int]]:
    """Measure the normal client over and over while ``load`` runs."""
    task = asyncio.ensure_future(load)
    samples: list[float] = []
    while not task.done():
        samples.append(await measure())
    return samples, task.result()


# ------------------------------------------------------------------ fakertzr
async def soak_fakertzr(cycles: int, aborts: int, closes: int) -> dict:
    proc, base = await start_server()
    ws_base = base.replace("http://", "ws://") + "/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        token = await get_token(session, base)
        auth = {"Authorization": f"Bearer {token}"}

        async def state() -> dict:
            async with session.get(f"{base}/_fake/state") as resp:
                return await resp.json()

        async def snapshot() -> dict:
            return {**resources(proc.pid), "tasks": (await state())["tasks"]}

        async def normal_stream() -> float:
            started = time.monotonic()
            async with session.ws_connect(ws_base, headers=auth) as ws:
                for i in range(0, len(PCM), 3200):
                    await ws.send_bytes(PCM[i : i + 3200])
                await ws.send_str("EOS")
                finals = sum([json.loads(m.data)["final"] async for m in ws if m.type == aiohttp.WSMsgType.TEXT])
            assert finals == 3, finals
            return (time.monotonic() - started) * 1000

        async def settle() -> None:
            for _ in range(600):  # the server lets go of aborted sockets on its own time
                if (await state())["active_streams"] == 0:
                    return
                await asyncio.sleep(0.05)  # polling a separate process's state

        async def cycle(i: int) -> None:
            async with session.ws_connect(ws_base, headers=auth) as ws:
                if i % 2:
                    await ws.send_bytes(PCM[:320])

        async def abort(i: int) -> None:
            ws = await session.ws_connect(ws_base, headers=auth)
            await ws.send_bytes(PCM[: 16000 + 160 * (i % 50)])  # 1 s and a bit: mid-utterance
            ws._response.connection.transport.abort()
            ws._response.connection.close()

        before = await snapshot()
        p_before = [await normal_stream() for _ in range(20)]
        started = time.monotonic()
        during, churn = await sample_during(normal_stream, bounded(cycles, cycle, "connect/close"))
        more, aborted = await sample_during(normal_stream, bounded(aborts, abort, "aborts"))
        load_s = time.monotonic() - started
        await settle()
        p_after = [await normal_stream() for _ in range(20)]
        after = await snapshot()
        final_state = await state()

        # the clean close of item 1, looped: close 1000 right after the first final, the client still sending
        async with session.post(f"{base}/_fake/faults", json={"type": "close", "code": 1000, "after_finals": 1,
                                                              "times": closes}) as resp:
            assert resp.status == 200, await resp.text()
        outcomes = [await stream_through_a_close(ws_base, token, PCM) for _ in range(closes)]
        lost = sum(o != (1, 1000) for o in outcomes)
    proc.terminate()
    await proc.wait()
    return {
        "bench": "soak_fakertzr", "connect_close_cycles": cycles, "cycle_outcomes": churn,
        "aborts_mid_stream": aborts, "abort_outcomes": aborted, "load_s": round(load_s, 1),
        "journal": {"kept": final_state["connections"], "total": final_state["connections_total"]},
        "before": before, "after": after,
        "normal_stream_ms_p50": {"before": percentile(p_before, 50), "during": percentile(during + more, 50),
                                 "after": percentile(p_after, 50)},
        "normal_streams_during": len(during + more),
        "clean_closes": closes, "clean_closes_lost_final": lost,
    }


# -------------------------------------------------------------------- aicall
ULAW = pcm16_to_ulaw(SCRIPT.audio)
FRAMES = [base64.b64encode(ULAW[i : i + 160]).decode() for i in range(0, len(ULAW), 160)]


def start_message(i: int, **changes) -> str:
    start = {"streamSid": stream_sid(i), "accountSid": "AC" + "0" * 32, "callSid": call_sid(i), "tracks": ["inbound"],
             "customParameters": {"caller": "+821000000000"},
             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}, **changes}
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid(i), "start": start})


def media_message(k: int) -> str:
    return json.dumps({"event": "media", "media": {"track": "inbound", "chunk": str(k + 1), "timestamp": str(k * 20),
                                                   "payload": FRAMES[k % len(FRAMES)]}})


HOSTILE_KINDS = ("never starts", "malformed start", "forged callSid", "junk mid-call", "silent after start",
                 "abort mid-call", "binary junk", "oversized frame")


async def hostile_socket(session: aiohttp.ClientSession, url: str, i: int) -> None:
    """One of HOSTILE_KINDS (by i), kept open until aicall closes it (or it drops the line itself)."""
    kind = HOSTILE_KINDS[i % len(HOSTILE_KINDS)]
    sid = 10_000_000 + i
    ws = await session.ws_connect(url, max_msg_size=0)
    await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    if kind == "malformed start":
        await ws.send_str(start_message(sid, mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 1e999}))
    elif kind == "forged callSid":
        await ws.send_str(start_message(sid, callSid=call_sid(sid) + "\n2026 ERROR forged \x1b[31m"))
    elif kind in ("junk mid-call", "silent after start", "abort mid-call"):
        await ws.send_str(start_message(sid))
        for k in range(50):
            await ws.send_str(media_message(k))
        if kind == "junk mid-call":
            for junk in ("[" * 50_000, '{"event": "stop", "stop": "x"}', '{"event": "media", "media": {"timestamp": 1e999}}',
                         '{"event": "mark", "mark": {"name": {"a": 1}}}', "null", start_message(sid, callSid={"a": 1})):
                await ws.send_str(junk)
            await ws.send_str(json.dumps({"event": "stop", "stop": {"callSid": call_sid(sid)}}))
        elif kind == "abort mid-call":
            ws._response.connection.transport.abort()
            ws._response.connection.close()
            return
    elif kind == "binary junk":
        await ws.send_bytes(random.randbytes(512))
    elif kind == "oversized frame":
        await ws.send_str("x" * ((1 << 20) + 1))
    await asyncio.wait_for(ws.receive(), 120)  # aicall must close it: no start, silence, stop, or too big
    await ws.close()


async def soak_aicall(hostile: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        fakes, aicall, url = await start_stack(workdir, {"AICALL_TWILIO_SILENCE_S": "3"})
        base = url.replace("ws://", "http://").rsplit("/twilio", 1)[0]
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

                async def health() -> dict:
                    async with session.get(f"{base}/healthz") as resp:
                        return await resp.json()

                async def snapshot() -> dict:
                    return {**resources(aicall.pid), "tasks": (await health())["tasks"]}

                seed_call = load_call(SEED)

                async def normal_call() -> float:
                    """The seed call played by the harness's fake Twilio as fast as aicall takes it: its first turn."""
                    player = TwilioPlayer(session, url, seed_call, pace=None)
                    await player.run()
                    first = turn_outcomes(seed_call, player.record, time.monotonic(), final=True)[0]
                    return first.latency_ms if first and first.latency_ms is not None else float("nan")

                async def settle() -> None:
                    for _ in range(1200):
                        if (await health())["sockets"] == 0:
                            return
                        await asyncio.sleep(0.05)  # polling a separate process's state

                before = await snapshot()
                p_before = [await normal_call() for _ in range(10)]
                started = time.monotonic()
                during, outcomes = await sample_during(normal_call, bounded(
                    hostile, lambda i: hostile_socket(session, url, i), "hostile sockets"))
                load_s = time.monotonic() - started
                await settle()
                p_after = [await normal_call() for _ in range(10)]
                await settle()
                after = await snapshot()
        finally:
            for proc in (aicall, fakes):
                proc.terminate()
                await proc.wait()
        log = (workdir / "aicall.log").read_text(errors="replace")
    return {
        "bench": "soak_aicall", "hostile_sockets": hostile, "kinds": list(HOSTILE_KINDS), "outcomes": outcomes,
        "load_s": round(load_s, 1), "before": before, "after": after,
        "one_turn_call_ms_p50": {"before": percentile(p_before, 50), "during": percentile(during, 50),
                                 "after": percentile(p_after, 50)},
        "normal_calls_during": len(during),
        "log": {"bytes": len(log), "lines": log.count("\n"), "tracebacks": log.count("Traceback"),
                "unprintable_chars": sum(1 for line in log.splitlines() for c in line if not c.isprintable())},
    }


SHUTDOWNS = ("sigterm", "workers_sigterm", "worker_killed", "supervisor_killed")


async def _stream_open(base: str, token: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()  # a connection of its own: the kernel spreads them over the workers
    url = base.replace("http", "ws", 1) + "/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
    ws = await session.ws_connect(url, headers={"Authorization": f"bearer {token}"})
    await ws.send_bytes(PCM[:16000])  # a second of the call; the stream stays open
    return session, ws


async def _close_code(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> int:
    try:
        async for _ in ws:
            pass
        return int(ws.close_code or 1006)
    finally:
        await session.close()


async def soak_shutdown(cycles: int, streams: int) -> dict:
    tally = {mode: {"cycles": 0, "streams": 0, "closed_with_a_frame": 0, "lost_on_the_killed_worker": 0,
                    "lost_elsewhere": 0, "processes_left": 0, "exit_codes": {}} for mode in SHUTDOWNS}
    started = time.monotonic()
    for k in range(cycles):
        mode = SHUTDOWNS[k % len(SHUTDOWNS)]
        proc, base = await start_server(f"fakertzr:{1 if mode == 'sigterm' else 2}:auto")
        async with aiohttp.ClientSession() as session:
            token = await get_token(session, base)
            opened = [await _stream_open(base, token) for _ in range(streams)]
            async with session.get(f"{base}/_fake/state") as resp:
                state = await resp.json()
        workers = state.get("workers") or [{"pid": state["pid"], "active_streams": state["active_streams"]}]
        pids = [w["pid"] for w in workers]
        killed = 0
        if mode in ("sigterm", "workers_sigterm"):
            proc.send_signal(signal.SIGTERM)
        elif mode == "worker_killed":
            os.kill(workers[-1]["pid"], signal.SIGKILL)
            killed = workers[-1]["active_streams"]
        else:
            proc.kill()
        codes = await asyncio.wait_for(asyncio.gather(*(_close_code(*o) for o in opened)), 60)
        await asyncio.wait_for(proc.communicate(), 60)  # its stdout read to the end, then its exit
        code = proc.returncode
        row = tally[mode]
        row["cycles"] += 1
        row["streams"] += len(codes)
        row["closed_with_a_frame"] += sum(c != 1006 for c in codes)
        lost = sum(c == 1006 for c in codes)
        row["lost_on_the_killed_worker"] += min(lost, killed)
        row["lost_elsewhere"] += max(0, lost - killed)
        row["processes_left"] += sum([not await process_exited(pid, 20) for pid in pids])
        row["exit_codes"][str(code)] = row["exit_codes"].get(str(code), 0) + 1
        print(f"cycle {k + 1}/{cycles} {mode}: codes {sorted(set(codes))}, exit {code}", file=sys.stderr, flush=True)
    return {"bench": "soak_shutdown", "cycles": cycles, "streams_per_cycle": streams,
            "wall_s": round(time.monotonic() - started, 1), "by_end": tally}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fakertzr", help="connect/close churn, aborts mid-stream, the clean-close loop")
    f.add_argument("--cycles", type=int, default=10_000)
    f.add_argument("--aborts", type=int, default=2_000)
    f.add_argument("--closes", type=int, default=300)
    a = sub.add_parser("aicall", help="hostile Twilio sockets of every kind")
    a.add_argument("--hostile", type=int, default=1_000)
    d = sub.add_parser("shutdown", help="SIGTERM, a worker killed, the supervisor killed: streams closed with a frame?")
    d.add_argument("--cycles", type=int, default=40)
    d.add_argument("--streams", type=int, default=10)
    args = parser.parse_args()
    if args.command == "fakertzr":
        result = asyncio.run(soak_fakertzr(args.cycles, args.aborts, args.closes))
    elif args.command == "shutdown":
        result = asyncio.run(soak_shutdown(args.cycles, args.streams))
    else:
        result = asyncio.run(soak_aicall(args.hostile))
    report(result["bench"], result)


if __name__ == "__main__":
    main()
