"""``fakertzr serve`` stops without losing a stream (issue 22, items 1-3): on SIGTERM every open stream gets a
close frame (1001 going away), in one process and in each worker; a worker that dies takes only its own
streams; workers whose supervisor was killed stop too, instead of holding the port beside a new fake."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

from .client import process_exited
from .conftest import SEED_DIR
from .test_standalone import started
from .test_workers import PCM


async def open_streams(session: aiohttp.ClientSession, base: str, n: int) -> list[aiohttp.ClientWebSocketResponse]:
    async with session.post(f"{base}/v1/authenticate", data={"client_id": "fakertzr-client",
                                                              "client_secret": "fakertzr-secret"}) as resp:
        token = (await resp.json())["access_token"]
    url = base.replace("http", "ws", 1) + "/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
    streams = []
    for _ in range(n):  # a connection each: the kernel spreads them over the workers
        fresh = aiohttp.ClientSession()
        ws = await fresh.ws_connect(url, headers={"Authorization": f"bearer {token}"})
        ws._own_session = fresh  # type: ignore[attr-defined]
        await ws.send_bytes(PCM[:16000])  # a second of the call, then the stream stays open
        streams.append(ws)
    return streams


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server ends the stream: the close code it sent (1006: none came)."""
    try:
        async for _ in ws:
            pass
        return ws.close_code
    finally:
        await ws._own_session.close()  # type: ignore[attr-defined]


async def test_sigterm_closes_every_open_stream_with_1001_in_one_process():
    proc, base, _ = await started("--script", str(SEED_DIR), "--drain-s", "5")
    async with aiohttp.ClientSession() as session:
        streams = await open_streams(session, base, 10)
    proc.terminate()
    codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in streams)), 20)
    assert codes == [1001] * 10, codes  # it was 1006 for every one: the process exited at once
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)  # its pipes read to the end, then its exit
    assert proc.returncode == 0 and b"stopping: 10 open stream(s) closed with 1001" in stderr


async def test_sigterm_closes_every_stream_of_every_worker():
    proc, base, _ = await started("--workers", "2", "--script", str(SEED_DIR), "--shutdown-code", "1012")
    async with aiohttp.ClientSession() as session:
        streams = await open_streams(session, base, 20)
    proc.terminate()
    codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in streams)), 30)
    assert codes == [1012] * 20, codes
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0


async def test_a_worker_killed_takes_only_its_own_streams():
    proc, base, _ = await started("--workers", "2", "--script", str(SEED_DIR))
    async with aiohttp.ClientSession() as session:
        streams = await open_streams(session, base, 20)
        async with session.get(f"{base}/_fake/state") as resp:
            workers = (await resp.json())["workers"]
    victim = workers[1]
    os.kill(victim["pid"], signal.SIGKILL)
    codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in streams)), 30)
    assert sorted(codes) == [1001] * workers[0]["active_streams"] + [1006] * victim["active_streams"], (codes, workers)
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1  # a fake with a dead worker stops, as before


async def test_workers_stop_when_their_supervisor_is_killed():
    proc, base, _ = await started("--workers", "2", "--script", str(SEED_DIR))
    async with aiohttp.ClientSession() as session:
        streams = await open_streams(session, base, 6)
        async with session.get(f"{base}/_fake/state") as resp:
            pids = [w["pid"] for w in (await resp.json())["workers"]]
    proc.kill()  # (its stdout is the workers' too: proc.wait() returns once they are gone; read the streams first)
    codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in streams)), 30)
    await asyncio.wait_for(proc.communicate(), 30)
    assert codes == [1001] * 6, codes  # the orphans used to answer on, holding the port
    assert all([await process_exited(pid, 20) for pid in pids]), pids
