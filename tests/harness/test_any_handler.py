"""The harness on handlers it has never seen (issue: any-handler). One test per problem a new user hit:
each failed on the harness before this change."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import wave

import aiohttp
import pytest
from aiohttp import web

from fakertzr.appserver import AppServer
from harness.judge.events import Final, LlmRequest, Mark, MarkPlayed, Media, Stop
from harness.judge.checks import CheckContext, finals_to_llm_once, no_errors
from harness.fakes.llm import FakeLlm, FakeLlmConfig
from harness.fakes.tts import FakeTts
from harness.fakes.services import running_fakes
from harness.fixture import load_call
from harness.judge.handler_log import LogReader
from harness.reports.printout import condensed
from harness.replay.runner import ErrorLog, play_call
from harness.replay.runs import run_target
from harness.replay.targets import AicallTarget, CommandTarget, Handler
from harness.judge.timeline import CallTimeline
SEED = "fixtures/calls/seed-three-turns"


def harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout)


# 1. --cmd: the stream's path is the user's, and a wrong one is named with a hint.
def test_cmd_takes_the_stream_path_and_names_the_url_it_tried(tmp_path):
    cmd = f"AICALL_DB={tmp_path / 'c.db'} {sys.executable} -m aicall.cli serve --port {{port}}"
    wrong = harness("run", "--pace", "fast", "-k", "seed-three", "--cmd", cmd, "--path", "/ws",
                    "--report-dir", str(tmp_path / "r1"))
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert re.search(r"ws://127\.0\.0\.1:\d+/ws answered HTTP 404: is the Media Streams WebSocket at another path\? "
                     r"\(give it with --path or --url\)", wrong.stdout), wrong.stdout
    right = harness("run", "--pace", "fast", "-k", "seed-three", "--cmd", cmd, "--url", "ws://127.0.0.1:{port}/twilio/media",
                    "--report-dir", str(tmp_path / "r2"))
    assert right.returncode == 0, right.stdout + right.stderr
    assert (tmp_path / "r2" / "handler.log").read_text().count("---- harness: fixture seed-three-turns") == 1


def test_a_handler_that_never_listens_is_one_clear_line(tmp_path):
    done = harness("run", "--pace", "fast", "-k", "seed-three", "--cmd", "echo starting; sleep 30",
                   "--ready-timeout", "1", "--report-dir", str(tmp_path))
    assert done.returncode == 2
    assert re.fullmatch(r"harness: error: the handler did not start: the handler command did not listen on "
                        r"127\.0\.0\.1:\d+ within 1 s \(a slow start\? raise --ready-timeout\) \(its output: .*handler\.log\)\n",
                        done.stderr), done.stderr
    assert "starting" in (tmp_path / "handler.log").read_text()


# 2. --target: the fakes on free ports, printed as lines to paste.
def test_target_prints_the_fakes_as_export_lines(tmp_path):
    done = harness("run", "--pace", "fast", "-k", "seed-three", "--target", "ws://127.0.0.1:1/ws",
                   "--ready-timeout", "0.5", "--report-dir", str(tmp_path))
    assert done.returncode == 2 and "did not listen on 127.0.0.1:1 within 0.5 s" in done.stderr
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", done.stdout, re.M))
    assert set(exports) >= {"RTZR_API_BASE", "RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET", "OPENAI_BASE_URL", "TTS_BASE_URL"}
    assert not exports["RTZR_API_BASE"].endswith(":8765"), "free ports unless --fake-ports says otherwise"
    misuse = harness("run", "--handler-log", "x.log")
    assert misuse.returncode == 2 and misuse.stderr == "harness: error: --handler-log goes with --target\n"


# 3. The fake TTS answers as OpenAI does.
@pytest.mark.parametrize("fmt,content_type,magic", [
    ("wav", "audio/wav", b"RIFF"), ("flac", "audio/flac", b"fLaC"), ("opus", "audio/ogg", b"OggS"),
    ("mp3", "audio/mpeg", b"\xff"), (None, "audio/mpeg", b"\xff"), ("pcm", "audio/pcm", b""),
])
async def test_fake_tts_honours_response_format(fmt, content_type, magic):
    tts = FakeTts()
    async with tts.server() as server, aiohttp.ClientSession() as session:
        body = {"model": "tts-1", "voice": "alloy", "input": "안녕하세요", **({"response_format": fmt} if fmt else {})}
        async with session.post(f"{server.base_url}/v1/audio/speech", json=body) as resp:
            audio = await resp.read()
            assert resp.status == 200 and resp.content_type == content_type
    assert audio.startswith(magic) and len(audio) > 100
    if fmt == "wav":
        with wave.open(io.BytesIO(audio)) as w:
            assert w.getframerate() == 24000 and w.getnframes() == len(tts.audio_for("안녕하세요")) // 2


@pytest.mark.parametrize("body,param", [({"input": ""}, "input"), ({"input": "  "}, "input"),
                                        ({"input": "가" * 4097}, "input"), ({"input": "가", "response_format": "aac"},
                                                                           "response_format")])
async def test_fake_tts_refuses_what_openai_refuses(body, param):
    tts = FakeTts()
    async with tts.server() as server, aiohttp.ClientSession() as session:
        async with session.post(f"{server.base_url}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", **body}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == param
    assert tts.requests[0].status == 400


async def test_fake_llm_serves_whole_completions_as_openai_does():
    llm = FakeLlm(FakeLlmConfig(reply=lambda r: "네 " + r.last_user))
    async with llm.server() as server, aiohttp.ClientSession() as session:
        async with session.post(f"{server.base_url}/v1/chat/completions",
                                json={"model": "m", "messages": [{"role": "user", "content": "안녕"}]}) as resp:
            body = await resp.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"] == {"role": "assistant", "content": "네 안녕"}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] >= 1


# 4. The fake Twilio closes the socket after stop, as Twilio does.
async def test_a_handler_that_ignores_stop_is_closed_by_twilio():
    async def ignores_stop(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:  # reads everything, never closes: only the socket closing ends the call
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", ignores_stop)
    async with running_fakes() as fakes, AppServer(app) as server:
        played = await asyncio.wait_for(play_call(load_call("fixtures/calls/silent-call"), Handler(f"{server.ws_url}/ws"),
                                                  fakes.rtzr, fakes.llm, fakes.tts, pace=None), 30)
    assert played.problem is None and played.record.closed_how == "twilio after stop"
    assert played.record.stop_at is not None and played.record.closed_at is not None


# 5. A request the LLM failed and the SDK retried is one delivery, and the failure is on the timeline.
def test_a_retried_llm_request_is_one_delivery():
    final = Final(1.0, text="안녕", connection=0)
    failed = LlmRequest(1.1, user="안녕", status=500)
    retry = LlmRequest(1.6, user="안녕", status=200)
    twice = LlmRequest(2.0, user="안녕", status=200)
    judged = lambda *e: finals_to_llm_once(CheckContext(CallTimeline(list(e)), {}, None))  # noqa: E731
    assert judged(final, failed, retry).ok
    assert not judged(final, retry, twice).ok
    assert condensed([failed], 0.0) == ['   1.100s llm_request    {"index": 0, "user": "안녕", "status": 500}']


# 6. no_errors for any handler: common log formats, whole tracebacks, tied to the call by its SID.
LOG = """\
2026-11-26 00:33:28.329 | INFO     | pipecat:<module>:54 - Pipecat 1.14.0
2026-11-26 00:33:29.001 | ERROR    | bot:run:12 - reply failed for CA00000000000000000000000000000001
Traceback (most recent call last):
  File "bot.py", line 3, in run
