"""Benchmarks of ``fakertzr serve`` (reported in closing notes; never asserted in tests).

    python bench/fakertzr_bench.py streams --n 500     # N real-time streams at once (--server floor|fakertzr:W:LOOP)
    python bench/fakertzr_bench.py curve               # streams 250..1500: the floor, 1 and 2 workers, uvloop on/off
    python bench/fakertzr_bench.py throughput          # one connection fed as fast as possible, fakertzr and floor
    python bench/fakertzr_bench.py journal             # a small request's worst latency while the journal is read

Every comparison runs its baseline in the same run: ``bench/floor_rtzr.py``, the least an aiohttp server
can do for a stream (read every frame, send the same results, no recognition). Figures from one machine are
only read as ratios to it.

``streams``: every stream plays the seed call in 20 ms LINEAR16 frames at real-time pace. Each
result's lateness is measured at the client: when it arrived, minus when the client sent the
frame that completed the audio the result was due at (the fixture's word end for a partial,
utterance end + epd_time for a final). ``server_internal`` is the same delay as the fake's
journal sees it (frame read -> result written), so the rest is socket queueing and transport;
``client late`` is how late this client's own event loop ran a 10 ms timer (its share of the rest).
CPU of the server and of this client comes from /proc. Results are appended to
``bench/results/*.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fakertzr.fixture import load_fixture  # noqa: E402
from bench.benchlib import percentile, report  # noqa: E402
from harness.load.capacity import process_group_cpu_s  # noqa: E402
from harness.replay.loop_lag import LoopLag  # noqa: E402

SEED = ROOT / "fixtures" / "calls" / "seed-three-turns"
FRAME_MS = 20
EPD_MS = 500


def server_parts(server: str) -> tuple[str, str, str]:
    """``floor[:WORKERS:LOOP]`` or ``fakertzr:WORKERS:LOOP`` as (kind, workers, loop)."""
    kind, workers, loop = (server.split(":") + ["1", "auto"])[:3]
    return kind, workers, loop


async def start_server(server: str = "fakertzr:1:auto", *extra: str):
    """``floor[:WORKERS:LOOP]`` or ``fakertzr:WORKERS:LOOP``, in a process group of its own (CPU summed over it)."""
    kind, workers, loop = server_parts(server)
    if kind == "floor":
        command = [sys.executable, str(ROOT / "bench" / "floor_rtzr.py"), "--workers", workers, "--loop", loop]
    elif kind == "fakertzr":
        command = [sys.executable, "-m", "fakertzr.cli", "serve", "--port", "0", "--script", str(SEED),
                   "--time-scale", "0", "--max-streams", "100000", "--log-level", "WARNING", "--workers", workers,
                   "--loop", loop, *extra]
    else:
        raise SystemExit(f"--server: floor[:W:LOOP] or fakertzr:W:LOOP, got {server!r}")
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    line = (await proc.stdout.readline()).decode()
    base = re.search(r"(http://[\d.:]+)", line).group(1)
    return proc, base


async def stop_server(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    await proc.wait()


def server_cpu(proc) -> float:
    return process_group_cpu_s(proc.pid) or 0.0


async def get_token(session: aiohttp.ClientSession, base: str) -> str:
    form = {"client_id": "fakertzr-client", "client_secret": "fakertzr-secret"}
    async with session.post(f"{base}/v1/authenticate", data=form) as resp:
        return (await resp.json())["access_token"]


def due_positions(script) -> dict[tuple[int, str, bool], float]:
    """(seq, text, final) -> audio ms at which the fake owes that result."""
    due = {}
    for seq, utt in enumerate(script.utterances):
        for k, word in enumerate(utt.words):
            due[(seq, " ".join(w.text for w in utt.words[: k + 1]), False)] = word.end_ms
        due[(seq, utt.text, True)] = utt.end_ms + EPD_MS
    return due


async def bench_streams(n: int, ramp_s: float, server: str = "fakertzr:1:auto") -> dict:
    script = load_fixture(SEED)
    pcm = script.audio.astype("<i2").tobytes()
    frame_bytes = 8 * FRAME_MS * 2
    frames = [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]
    due = due_positions(script)
    proc, base = await start_server(server)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        token = await get_token(session, base)
        url = f"{base.replace('http', 'ws')}/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16&epd_time={EPD_MS / 1000}"
        sockets = []
        for i in range(n):
            sockets.append(await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, autoping=True))
        sent_at = np.zeros((n, len(frames)))  # one array: no per-frame objects for the GC to walk
        lateness: list[float] = []
        samples: list[tuple[float, float, bool]] = []
        unexpected = 0
        received = [0] * n

        async def reader(i: int, ws) -> None:
            nonlocal unexpected
            async for msg in ws:
                now = time.monotonic()
                data = json.loads(msg.data)
                key = (data["seq"], data["alternatives"][0]["text"], data["final"])
                if key not in due:
                    unexpected += 1
                    continue
                frame = min(len(frames) - 1, int(np.ceil(due[key] / FRAME_MS)) - 1)
                lateness.append((now - sent_at[i, frame]) * 1000.0)
                samples.append((now - t0, lateness[-1], data["final"]))
                received[i] += 1

        readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
        # stagger stream starts over ramp_s so their frames do not all land in one tick
        offsets = [ramp_s * i / n for i in range(n)]
        t0 = time.monotonic() + 0.2
        cpu0_server, cpu0_client, wall0 = server_cpu(proc), time.process_time(), time.monotonic()
        client_lag = LoopLag()  # how late this client's own loop runs: every lateness above includes up to that
        client_lag.start()
        tick = 0.005
        gc.collect()
        gc.freeze()  # the measuring client must not pause for a collection mid-run
        next_frame = [0] * n
        while True:
            now = time.monotonic()
            active = False
            for i, ws in enumerate(sockets):
                k = next_frame[i]
                if k >= len(frames):
                    continue
                active = True
                if now >= t0 + offsets[i] + k * FRAME_MS / 1000.0:
                    sent_at[i, k] = time.monotonic()
                    await ws.send_bytes(frames[k])
                    next_frame[i] = k + 1
            if not active:
                break
            await asyncio.sleep(tick)
        for ws in sockets:
            await ws.send_str("EOS")
        await asyncio.wait_for(asyncio.gather(*readers), 60)
        wall = time.monotonic() - wall0
        client_lag.stop()
        client_late = client_lag.take()
        cpu_server, cpu_client = server_cpu(proc) - cpu0_server, time.process_time() - cpu0_client
        connections, since = [], 0
        while since is not None and not server.startswith("floor"):  # the journal comes in pages
            async with session.get(f"{base}/_fake/journal", params={"since": since, "limit": 500}) as resp:
                page = await resp.json()
            connections += page["connections"]
            since = page["next"]
        inside = sorted((m["sent_wall"] - m["due_wall"]) * 1000.0 for c in connections for m in c["messages"])
    await stop_server(proc)
    expected_per_stream = len(due)
    lat = sorted(lateness)
    worst = max(samples, key=lambda x: x[1])
    return {
        "bench": "streams",
        "server": server,
        "streams": n,
        "streams_complete": sum(r == expected_per_stream for r in received),
        "results": len(lat),
        "unexpected_results": unexpected,
        "lateness_ms_p50": round(statistics.median(lat), 2),
        "lateness_ms_p99": percentile(lat, 99),
        "lateness_ms_p99_partials": percentile([b for _, b, final in samples if not final], 99),
        "lateness_ms_p99_finals": percentile([b for _, b, final in samples if final], 99),
        "lateness_ms_max": round(lat[-1], 2),
        "worst_at_s": round(worst[0], 2),
        "server_internal_ms_p50": round(statistics.median(inside), 3) if inside else None,
        "server_internal_ms_p99": percentile(inside, 99) if inside else None,
        "client_late_ms_p99": percentile(client_late, 99),
        "wall_s": round(wall, 2),
        "server_cpu_percent": round(100 * cpu_server / wall, 1),
        "client_cpu_percent": round(100 * cpu_client / wall, 1),
    }


async def bench_throughput(repeats: int, chunk: int, connections: int, servers: list[str]) -> dict:
    """One connection at a time fed as fast as it is read, for each server in the same run: how many times
    real time, and the server's CPU per second of audio."""
    script = load_fixture(SEED)
    pcm = script.audio.astype("<i2").tobytes() * repeats
    audio_s = len(pcm) / 2 / 8000
    rows = {}
    for server in servers:
        proc, base = await start_server(server)
        walls, finals, cpu = [], [], []
        async with aiohttp.ClientSession() as session:
            token = await get_token(session, base)
            url = f"{base.replace('http', 'ws')}/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
            for _ in range(connections):
                ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, max_msg_size=0)
                got = []

                async def read() -> None:
                    async for msg in ws:
                        data = json.loads(msg.data)
                        if data["final"]:
                            got.append(data["alternatives"][0]["text"])

                cpu0, t = server_cpu(proc), time.monotonic()
                reader = asyncio.create_task(read())
                for i in range(0, len(pcm), chunk):
                    await ws.send_bytes(pcm[i : i + chunk])
                await ws.send_str("EOS")
                await reader
                walls.append(time.monotonic() - t)
                cpu.append(server_cpu(proc) - cpu0)
                finals.append(len(got))
        await stop_server(proc)
        rows[server] = {"finals_per_connection": sorted(set(finals)),
                        "realtime_factor_median": round(audio_s / statistics.median(walls), 1),
                        "realtime_factor_best": round(audio_s / min(walls), 1),
                        "server_cpu_ms_per_audio_s": round(1000 * statistics.median(cpu) / audio_s, 3)}
    floor = next((r for k, r in rows.items() if k.startswith("floor")), None)
    for row in rows.values():
        if floor and floor["server_cpu_ms_per_audio_s"]:
            row["cpu_vs_floor"] = round(row["server_cpu_ms_per_audio_s"] / floor["server_cpu_ms_per_audio_s"], 2)
    return {"bench": "throughput", "audio_s_per_connection": round(audio_s, 1), "chunk_bytes": chunk,
            "connections": connections, "servers": rows}


