"""``fakertzr serve --workers 2``: one fake on two processes and one port. Streams spread over both workers;
a token from one opens streams on the other; faults and config set through either reach both; the journal
and state answer for both."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

from fakertzr.fixture import load_fixture

from .conftest import SEED_DIR
from .test_standalone import started, stop
from .test_streaming import SEED_TEXTS

STREAMS = 20  # spread by the kernel's hash over two workers: all on one has a chance of 2 ** -19
PCM = load_fixture(SEED_DIR).audio.astype("<i2").tobytes()


async def stream(session: aiohttp.ClientSession, base: str, token: str) -> tuple[int, list[str]]:
    """The seed call's audio, fast, then EOS: (handshake status, finals)."""
    url = base.replace("http", "ws", 1) + "/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
    try:
        ws = await session.ws_connect(url, headers={"Authorization": f"bearer {token}"})
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status, []
    finals = []
    async with ws:
        for i in range(0, len(PCM), 3200):
            await ws.send_bytes(PCM[i : i + 3200])
        await ws.send_str("EOS")
        async for msg in ws:
            result = msg.json()
            if result.get("final"):
                finals.append(result["alternatives"][0]["text"])
    return 101, finals


async def test_two_workers_answer_as_one_fake():
    proc, base, _ = await started("--workers", "2", "--script", str(SEED_DIR), "--max-streams", "100")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/authenticate", data={"client_id": "fakertzr-client",
                                                                      "client_secret": "fakertzr-secret"}) as resp:
                token = (await resp.json())["access_token"]  # issued by one worker, used on both
            results = await asyncio.gather(*(stream(session, base, token) for _ in range(STREAMS)))
            assert all(status == 101 and finals == SEED_TEXTS for status, finals in results), results

            async with session.get(f"{base}/_fake/state") as resp:
                state = await resp.json()
            assert state["connections_total"] == STREAMS and len(state["workers"]) == 2
            assert all(w["connections_total"] > 0 for w in state["workers"]), state["workers"]
            assert len({w["pid"] for w in state["workers"]}) == 2

            pages, since = [], 0
            while since is not None:  # the merged journal, paged in connection-index order
                async with session.get(f"{base}/_fake/journal", params={"since": since, "limit": 7}) as resp:
                    page = await resp.json()
                pages.append(page)
                since = page["next"]
            indices = [c["index"] for p in pages for c in p["connections"]]
            assert len(pages) == 3 and indices == sorted(indices) and len(set(indices)) == STREAMS
            assert {i % 2 for i in indices} == {0, 1}  # both workers' index spaces
            assert all(c["script"] == "seed-three-turns" for p in pages for c in p["connections"])

            async with session.post(f"{base}/_fake/faults", json={"type": "reject_handshake", "status": 429,
                                                                   "times": 1000}) as resp:
                assert resp.status == 200, await resp.text()
            refused = await asyncio.gather(*(stream(session, base, token) for _ in range(STREAMS)))
            assert [status for status, _ in refused] == [429] * STREAMS  # the fault reached both workers
            async with session.get(f"{base}/_fake/state") as resp:
                state = await resp.json()
            assert state["faults"][0]["fired"] == STREAMS  # counted over both

            async with session.delete(f"{base}/_fake/faults") as resp:
                assert resp.status == 200
            async with session.post(f"{base}/_fake/config", json={"max_streams": 0}) as resp:
                assert resp.status == 400  # refused by the first worker: applied nowhere
            status, finals = await stream(session, base, token)
            assert status == 101 and finals == SEED_TEXTS
            async with session.post(f"{base}/_fake/reset") as resp:
                assert resp.status == 200
            async with session.get(f"{base}/_fake/state") as resp:
                state = await resp.json()
            assert state["connections_total"] == 0 and state["faults"] == []
    finally:
        await stop(proc)


