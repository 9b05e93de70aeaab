"""Replays against a handler outside this process: one already running (``--target``), or one the
harness launches (``--cmd``) with the fakes' URLs filled in."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from typing import Callable

from aicall.twilio import compute_signature
from fakertzr import FakeRtzrBackend, FakeRtzrServer

from .fake_llm import FakeLlm
from .fake_tts import FakeTts
from .fixture import CallFixture
from .runner import ErrorLog, FixtureRun, replay

ERROR_LINE = re.compile(r"\bERROR\b|Traceback|Exception")
DEFAULT_PORTS = (8765, 8766, 8767)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for_port(port: int, proc: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """Until the launched handler accepts connections; fail early if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"the handler command exited with status {proc.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)  # the process we launched is still starting
    raise RuntimeError(f"the handler command did not listen on port {port} within {timeout:g} s")


async def stop_process_group(proc: asyncio.subprocess.Process, grace_s: float = 10.0) -> None:
    """SIGTERM the command's whole process group (the shell and the handler it started), then SIGKILL."""
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
            return
        except asyncio.TimeoutError:
            continue


async def run_external(fixtures: list[CallFixture], *, pace: float | None, target: str | None, cmd: str | None,
                       ports: tuple[int, int, int] = DEFAULT_PORTS,
                       progress: Callable[[FixtureRun], None] = lambda run: None,
                       twilio_auth_token: str | None = None) -> list[FixtureRun]:
    rtzr, llm, tts = FakeRtzrBackend(), FakeLlm(), FakeTts()
    rtzr_port, llm_port, tts_port = (0, 0, 0) if cmd else ports
    runs: list[FixtureRun] = []
    async with FakeRtzrServer(rtzr, port=rtzr_port) as r, llm.server(port=llm_port) as l, tts.server(port=tts_port) as t:
        values = {"rtzr_url": r.base_url, "llm_url": f"{l.base_url}/v1", "tts_url": f"{t.base_url}/v1"}
        print(f"fakes: RTZR {values['rtzr_url']} (client_id={rtzr.config.client_id} "
              f"client_secret={rtzr.config.client_secret}), LLM {values['llm_url']}, TTS {values['tts_url']}", flush=True)
        proc = None
        errors = ErrorLog()
        try:
            url = target
            if cmd:
                port = free_port()
                values["port"] = str(port)
                command = cmd
                for key, value in values.items():
                    command = command.replace("{" + key + "}", value)
                env = {**os.environ, "RTZR_API_BASE": values["rtzr_url"], "RTZR_CLIENT_ID": rtzr.config.client_id,
                       "RTZR_CLIENT_SECRET": rtzr.config.client_secret, "OPENAI_BASE_URL": values["llm_url"],
                       "OPENAI_API_KEY": "harness", "TTS_BASE_URL": values["tts_url"], "PORT": str(port)}
                proc = await asyncio.create_subprocess_shell(command, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                             stderr=asyncio.subprocess.PIPE, start_new_session=True)

                async def read_stderr() -> None:
                    assert proc is not None and proc.stderr is not None
                    async for raw in proc.stderr:
                        line = raw.decode("utf-8", "replace").rstrip()
                        if ERROR_LINE.search(line):
                            errors.add(line)

                stderr_task = asyncio.create_task(read_stderr())
                await wait_for_port(port, proc)
                url = url or f"ws://127.0.0.1:{port}/twilio/media"
            assert url is not None
            headers = {"X-Twilio-Signature": compute_signature(twilio_auth_token, url)} if twilio_auth_token else None
            for fixture in fixtures:
                run = await replay(fixture, url, rtzr=rtzr, llm=llm, tts=tts, pace=pace, errors=errors, headers=headers)
                runs.append(run)
                progress(run)
        finally:
            if proc is not None:
                await stop_process_group(proc)
                await stderr_task
    return runs
