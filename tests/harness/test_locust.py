"""The Locust file: a master and two worker processes (loopback only) play Twilio callers against aicall,
and every turn lands in Locust's statistics."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import sys
from pathlib import Path

import pytest

from harness.fakes.services import running_fakes
from harness.fixture import load_call
from harness.load.capacity import prepare_fakes
from harness.replay.runner import ErrorLog
from harness.replay.targets import AicallTarget, free_port

# never imported here: importing locust monkey-patches the whole process for gevent (threads become greenlets)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="pip install '.[locust]'")

LOCUSTFILE = str(Path(__file__).resolve().parents[2] / "harness" / "load" / "locustfile.py")
SEED = load_call("fixtures/calls/seed-three-turns")
USERS = 4


async def locust(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "locust", "-f", LOCUSTFILE, *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def test_a_master_and_two_workers_play_callers_into_locust_statistics(tmp_path):
    port = free_port()
    with ErrorLog() as log:
        async with running_fakes() as fakes:
            prepare_fakes(fakes, [SEED])
            async with AicallTarget(log).start(fakes) as handler:
                master = await locust(
                    "--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                    "--expect-workers", "2", "--expect-workers-max-wait", "60", "-u", str(USERS), "-r", str(USERS),
                    "--run-time", "20s", "--stop-timeout", "30", "--host", handler.url, "--fixture", SEED.name,
                    "--csv", str(tmp_path / "stats"), "--only-summary", "--loglevel", "INFO")
                workers = [await locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(port), "--stop-timeout", "30")
                           for _ in range(2)]
                try:
                    output, _ = await asyncio.wait_for(master.communicate(), 120)
                    for worker in workers:
                        await asyncio.wait_for(worker.wait(), 30)  # the master's end ends its workers
                finally:
                    for proc in (master, *workers):
                        if proc.returncode is None:
                            proc.kill()
                            await proc.wait()
    text = output.decode()
    assert master.returncode == 0, text[-3000:]
    assert "2 workers connected" in text, text[-3000:]
    with (tmp_path / "stats_stats.csv").open() as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    turn, call = rows[("turn", SEED.name)], rows[("call", SEED.name)]
    assert int(call["Request Count"]) >= USERS and int(call["Failure Count"]) == 0, call
    assert int(turn["Request Count"]) >= 3 * USERS and int(turn["Failure Count"]) == 0, turn
    assert 0 < float(turn["50%"]) < float(call["50%"])  # a turn is a moment of the call
