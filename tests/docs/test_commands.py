"""The commands the README and the docs give (their ``bash`` blocks) are run, where they can be: a command
runs to its exit, a server runs until it says it is up and then stops on Ctrl-C, and a command that cannot
run here (credentials, your own handler, minutes of work) says why below. A command the docs add is run by
default, so no block goes stale unseen; an entry here whose command the docs no longer give fails."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(bash|sh|shell)\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Run:
    """Run to its exit: ``command`` instead of the docs' own when given (``why`` says what differs)."""

    why: str = ""
    command: str | None = None
    cwd: str | None = None  # relative to the repository; default: an empty directory
    timeout: float = 120
    needs: str | None = None  # a program it runs, skipped (saying so) without it
    beside: bool = False  # run as one of the suite's long runs, beside the rest (tests/support/long_runs.py)


@dataclass(frozen=True)
class Serve:
    """A server: up when its output matches ``ready``, then stopped with Ctrl-C as the docs say."""

    ready: str
    then: str | None = None  # a command run against it while it is up (the docs' next line)


@dataclass(frozen=True)
class Skip:
    why: str


CURL = 'curl -s -X POST http://127.0.0.1:8765/v1/authenticate -d client_id=fakertzr-client -d client_secret=fakertzr-secret'
CREDENTIALS = "needs real RTZR and OpenAI credentials"
COMMANDS: dict[str, Run | Serve | Skip] = {
    "pip install -c constraints.txt -e '.[dev]' && harness run": Run(
        "the install is .ci/run's own first step; the main job runs as written (real-time calls, mostly waiting: "
        "beside the rest of the suite)", command="harness run", timeout=240, beside=True),
    "python -m pytest -q": Skip("it is this suite"),
    'harness run --cmd "uvicorn app:app --port {port}" --path /media-stream': Run(
        "your app.py: the FastAPI example is one; its first call of the 18 (tests/examples replays them all)",
        command='harness run --cmd "uvicorn app:app --port {port}" --path /media-stream -k seed-three-turns '
                '--pace fast --report-dir "$TMP_REPORT"', cwd="examples/fastapi_handler"),
    'harness run --cmd "uvicorn app:app --port {port}" --path /media-stream --tls': Run(
        "your app.py: the FastAPI example is one, over TLS; its first call (tests/harness/test_tls.py tries each client "
        "library's trust variable alone)",
        command='harness run --cmd "uvicorn app:app --port {port}" --path /media-stream --tls -k seed-three-turns '
                '--pace fast --report-dir "$TMP_REPORT"', cwd="examples/fastapi_handler"),
    'harness run --cmd "python proving_ground/handlers/deployed_handler.py --port {port}" --path /media --steer '
    '--voice /voice': Skip("every bundled call, a minute; tests/proving_ground/test_deployed_handler.py replays it "
                           "steered and through its webhook, and its variant that reaches an unfaked host"),
    'harness run --cmd "python proving_ground/handlers/deployed_handler.py --port {port}" --path /media --steer '
    '--place /call': Skip("every bundled call, a minute (all 30 passed when this option came); "
                          "tests/proving_ground/test_deployed_handler.py has the handler place a call, steered"),
    'harness run --cmd "node proving_ground/handlers/node_handler/deployed.js --port {port}" --path /media --steer '
    '--voice /voice': Skip("every bundled call, about seven minutes at real time (all 30 passed, the same verdicts "
                           "as server.js); tests/proving_ground/test_deployed_handler.py replays three, steered "
                           "through its webhook, and its variant that reaches an unfaked host"),
    'harness run --cmd "node server.js --port {port}" --path /media': Run(
        "the proving ground's Node.js handler is one; its first call of the 18 (tests/proving_ground replays them all)",
        command='harness run --cmd "node server.js --port {port}" --path /media -k seed-three-turns --pace fast '
                '--report-dir "$TMP_REPORT"', cwd="proving_ground/handlers/node_handler", needs="node"),
    'harness run --cmd "python bot.py --port {port}" --path /ws --pace realtime': Skip(
        "your bot.py: tests/examples replays the pipecat example with this command over every bundled call"),
    "harness run --target ws://127.0.0.1:8000/media-stream --fake-ports 8765,8766,8767 --handler-log app.log": Skip(
        "needs your handler running on port 8000 (tests/harness/test_any_handler.py uses --target)"),
    "harness fakes": Serve(r"Ctrl-C to stop"),
    "fakertzr serve --port 8765 --grpc-port 50051": Serve(r"gRPC on 127\.0\.0\.1:50051"),
    CURL: Serve(r"fakertzr listening on http://127\.0\.0\.1:8765", then="fakertzr serve --port 8765"),
    "export RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... OPENAI_API_KEY=... PUBLIC_URL=https://your.host": Skip(CREDENTIALS),
    "aicall check": Skip(CREDENTIALS),
    "aicall serve --port 8080": Skip(CREDENTIALS),
    "aicall calls": Skip("reads the calls a serving aicall stored (tests/aicall/test_calls.py reads a store with it)"),
    "aicall show CA1234...": Skip("CA1234... stands for a stored call's SID"),
    "gunicorn 'aicall.app:from_env' --worker-class aiohttp.GunicornUVLoopWebWorker --workers 4 --bind 127.0.0.1:8080":
        Skip(CREDENTIALS + " (tests/harness/test_load.py runs aicall under gunicorn with the fakes)"),
    'harness fuzz --cmd "cd examples/fastapi_handler && uvicorn app:app --port {port}" --path /media-stream --examples 30':
        Skip("minutes of search; tests/harness/test_fuzz.py searches and shrinks in the suite"),
    'harness run --pace fast --jobs 4 --cmd "python proving_ground/handlers/websockets_handler.py --port {port}" '
    '--path /media': Skip("a benchmark's command, timed pair by pair (tests/harness/test_calls_at_once.py plays calls at "
                          "once in the suite; the proving ground runs --cmd over every bundled call)"),
    'harness run --pace fast --calls-at-once 4 --cmd "python proving_ground/handlers/websockets_handler.py '
    '--port {port}" --path /media': Skip("a benchmark's command, timed pair by pair (the proving ground's matrix "
                                          "runs every bundled call four at once into each reference handler)"),
    "harness run --pace fast --jobs 4": Skip("the benchmark's baseline: the README's main job (which the suite runs) at "
                                             "fast pace, 4 at once"),
    "harness fuzz --examples 120 --seed 11 --pace fast --calls-at-once 8 --no-database": Skip(
        "minutes of search; tests/harness/test_fuzz.py searches calls at once in the suite"),
    "harness fuzz --examples 120 --seed 11 --pace fast --calls-at-once 16 --no-database": Skip(
        "minutes of search; tests/harness/test_fuzz.py searches calls at once in the suite"),
    "harness fuzz --examples 240 --seed 11 --pace fast --calls-at-once 16 --workers 2 --no-database": Skip(
        "minutes of search; contract_tests/fuzz runs harness fuzz eight calls at once (--workers: such searches side by side)"),
    'harness fuzz --cmd "python proving_ground/handlers/websockets_handler.py --port {port}" --path /media '
    '--calls-at-once 8 --examples 200 --pace fast --seed 21 --no-database': Skip(
        "minutes of search; the proving ground's matrix plays the reference handlers calls at once in the suite"),
    "harness fuzz --examples 40 --seed 11 --pace fast --no-database": Skip(
        "minutes of search; tests/harness/test_fuzz.py searches and shrinks in the suite"),
    "harness load --callers 50,100": Skip("a minute of 100 real-time callers; tests/harness/test_load.py loads in the suite"),
    'harness load --find-capacity --max-p95 1000 --cmd "uvicorn app:app --port {port}" --path /media-stream': Skip(
        "minutes of load against your app.py"),
    "fakertzr serve --host 0.0.0.0 --workers auto --script fixtures/calls/seed-three-turns --max-streams 100000": Skip(
        "binds every interface, for other machines (tests/test_cli_errors.py and contract_tests run fakertzr serve)"),
    "harness fakes --ports 0,8766,8767": Serve(r"Ctrl-C to stop"),
    'locust -f "$(harness locustfile)" --master --host ws://HANDLER:8080/twilio/media --fixture seed-three-turns': Skip(
        "HANDLER stands for your handler's host (tests/harness/test_locust.py runs a master and two workers)"),
    'locust -f "$(harness locustfile)" --worker --master-host MASTER': Skip("MASTER stands for the master's host"),
    "harness record --target ws://127.0.0.1:8080/twilio/media": Serve(r"Ctrl-C to stop"),
    "RTZR_API_BASE=http://127.0.0.1:8771 aicall serve --port 8080": Skip(CREDENTIALS),
    "harness run --fixtures fixtures/recorded": Skip("replays the calls harness record wrote (tests/harness/test_record.py)"),
    "RTZR_CLIENT_ID=... RTZR_CLIENT_SECRET=... python -m pytest contract_tests/rtzr --rtzr-live": Skip(
        CREDENTIALS + ", and uses paid minutes"),
}


