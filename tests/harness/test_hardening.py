"""Hardening round three: interrupts, a handler that misbehaves, report writes. Each test failed on the harness
before this round; the signal and process ones drive the real CLI in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fakertzr.appserver import AppServer
from harness.fakes.twilio_line import MAX_KEPT_MEDIA, TwilioLine

from harness.judge.handler_log import MAX_LINE_CHARS, TAIL_BYTES, LogReader
from harness.replay.saved_log import SavedLog
from harness.files import ReportNotWritten, write_atomically
from harness.terminal import printable

SEED = "seed-three-turns"
SHORT = "failure3-hangup-while-llm-generates"  # the caller hangs up 4.7 s in: the shortest bundled call
CLI = [sys.executable, "-m", "harness.cli"]

# A handler that misbehaves as asked: it double-forks a daemon that detaches (setsid) and keeps the handler's stdout
# open, tells a FIFO when a call starts, and logs an ERROR line full of terminal control sequences.
MISBEHAVING = r'''
import os, sys, time
from aiohttp import web
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
if "--daemon" in args:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(args["--daemon"], "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(3600)
        os._exit(0)
async def media(request):
    ws = web.WebSocketResponse(); await ws.prepare(request)
    async for msg in ws:
        if '"start"' in msg.data:
            sid = msg.data.split('"callSid": "')[1].split('"')[0]
            if "--evil" in args:
                print(f"ERROR call {sid} failed \x1bc\x1bP+q\x1b\\ \x1b[2J\x1b[H\rover\x08\x08 \x9b31m done", flush=True)
            if "--fifo" in args:
                with open(args["--fifo"], "w") as f:
                    f.write("started\n")
    return ws
app = web.Application(); app.router.add_get("/media", media)
web.run_app(app, host="127.0.0.1", port=int(args["--port"]), print=None)
'''


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def read_line(stream, timeout: float) -> str:
    """The next line of ``stream``, or a failed test after ``timeout`` (a thread reads; nothing sleeps)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got:
        pytest.fail(f"no line within {timeout} s")
    return got[0]


def wait_for_line(stream, prefix: str, timeout: float = 120) -> str:
    while True:
        line = read_line(stream, timeout)
        if not line:
            pytest.fail(f"the output ended before a line starting {prefix!r}")
        if line.startswith(prefix):
            return line


def interruptible(args: list[str], **kwargs) -> subprocess.Popen:
    """The CLI as a terminal starts it: SIGINT at its default (a test run in the background inherits it ignored)."""
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


# 1. Ctrl-C after the first of two calls: one line, exit 130, the finished call in every report.
def test_ctrl_c_keeps_the_finished_calls_in_the_reports(tmp_path):
    proc = interruptible(["run", "--pace", "x2", "--jobs", "1", "-k", SHORT, "-k", SEED,
                          "--report-dir", str(tmp_path)])
    wait_for_line(proc.stdout, "[1/2]")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "interrupted by Ctrl-C (SIGINT) after 1 of 2 calls" in err, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert [run["fixture"] for run in report["runs"]] == [SHORT] and report["summary"]["interrupted"]["not_run"] == [SEED]
    junit = (tmp_path / "junit.xml").read_text()
    assert 'name="not replayed"' in junit and "interrupted by Ctrl-C" in junit
    assert "interrupted by Ctrl-C" in (tmp_path / "report.html").read_text()


# 2. SIGTERM mid-call (CI's timeout): the handler the harness launched is ended, exit 143, an interrupted report.
def test_sigterm_mid_call_ends_the_handler_and_reports(tmp_path):
    script = tmp_path / "handler.py"
    script.write_text(MISBEHAVING)
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    pid_file = tmp_path / "handler.pid"
    cmd = f"echo $$ > {pid_file}; exec {sys.executable} {script} --port {{port}} --fifo {fifo}"
    proc = interruptible(["run", "--pace", "realtime", "-k", SEED, "--cmd", cmd, "--path", "/media",
                          "--report-dir", str(tmp_path / "r")])
    with open(fifo) as started:  # blocks until the handler has the call
        assert read_line(started, 60) == "started\n"
    handler_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert "interrupted by SIGTERM after 0 of 1 calls" in err and "Traceback" not in err, err
    assert not alive(handler_pid), "the handler outlived the harness"
    assert json.loads((tmp_path / "r" / "report.json").read_text())["summary"]["interrupted"]["planned"] == 1