KeyError: 'CA00000000000000000000000000000001'
INFO:     127.0.0.1:5000 - "WebSocket /ws" [accepted]
ERROR:asyncio:Task exception was never retrieved
future: <Task finished name='Task-5' coro=<f() done> exception=KeyError('a')>
Traceback (most recent call last):
  File "z", line 2, in f
KeyError: 'a'
2026-11-26 00:33:30,100 INFO aicall call=CA00000000000000000000000000000002 event=ERRORS_are_a_word_here
"""


def test_error_blocks_of_common_formats_are_whole_and_tied_to_their_call():
    reader = LogReader()
    for i, line in enumerate(LOG.splitlines()):
        reader.feed(line, float(i))
    assert [len(b.lines) for b in reader.blocks] == [4, 5]
    first, second = "CA00000000000000000000000000000001", "CA00000000000000000000000000000002"
    assert reader.errors_for(first, 100, 200) == [reader.blocks[0].text]  # by its SID, outside its window
    assert reader.errors_for(second, 0, 100) == [reader.blocks[1].text]  # no SID: by window; never the other call's
    assert "KeyError: 'a'" in reader.blocks[1].text


def test_no_errors_without_a_log_is_skipped_and_says_how_to_give_one():
    result = no_errors(CheckContext(CallTimeline([]), {}, None, None))
    assert result.status == "skipped" and "--handler-log FILE" in result.message


# 7. A dropped line loses no audio that was sent: the verdict does not depend on luck at fast pace.
# (Before, the line was dropped with audio still queued: 4 of 18 such runs against `aicall serve` failed.)
async def test_caller_line_drops_passes_every_time_at_fast_pace(tmp_path):
    target = CommandTarget(f"AICALL_DB={tmp_path / 'c.db'} {sys.executable} -m aicall.cli serve --port {{port}}",
                           ready_timeout=30)
    runs = await run_target(target, [load_call("fixtures/calls/caller-line-drops")] * 8, pace=None)
    assert [r.ok for r in runs] == [True] * 8, [r.failures() for r in runs if not r.ok]
    assert all(r.timeline.of(Stop)[0].how == "vanished" for r in runs)
    assert len({r.call_sid for r in runs}) == 8, "every replay is a new call (a fixed SID appended to an old call's store)"


# 8. Failure printouts fold bot media and marks.
def test_printouts_fold_runs_of_media_and_marks():
    events = [Final(1.0, text="가"), *(Media(1.2 + i * 0.02) for i in range(112)),
              Mark(3.5, name="t1"), MarkPlayed(3.6, name="t1"), Stop(4.0, how="stop")]
    lines = condensed(events, 0.0)
    assert len(lines) == 5
    assert lines[1] == "   1.200s bot audio 1.20-3.42 s, 112 frames"


# 9. Failure 1 for a launched handler: started without credentials.
SILENT_HANDLER = """
import asyncio, os, sys
from aiohttp import web
async def media(request):
    ws = web.WebSocketResponse(); await ws.prepare(request)
    async for _ in ws: pass   # takes the call, says nothing, never ends it
    return ws
