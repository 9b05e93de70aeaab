"""Verdicts a team can trust on a handler the harness has never seen (the trustworthy-verdicts issue): one test
per thing that was wrong, each failing against the judge before the fix. The proving ground's matrix
(tests/proving_ground) runs the same bugs in whole handlers of three styles; these pin each rule down."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from callaudio.g711 import pcm16_to_ulaw
from fakertzr import FakeRtzrBackend
from fakertzr.appserver import AppServer
from fakertzr.journal import ConnectionRecord, SentMessage
from harness.judge.events import (Clear, Closed, Final, HandlerInvalid, Mark, Media, RtzrEnd, RtzrRefused,
                                  SpeechEnd, SpeechStart, Stop, TtsRequest)
from harness.judge.bot_audio import analyse
from harness.judge.checks import (STOP_GRACE_S, CheckContext, bot_audio_rate, expectations, finals_to_llm_once,
                            recognition_continues, refuses_without_credentials, stops_sending_after_hangup,
                            twilio_messages, upstream_closed_after_hangup)
from harness.judge.conversation import turns
from harness.fakes.llm import FakeLlm, LlmRequest
from harness.judge import events as ev
from harness.fakes.tts import FakeTts, TONES_HZ, tone
from harness.fakes.services import running_fakes
from harness.fixture import load_call
from harness.judge.handler_log import LogReader
from harness.replay.saved_log import SavedLog
from harness.judge.metrics import turn_metrics
from harness.reports.printout import why
from harness.replay.runner import play_call, settle
from harness.replay.runs import run_target
from harness.replay.targets import CommandTarget, Handler
from harness.judge.timeline import CallTimeline, is_foreign, new_user_text
from harness.fakes.twilio_messages import judge_text
from harness.fakes.twilio_player import CLOSE_AFTER_STOP_S

SEED = "fixtures/calls/seed-three-turns"
STREAM = "MZ" + "1" * 32
STOP = Stop(10.0, how="stop", audio_ms=10000)


def ctx(*events: Event, expect=None, pace: float | None = 1.0, started_without=()) -> CheckContext:
    return CheckContext(CallTimeline(sorted(events, key=lambda e: e.wall)), expect or {}, None, [],
                        audio_plays=pace is not None, pace=pace, started_without=started_without)


def media_message(pcm: np.ndarray, **extra) -> dict:
    return {"event": "media", "streamSid": STREAM, "media": {"payload": base64.b64encode(pcm16_to_ulaw(pcm)).decode()},
            **extra}


# 1. Failure 4 within the window the fake Twilio reads: forgiven before (a 1.0 s grace, 0.5 s of reading).
def test_what_failure4_forgives_is_less_than_what_the_fake_twilio_sees():
    assert STOP_GRACE_S < CLOSE_AFTER_STOP_S, "a send the check forgives must be one the fake Twilio could have seen"
    late = stops_sending_after_hangup(ctx(STOP, Media(10.45)))
    assert not late.ok and "failure 4" in late.message and "0.45 s after it" in late.message
    speech = stops_sending_after_hangup(ctx(STOP, TtsRequest(11.0, text="더 도와드릴까요?")))
    assert not speech.ok and "TTS was asked to speak" in speech.message


# 2. An error the handler logs after the call, once the TTS reply it waited for came: within the call's verdict.
LATE_SENDER = """
import asyncio, json, os, sys, aiohttp
from aiohttp import web
TTS = os.environ["TTS_BASE_URL"]
async def media(request):
    ws = web.WebSocketResponse(); await ws.prepare(request)
    sid, said = "", False
    async with aiohttp.ClientSession() as http:
        async for msg in ws:
            m = json.loads(msg.data)
            if m["event"] == "start":
                sid = m["start"]["streamSid"]; print("call started", flush=True)
            elif m["event"] == "media" and not said:
                said = True
                async def reply():  # TTS first, then send: no check that the call is still there
                    await asyncio.sleep(0.2)
                    async with http.post(TTS + "/audio/speech", json={"input": "네", "response_format": "pcm"}) as r:
                        audio = await r.read()
                    try:
                        await ws.send_str(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": ""}}))
                    except Exception as exc:
                        print(f"ERROR reply send failed: {exc!r}", flush=True)
                asyncio.ensure_future(reply())
        await asyncio.sleep(3)
    return ws
app = web.Application(); app.router.add_get("/ws", media)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def test_an_error_logged_after_the_hang_up_is_judged_with_its_call(tmp_path):
    script = tmp_path / "late.py"
    script.write_text(LATE_SENDER)
    call = tmp_path / "late-tts"
    doc = json.loads(Path(SEED, "call.json").read_text())
    doc.update(name="late-tts", caller={"hangup_ms": 1000}, tts={"first_chunk_ms": 1500}, expect={})
    call.mkdir()
    (call / "call.json").write_text(json.dumps(doc, ensure_ascii=False))
    (call / "caller.wav").write_bytes(Path(SEED, "caller.wav").read_bytes())
    target = CommandTarget(f"{sys.executable} {script} {{port}}", path="/ws", ready_timeout=30)
    [run] = await run_target(target, [load_call(call)], pace=1.0)
    check = next(c for c in run.checks if c.name == "no_errors")
    assert check.status == "failed" and "reply send failed" in check.message, run.checks


# 3. A silent hang-up when RTZR refuses the credentials fails as failure 1, as it does without credentials.
def test_a_silent_hang_up_on_refused_credentials_is_failure1():
    refused = [RtzrRefused(0.1, connection=0, status=401), Closed(0.2, by_handler=True)]
    silent = refuses_without_credentials(ctx(*refused, expect={"call_refused": True}))
    assert not silent.ok and silent.message.startswith("failure 1: RTZR refused") and "without a word" in silent.message
    audible = [*refused[:1], *(Media(0.15, ms=20.0) for _ in range(25)), refused[1]]
    assert refuses_without_credentials(ctx(*audible, expect={"call_refused": True}, pace=None)).ok
    cut = refuses_without_credentials(ctx(*audible, Clear(0.16), expect={"call_refused": True}))
    assert not cut.ok, "audio cleared before it played is not a refusal the caller heard"


# 5. Messages Twilio would not take: no streamSid, binary, not JSON, a file header; audio at the wrong rate.
@pytest.mark.parametrize("text,why", [
    (json.dumps({"event": "media", "media": {"payload": "AAAA"}}), "without streamSid"),
    (json.dumps({"event": "media", "streamSid": "MZ" + "2" * 32, "media": {"payload": "AAAA"}}), "not this stream's"),
    ("{not json", "not JSON"), (json.dumps({"event": "play", "streamSid": STREAM}), "Twilio takes only"),
    (json.dumps({"event": "mark", "streamSid": STREAM, "mark": {}}), "mark without mark.name"),
    (json.dumps({"event": "media", "streamSid": STREAM, "media": {"payload": "!!"}}), "not base64"),
])
def test_a_message_twilio_drops_is_named(text, why):
    message, rejection = judge_text(text, STREAM)
    assert message is None and rejection is not None and why in rejection.why and rejection.code == 31951


def test_a_wav_header_in_the_payload_is_played_but_named():
    header = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt ").decode()
    message, rejection = judge_text(json.dumps({"event": "media", "streamSid": STREAM, "media": {"payload": header}}), STREAM)
    assert message is not None and rejection is not None and not rejection.dropped and "WAV header" in rejection.why


def test_twilio_messages_fails_on_a_dropped_message_and_forgives_a_protocol_error_after_the_call():
    dropped = HandlerInvalid(1.0, code=31951, why="media without streamSid", dropped=True)
    result = twilio_messages(ctx(dropped, STOP))
    assert not result.ok and "streamSid" in result.message and "31951" in result.message
    after = HandlerInvalid(10.5, code=31924, why="a WebSocket protocol error: ...", dropped=True)
    assert twilio_messages(ctx(STOP, after)).ok  # werkzeug's reply on a socket that was already closed


def _tts_audio(hz: float, seconds: float, as_if_8k: bool) -> np.ndarray:
    pcm = np.frombuffer(tone(int(24000 * seconds), 24000, "pcm", hz), dtype="<i2")
    if as_if_8k:
        return pcm  # 24 kHz samples sent as 8 kHz: three times too slow
    import soxr

    return soxr.resample(pcm, 24000, 8000).astype(np.int16)


@pytest.mark.parametrize("wrong", [False, True])
def test_bot_audio_at_the_wrong_sample_rate_is_heard_at_the_wrong_pitch(wrong):
    pcm = _tts_audio(TONES_HZ[0], 1.0, wrong)
    received = [(float(i), media_message(pcm[i * 160 : (i + 1) * 160])) for i in range(len(pcm) // 160)]
    timeline = CallTimeline([Media(w, ms=20.0) for w, _ in received], analyse(received))
    result = bot_audio_rate(CheckContext(timeline, {}, None, []))
    assert result.ok is not wrong
    if wrong:
        assert "200 Hz" in result.message and "24000 Hz audio sent as 8000 Hz" in result.message


# 6. Node's console.error(message, err): no level word, a JS stack.
NODE_LOG = """\
call CA11111111111111111111111111111111: started
call CA11111111111111111111111111111111: reply bookkeeping failed TypeError: Cannot read properties of undefined (reading 'turns')
    at Call.answer (/app/server.js:190:29)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
listening on ws://127.0.0.1:8080/media
/app/server.js:12
    calls[sid].turns += 1;
               ^

TypeError: Cannot set properties of undefined (setting 'turns')
    at Timeout._onTimeout (/app/server.js:12:16)

Node.js v20.20.2
2026-12-01 10:00:00,000 WARNING retrying the LLM
Traceback (most recent call last):
  File "x.py", line 1, in <module>
ConnectionError: reset
"""


def test_node_errors_and_warnings_with_tracebacks_are_read_as_they_are():
    reader = LogReader()
    for i, line in enumerate(NODE_LOG.splitlines()):
        reader.feed(line, float(i))
    assert [b.lines[0].split(": ", 1)[-1] for b in reader.blocks] == [
        "reply bookkeeping failed TypeError: Cannot read properties of undefined (reading 'turns')",
        "Cannot set properties of undefined (setting 'turns')"], "a warning's traceback is no error"
    assert "at Call.answer" in reader.blocks[0].text and not reader.blocks[0].unhandled
    assert reader.blocks[1].unhandled, "an uncaught exception is never an expected error"


# 7. The handler ends its own stream and never reopens it while the caller talks on.
def test_a_stream_the_handler_ends_itself_must_be_followed_by_another():
    own_end = RtzrEnd(3.7, connection=0, how="server_closed", code=1000, reason="EOS", call_ms=3700)
    later = SpeechEnd(7.4, utterance=1, text="다라", audio_ms=7380)
    result = recognition_continues(ctx(own_end, later, Stop(13.0, audio_ms=13300)))
    assert not result.ok and "by the handler" in result.message and "failure 2" in result.message
    again = Final(7.9, connection=1, text="다라")
    assert recognition_continues(ctx(own_end, later, again, Stop(13.0, audio_ms=13300))).ok


# 8. A werkzeug app writes "HTTP/1.1 200 OK" on the socket after its WebSocket ends: a replay, not a crash.
async def test_garbage_after_the_websocket_ends_is_recorded_not_a_crash():
    async def writes_http_after(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if '"stop"' in msg.data:
                request.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")  # as werkzeug does once flask-sock returns
        return ws

    app = web.Application()
    app.router.add_get("/ws", writes_http_after)
    async with running_fakes() as fakes, AppServer(app) as server:
        played = await asyncio.wait_for(play_call(load_call("fixtures/calls/silent-call"), Handler(f"{server.ws_url}/ws"),
                                                  fakes.rtzr, fakes.llm, fakes.tts, pace=None), 60)
    assert played.problem is None, played.problem
    errors = [m for _, m in played.record.received if m.get("code") == 31924]
    assert errors and "protocol error" in errors[0]["why"]


# 9. Two finals as two new user messages in one request are both given to the LLM.
def test_new_user_text_is_what_a_request_adds_to_the_one_before():
    def request(*users: str, status: int = 200) -> LlmRequest:
        messages = [{"role": "system", "content": "s"}] + [{"role": "user", "content": u} for u in users]
        return LlmRequest(messages, "m", status=status)

    assert new_user_text([request("가"), request("가", "나", "다")]) == [["가"], ["나", "다"]]
    assert new_user_text([request("가", status=500), request("가")]) == [["가"], ["가"]]  # the SDK's retry
    assert new_user_text([request("네"), request("네", "네")]) == [["네"], ["네"]]  # said twice, new once
    held = CheckContext(CallTimeline([Final(1.0, text="가나", connection=0),
                                      Final(2.0, text="다라", connection=0),
                                      ev.LlmRequest(2.1, user="가나\n다라", status=200)]), {}, None, [])
    assert finals_to_llm_once(held).ok


# 10. A reconnect after the hang-up is waited for, not raced.
async def test_the_judgement_waits_for_a_reconnect_the_call_still_needs():
    rtzr, llm, tts = FakeRtzrBackend(), FakeLlm(), FakeTts()
    fixture = load_call("fixtures/calls/stall-then-line-drops")
    stalled = ConnectionRecord(0)
    stalled.end("stalled", None, "fault: stall")
    stalled.closed_wall = 1.0
    rtzr.journal.add(stalled)
    done = asyncio.Event()

    async def reconnect_later() -> None:
        await asyncio.sleep(0.1)  # the handler's own backoff: it reconnects after its stalled stream closed
        again = ConnectionRecord(1)
        rtzr.journal.add(again)
        rtzr.journal_changed()
        await asyncio.sleep(0.1)
        again.messages.append(SentMessage("final", 1, "그냥 잘 지냅니다", 7880.0, 0.0, 0.0, 0.0, "{}"))
        again.closed_wall = 2.0
        rtzr.journal_changed()
        done.set()

    helper = asyncio.create_task(reconnect_later())
    await asyncio.wait_for(settle(fixture, rtzr, llm, tts), 10)
    assert done.is_set(), "judged before the reconnect the call needed had happened"
    await helper


# 11. An RTZR stream carrying words before this caller said them is another call's.
def test_a_stream_ahead_of_the_caller_is_another_calls():
    frames = np.full(700, np.nan)
    frames[:10] = np.arange(10) * 0.02 + 100.0  # this call has sent 0.2 s of audio so far
    leaked = ConnectionRecord(0, opened_wall=99.0)
    leaked.alignment = [{"event": "aligned", "conn_ms": 0.0, "call_ms": 7600.0}]
    leaked.messages = [SentMessage("final", 1, "그냥 잘 지냅니다", 280.0, 100.1, 100.1, 0.0, "{}")]
    assert is_foreign(leaked, frames, 100.0)
    own = ConnectionRecord(1, opened_wall=100.0)
    own.alignment = [{"event": "aligned", "conn_ms": 0.0, "call_ms": 0.0}]
    own.messages = [SentMessage("partial", 1, "안녕", 100.0, 102.5, 102.5, 0.0, "{}")]
    frames[:200] = np.arange(200) * 0.02 + 100.0
    assert not is_foreign(own, frames, 100.0)
    # opened before this call was dialled: another call's (a reconnect of the call before, resending audio that a
    # shrinking search's next call shares), whatever its words
    earlier = ConnectionRecord(2, opened_wall=99.9)
    earlier.alignment, earlier.messages = own.alignment, own.messages
    assert is_foreign(earlier, frames, 100.0, dialled=99.95) and not is_foreign(earlier, frames, 100.0)


def test_a_final_due_in_the_silence_a_waiting_caller_sent_is_this_calls():
    """Found by ``harness fuzz --calls-at-once 8`` on the websockets reference handler, after the fast caller began
    sending the silence that ends an utterance before it waits on the bot: the final fell in that held silence,
    placed where the audio before it ended (2820.125 ms, the frame before the hold ended at 2820), and the frame
    after the hold, sent 3 s later, was taken for the one it needed: the stream was another call's, its words
    were lost to this call, and its LLM request with them went unanswered."""
    frames = np.full(400, np.nan)
    frames[:141] = 100.0 + np.arange(141) * 0.0001  # fast pace: up to the hold at 2820 ms, at once
    frames[141:] = 103.0 + np.arange(259) * 0.0001  # the rest after the caller waited 3 s
    own = ConnectionRecord(1, opened_wall=100.0)
    own.alignment = [{"event": "aligned", "conn_ms": 0.0, "call_ms": 0.0},
                     {"event": "discontinuity", "conn_ms": 2820.125},
                     {"event": "aligned", "conn_ms": 3720.125, "call_ms": 2820.125}]
    own.messages = [SentMessage("final", 1, "l20w0 l20w1 l20w2 l20w3", 3505.0, 100.02, 100.02, 0.0, "{}")]
    assert not is_foreign(own, frames, 100.0, dialled=99.99)


# 13. A slow handler whose reply came after the caller's last word: nothing to barge in on (in test_checks).
# 14. Latency and "caller heard" credited to the reply that answers each turn.
def test_a_turn_whose_reply_was_never_heard_has_no_latency_even_if_audio_follows_it():
    events = [
        SpeechStart(0.0, utterance=0, text="가나", audio_ms=0),
        SpeechEnd(2.0, utterance=0, text="가나", audio_ms=2000),
        Final(2.5, connection=0, text="가나", call_ms=2500),
        ev.LlmRequest(2.6, index=0, user="가나", reply="응답 하나.", status=200),
        TtsRequest(2.7, index=0, text="응답 하나.", status=200),
        *(Media(2.8 + i * 0.02, ms=20.0, tts=0) for i in range(200)),  # t1's reply, 4 s long
        SpeechStart(4.0, utterance=1, text="다라", audio_ms=4000),
        SpeechEnd(5.0, utterance=1, text="다라", audio_ms=5000),
        Final(5.5, connection=0, text="다라", call_ms=5500),
        ev.LlmRequest(5.6, index=1, user="다라", reply="응답 둘.", status=200),
        TtsRequest(5.7, index=1, text="응답 둘.", status=200, abandoned=True),
        Stop(9.0, how="stop", audio_ms=9000),
    ]
    timeline = CallTimeline(sorted(events, key=lambda e: e.wall))
    first, second = turn_metrics(timeline)
    assert first.speech_end_to_first_audio_ms == 800.0 and second.speech_end_to_first_audio_ms is None
    t1, t2 = turns(timeline, 1.0)
    assert t1.heard_seconds == pytest.approx(4.0) and t2.heard_seconds == 0.0 and t2.reply == "응답 둘."
    heard = expectations(CheckContext(timeline, {"answered_turns": 2}, None, []))
    assert not heard.ok and "no reply heard for t2" in heard.message


# 15. Lines read at one moment keep their order in handler.log (a traceback is not sorted).
def test_the_saved_log_keeps_lines_in_the_order_they_came(tmp_path):
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "KeyError: 'a'"]
    saved = SavedLog(tmp_path / "h.log")
    saved.open()
    saved.marker("fixture x")
    LogReader(sink=saved.line).feed_text("".join(line + "\n" for line in lines), 1.0)
    saved.close()
    assert (tmp_path / "h.log").read_text().splitlines() == ["---- harness: fixture x ----", *lines]


# 16. The failure 4 excerpt shows the stop it counts from.
def test_the_failure4_excerpt_starts_at_the_stop():
    timeline = CallTimeline([STOP, *(Media(10.3 + i * 0.02) for i in range(50)), Mark(13.5, name="x")])
    result = stops_sending_after_hangup(CheckContext(timeline, {}, None, []))
    excerpt = why(timeline, result)
    assert any(" stop " in line for line in excerpt) and any("bot audio" in line for line in excerpt)


def test_a_request_running_on_long_after_the_hang_up_is_work_for_a_dead_call():
    reading = TtsRequest(5.0, index=0, text="네.", status=200, ended=12.5)
    result = upstream_closed_after_hangup(ctx(reading, STOP))
    assert not result.ok and "went on 2.5 s after the call" in result.message
    assert upstream_closed_after_hangup(ctx(TtsRequest(5.0, text="네.", ended=10.3), STOP)).ok


# 16. The rough edges: -k twice, how many at once, the fake TTS's rate said, no wait on a live handler, its number.
def test_k_given_twice_replays_both_and_the_run_says_how_many_at_once(tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed", "-k", "silent",
                           "--report-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replaying 2 fixture(s)" in done.stdout and "2 at once, each with its own handler and fakes" in done.stdout
    assert {r["fixture"] for r in json.loads((tmp_path / "report.json").read_text())["runs"]} == {
        "seed-three-turns", "silent-call"}


QUIET_SERVER = """
import sys
from aiohttp import web
async def media(request):
    ws = web.WebSocketResponse(); await ws.prepare(request)
    async for _ in ws: pass
    return ws
app = web.Application(); app.router.add_get("/ws", media)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def test_a_live_handler_is_not_waited_on_and_each_process_keeps_its_number(tmp_path):
    script = tmp_path / "quiet.py"
    script.write_text(QUIET_SERVER)
    target = CommandTarget(f"{sys.executable} {script} {{port}}", path="/ws", ready_timeout=30, log_path=tmp_path / "h.log")
    async with running_fakes() as fakes, target.start(fakes) as first:
        assert await asyncio.wait_for(first.exited(30), 5) is None, "a handler that still listens was waited on"
        async with target.start(fakes, without=("RTZR_CLIENT_ID",)):
            pass
    log = (tmp_path / "h.log").read_text()
    assert log.index("handler stopped (#2)") < log.index("handler stopped (#1)"), log


def test_the_fakes_say_what_rate_the_tts_speaks(capsys):
    from harness.cli.common import print_fakes

    print_fakes(type("Fakes", (), {"rtzr_url": "r", "llm_url": "l", "tts_url": "t"})(), paste=False)
    assert "pcm: raw 16-bit little-endian mono at 24 kHz" in capsys.readouterr().out


# 18. A report written where no Korean font exists says so, on the page and in the console.
def test_a_report_without_a_korean_font_says_so(tmp_path, monkeypatch, caplog):
    import harness.reports.fonts as fonts
    from harness.reports.html import write_html
    from harness.replay.runner import FixtureRun

    monkeypatch.setattr(fonts, "find_korean_font", lambda: None)
    fixture = load_call(SEED)
    said = CallTimeline([SpeechStart(0.0, utterance=0, text="안녕하세요", audio_ms=800),
                         SpeechEnd(1.0, utterance=0, text="안녕하세요", audio_ms=3100)])
    write_html([FixtureRun(fixture, [], [], said, 0.0)], tmp_path / "r.html", "fast")
    page = (tmp_path / "r.html").read_text()
    assert "No Korean font was found" in page and "HARNESS_REPORT_FONT" in page
    assert any("No Korean font" in r.getMessage() for r in caplog.records)