def test_sigterm_removes_the_in_process_runs_temporary_files(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = interruptible(["run", "--pace", "x2", "--jobs", "1", "-k", SHORT, "-k", SEED,
                          "--report-dir", str(tmp_path / "r")], env={**os.environ, "TMPDIR": str(tmp)})
    wait_for_line(proc.stdout, "[1/2]")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert list(tmp.iterdir()) == [], "temporary files left behind"


# 4, 5. A handler that double-forks a detached daemon holding its stdout: the run ends, the daemon is killed and named.
def test_a_detached_daemon_is_killed_and_does_not_hang_the_run(tmp_path):
    script = tmp_path / "handler.py"
    script.write_text(MISBEHAVING)
    daemon_pid = tmp_path / "daemon.pid"
    done = subprocess.run([*CLI, "run", "--pace", "fast", "-k", SHORT, "--path", "/media", "--report-dir",
                           str(tmp_path / "r"), "--cmd", f"{sys.executable} {script} --port {{port}} --daemon {daemon_pid}"],
                          capture_output=True, text=True, timeout=180)
    assert (tmp_path / "r" / "report.json").exists(), done.stdout + done.stderr
    pid = int(daemon_pid.read_text())
    assert not alive(pid), "the daemon outlived the run"
    assert re.search(rf"the handler left 1 process\(es\) running when it ended: killed pid {pid} ", done.stderr), done.stderr
    assert f"killed pid {pid}" in (tmp_path / "r" / "handler.log").read_text()


# 7. A handler's log line with terminal control sequences reaches the console escaped.
def test_handler_text_reaches_the_terminal_escaped(tmp_path):
    script = tmp_path / "handler.py"
    script.write_text(MISBEHAVING)
    done = subprocess.run([*CLI, "run", "--pace", "fast", "-k", SHORT, "--path", "/media", "--report-dir",
                           str(tmp_path / "r"), "--cmd", f"{sys.executable} {script} --port {{port}} --evil 1"],
                          capture_output=True, text=True, timeout=180)
    assert "no_errors: FAILED" in done.stdout, done.stdout
    assert not any(c in done.stdout + done.stderr for c in "\x1b\x9b\r\x08"), repr(done.stdout[-2000:])
    assert r"\x1bc" in done.stdout and r"\x9b31m" in done.stdout


def test_printable_escapes_every_control_character_but_newline_and_tab():
    assert printable("a\x1b[2Jb\rc\x08\x9b\x7f\td\n") == "a\\x1b[2Jb\\x0dc\\x08\\x9b\\x7f\td\n"


# 6. Bounded memory whatever the handler writes: a tail of lines, cut long lines, a capped saved log.
def test_the_log_reader_keeps_a_bounded_tail_and_cuts_endless_lines(tmp_path):
    saved = SavedLog(tmp_path / "handler.log", max_bytes=1_000_000)
    saved.open()
    reader = LogReader(sink=saved.line)
    line = "INFO " + "x" * 995 + "\n"
    for k in range(6000):  # 6 MB of lines, past the 4 MiB tail and the 1 MB cap
        reader.feed_text(line, float(k))
    reader.feed_text("y" * (3 * MAX_LINE_CHARS), 6000.0)  # a line that does not end
    reader.feed_text("y" * (3 * MAX_LINE_CHARS) + "\nERROR last\n", 6001.0)
    saved.close()
    assert sum(len(text) + 1 for _, text in reader.lines) <= TAIL_BYTES
    assert all(len(text) <= MAX_LINE_CHARS + 40 for _, text in reader.lines) and reader.cut_lines == 1
    assert reader.blocks[-1].lines == ["ERROR last"]
    text = (tmp_path / "handler.log").read_text()
    assert len(text) < 1_100_000 and "handler.log is cut here" in text and "bytes of the handler's output were not saved" in text


# 12. --report-dir that cannot be written is one line, before the replay.
@pytest.mark.parametrize("make", ["file", "under-a-file"])
def test_an_unwritable_report_dir_is_refused_before_the_replay(tmp_path, make):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    target = blocker if make == "file" else blocker / "reports"
    done = subprocess.run([*CLI, "run", "--pace", "fast", "-k", SEED, "--report-dir", str(target)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "[1/1]" not in done.stdout, done.stdout + done.stderr
    assert done.stderr.startswith("harness: error: --report-dir") and done.stderr.count("\n") == 1, done.stderr


# 13. A full disk while writing over a good report: the good report stays whole.
def test_a_full_disk_keeps_the_earlier_report(tmp_path):
    script = tmp_path / "handler.py"  # a handler that writes nothing to disk: only the reports meet the limit
    script.write_text(MISBEHAVING)
    run = [*CLI, "run", "--pace", "fast", "-k", SHORT, "--report-dir", str(tmp_path / "r"), "--path", "/media",
           "--cmd", f"{sys.executable} {script} --port {{port}}"]
    first = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1 and (tmp_path / "r" / "report.json").exists(), first.stdout + first.stderr
    tmp_path = tmp_path / "r"
    good = (tmp_path / "report.json").read_bytes()
    limit = len(good) // 2  # no file may grow past this: report.json cannot be written whole

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    second = subprocess.run(run, capture_output=True, text=True, timeout=120, preexec_fn=small_disk)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "cannot write" in second.stderr and "(the earlier one there is kept)" in second.stderr, second.stderr
    assert (tmp_path / "report.json").read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "a temporary file left behind"


def test_write_atomically_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    path.write_text("good")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ReportNotWritten, match="No space left on device"):
        write_atomically(path, "new")
    assert path.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["report.json"]



# 6. The fake Twilio's memory is bounded whatever the handler sends: one huge frame closes the stream with 1009; a
# flood of media is counted past what one call keeps; every one of many marks is echoed, in order.
async def flooding_handler(request):
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if '"start"' not in msg.data:
            continue
        sid = json.loads(msg.data)["streamSid"]
        if request.query.get("huge"):
            await ws.send_str(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "A" * (8 << 20)}}))
        else:
            frame = json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "/" * 16}})  # 1.5 ms each
            for k in range(MAX_KEPT_MEDIA + 5000):
                await ws.send_str(frame)
                if k < MARKS:
                    await ws.send_str(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": f"m{k}"}}))
            await ws.send_str(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "end"}}))
    return ws


