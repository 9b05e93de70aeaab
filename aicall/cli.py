"""``aicall``: serve calls, check the configuration, read stored calls."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from typing import Callable, NoReturn, Sequence

import aiohttp
from aiohttp import web

from .app import create_app, make_tts, settings_for_serving
from .config import load_settings
from .errors import AicallError
from .llm import ChatClient
from .rtzr_client import RtzrTokens
from .safe_text import escaped, shown
from .store import CallStore


LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for ``uvloop`` (and for ``auto`` when it is installed); None: asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise AicallError("--loop uvloop: uvloop is not installed (pip install 'rtzr-call-testkit[fast]')") from None
        return None
    return uvloop.new_event_loop


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aicall", description="A Korean AI phone agent on Twilio Media Streams and RTZR.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="{serve,check,calls,show}")
    serve = sub.add_parser("serve", help="answer calls (settings from the environment and .env)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; behind a proxy "
                       "that terminates TLS for Twilio, or 0.0.0.0 to take calls directly)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="the lowest level logged (default INFO: each call's events and per-turn latency)")
    serve.add_argument("--loop", choices=LOOPS, default="auto", help="the event loop: uvloop when installed "
                       "(pip install 'rtzr-call-testkit[fast]'; auto, the default), or asyncio's own")
    sub.add_parser("check", help="verify the RTZR credentials and the LLM and TTS endpoints")
    calls = sub.add_parser("calls", help="list recent calls from the store (AICALL_DB)")
    calls.add_argument("--limit", type=int, default=20, help="the newest N calls (default 20)")
    show = sub.add_parser("show", help="print one call's transcript")
    show.add_argument("call_sid", help="the call's Twilio CallSid (CA...), as aicall calls lists it")
    return parser


async def _check() -> int:
    settings = load_settings(os.environ)
    ok = True
    async with aiohttp.ClientSession() as session:
        try:
            await RtzrTokens(session, settings.rtzr_api_base, settings.rtzr_client_id, settings.rtzr_client_secret).get()
            print(f"RTZR   ok: token issued by {settings.rtzr_api_base}")
        except AicallError as exc:
            ok = False
            print(f"RTZR   FAILED: {exc}")
        try:
            reply = await ChatClient(session, settings.openai_base_url, settings.openai_api_key, settings.llm_model).check()
            print(f"LLM    ok: {settings.llm_model} at {settings.openai_base_url} answered {reply[:30]!r}")
        except AicallError as exc:
            ok = False
            print(f"LLM    FAILED: {exc}")
        try:
            audio = b"".join([c async for c in make_tts(settings, session).synthesize("확인")])
            print(f"TTS    ok: {settings.tts_engine} gave {len(audio) / 8:.0f} ms of audio")
        except AicallError as exc:
            ok = False
            print(f"TTS    FAILED: {exc}")
    return 0 if ok else 1


async def _serve(settings, host: str, port: int) -> int:
    """Listen first, then say where (the port it really got when 0 was asked), then serve until Ctrl-C."""
    runner = web.AppRunner(create_app(settings), handle_signals=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise AicallError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    gc.freeze()  # what start-up made lives as long as the process: full collections need not walk it
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"aicall listening on http://{host}:{bound} (webhook /twilio/voice, stream /twilio/media; {loop} loop)",
          flush=True)
    try:
        await asyncio.Event().wait()  # until Ctrl-C or SIGTERM
    finally:
        await runner.cleanup()
    return 0


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()  # a bare ``aicall`` lists its commands
        return 2
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            settings = settings_for_serving()  # a bad setting or store fails here, before the port opens
            logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
            with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
                return runner.run(_serve(settings, args.host, args.port))
        if args.command == "check":
            return asyncio.run(_check())
        store = CallStore(os.environ.get("AICALL_DB") or "aicall.db")
        if args.command == "calls":
            for c in store.recent(args.limit):  # what a caller controls is escaped: nothing reaches the terminal raw
                print(f"{escaped(c.call_sid)}  {_when(c.started_at)}  {shown(c.caller or '-', 40):>14}  "
                      f"lines={c.lines:<4} {escaped(c.end_reason or 'in progress')}")
            return 0
        found = store.streams(args.call_sid)
        if not found:
            print(f"aicall: error: no call {shown(args.call_sid, 80)} in {store.path}", file=sys.stderr)
            return 2
        for summary, lines in found:
            print(f"{escaped(summary.call_sid)} from {shown(summary.caller or '-', 40)}: {_when(summary.started_at)} - "
                  f"{_when(summary.ended_at)} ({escaped(summary.end_reason or 'in progress')})"
                  + (f" stream {escaped(summary.stream_sid or '-')}" if len(found) > 1 else ""))
            for line in lines:
                note = f"  [{escaped(line.note)}]" if line.note else ""
                print(f"  {time.strftime('%H:%M:%S', time.localtime(line.at))} t{line.turn} {line.role:>6}: {escaped(line.text)}{note}")
        return 0
    except AicallError as exc:
        print(f"aicall: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, web.GracefulExit):  # Ctrl-C, SIGTERM
        return 0


if __name__ == "__main__":
    sys.exit(main())