async def token_of(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(f"{base}/v1/authenticate", data={"client_id": "fakertzr-client",
                                                             "client_secret": "fakertzr-secret"}) as resp:
        return (await resp.json())["access_token"]


async def test_tokens_revoked_on_one_worker_are_revoked_on_every_worker():
    """An expire_tokens fault fires on the worker that serves the stream; the token must stop working on the
    other worker too, and a token issued afterwards by either must work on both."""
    proc, base, _ = await started("--workers", "2", "--script", str(SEED_DIR), "--max-streams", "100")
    try:
        async with aiohttp.ClientSession() as session:
            old = await token_of(session, base)
            async with session.post(f"{base}/_fake/faults", json={"type": "expire_tokens", "connection": 0}) as resp:
                assert resp.status == 200, await resp.text()
            fired = await asyncio.gather(*(stream(session, base, old) for _ in range(STREAMS)))  # connection 0 is among them
            async with session.get(f"{base}/_fake/state") as resp:
                assert (await resp.json())["faults"][0]["fired"] == 1
            after = await asyncio.gather(*(stream(session, base, old) for _ in range(STREAMS)))
            assert [status for status, _ in after] == [401] * STREAMS, (fired, after)
            new = await token_of(session, base)
            again = await asyncio.gather(*(stream(session, base, new) for _ in range(STREAMS)))
            assert all(status == 101 and finals == SEED_TEXTS for status, finals in again), again
            async with session.post(f"{base}/_fake/tokens/revoke") as resp:
                assert resp.status == 200
            revoked = await asyncio.gather(*(stream(session, base, new) for _ in range(STREAMS)))
            assert [status for status, _ in revoked] == [401] * STREAMS
    finally:
        await stop(proc)


async def test_a_worker_that_dies_stops_the_fake():
    proc, base, _ = await started("--workers", "2")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/_fake/state") as resp:
            pid = (await resp.json())["workers"][1]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 30) == 1
    assert b"fakertzr-worker-1 exited" in await proc.stderr.read()


async def test_a_file_job_is_polled_through_any_worker():
    """A job lives on the worker that took the upload; a poll that reaches the other worker is answered from it."""
    proc, base, _ = await started("--workers", "2", "--script", str(SEED_DIR), "--time-scale", "0")  # jobs done at once
    wav = (SEED_DIR / "caller.wav").read_bytes()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/authenticate", data={"client_id": "fakertzr-client",
                                                                      "client_secret": "fakertzr-secret"}) as resp:
                auth = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
            ids = []
            for _ in range(STREAMS):  # a connection each, spread over both workers (all on one: 2 ** -19)
                form = aiohttp.FormData()
                form.add_field("file", wav, filename="caller.wav")
                form.add_field("config", "{}")
                async with aiohttp.ClientSession() as fresh, fresh.post(f"{base}/v1/transcribe", data=form, headers=auth) as resp:
                    ids.append((await resp.json())["id"])
            assert {i[-2:] for i in ids} == {"w0", "w1"}, ids
            for job_id in ids:  # each poll on a fresh connection: the kernel may send it to either worker
                async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/v1/transcribe/{job_id}", headers=auth) as resp:
                    body = await resp.json()
                assert resp.status == 200 and body["status"] == "completed", body
                assert [u["msg"] for u in body["results"]["utterances"]] == SEED_TEXTS
    finally:
        await stop(proc)


async def test_a_poll_cannot_carry_a_request_into_another_workers_control_api():
    """A job id naming a worker is forwarded to it; one that names a path (``../../_fake/journal?w1``) must not
    reach the control API behind the guard (it did: ``journal`` and ``state`` answered 200, transcripts and all)."""
    proc, base, _ = await started("--workers", "2", "--script", str(SEED_DIR))
    try:
        for target in ("_fake/journal", "_fake/state", "_fake/reset"):
            for path in (f"..%2F..%2F{target.replace('/', '%2F')}%3Fw{{w}}", f"%2E%2E%2F%2E%2E%2F{target.replace('/', '%2F')}%23w{{w}}"):
                for worker in (0, 1, 0, 1):  # fresh connections: the kernel sends each to either worker
                    async with aiohttp.ClientSession() as fresh, fresh.get(
                            f"{base}/v1/transcribe/{path.format(w=worker)}", headers={"Host": "evil.example"}) as resp:
                        body = await resp.text()
                    assert resp.status != 200 and "connections" not in body and "workers" not in body, (resp.status, body)
    finally:
        await stop(proc)