MARKS = 20_000


async def play_against_flood(query: str) -> TwilioLine:
    app = web.Application()
    app.router.add_get("/media", flooding_handler)
    async with AppServer(app) as server, aiohttp.ClientSession() as session:
        line = TwilioLine(session, f"{server.ws_url}/media{query}", call_sid="CA" + "1" * 32, stream_sid="MZ" + "1" * 32,
                          pace=None)
        await line.open()
        if query:
            await asyncio.wait_for(line.closed.wait(), 30)
        else:
            await line.wait_for(lambda l: bool(l.record.marks_played) and l.record.marks_played[-1][1] == "end", 120)
            await line.close()
        return line


async def test_one_huge_frame_closes_the_stream_with_1009():
    line = await play_against_flood("?huge=1")
    assert line.ws.close_code == 1009
    assert any(m.get("event") == "invalid" and "protocol error" in str(m) for _, m in line.record.received)


async def test_a_media_flood_is_counted_past_what_one_call_keeps_and_marks_are_echoed_in_order():
    line = await play_against_flood("")
    record = line.record
    kept = sum(m.get("event") == "media" for _, m in record.received)
    assert len(record.received) <= MAX_KEPT_MEDIA + MARKS + 2 and record.media_not_kept > 0
    assert kept + record.media_not_kept == MAX_KEPT_MEDIA + 5000, "every frame counted, kept or not"
    assert [name for _, name in record.marks_played] == [*(f"m{k}" for k in range(MARKS)), "end"]
    assert any(m.get("event") == "harness_note" for _, m in record.received)


