"""The handler under test, in the three forms the harness replays against through one interface.

- ``AicallTarget``: aicall in-process (the embedded default);
- ``CommandTarget``: a command the harness launches with the fakes' URLs (``--cmd``);
- ``UrlTarget``: a handler already running (``--target``).

A target ``start``s a ``Handler`` for a set of running fakes. The runner judges a call only from the
fakes and the fake Twilio, plus what the handler offers: its log (errors), whether it has let go of
a call, and the caller lines it stored. Each offer may be absent; the check that needs it then says
*skipped* and why.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Protocol
from urllib.parse import urlsplit

from harness.errors import HandlerDidNotStart, HarnessError
from harness.fakes.services import FakeServices
from harness.fakes.twilio_dial import VoiceWebhook
from harness.fakes.twilio_outbound import PlaceCall
from harness.judge.context import NO_LOG
from harness.judge.handler_log import LogReader
from harness.replay.listening import listening
from harness.replay.saved_log import SavedLog
from harness.terminal import printable

DEFAULT_MEDIA_PATH = "/twilio/media"  # aicall's; pipecat's runner serves /ws, the report's app /media-stream
READY_TIMEOUT_S = 60.0


@dataclass
class Handler:
    """A started handler: where its stream is, and what it offers the checks."""

    url: str
    log: LogReader | None = None  # None: no log to read, ``no_errors`` is skipped
    no_log_why: str = NO_LOG
    released: Callable[[float], Awaitable[bool]] | None = None  # waits until it let go of the calls
    released_call: Callable[[str, float], Awaitable[bool]] | None = None  # ... of one call (by its SID)
    stored_lines: Callable[[str], list[str] | None] | None = None  # caller lines it persisted for a call SID
    alive: Callable[[], str | None] = lambda: None  # why it is gone, once it is
    exited: Callable[[float], Awaitable[str | None]] | None = None  # waits (bounded) for it to be gone
    own_log: bool = False  # the log is this handler's alone (a process started for it), not shared
    pid: int | None = None  # whose CPU is the handler's: its process group, or this process when in-process
    mark: Callable[[str], None] = lambda text: None  # a ``---- harness: ... ----`` line in the saved log, now
    voice: VoiceWebhook | None = None  # calls start at this voice webhook, as Twilio starts them (``--voice``)
    place: PlaceCall | None = None  # ... or are placed by the handler when this endpoint is POSTed (``--place``)


class Target(Protocol):
    fresh_per_fixture: bool  # one handler (and one set of fakes) per fixture, fixtures in parallel
    can_drop_credentials: bool  # it can be started without RTZR credentials (failure 1)

    def start(self, fakes: FakeServices, *, without: tuple[str, ...] = ()) -> AbstractAsyncContextManager[Handler]: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InProcessLog(logging.Handler):
    """The in-process handler's log records and unretrieved task exceptions, as lines for a ``LogReader``."""

    LOGGERS = ("aicall", "aiohttp.server", "aiohttp.web", "asyncio")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reader = LogReader()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.reader.feed_text(self.format(record) + "\n", time.monotonic())

    def _unhandled(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        self.reader.feed_text(f"ERROR asyncio {context.get('message')} {exc!r}\n", time.monotonic())

    def __enter__(self) -> "InProcessLog":
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        self._loop = asyncio.get_running_loop()
        self._previous = self._loop.get_exception_handler()
        self._loop.set_exception_handler(self._unhandled)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.set_exception_handler(self._previous)
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


class AicallTarget:
    """aicall in-process: its store, its "call released" signal and its log are what it offers."""

    fresh_per_fixture = True
    can_drop_credentials = True

    def __init__(self, log: InProcessLog) -> None:
        self.log = log

    @asynccontextmanager
    async def start(self, fakes: FakeServices, *, without: tuple[str, ...] = ()) -> AsyncIterator[Handler]:
        from aicall.app import create_app, wait_for_call_to_end, wait_for_calls_to_end
        from aicall.config import load_settings
        from aicall.errors import AicallError
        from aicall.store import CallStore
        from fakertzr.appserver import AppServer

        try:
            settings = load_settings(fakes.env(without=without), env_file=None)
        except AicallError as exc:
            raise HandlerDidNotStart(f"aicall refused to start: {exc}", str(exc)) from None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                store = CallStore(Path(tmp) / "calls.db")
            except AicallError as exc:  # a full disk, an unwritable TMPDIR
                raise HandlerDidNotStart(f"aicall could not open its call store: {exc}", str(exc)) from None
            try:
                async with AppServer(create_app(settings, store)) as app:

                    def caller_lines(call_sid: str) -> list[str] | None:
                        stored = store.call(call_sid)
                        return [line.text for line in stored[1] if line.role == "caller"] if stored else []

                    yield Handler(f"{app.ws_url}{DEFAULT_MEDIA_PATH}", log=self.log.reader,
                                  released=lambda timeout: wait_for_calls_to_end(app.app, timeout),
                                  released_call=lambda sid, timeout: wait_for_call_to_end(app.app, sid, timeout),
                                  stored_lines=caller_lines, pid=os.getpid())
            finally:
                store.close()


def voice_webhook(voice: str | None, port: int | None) -> VoiceWebhook | None:
    """``--voice``: a path on the launched handler (``/voice``), or a URL (``{port}`` filled in)."""
    return VoiceWebhook(_handler_url("--voice", voice, port)) if voice else None


def _handler_url(option: str, value: str, port: int | None) -> str:
    """A path on the launched handler (``/voice``), or a URL (``{port}`` filled in)."""
    if value.startswith(("http://", "https://")):
        return value.replace("{port}", str(port)) if port is not None else value
    if port is None:
        raise HarnessError(f"{option} {value!r}: with --target give the handler's whole URL (http://host:port{value})")
    return f"http://127.0.0.1:{port}{value if value.startswith('/') else '/' + value}"


def place_endpoint(place: str | None, port: int | None) -> PlaceCall | None:
    """``--place``: the handler's endpoint that places a call, a path on the launched handler or a URL."""
    return PlaceCall(_handler_url("--place", place, port)) if place else None


def media_url(template: str | None, path: str | None, port: int) -> str:
    """The stream URL of a launched handler: ``--url`` with ``{port}`` filled in, or ``--path`` on
    127.0.0.1, or aicall's path by default."""
    if template:
        return template.replace("{port}", str(port))
    path = path or DEFAULT_MEDIA_PATH
    return f"ws://127.0.0.1:{port}{path if path.startswith('/') else '/' + path}"


ELSEWHERE_GRACE_S = 1.0  # a handler seen listening on other ports only, this long, listens on the wrong one


async def wait_until_listening(host: str, port: int, timeout: float, gone: Callable[[], str | None], what: str,
                               elsewhere: Callable[[], str | None] = lambda: None) -> None:
    """Until ``host:port`` accepts connections; fail at once if the handler is gone, within ``ELSEWHERE_GRACE_S``
    if ``elsewhere`` says it listens on another port (why, as a message), with a clear message at the timeout."""
    deadline = time.monotonic() + timeout
    seen_elsewhere: float | None = None
    while True:
        why = gone()
        if why:
            raise HandlerDidNotStart(f"{what} {why} before listening on {host}:{port}")
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            wrong = elsewhere()
            now = time.monotonic()
            if wrong is None:
                seen_elsewhere = None
            elif seen_elsewhere is None:
                seen_elsewhere = now
            elif now - seen_elsewhere >= ELSEWHERE_GRACE_S:  # not a port it opens on the way to ours
                raise HandlerDidNotStart(wrong) from None
            if now > deadline:
                raise HandlerDidNotStart(f"{what} did not listen on {host}:{port} within {timeout:g} s "
                                         f"(a slow start? raise --ready-timeout)") from None
            await asyncio.sleep(0.1)  # polling a port we do not own: nothing to wait on but the clock


async def still_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Does ``host:port`` still accept a connection (a live server), now?"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def listening_elsewhere(pid: int, host: str, port: int, path: str) -> str | None:
    """Why the launched command (``pid`` and every process below it) is not reached on ``host:port`` though it
    listens, when it is seen listening elsewhere only; None while it listens nowhere (or ``/proc`` cannot say)."""
    found = listening(pid)
    if not found or any(s.port == port and s.reaches(host) for s in found):
        return None
    places = ", ".join(str(s) for s in found)
    same_port = [s for s in found if s.port == port]
    if same_port:
        return (f"your command listens on {places}, which {host}:{port} does not reach: have it listen on "
                f"{host} or 0.0.0.0 (or give --url ws://{same_port[0]}{path or '/'})")
    other = found[0]
    at = "127.0.0.1" if other.host in ("0.0.0.0", "::") else str(other).rpartition(":")[0]
    return (f"your command listens on {places}, not on port {port}: put {{port}} in --cmd where it takes its "
            f"port (or give --url ws://{at}:{other.port}{path or '/'})")


class CommandTarget:
    """A command the harness launches: ``{port}``, ``{rtzr_url}``, ``{llm_url}``, ``{tts_url}`` are filled
    in and set in its environment (with ``PORT``); its stdout and stderr are its log, saved with the report."""

    fresh_per_fixture = False
    can_drop_credentials = True

    def __init__(self, command: str, *, url: str | None = None, path: str | None = None,
                 ready_timeout: float = READY_TIMEOUT_S, fresh: bool = False, log_path: Path | None = None,
                 voice: str | None = None, place: str | None = None) -> None:
        self.command, self.url_template, self.path = command, url, path
        self.voice, self.place = voice, place
        self.ready_timeout = ready_timeout
        self.fresh_per_fixture = fresh
        self.log_path = log_path
        self.started = 0
        self.saved = SavedLog(log_path) if log_path is not None else None  # every process's output, as it comes

    @asynccontextmanager
    async def start(self, fakes: FakeServices, *, without: tuple[str, ...] = ()) -> AsyncIterator[Handler]:
        port = free_port()
        values = {"port": str(port), "rtzr_url": fakes.rtzr_url, "llm_url": fakes.llm_url, "tts_url": fakes.tts_url}
        command = self.command
        for key, value in values.items():
            command = command.replace("{" + key + "}", value)
        env = {k: v for k, v in os.environ.items() if k not in without}
        env.update({**fakes.env(without=without), "PORT": str(port), "PYTHONUNBUFFERED": "1"})
        self.started += 1
        number = self.started  # this process's own number: another may start while it runs
        saved = self.saved
        log = LogReader(sink=saved.line if saved else None)
        handler = Handler(media_url(self.url_template, self.path, port), log=log, own_log=True,
                          mark=saved.marker if saved else lambda text: None, voice=voice_webhook(self.voice, port),
                          place=place_endpoint(self.place, port))
        fd, leftovers_file = tempfile.mkstemp(prefix="harness-leftovers-")
        os.close(fd)
        if saved is not None:
            saved.open()
        handler.mark(f"handler started (#{number}): {command}" + (f" without {', '.join(without)}" if without else ""))
        try:  # the reaper runs the command with a shell and ends all it started, however it detached
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "harness.replay.reaper", leftovers_file,
                                                        "--", command, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                        start_new_session=True)
        except BaseException:
            read_leftovers(leftovers_file)  # (removes it)
            if saved is not None:
                saved.close()
            raise

        async def read_output() -> None:
            assert proc.stdout is not None
            decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character split between two reads
            while chunk := await proc.stdout.read(65536):
                log.feed_text(decoder.decode(chunk), time.monotonic())
                if saved is not None:
                    saved.flush()
            log.feed_text(decoder.decode(b"", final=True), time.monotonic())
            log.flush(time.monotonic())

        reader = asyncio.create_task(read_output())

        def gone() -> str | None:
            return None if proc.returncode is None else f"exited with status {proc.returncode}"

        async def exited(timeout: float) -> str | None:
            """Gone, or (bounded) going: a handler that still takes connections is alive, at once."""
            if proc.returncode is None and await still_listening(host, port):
                return None
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
            except asyncio.TimeoutError:
                pass
            return gone()

        handler.alive, handler.exited, handler.pid = gone, exited, proc.pid  # its own process group
        stream = urlsplit(handler.url)
        host = stream.hostname or "127.0.0.1"
        port = stream.port or port  # a --url with a port of its own: the handler is awaited there
        try:
            try:
                await wait_until_listening(host, port, self.ready_timeout, gone, "the handler command",
                                           elsewhere=lambda: listening_elsewhere(proc.pid, host, port, stream.path))
            except HandlerDidNotStart as exc:
                await stop_process_group(proc)
                await finish_reading(reader)
                raise HandlerDidNotStart(str(exc), last_lines(log)) from None
            yield handler
        finally:
            await stop_process_group(proc)
            if not await finish_reading(reader):
                handler.mark(f"its output was still open {OUTPUT_WAIT_S:g} s after the handler was stopped (a process "
                             "outside its reach holds it): not read further")
            handler.mark(f"handler stopped (#{number}), status {proc.returncode}")
            left = read_leftovers(leftovers_file)
            if left:
                said = (f"the handler left {len(left)} process(es) running when it ended: killed "
                        + "; ".join(f"pid {line}" for line in left))
                handler.mark(said)
                print(f"harness: warning: {printable(said)}", file=sys.stderr, flush=True)
            if saved is not None:
                saved.close()