def documented() -> dict[str, str]:
    """Every command of every ``bash`` block: its text (continuation lines joined, comments dropped) -> where."""
    found: dict[str, str] = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in BLOCK.finditer(text):
            line_no = text[:block.start()].count("\n") + 2
            joined = re.sub(r"\\\n\s*", "", block.group(2))
            for line in joined.splitlines():
                command = re.sub(r"\s{2,}#.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.setdefault(command, f"{page.relative_to(ROOT)}:{line_no}")
    return found


DOCUMENTED = documented()


def test_every_command_of_the_docs_is_run_or_says_why_not():
    unknown = {c: where for c, where in DOCUMENTED.items() if c not in COMMANDS}
    stale = [c for c in COMMANDS if c not in DOCUMENTED]
    assert not unknown, f"commands the docs give that this test neither runs nor excuses: {unknown}"
    assert not stale, f"commands listed here that no page gives any more: {stale}"


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TMP_REPORT": str(tmp_path / "report"), "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run_param(command: str):
    how = COMMANDS[command]
    if not (isinstance(how, Run) and how.beside):
        return command
    env = {**_env(ROOT), "TMP_REPORT": ""}  # a long run's own empty directory is its working directory
    return pytest.param(command, marks=pytest.mark.long_run(f"command {command}", command=how.command or command,
                                                            env=env, timeout=how.timeout))


RUNS = [_run_param(c) for c, how in COMMANDS.items() if isinstance(how, Run)]
SERVES = [c for c, how in COMMANDS.items() if isinstance(how, Serve)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", RUNS)
def test_a_documented_command_runs(command, tmp_path, long_runs):
    how = COMMANDS[command]
    if how.needs and shutil.which(how.needs) is None:
        pytest.skip(f"{how.needs} is not installed")
    if how.beside:
        done = long_runs.result(f"command {command}", how.timeout + 60)
    else:
        cwd = ROOT / how.cwd if how.cwd else tmp_path
        done = subprocess.run(["bash", "-c", how.command or command], cwd=cwd, env=_env(tmp_path), capture_output=True,
                              text=True, timeout=how.timeout)
    assert done.returncode == 0, f"{DOCUMENTED[command]}: {command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


class Output:
    """A process's output, read as it comes, so a test can wait for a line without polling."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float) -> bool:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                return False
            if line is None:
                return False
            self.seen.append(line)
            if re.search(pattern, line):
                return True


def _ctrl_c_heard() -> None:
    """In the server's process before it starts: Ctrl-C acted on, as in a terminal, even when the suite itself runs
    with SIGINT ignored (started in the background by a non-interactive shell, which the server would inherit)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("command", SERVES)
def test_a_documented_server_starts_and_stops_on_ctrl_c(command, tmp_path):
    how = COMMANDS[command]
    server = how.then or command
    if how.then and shutil.which(command.split()[0]) is None:
        pytest.skip(f"{command.split()[0]} is not installed")
    proc = subprocess.Popen(["bash", "-c", f"exec {server}"], cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_ctrl_c_heard)
    try:
        output = Output(proc)
        assert output.wait_for(how.ready, timeout=60), f"{DOCUMENTED[command]}: {server}: not up\n{''.join(output.seen)}"
        if how.then:
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0 and '"access_token"' in done.stdout, done.stdout + done.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130, -signal.SIGINT), "".join(output.seen)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
