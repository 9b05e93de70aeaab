"""A newcomer's first hour (issue 36): a wrong ``--path`` is said as such, a ``--cmd`` that ignores ``{port}`` is
said within a second, and the handler page gives RTZR's streaming protocol. Each failed before this change."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.server import serve

from fakertzr.appserver import AppServer
from harness.errors import HandlerDidNotStart, HarnessError
from harness.fakes.services import running_fakes
from harness.fakes.twilio_player import TwilioPlayer
from harness.fakes.wrong_path import NO_SUCH_PATH
from harness.fixture import load_call
from harness.replay.listening import listening
from harness.replay.targets import CommandTarget

ROOT = Path(__file__).resolve().parents[2]
SEED = load_call(ROOT / "fixtures/calls/seed-three-turns")


async def play(url: str, headers: dict[str, str] | None = None) -> str | None:
    """Play the seed call into ``url`` at fast pace: the message it failed with, or None."""
    async with aiohttp.ClientSession() as session:
        try:
            await asyncio.wait_for(TwilioPlayer(session, url, SEED, pace=None, headers=headers).run(), 60)
        except HarnessError as exc:
            return str(exc)
    return None


def aiohttp_app(refuse_unknown_with: int | None = None, media_status: int | None = None) -> web.Application:
    """A handler at /media (which answers nothing and hangs up at ``stop``); unknown paths get 404 as aiohttp's
    router gives it, or ``refuse_unknown_with`` (Starlette refuses an unrouted WebSocket with 403); with
    ``media_status``, /media itself refuses the upgrade (a signature check)."""

    async def media(request: web.Request) -> web.StreamResponse:
        if media_status:
            return web.Response(status=media_status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and '"stop"' in msg.data:
                break
        await ws.close()
        return ws

    @web.middleware
    async def unknown(request: web.Request, handler):
        if request.path != "/media" and refuse_unknown_with:
            return web.Response(status=refuse_unknown_with)
        return await handler(request)

    app = web.Application(middlewares=[unknown])
    app.router.add_get("/media", media)
    return app


# ---------------------------------------------------------------- a wrong --path
async def test_a_403_at_a_wrong_path_says_the_path_first_and_the_signature_second():
    async with AppServer(aiohttp_app(refuse_unknown_with=403)) as server:
        said = await play(f"{server.ws_url}/ws")
    assert said is not None and said.startswith("the handler refused the WebSocket at path /ws: is --path right?"), said
    assert f"HTTP 403 there as at {NO_SUCH_PATH}" in said and "X-Twilio-Signature" in said, said


async def test_a_403_at_a_path_the_handler_serves_is_the_signature_check():
    async with AppServer(aiohttp_app(media_status=403)) as server:
        said = await play(f"{server.ws_url}/media")
    assert said is not None and said.startswith("the handler refused the stream at path /media, a path it serves"), said
    assert "does it check X-Twilio-Signature? give --twilio-auth-token" in said and "--path" not in said, said


async def test_a_404_says_the_path_is_not_served():
    async with AppServer(aiohttp_app()) as server:
        said = await play(f"{server.ws_url}/ws")
    assert said is not None and re.match(r"the handler refused the WebSocket at path /ws, a path it does not serve: "
                                         r"ws://127\.0\.0\.1:\d+/ws answered HTTP 404", said), said


class PlainWebsocketsHandler:
    """A newcomer's handler on a plain ``websockets`` server: it serves every path, closes the ones it does not
    want at once, and (``hangs_up_after_start``) refuses a call at /media once it has read ``start``."""

    def __init__(self, hangs_up_after_start: bool = False) -> None:
        self.hangs_up_after_start = hangs_up_after_start
        self.starts = 0

    async def __call__(self, ws) -> None:
        if ws.request.path != "/media":
            await ws.close()
            return
        async for message in ws:
            if '"start"' in message:
                self.starts += 1
                if self.hangs_up_after_start:
                    await ws.close()
                    return

    async def __aenter__(self) -> str:
        self._server = await serve(self, "127.0.0.1", 0, close_timeout=0.5).__aenter__()  # not 10 s at its end
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        await self._server.__aexit__(*exc)


async def test_a_plain_websockets_handler_closing_a_wrong_path_is_told_the_path():
    async with PlainWebsocketsHandler() as base:
        said = await play(f"{base}/ws")
    assert said == (f"the handler closed the WebSocket at path /ws before reading anything, as it does at {NO_SUCH_PATH}, "
                    "a path that cannot exist: is --path right? (give the right one with --path or --url)")


async def test_a_handler_that_refuses_the_call_after_reading_start_is_not_told_about_its_path():
    handler = PlainWebsocketsHandler(hangs_up_after_start=True)
    async with handler as base:
        said = await play(f"{base}/media")
    assert said is None and handler.starts == 1  # the probes sent nothing, so they never became calls


def test_the_cli_says_the_path_before_the_missing_finals(tmp_path):
    script = tmp_path / "plain_ws.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys
        from websockets.asyncio.server import serve

        async def media(ws):
            if ws.request.path != "/media":
                await ws.close()
                return
            async for _ in ws:
                pass

        async def main():
            async with serve(media, "127.0.0.1", int(sys.argv[1])):
                await asyncio.Future()

        asyncio.run(main())
    """))
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed-three", "--cmd",
                           f"{sys.executable} {script} {{port}}", "--path", "/ws", "--report-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    path_line = done.stdout.find("replay: FAILED: the handler closed the WebSocket at path /ws before reading anything")
    finals_line = done.stdout.find("expectations: FAILED: final 1")
    assert path_line != -1 and (finals_line == -1 or path_line < finals_line), done.stdout + done.stderr


