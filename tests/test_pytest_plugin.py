"""The ``fake_rtzr`` fixture that the package registers as a pytest plugin."""

from __future__ import annotations

import aiohttp

SEED = "fixtures/calls/seed-three-turns"


async def test_fake_rtzr_fixture_serves_and_journals(fake_rtzr):
    script = fake_rtzr.backend.load_fixture(SEED)
    async with aiohttp.ClientSession() as session:
        form = {"client_id": fake_rtzr.client_id, "client_secret": fake_rtzr.client_secret}
        async with session.post(f"{fake_rtzr.base_url}/v1/authenticate", data=form) as resp:
            token = (await resp.json())["access_token"]
        url = f"{fake_rtzr.ws_url}/v1/transcribe:streaming?sample_rate=8000&encoding=LINEAR16"
        async with session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_bytes(script.audio.astype("<i2").tobytes())
            await ws.send_str("EOS")
            texts = [m.json()["alternatives"][0]["text"] async for m in ws if m.json()["final"]]
    assert texts == [u.text for u in script.utterances]
    await fake_rtzr.backend.wait_for(lambda j: j.connections and j.connections[0].ended is not None)
    assert fake_rtzr.journal.finals() == texts


def test_server_runs_in_a_thread_for_synchronous_code():
    import requests

    from fakertzr import FakeRtzrServer

    with FakeRtzrServer.in_thread() as server:
        resp = requests.post(f"{server.base_url}/v1/authenticate",
                             data={"client_id": "fakertzr-client", "client_secret": "fakertzr-secret"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["access_token"]


async def test_fake_rtzr_grpc_fixture_serves_grpc_on_the_same_backend(fake_rtzr_grpc, tmp_path):
    import asyncio

    from contract_tests.rtzr import grpc_client
    from contract_tests.rtzr.test_standalone import write_wav

    script = fake_rtzr_grpc.backend.load_fixture(SEED)
    wav = write_wav(tmp_path / "seed.wav", script.audio)
    token = await asyncio.to_thread(grpc_client.token, fake_rtzr_grpc.base_url, fake_rtzr_grpc.client_id,
                                    fake_rtzr_grpc.client_secret)
    run = await asyncio.to_thread(grpc_client.transcribe_file, fake_rtzr_grpc.grpc_target, False, token, wav,
                                  grpc_client.sample_config())
    assert [text for _, _, text in run.finals] == [u.text for u in script.utterances] == fake_rtzr_grpc.journal.finals()
