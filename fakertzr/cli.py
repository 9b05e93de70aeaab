"""``fakertzr serve``: run the fake RTZR OpenAPI standalone."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .backend import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeRtzrBackend, FakeRtzrConfig
from .errors import FakeRtzrError
from .fixture import load_fixture
from .loops import LOOPS, loop_factory
from .record_proxy import RecordingProxy
from .recording import RECORD_MODES, REDACTIONS
from .shutdown import shut_down, until_stopped
from .server import CONTROL_PREFIX, FakeRtzrServer, exposure_warning


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return value


def _workers(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be auto or a number of processes 1-256, got {text!r}")
    return value




# argparse names a type in its message by the function's name ("invalid _positive value"): give them names a user reads
_number.__name__, _positive.__name__, _non_negative.__name__, _count.__name__ = "number", "positive", "non-negative", "count"
_workers.__name__ = "workers"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fakertzr", description="A faithful, scriptable fake of RTZR's streaming STT API.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="{serve,record}")
    serve = sub.add_parser("serve", help="serve the fake on a port (Ctrl-C stops it)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="client_id the token endpoint accepts")
    serve.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET, help="client_secret it accepts")
    serve.add_argument("--script", action="append", default=[], metavar="FIXTURE_DIR",
                       help="answer from this fixture (repeatable: each stream is matched by its audio)")
    serve.add_argument("--auto", action="store_true", help="auto mode: an energy VAD finds utterances")
    serve.add_argument("--texts-file", type=Path, help="auto mode: one utterance text per line, used in order")
    serve.add_argument("--epd-time", type=_positive, help="epd_time (s) for streams that send none (default 0.5)")
    serve.add_argument("--max-utter-duration", type=_positive, metavar="S",
                       help="cut unbroken speech after S seconds, for streams that send no max_utter_duration (default 12)")
    serve.add_argument("--time-scale", type=_non_negative, default=1.0,
                       help="multiplies scripted wall-clock delays (0 = no delays)")
    serve.add_argument("--max-streams", type=_count, default=20, help="concurrent streams per client (default 20)")
    serve.add_argument("--token-ttl", type=_positive, default=6 * 3600, help="token lifetime in seconds (default 6 h)")
    serve.add_argument("--idle-timeout", type=_positive, default=60.0, help="close streams idle this long (default 60 s)")
    serve.add_argument("--drain-s", type=_non_negative, default=5.0, metavar="S",
                       help="on SIGTERM or Ctrl-C: close every open stream with a close frame, wait this long at most "
                       "for them to end, then exit (default 5)")
    serve.add_argument("--shutdown-code", type=int, default=1001, metavar="CODE",
                       help="the close code open streams get at a shutdown (default 1001 going away; gRPC: UNAVAILABLE)")
    serve.add_argument("--grpc-port", type=int, metavar="PORT",
                       help="also serve RTZR's gRPC streaming API (online_decoder.OnlineDecoder/Decode, no TLS) on "
                            "this port (0: a free one); needs the [grpc] extra")
    serve.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                       help="processes serving the one port (auto: one per core; default 1). Tokens, scripts, faults "
                       "and config set through the control API reach every worker; faults that count (times, "
                       "--max-streams) count per worker")
    serve.add_argument("--loop", choices=LOOPS, default="auto",
                       help="event loop: uvloop when installed (auto, the default; pip install 'rtzr-call-testkit[fast]') "
                       "or asyncio's own")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="the lowest level logged (default INFO)")
    record = sub.add_parser("record", help="a recording proxy: forward to RTZR, write every stream as a fixture")
    record.add_argument("--upstream", default="https://openapi.vito.ai",
                        help="the service to forward to (default https://openapi.vito.ai; a fakertzr serve works too)")
    record.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    record.add_argument("--port", type=int, default=8769, help="port (default 8769; 0 picks a free one)")
    record.add_argument("--out", type=Path, default=Path("fixtures/recorded"), help="where fixtures go (default fixtures/recorded)")
    record.add_argument("--name", default="recorded", help="fixture name prefix (lower case, digits, . _ -)")
    record.add_argument("--mode", choices=RECORD_MODES, default="new_episodes",
                        help="new_episodes: every stream (NAME, NAME-2, ...); once: only if NAME is absent; "
                        "all: overwrite NAME; none: forward only")
    record.add_argument("--redact", metavar="KINDS", help="replace only these in recorded text: comma-separated, "
                        f"of {', '.join(REDACTIONS)} (default: all of them)")
    record.add_argument("--no-redact", action="store_true", help="keep the text as recognised, numbers and all")
    record.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the lowest level logged (default INFO: a line per recorded stream)")
    return parser


def _config(args: argparse.Namespace) -> FakeRtzrConfig:
    if args.auto and args.script:
        raise FakeRtzrError("--auto and --script exclude each other")
    if args.texts_file and not args.auto:
        raise FakeRtzrError("--texts-file goes with --auto")
    texts = None
    if args.texts_file:
        try:
            texts = [line.strip() for line in args.texts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise FakeRtzrError(f"{args.texts_file}: cannot read: {exc.strerror}") from None
    for directory in args.script:
        load_fixture(directory)  # fail before the port opens
    if not 1 <= args.port + 1 <= 65536:
        raise FakeRtzrError(f"--port must be 0-65535, got {args.port}")
    if args.grpc_port is not None and not 0 <= args.grpc_port <= 65535:
        raise FakeRtzrError(f"--grpc-port must be 0-65535, got {args.grpc_port}")
    return FakeRtzrConfig(
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl_s=args.token_ttl,
        max_streams=args.max_streams,
        time_scale=args.time_scale,
        idle_timeout_s=args.idle_timeout,
        epd_time=args.epd_time,
        max_utter_duration=args.max_utter_duration,
        auto_texts=texts,
        fixtures=[str(Path(d)) for d in args.script],
    )


def record_options(redact: str | None, name: str, upstream: str, ports: tuple[int, ...],
                   extra_kinds: tuple[str, ...] = (), keep_raw: bool = False) -> tuple[str, ...]:
    """Check what a recorder is given (``fakertzr record``, ``harness record``); the redaction kinds: every
    kind unless ``--redact`` names some, none with ``--no-redact`` (a recording of a real call is personal
    data until proven otherwise)."""
    known = (*REDACTIONS, *extra_kinds)
    if keep_raw:
        if redact is not None:
            raise FakeRtzrError("--no-redact keeps the recording as it was said: it goes without --redact")
        return ()
    kinds = known if redact is None else tuple(k.strip() for k in redact.split(",") if k.strip())
    if not kinds:
        raise FakeRtzrError(f"--redact needs one or more of {', '.join(known)} (--no-redact keeps everything)")
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise FakeRtzrError(f"--redact: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise FakeRtzrError(f"--name must be lower case letters, digits, . _ - (a fixture name), got {name!r}")
    if not upstream.startswith(("http://", "https://")):
        raise FakeRtzrError(f"the RTZR upstream must be an http(s) URL, got {upstream!r}")
    for port in ports:
        if not 1 <= port + 1 <= 65536:
            raise FakeRtzrError(f"a port must be 0-65535, got {port}")
    return kinds


async def _record(proxy: RecordingProxy) -> None:
    await proxy.start()
    exposed = f"anyone who can reach it can stream through it to {proxy.upstream}" + (
        "" if proxy.mode == "none" else f", and have their streams written as fixtures under {proxy.out_dir}/")
    _warn(exposure_warning(proxy.base_url, exposed))
    print(f"fakertzr record listening on {proxy.base_url} -> {proxy.upstream}; each stream is written under {proxy.out_dir}/")
    print(f"  point your client's RTZR base URL at {proxy.base_url} (its own credentials pass through; none are written)")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.stop()


def _warn(warning: str | None) -> None:
    if warning:
        print(warning, file=sys.stderr, flush=True)


def _banner(base_url: str, backend: FakeRtzrBackend, workers: str = "", grpc_target: str | None = None) -> None:
    """What ``fakertzr serve`` says once it listens (and, beyond loopback, the warning on stderr)."""
    _warn(exposure_warning(base_url, also=f" and gRPC {grpc_target}" if grpc_target else ""))
    ws_url = base_url.replace("http://", "ws://", 1)
    print(f"fakertzr listening on {base_url} (WebSocket {ws_url}/v1/transcribe:streaming){workers}")
    if grpc_target:
        print(f"  gRPC on {grpc_target} (online_decoder.OnlineDecoder/Decode, no TLS: grpc.insecure_channel, "
              "token as 'authorization: Bearer' metadata)")
    print(f"  accepts client_id={backend.config.client_id} client_secret={backend.config.client_secret}")
    detail = ", ".join(s.name for s in backend.scripts) if backend.scripts else f"{len(backend.config.auto_texts or [])} texts"
    print(f"  mode: {backend.mode} ({detail}); control API under {base_url}{CONTROL_PREFIX}/")
    if not backend.scripts and not backend.config.auto_texts:
        print("  no --script: any speech is transcribed as '발화 1', '발화 2', ... (give --script FIXTURE_DIR or "
              "--auto --texts-file FILE for real words)")
    sys.stdout.flush()


async def _serve(server: FakeRtzrServer, grpc_port: int | None) -> None:
    await server.start()
    grpc_server = None
    try:
        if grpc_port is not None:
            grpc_server = grpc_api().FakeRtzrGrpcServer(server.backend, server.host, grpc_port)
            await grpc_server.start()
        gc.freeze()  # what start-up made lives as long as the process: full collections need not walk it
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        _banner(server.base_url, server.backend, f"; {loop} loop", grpc_server.target if grpc_server else None)
        await until_stopped()
    finally:
        await shut_down(server.backend, server.shutdown_code, server.drain_s)
        if grpc_server is not None:
            await grpc_server.stop()
        await server.stop()


def grpc_api() -> Any:
    """``fakertzr.grpc``, or a clear error when grpcio is not installed."""
    try:
        import fakertzr.grpc as api  # noqa: PLC0415 - optional: the [grpc] extra
    except ImportError as exc:
        raise FakeRtzrError(f"--grpc-port: {exc}") from None
    return api


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()  # a bare ``fakertzr`` lists its commands
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        if args.command == "record":
            kinds = record_options(args.redact, args.name, args.upstream, (args.port,), keep_raw=args.no_redact)
            asyncio.run(_record(RecordingProxy(args.upstream, args.out, name=args.name, redact=kinds, mode=args.mode,
                                               host=args.host, port=args.port)))
            return 0
        config = _config(args)
        backend = FakeRtzrBackend(config)  # checks the config and scripts before any port opens
        if args.workers > 1:
            from .workers import serve_workers

            def announce(url: str, pids: list[int], grpc_target: str | None) -> None:
                _banner(url, backend, f"; {args.workers} workers, pids {' '.join(map(str, pids))}", grpc_target)

            if args.grpc_port is not None:
                grpc_api()
            return serve_workers(config, args.host, args.port, args.workers, loop_choice=args.loop,
                                 log_level=args.log_level, announce=announce, grpc_port=args.grpc_port,
                                 drain_s=args.drain_s, shutdown_code=args.shutdown_code)
        if args.grpc_port is not None:
            grpc_api()  # before any port opens
        server = FakeRtzrServer(backend, args.host, args.port, drain_s=args.drain_s, shutdown_code=args.shutdown_code)
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            runner.run(_serve(server, args.grpc_port))
    except FakeRtzrError as exc:
        print(f"fakertzr: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fakertzr: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