app = web.Application(); app.router.add_get("/ws", media)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def test_a_handler_that_takes_the_call_without_credentials_fails_as_failure1(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text(SILENT_HANDLER)
    fixture = load_call("fixtures/calls/failure1-credentials-missing")
    target = CommandTarget(f"{sys.executable} {script} {{port}}", path="/ws", ready_timeout=30)
    [run] = await run_target(target, [fixture], pace=None)
    check = next(c for c in run.checks if c.name == "refuses_without_credentials")
    assert check.status == "failed" and check.message.startswith("failure 1:") and "dead line" in check.message


async def test_aicall_refuses_to_start_without_credentials_naming_the_variable():
    with ErrorLog() as errors:
        [run] = await run_target(AicallTarget(errors), [load_call("fixtures/calls/failure1-credentials-missing")], pace=None)
    check = next(c for c in run.checks if c.name == "refuses_without_credentials")
    assert check.status == "passed" and "RTZR_CLIENT_ID" in check.message, check
    assert run.ok


def test_reports_carry_three_verdicts(tmp_path):
    cmd = f"AICALL_DB={tmp_path / 'c.db'} {sys.executable} -m aicall.cli serve --port {{port}}"
    done = harness("run", "--pace", "fast", "-k", "seed-three", "--cmd", cmd, "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout
    assert "skipped finals_persisted: the handler's store is not readable" in done.stdout
    body = json.loads((tmp_path / "report.json").read_text())
    assert body["summary"]["checks"]["skipped"] == 1 and body["summary"]["checks"]["failed"] == 0
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("<skipped") == 1 and 'skipped="1"' in junit
    assert "<li class='skipped'><b>finals_persisted</b>: skipped" in (tmp_path / "report.html").read_text()


# `harness fakes`: all three fakes standalone, with the environment a handler needs.
def test_harness_fakes_serves_all_three_and_prints_the_env(tmp_path):
    import signal

    # Ctrl-C as a terminal delivers it: a test run started in the background inherits SIGINT ignored
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "fakes", "--ports", "0,0,0", "--fixture", SEED,
                             "--max-streams", "50", "--grpc-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        env, grpc_target = {}, None
        for line in proc.stdout:  # blocks until the fakes print their environment
            if line.startswith("RTZR gRPC "):
                grpc_target = line.split()[2]
            if line.startswith("export "):
                key, value = line[7:].strip().split("=", 1)
                env[key] = value
            if line.startswith("Ctrl-C"):
                break
        import requests

        token = requests.post(f"{env['RTZR_API_BASE']}/v1/authenticate", timeout=10,
                              data={"client_id": env["RTZR_CLIENT_ID"], "client_secret": env["RTZR_CLIENT_SECRET"]})
        assert token.status_code == 200 and token.json()["access_token"]
        reply = requests.post(f"{env['OPENAI_BASE_URL']}/chat/completions", timeout=10,
                              json={"model": "m", "messages": [{"role": "user", "content": "안녕"}]})
        assert reply.json()["choices"][0]["message"]["content"], reply.text
        speech = requests.post(f"{env['TTS_BASE_URL']}/audio/speech", timeout=10,
                               json={"model": "tts-1", "voice": "alloy", "input": "네", "response_format": "wav"})
        assert speech.headers["Content-Type"] == "audio/wav" and speech.content[:4] == b"RIFF"
        state = requests.get(f"{env['RTZR_API_BASE']}/_fake/state", timeout=10).json()
        assert state["config"]["max_streams"] == 50
        from contract_tests.rtzr import grpc_client
        from contract_tests.rtzr.test_standalone import write_wav
        from fakertzr.fixture import load_fixture

        wav = write_wav(tmp_path / "seed.wav", load_fixture(SEED).audio)
        run = grpc_client.transcribe_file(grpc_target, False, token.json()["access_token"], wav, grpc_client.sample_config())
        assert [text for _, _, text in run.finals] == load_fixture(SEED).raw["expect"]["finals"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            status = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"harness fakes did not stop within 20 s of Ctrl-C; its stderr:\n{err[-3000:]}")
        assert status == 0, proc.stderr.read()


# Nothing one fixture does aborts the run: a handler that dies in a call fails that call, and is started again.
DIES_ON_FIRST_CALL = """
import os, sys
from pathlib import Path
from aiohttp import web
flag = Path(sys.argv[2])
async def media(request):
    ws = web.WebSocketResponse(); await ws.prepare(request)
    async for msg in ws:
        if '"start"' in msg.data and not flag.exists():
            flag.write_text("died once")
            os._exit(3)
    return ws
app = web.Application(); app.router.add_get("/ws", media)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def test_a_handler_that_dies_fails_that_fixture_and_the_run_goes_on(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text(DIES_ON_FIRST_CALL)
    target = CommandTarget(f"{sys.executable} {script} {{port}} {tmp_path / 'flag'}", path="/ws", ready_timeout=30)
    fixtures = [load_call("fixtures/calls/silent-call"), load_call("fixtures/calls/silent-call")]
    first, second = await run_target(target, fixtures, pace=None)
    replay = [c for c in first.checks if c.name == "replay"]
    assert replay and "exited with status 3" in replay[0].message, first.checks
    assert all(c.message for c in first.checks if not c.ok), "no error is ever empty"
    assert not any(c.name == "replay" for c in second.checks) and target.started == 2


async def test_target_reads_the_handler_log_it_is_given(tmp_path):
    """``--target`` with ``--handler-log``: lines the running handler appends during a call are judged."""
    log_file = tmp_path / "app.log"
    log_file.write_text("ERROR old line from before the run\n")

    async def media(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if '"start"' in msg.data:
                with log_file.open("a") as out:
                    out.write(f"ERROR:app:boom in call {json.loads(msg.data)['start']['callSid']}\n")
        return ws

    app = web.Application()
    app.router.add_get("/ws", media)
    async with AppServer(app) as server:
        from harness.replay.targets import UrlTarget

        [run] = await run_target(UrlTarget(f"{server.ws_url}/ws", handler_log=log_file), [load_call("fixtures/calls/silent-call")],
                                 pace=None)
    check = next(c for c in run.checks if c.name == "no_errors")
    assert check.status == "failed" and "boom in call CA" in check.message and "old line" not in check.message
    missing = UrlTarget("ws://127.0.0.1:1/ws", handler_log=tmp_path / "nope.log")
    with pytest.raises(Exception, match="--handler-log .*nope.log: cannot read"):
        async with running_fakes() as fakes, missing.start(fakes):
            pass


async def test_fresh_handler_gives_each_fixture_its_own_process(tmp_path):
    """``--fresh-handler``: a process per fixture, so each call's log is its own from start to exit."""
    target = CommandTarget(f"AICALL_DB={tmp_path / 'c.db'} {sys.executable} -m aicall.cli serve --port {{port}}",
                           ready_timeout=30, fresh=True)
    runs = await run_target(target, [load_call("fixtures/calls/silent-call")] * 2, pace=None)
    assert target.started == 2 and all(r.ok for r in runs), [r.failures() for r in runs]
