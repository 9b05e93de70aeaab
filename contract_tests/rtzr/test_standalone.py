"""``fakertzr serve`` as a process: a stock RTZR client gets the seed's finals; bad input exits 2."""

from __future__ import annotations

import asyncio
import re
import sys
import wave
from pathlib import Path

import pytest
import requests

from fakertzr.fixture import load_fixture
from tests.support.stock_rtzr_client import RTZRClient

from .conftest import SEED_DIR
from .test_streaming import SEED_TEXTS

SERVE = [sys.executable, "-m", "fakertzr.cli", "serve", "--port", "0"]


async def started(*args: str):
    proc = await asyncio.create_subprocess_exec(*SERVE, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    second = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
    assert match, first
    return proc, match.group(1), second


async def stop(proc) -> None:
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 30)


def write_wav(path: Path, samples) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


async def test_stock_rtzr_client_gets_the_three_finals(tmp_path):
    proc, base, credentials = await started("--script", str(SEED_DIR))
    try:
        assert "client_id=fakertzr-client client_secret=fakertzr-secret" in credentials
        wav = write_wav(tmp_path / "seed.wav", load_fixture(SEED_DIR).audio)
        rtzr = RTZRClient("fakertzr-client", "fakertzr-secret", base)
        messages = await asyncio.to_thread(lambda: asyncio.run(rtzr.streaming_transcribe(str(wav))))
        assert [m["alternatives"][0]["text"] for m in messages if m["final"]] == SEED_TEXTS
    finally:
        await stop(proc)


async def test_auto_mode_from_a_texts_file(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("여보세요\n\n네 알겠습니다\n", encoding="utf-8")
    proc, base, _ = await started("--auto", "--texts-file", str(texts), "--client-id", "me", "--client-secret", "s3")
    try:
        wav = write_wav(tmp_path / "seed.wav", load_fixture(SEED_DIR).audio)
        rtzr = RTZRClient("me", "s3", base)
        messages = await asyncio.to_thread(lambda: asyncio.run(rtzr.streaming_transcribe(str(wav))))
        assert [m["alternatives"][0]["text"] for m in messages if m["final"]] == ["여보세요", "네 알겠습니다", "발화 3"]
    finally:
        await stop(proc)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--script", "/nonexistent"], "/nonexistent: no call.json"),
        (["--auto", "--script", str(SEED_DIR)], "--auto and --script exclude each other"),
        (["--texts-file", "x.txt"], "--texts-file goes with --auto"),
        (["--epd-time", "-1"], "argument --epd-time: must be above 0, got '-1'"),
        (["--port", "70000"], "--port must be 0-65535"),
        (["--grpc-port", "-1"], "--grpc-port must be 0-65535"),
    ],
)
async def test_bad_flags_or_fixture_give_one_line_and_exit_2(args, message):
    proc = await asyncio.create_subprocess_exec(*SERVE, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_rtzrs_grpc_sample_gets_the_three_finals_from_fakertzr_serve(tmp_path, workers):
    """``fakertzr serve --grpc-port 0`` (and with ``--workers 2``, every worker on the one gRPC port): RTZR's gRPC
    sample, changed only in endpoint and credentials, gets the seed's finals; the journal calls them gRPC."""
    from . import grpc_client

    proc, base, line = await started("--script", str(SEED_DIR), "--grpc-port", "0", "--workers", workers)
    try:
        while "gRPC on" not in line:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "fakertzr serve said nothing about gRPC"
        target = re.search(r"gRPC on (127\.0\.0\.1:\d+)", line).group(1)
        wav = write_wav(tmp_path / "seed.wav", load_fixture(SEED_DIR).audio)
        token = await asyncio.to_thread(grpc_client.token, base, "fakertzr-client", "fakertzr-secret")
        for _ in range(int(workers)):  # each worker, as the kernel spreads the connections (it may not)
            run = await asyncio.to_thread(grpc_client.transcribe_file, target, False, token, wav, grpc_client.sample_config())
            assert [text for _, _, text in run.finals] == SEED_TEXTS
        journal = await asyncio.to_thread(lambda: requests.get(f"{base}/_fake/journal", timeout=10).json())
        assert [c["api"] for c in journal["connections"]] == ["grpc"] * int(workers)
    finally:
        await stop(proc)
