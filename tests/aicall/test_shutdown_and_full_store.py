"""aicall stops without losing a call, and a store it cannot write never ends one (issue 22, items 4-5):
on SIGTERM mid-call the caller gets a close frame (1001) and the call is stored as ended by "shutdown" (it was
"unknown", and no close frame came); with the disk full the caller is still answered, and one line per call
says what the store lacks (it was tracebacks, no media, no close frame)."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import sys

import aiohttp

from aicall.app import wait_for_calls_to_end
from aicall.store import CallStore
from fakertzr import FakeRtzrBackend, FakeRtzrConfig, FakeRtzrServer
from harness.fakes.llm import FakeLlm
from harness.fakes.tts import FakeTts
from harness.fakes.twilio_line import TwilioLine
from tests.aicall.test_calls import talk
from tests.support.aicall_stack import SEED, TEST_CALL_SID, TEST_STREAM_SID, env_for, running_stack


async def test_sigterm_mid_call_closes_it_with_1001_and_stores_it_as_ended_by_shutdown(tmp_path):
    db = tmp_path / "calls.db"
    rtzr, llm, tts = FakeRtzrBackend(FakeRtzrConfig(time_scale=0.0, fixtures=[SEED])), FakeLlm(), FakeTts()
    async with FakeRtzrServer(rtzr) as r, llm.server() as lm, tts.server() as t, aiohttp.ClientSession() as session:
        env = {**env_for(r.base_url, lm.base_url, t.base_url), "AICALL_DB": str(db), "PATH": "/usr/bin:/bin"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "aicall.cli", "serve", "--port", "0", env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            url = re.search(r"http://[\d.]+:\d+", banner).group().replace("http", "ws", 1)
            line = TwilioLine(session, f"{url}/twilio/media", call_sid=TEST_CALL_SID, stream_sid=TEST_STREAM_SID,
                              caller="+821012345678", pace=None)
            async with line as call:
                await talk(call, 1)  # answered: a call in progress
                proc.terminate()
                await call.wait_for(lambda c: c.record.closed_at is not None)
            assert call.ws.close_code == 1001, call.ws.close_code  # it was 1006: no close frame
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    store = CallStore(db)
    try:
        summary, lines = store.call(TEST_CALL_SID)
    finally:
        store.close()
    assert summary.end_reason == "shutdown" and summary.ended_at is not None, summary
    assert [line.role for line in lines][:2] == ["caller", "bot"]


class FullDisk:
    """An SQLite connection on a disk with no room left: reads work, every write raises as SQLite's does."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, args)

    def close(self) -> None:
        self.db.close()


async def test_a_full_disk_loses_the_transcript_not_the_call(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="aicall")
    async with running_stack(tmp_path) as stack:
        stack.store._db = FullDisk(stack.store._db)  # every write now fails as SQLite fails on a full disk
        async with stack.driver() as call:
            await talk(call, 2)  # the caller is answered, twice
            await call.stop()
            await call.wait_for(lambda c: c.closed.is_set())
        assert await wait_for_calls_to_end(stack.app, 10)
    failed = [r for r in caplog.records if "store_write_failed" in r.getMessage()]
    assert len(failed) == 1 and "full" in failed[0].getMessage(), [r.getMessage() for r in failed]
    lost = [r.getMessage() for r in caplog.records if "event=store_lost" in r.getMessage()]
    assert len(lost) == 1 and re.search(r"writes=\d+", lost[0]), lost
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