# 1 (fuzz, load, fakes): the same signals, the same one line, no traceback.
def test_ctrl_c_in_fuzz_writes_what_was_judged(tmp_path):
    proc = interruptible(["fuzz", "--examples", "200", "--pace", "fast", "--seed", "3", "--no-database",
                          "--report-dir", str(tmp_path)], cwd=tmp_path)
    wait_for_line(proc.stdout, "fuzz: 1 of 200 call(s) drawn")  # the first call judged
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "harness fuzz: interrupted by Ctrl-C (SIGINT) after" in err, err
    summary = json.loads((tmp_path / "fuzz.json").read_text())["searches"][0]
    assert summary["interrupted"] == "Ctrl-C (SIGINT)"


def test_sigterm_in_load_is_one_line(tmp_path):
    proc = interruptible(["load", "--callers", "2", "--hold", "30", "--report-dir", str(tmp_path)], cwd=tmp_path)
    wait_for_line(proc.stdout, "load: judged by")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "harness load: interrupted by SIGTERM" in err and "Traceback" not in err, out + err


def test_sigterm_stops_harness_fakes_as_ctrl_c_does(tmp_path):
    proc = interruptible(["fakes", "--ports", "0,0,0"])
    wait_for_line(proc.stdout, "Ctrl-C")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err.strip() == "harness fakes: stopped by SIGTERM", err


# Sends itself a signal where CI's SIGTERM once landed: inside uvloop's own start, once the loop is marked running
# (its ``_setup_or_resume_signals`` asks ``threading.main_thread()``, bound when uvloop is imported, so patched first).
SIGNAL_AS_UVLOOP_STARTS = r'''
import asyncio, os, signal, sys, threading
real, sent, loops = threading.main_thread, [], []
def main_thread():
    if loops and loops[0].is_running() and not sent:
        sent.append(1)
        os.kill(os.getpid(), int(sys.argv[1]))  # its Python handler runs before this returns
    return real()
threading.main_thread = main_thread
import uvloop
from harness.cli.interrupts import Interrupted, run_until_signal, signals_interrupt
ran = []
async def work():
    ran.append(1)
    await asyncio.Event().wait()
def factory():
    loops.append(uvloop.new_event_loop())
    return loops[0]
try:
    with signals_interrupt():  # as ``harness`` runs every command
        run_until_signal(work(), factory)
except Interrupted as exc:
    print(f"interrupted by {exc.how}; signal sent: {bool(sent)}; work ran: {bool(ran)}; loop closed: {loops[0].is_closed()}")
'''


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_loop_starts_is_an_interrupt_not_a_traceback(signum):
    pytest.importorskip("uvloop")
    done = subprocess.run([sys.executable, "-c", SIGNAL_AS_UVLOOP_STARTS, str(int(signum))], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).parents[2])
    how = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == f"interrupted by {how}; signal sent: True; work ran: False; loop closed: True\n"


SIGNAL_AS_THE_LOOP_CLOSES = r'''
import asyncio, os, signal
from harness.cli.interrupts import Interrupted, run_until_signal, signals_interrupt
async def finishes_then_signalled():
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)  # lands after this has returned
    return "done"
try:
    with signals_interrupt():
        run_until_signal(finishes_then_signalled())
except Interrupted as exc:
    print(f"interrupted by {exc.how}")
'''


def test_a_signal_as_the_loop_closes_still_interrupts():
    """Before, the loop's removal of its handler left SIGTERM's default there: the process died, no cleanup ran."""
    done = subprocess.run([sys.executable, "-c", SIGNAL_AS_THE_LOOP_CLOSES], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[2])
    assert (done.returncode, done.stdout, done.stderr) == (0, "interrupted by SIGTERM\n", "")