async def bench_journal(streams: int) -> dict:
    """Fill the journal with whole seed streams, then time a small request (``/_fake/state``) over and over:
    alone (the baseline), and while a default page and a whole journal are read."""
    proc, base = await start_server("fakertzr:1:auto")
    script = load_fixture(SEED)
    audio = script.audio.astype("<i2").tobytes()
    url = base.replace("http://", "ws://") + "/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        headers = {"Authorization": f"Bearer {await get_token(session, base)}"}
        gate = asyncio.Semaphore(50)

        async def one() -> None:
            async with gate, session.ws_connect(url, headers=headers) as ws:
                for k in range(0, len(audio), 8000):
                    await ws.send_bytes(audio[k : k + 8000])
                await ws.send_str("EOS")
                async for _ in ws:
                    pass

        await asyncio.gather(*(one() for _ in range(streams)))

        async def worst_state_ms(while_reading: str | None) -> tuple[float, int]:
            done, worst, size = asyncio.Event(), 0.0, 0

            async def probe() -> None:
                nonlocal worst
                while not done.is_set():
                    t = time.monotonic()
                    async with session.get(f"{base}/_fake/state") as resp:
                        await resp.read()
                    worst = max(worst, time.monotonic() - t)

            prober = asyncio.create_task(probe())
            if while_reading is None:
                await asyncio.sleep(1.0)  # the baseline: probing alone for a second
            else:
                async with session.get(f"{base}/_fake/journal{while_reading}") as resp:
                    size = len(await resp.read())
            done.set()
            await prober
            return round(worst * 1000, 1), size

        alone, _ = await worst_state_ms(None)
        page, page_bytes = await worst_state_ms("")
        whole, whole_bytes = await worst_state_ms("?limit=10000")
    await stop_server(proc)
    return {"bench": "journal", "streams": streams, "state_worst_ms_alone": alone,
            "state_worst_ms_during_default_page": page, "default_page_kb": page_bytes // 1024,
            "state_worst_ms_during_whole_journal": whole, "whole_journal_kb": whole_bytes // 1024}


async def bench_curve(counts: list[int], servers: list[str], ramp_s: float) -> dict:
    """Real-time streams at each count for each server, the floor among them: completeness, lateness and
    CPU per stream, with each server's CPU per stream as a multiple of the floor's at the same count (the
    floor with as many workers when it ran, else the first floor)."""
    rows = []
    for n in counts:
        at_n = {}
        for server in servers:
            result = await bench_streams(n, ramp_s, server)
            at_n[server] = result
            print(json.dumps(result), file=sys.stderr, flush=True)
        floors = {server_parts(k)[1]: r for k, r in at_n.items() if k.startswith("floor")}
        for server, r in at_n.items():
            floor = floors.get(server_parts(server)[1], next(iter(floors.values()), None))  # as many workers, if run
            per_stream = r["server_cpu_percent"] / n
            rows.append({"streams": n, "server": server, "complete": r["streams_complete"],
                         "lateness_ms_p99": r["lateness_ms_p99"], "client_late_ms_p99": r["client_late_ms_p99"],
                         "server_internal_ms_p99": r["server_internal_ms_p99"],
                         "server_cpu_percent": r["server_cpu_percent"],
                         "client_cpu_percent": r["client_cpu_percent"],
                         "cpu_per_stream_vs_floor": round(per_stream / (floor["server_cpu_percent"] / n), 2)
                         if floor and floor["server_cpu_percent"] else None})
    print(f"{'streams':>7} {'server':<22} {'complete':>8} {'p99 ms':>8} {'inside':>8} {'client late':>11} "
          f"{'server CPU':>10} {'client CPU':>10} {'x floor':>7}", file=sys.stderr)
    for row in rows:
        print(f"{row['streams']:>7} {row['server']:<22} {row['complete']:>8} {row['lateness_ms_p99']:>8} "
              f"{row['server_internal_ms_p99']!s:>8} {row['client_late_ms_p99']!s:>11} "
              f"{row['server_cpu_percent']:>9}% {row['client_cpu_percent']:>9}% {row['cpu_per_stream_vs_floor']!s:>7}",
              file=sys.stderr)
    return {"bench": "curve", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("streams")
    s.add_argument("--n", type=int, default=500)
    s.add_argument("--ramp", type=float, default=1.0, help="seconds over which stream starts are spread")
    s.add_argument("--server", default="fakertzr:1:auto", help="floor[:W:LOOP] or fakertzr:W:LOOP")
    c = sub.add_parser("curve")
    c.add_argument("--streams", default="250,500,750,1000,1250,1500")
    c.add_argument("--servers", default="floor:1:auto,fakertzr:1:asyncio,fakertzr:1:uvloop,fakertzr:2:uvloop")
    c.add_argument("--ramp", type=float, default=1.0)
    t = sub.add_parser("throughput")
    t.add_argument("--repeats", type=int, default=20, help="the seed call repeated this often per connection")
    t.add_argument("--chunk", type=int, default=320, help="bytes per frame (default 320: 20 ms of LINEAR16)")
    t.add_argument("--connections", type=int, default=5)
    t.add_argument("--servers", default="floor:1:auto,fakertzr:1:asyncio,fakertzr:1:uvloop")
    j = sub.add_parser("journal", help="does reading the journal stall the server?")
    j.add_argument("--streams", type=int, default=2500)
    args = parser.parse_args()
    if args.command == "streams":
        result = asyncio.run(bench_streams(args.n, args.ramp, args.server))
    elif args.command == "curve":
        result = asyncio.run(bench_curve([int(n) for n in args.streams.split(",")], args.servers.split(","), args.ramp))
    elif args.command == "journal":
        result = asyncio.run(bench_journal(args.streams))
    else:
        result = asyncio.run(bench_throughput(args.repeats, args.chunk, args.connections, args.servers.split(",")))
    report(f"{result['bench']}", result)

if __name__ == "__main__":
    main()
