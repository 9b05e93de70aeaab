"""``harness load`` end to end: callers against aicall (in-process and launched), and against handlers
that do not answer or refuse the stream, so every figure it reports is shown able to go wrong."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from fakertzr.appserver import AppServer
from harness.errors import HarnessError
from harness.fixture import load_call
from harness.load.capacity import InProcessTurnLog, LoadPlan, LoadRunner, check_loadable
from harness.load.stats import Criteria
from aicall.store import CallStore
from harness.replay.targets import AicallTarget, CommandTarget, Handler
from harness.fakes.twilio_line import TwilioLine

SEED = load_call("fixtures/calls/seed-three-turns")  # the first utterance ends 3.1 s into the call
QUICK = dict(hold_s=4.0, ramp_s=0.0)  # a window that holds every caller's first turn


async def test_callers_against_aicall_in_process_are_answered_and_measured():
    with InProcessTurnLog() as log:
        runner = LoadRunner(AicallTarget(log), [SEED], LoadPlan(steps=(3,), criteria=Criteria(2000), **QUICK),
                            handler_log=log.reader)
        result = await runner.run("aicall")
    [step] = result.steps
    assert step.callers == 3 and step.turns == 3 and step.answered == 3, step
    assert step.latency_ms["p50"] is not None and step.calls_failed == 0 and step.held
    assert len(runner._calls) == 3 and len({c.started for c in runner._calls}) == 3
    assert step.handler_ms and step.handler_errors == 0  # aicall's own per-turn line, read from its log
    assert set(step.handler_steps_p99_ms) == {"final_to_llm", "llm_first_token", "first_tts_audio",
                                              "final_to_first_media"}  # every figure on that line
    assert step.handler_steps_p99_ms["final_to_first_media"] == step.handler_ms["p99"]
    assert step.handler_cpu_percent is not None and result.cpu_seen.startswith("the harness process")
    assert step.harness_late_ms["p99"] is not None  # the harness's own loop was watched through the window
    assert not runner._active  # every caller hung up when the run ended


class Unanswering:
    """A Media Streams handler that takes the call and never says a word (or refuses it: ``refuse``)."""

    fresh_per_fixture = False
    can_drop_credentials = False

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse

    @asynccontextmanager
    async def start(self, fakes, *, without=()):
        async def media(request: web.Request) -> web.StreamResponse:
            if self.refuse:
                raise web.HTTPServiceUnavailable()
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for _ in ws:
                pass
            return ws

        app = web.Application()
        app.router.add_get("/media", media)
        async with AppServer(app) as server:
            yield Handler(f"{server.ws_url}/media")


async def test_a_handler_that_never_answers_breaks_the_step_and_has_no_capacity():
    plan = LoadPlan(steps=(2,), criteria=Criteria(2000), **QUICK)
    result = await LoadRunner(Unanswering(), [SEED], plan).run("silent")
    [step] = result.steps
    assert (step.turns, step.answered, step.held) == (2, 0, False)
    assert "0/2 turns answered" in step.why_not and result.knee["held"] is None


async def test_refused_calls_are_counted_with_the_reason():
    plan = LoadPlan(steps=(2,), criteria=Criteria(2000), hold_s=1.0, ramp_s=0.0)
    result = await LoadRunner(Unanswering(refuse=True), [SEED], plan).run("refusing")
    [step] = result.steps
    assert 2 <= step.calls_failed <= step.calls_started <= 4 and not step.held  # each caller paused before redialling
    assert "refused the stream handshake: HTTP 503" in step.failures[0]


def test_fault_scenarios_are_not_load():
    with pytest.raises(HarnessError, match="scripts recognizer faults: load plays clean calls"):
        check_loadable(load_call("fixtures/calls/failure2-recognizer-closes-1000"))
    with pytest.raises(HarnessError, match="hangs up early"):
        check_loadable(load_call("fixtures/calls/failure3-hangup-while-llm-generates"))


def test_cli_against_a_launched_aicall_writes_json_and_a_plot(tmp_path):
    cmd = f"AICALL_DB={tmp_path / 'c.db'} {sys.executable} -m aicall.cli serve --port {{port}}"
    out = subprocess.run([sys.executable, "-m", "harness.cli", "load", "--cmd", cmd, "--callers", "2", "--hold", "4",
                          "--ramp", "0", "--max-p95", "3000", "--report-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "load.json").read_text())
    [step] = report["steps"]
    assert step["answered"] == step["turns"] == 2 and step["held"] and report["knee"]["held"] == 2
    assert step["handler_cpu_percent"] is not None and report["cpu_seen"] == "the handler's process group"
    assert step["handler_ms"]["p99"] is not None  # parsed from the launched aicall's output
    samples = report["handler_resources"]["samples"]  # its memory and descriptors, a sample each second of the hold
    assert len(samples) >= 3 and all(rss > 5 and fds > 0 for _, rss, fds in samples), samples
    assert report["handler_resources"]["leak"] is None and "the handler's memory:" in out.stdout
    page = (tmp_path / "load.html").read_text()
    assert page.count("<svg") == 2 and "2 callers" in page and "held at 2 callers" in page
    assert "callers  calls  failed  answered" in out.stdout


def test_cli_refuses_a_fault_fixture_and_stray_options(tmp_path):
    def load(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", "load", *args], capture_output=True, text=True,
                              timeout=60)

    bad = load("--fixture", "failure2-recognizer-closes-1000")
    assert bad.returncode == 2 and "load plays clean calls" in bad.stderr
    assert "--min-answered goes with" in load("--min-answered", "0.9").stderr
    assert "must be caller counts above 0" in load("--callers", "0").stderr
    assert "--ramp must be 0 or more seconds, got -1" in load("--ramp", "-1").stderr


async def test_the_media_template_is_the_message_json_would_make():
    """Callers send media from a string template (cheap); it must be the very JSON ``send`` would make."""
    class Socket:
        closed = False

        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send_str(self, text: str) -> None:
            self.sent.append(text)

    line = TwilioLine(None, "ws://unused", call_sid="CA" + "0" * 32, stream_sid='MZ"quoted\\sid')
    line.ws = Socket()
    await line.send_media("f/+A")
    await line.send_media("f/+B")
    await line.send("media", media={"track": "inbound", "chunk": "2", "timestamp": "20", "payload": "f/+B"})
    first, second, third = (json.loads(m) for m in line.ws.sent)
    assert first["media"] == {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "f/+A"}
    assert second == {**third, "sequenceNumber": "2"} and third["sequenceNumber"] == "3"
    assert second["streamSid"] == 'MZ"quoted\\sid'


async def test_aicall_on_two_gunicorn_workers_answers_every_call_and_shares_one_store(tmp_path):
    """``gunicorn 'aicall.app:from_env'``: aicall on every core, one port, one call store."""
    db, log = tmp_path / "calls.db", tmp_path / "gunicorn.log"
    cmd = (f"AICALL_DB={db} {sys.executable} -m gunicorn aicall.app:from_env --worker-class aiohttp.GunicornWebWorker "
           f"--workers 2 --bind 127.0.0.1:{{port}}")
    result = await LoadRunner(CommandTarget(cmd, log_path=log), [SEED],
                              LoadPlan(steps=(6,), criteria=Criteria(3000), **QUICK)).run("gunicorn")
    [step] = result.steps
    assert step.turns == step.answered == 6 and step.calls_failed == 0 and step.held, step
    assert step.handler_ms["p99"] is not None  # each worker's per-turn lines reach the harness
    text = log.read_text()
    workers = set(re.findall(r"Booting worker with pid: (\d+)", text))
    starts = set(re.findall(r"pid=(\d+) call=\S+ event=start", text))
    assert len(workers) == 2 and starts <= workers, text[-2000:]
    calls = CallStore(db).recent(50)
    assert len(calls) >= 6 and all(c.lines > 0 for c in calls if c.end_reason), "one store for both workers"