OUTPUT_WAIT_S = 5.0


async def finish_reading(reader: asyncio.Task[None]) -> bool:
    """The handler's output read to its end, waiting at most ``OUTPUT_WAIT_S`` once its processes are gone (a
    process that escaped them may hold the pipe open forever); False when it had to be given up."""
    try:
        await asyncio.wait_for(asyncio.shield(reader), OUTPUT_WAIT_S)
        return True
    except asyncio.TimeoutError:
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass
        return False


def read_leftovers(path: str) -> list[str]:
    """What the reaper killed after the handler was gone (``pid command`` lines), and its file removed."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    finally:
        Path(path).unlink(missing_ok=True)


def last_lines(log: LogReader, n: int = 12) -> str:
    return "\n".join(line for _, line in list(log.lines)[-n:])


async def stop_process_group(proc: asyncio.subprocess.Process, grace_s: float = 10.0) -> None:
    """SIGTERM the command's whole process group (the shell and the handler it started), then SIGKILL."""
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
            return
        except asyncio.TimeoutError:
            continue


class UrlTarget:
    """A handler already running and pointed at the fakes; its log only if ``--handler-log`` names it."""

    fresh_per_fixture = False
    can_drop_credentials = False

    def __init__(self, url: str, *, handler_log: Path | None = None, ready_timeout: float = READY_TIMEOUT_S,
                 voice: str | None = None, place: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise HarnessError(f"--target must be a ws:// or wss:// URL, got {url!r}")
        self.url, self.handler_log, self.ready_timeout = url, handler_log, ready_timeout
        self.voice, self.place = voice_webhook(voice, None), place_endpoint(place, None)

    @asynccontextmanager
    async def start(self, fakes: FakeServices, *, without: tuple[str, ...] = ()) -> AsyncIterator[Handler]:
        if without:
            raise HarnessError("a running handler cannot be restarted without its credentials")
        handle = None
        if self.handler_log is not None:
            try:
                handle = self.handler_log.open("r", encoding="utf-8", errors="replace")
            except OSError as exc:
                raise HarnessError(f"--handler-log {self.handler_log}: cannot read: {exc.strerror}") from None
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        try:
            await wait_until_listening(parts.hostname or "127.0.0.1", port, self.ready_timeout, lambda: None,
                                       f"the handler at {self.url}")
        except BaseException:
            if handle is not None:
                handle.close()
            raise
        if handle is None:
            yield Handler(self.url, voice=self.voice, place=self.place)
            return
        log = LogReader()
        tail = asyncio.create_task(follow_file(handle, log))
        try:
            yield Handler(self.url, log=log, voice=self.voice, place=self.place)
        finally:
            await asyncio.sleep(0.3)  # let the last lines the handler wrote reach the file
            tail.cancel()
            try:
                await tail
            except asyncio.CancelledError:
                pass


async def follow_file(handle, log: LogReader) -> None:
    """``tail -f``: lines appended to the open file from now on (another process's writes cannot be awaited)."""
    with handle:
        handle.seek(0, os.SEEK_END)
        while True:
            text = handle.read()
            if text:
                log.feed_text(text, time.monotonic())
            else:
                await asyncio.sleep(0.1)
