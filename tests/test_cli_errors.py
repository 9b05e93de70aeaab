"""Every CLI mistake a new user made in their first hour is one line naming the problem, and exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

CREDENTIALS = {"RTZR_CLIENT_ID": "a", "RTZR_CLIENT_SECRET": "b", "OPENAI_API_KEY": "c"}


def run(tool: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in CREDENTIALS and k != "AICALL_DB"}
    return subprocess.run([sys.executable, "-m", f"{tool}.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.mark.parametrize("content,words", [
    (None, ("nope.json: cannot read: No such file or directory",)),
    ("{bad", ("not valid JSON", "line 1, column 2")),
    ('{"utterances": [{"text": "가"}]}', ("'name' is missing",)),
    ('{"name": "x", "utterances": []}', ("'utterances' must be a non-empty list",)),
    ('{"name": "x", "utterances": [{"pause_after_ms": 3}]}', ("utterances[0] needs a non-empty 'text'",)),
])
def test_make_fixture_with_a_bad_spec(tmp_path, content, words):
    spec = tmp_path / "nope.json"
    if content is not None:
        spec.write_text(content)
    one_line_error(run("harness", "make-fixture", "--script", str(spec)), *words)


def test_make_fixture_with_audio_no_program_can_read_names_what_to_install(tmp_path):
    audio, lines = tmp_path / "call.mp3", tmp_path / "lines.txt"
    audio.write_text("not audio at all")
    lines.write_text("가\n")
    done = run("harness", "make-fixture", "--audio", str(audio), "--transcript", str(lines), "--name", "x",
               "--out", str(tmp_path / "out"), env={"PATH": ""})  # as on a machine without ffmpeg
    one_line_error(done, "not WAV, FLAC, Ogg or MP3", "apt-get install ffmpeg")


@pytest.mark.parametrize("tool,args,words", [
    ("fakertzr", ("serve", "--epd-time", "abc"), ("--epd-time: must be a number, got 'abc'",)),
    ("fakertzr", ("serve", "--max-streams", "-1"), ("--max-streams: must be 1 or more",)),
    ("fakertzr", ("serve", "--workers", "0"), ("--workers: must be auto or a number of processes 1-256, got '0'",)),
    ("harness", ("load", "--callers", "10,x"), ("--callers: must be caller counts above 0",)),
    ("harness", ("make-fixture", "--audio", "x.wav", "--gap-ms", "-5"), ("--gap-ms: must be a whole number of milliseconds",)),
    ("aicall", ("calls",), ("AICALL_DB=/nonexistent/dir/x.db: cannot use it as the call store",)),
    ("fakertzr", ("record", "--redact", "ssn"), ("--redact: unknown ssn (known: phone, rrn, card)",)),
    ("fakertzr", ("record", "--upstream", "openapi.vito.ai"), ("must be an http(s) URL",)),
    ("harness", ("record", "--target", "http://127.0.0.1:8080"), ("--target must be a ws:// or wss:// URL",)),
    ("harness", ("record", "--target", "ws://x", "--name", "My Call"), ("--name must be lower case",)),
    ("harness", ("run", "--calls-at-once", "0"), ("--calls-at-once: between 1 and 64 calls at once, got 0",)),
    ("harness", ("run", "--calls-at-once", "2", "--fresh-handler", "--cmd", "x"),
     ("--calls-at-once plays calls into one handler; --fresh-handler gives each call its own",)),
    ("harness", ("fuzz", "--calls-at-once", "2", "--maximize", "latency"), ("--maximize steers one call at a time",)),
    ("harness", ("fuzz", "--steer"), ("--steer goes with --cmd or --target",)),
])
def test_bad_values_are_named(tool, args, words):
    one_line_error(run(tool, *args, env={"AICALL_DB": "/nonexistent/dir/x.db"}), *words)


def test_a_junk_store_is_named(tmp_path):
    junk = tmp_path / "x.db"
    junk.write_text("not a database, just text " * 100)
    one_line_error(run("aicall", "calls", env={"AICALL_DB": str(junk)}), "not an SQLite database")
    one_line_error(run("aicall", "serve", env={**CREDENTIALS, "AICALL_DB": str(junk)}), "not an SQLite database")


def test_aicall_serve_on_a_taken_port_says_so_without_claiming_to_listen(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("aicall", "serve", "--port", str(port), env={**CREDENTIALS, "AICALL_DB": str(tmp_path / "c.db")})
    one_line_error(done, f"cannot listen on 127.0.0.1:{port}")
    assert "listening" not in done.stdout


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_aicall_serve_on_port_0_prints_the_port_it_got_and_its_loop(tmp_path, loop):
    proc = subprocess.Popen([sys.executable, "-m", "aicall.cli", "serve", "--port", "0", "--loop", loop],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **CREDENTIALS, "AICALL_DB": str(tmp_path / "c.db")})
    try:
        line = proc.stdout.readline()  # blocks until it listens
        assert "listening on http://127.0.0.1:" in line and ":0 " not in line, line
        assert f"{'uvloop' if loop == 'auto' else 'asyncio'} loop)" in line, line  # the suite installs the [fast] extra
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_aicall_check_names_every_missing_variable():
    one_line_error(run("aicall", "check"), "RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET", "OPENAI_API_KEY")


@pytest.mark.parametrize("tool,commands", [("harness", "run,fuzz,load,fakes,make-fixture,record,locustfile"), ("fakertzr", "serve,record"),
                                           ("aicall", "serve,check,calls,show")])
def test_a_bare_command_lists_its_commands(tool, commands):
    done = run(tool)
    assert done.returncode == 2 and "{" + commands + "}" in done.stdout, done.stdout + done.stderr


def test_fakertzr_without_a_script_says_what_it_will_answer():
    proc = subprocess.Popen([sys.executable, "-m", "fakertzr.cli", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert any("'발화 1'" in line and "--script" in line for line in lines), lines


def test_harness_run_finds_the_bundled_calls_from_any_directory(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed-three",
                           "--report-dir", str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replaying 1 fixture(s) from " in done.stdout and "seed-three-turns: PASS" in done.stdout


def test_a_fuzz_failures_replay_line_keeps_how_the_handler_is_reached():
    """The ``harness run`` line ``harness fuzz`` prints for a failure replays it the way it was found: steered,
    over TLS, through the handler's webhook."""
    from harness.cli.fuzz import _target_args

    line = _target_args(["--cmd", "python app.py --port {port}", "--path", "/media", "--steer", "--tls",
                         "--voice", "/voice", "--place=/call", "--examples", "5", "--seed", "3"])
    assert line == "--cmd 'python app.py --port {port}' --path /media --steer --tls --voice /voice --place=/call --pace fast"