# ---------------------------------------------------------------- a --cmd without {port}
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listening_finds_a_childs_socket():
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import socket, sys
        s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen(); print("up", flush=True); sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "up\n"
        found = listening(child.pid)
        if found is None:
            pytest.skip("no /proc/net/tcp on this system")
        assert [str(s) for s in found] == [f"127.0.0.1:{port}"]
        assert found[0].reaches("127.0.0.1") and not found[0].reaches("10.0.0.1")
    finally:
        child.stdin.close()
        child.wait(10)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")
async def test_a_cmd_without_port_is_told_its_port_within_seconds():
    fixed = free_port()
    target = CommandTarget(f"{sys.executable} -m http.server {fixed} --bind 127.0.0.1", path="/media", ready_timeout=60)
    began = time.monotonic()
    async with running_fakes() as fakes:
        with pytest.raises(HandlerDidNotStart) as caught:
            async with target.start(fakes):
                pytest.fail("the handler is not on the harness's port: it cannot have been reached")
    assert time.monotonic() - began < 15, "told at once, not after --ready-timeout"
    assert re.fullmatch(rf"your command listens on 127\.0\.0\.1:{fixed}, not on port \d+: put \{{port\}} in --cmd where "
                        rf"it takes its port \(or give --url ws://127\.0\.0\.1:{fixed}/media\)", str(caught.value)), caught.value


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")
async def test_a_url_with_the_commands_own_port_is_waited_on_there():
    fixed = free_port()
    target = CommandTarget(f"{sys.executable} -m http.server {fixed} --bind 127.0.0.1",
                           url=f"ws://127.0.0.1:{fixed}/media", ready_timeout=30)
    async with running_fakes() as fakes, target.start(fakes) as handler:
        assert handler.url == f"ws://127.0.0.1:{fixed}/media"


def test_the_cli_says_where_a_cmd_without_port_listens(tmp_path):
    fixed = free_port()
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", "fast", "-k", "seed-three", "--cmd",
                           f"{sys.executable} -m http.server {fixed} --bind 127.0.0.1", "--path", "/media",
                           "--report-dir", str(tmp_path)], capture_output=True, text=True, timeout=50)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"harness: error: the handler did not start: your command listens on 127.0.0.1:{fixed}, "
                                  "not on port "), done.stderr
    assert "put {port} in --cmd" in done.stderr and time.monotonic() - began < 40


# ---------------------------------------------------------------- the protocol a handler speaks
def test_the_handler_page_gives_rtzrs_streaming_protocol():
    page = (ROOT / "docs/handlers.md").read_text(encoding="utf-8")
    section = page[page.index("## RTZR's streaming protocol"):page.index("## Any language")]
    for fact in ("/v1/authenticate", "client_id", "access_token", "expire_at", "/v1/transcribe:streaming",
                 "sample_rate", "encoding", "epd_time", "max_utter_duration", "Authorization: bearer", "`EOS`",
                 "seq", "start_at", "duration", "final", "alternatives", "the docs win"):
        assert fact in section, fact
    start = (ROOT / "docs/getting-started.md").read_text(encoding="utf-8")
    assert "(handlers.md#rtzrs-streaming-protocol-as-your-handler-speaks-it)" in start
