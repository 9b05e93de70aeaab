"""``harness run``: replay call fixtures against a handler (aicall in-process, a command the harness
launches, or a running URL), check them, measure, report. ``harness fakes``: the fakes alone, for
developing a handler offline. ``harness make-fixture``: author a fixture."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Sequence

from fakertzr.cli import grpc_api, record_options
from fakertzr.loops import loop_factory
from fakertzr.errors import FakeRtzrError
from fakertzr.recording import RECORD_MODES, REDACTIONS
from harness.cli.common import (
    TTS_SAYS,
    Parser,
    ProgressLine,
    add_network_options,
    add_voice_option,
    add_target_options,
    network_of,
    pace_name,
    parse_gap_ms,
    parse_pace,
    parse_ports,
    parse_positive,
    print_fakes,
)
from harness.cli.fuzz import add_fuzz_parser
from harness.cli.interrupts import Interrupted, run_until_signal, signals_interrupt
from harness.errors import HandlerDidNotStart, HarnessError
from harness.fixture import default_fixtures_dir, discover, load_call, with_turn_budget
from harness.replay.runner import (
    PARALLEL,
    ErrorLog,
    FixtureRun,
    configure_fakes,
)
from harness.replay.runs import run_target
from harness.replay.targets import AicallTarget, CommandTarget, UrlTarget
from harness.files import check_report_dir
from harness.judge.verdict import Verdict
from harness.reports.html import write_html
from harness.terminal import printable
from harness.reports.results import Interruption, console_table, verdict, write_json, write_junit


SPEC_EXAMPLE = """a --script spec (every bundled call's own is source.json beside its call.json):
  {"name": "my-call", "voice": "ko", "speed": 150, "lead_in_ms": 800, "noise_dbfs": -60,
   "utterances": [{"text": "안녕하세요 반갑습니다", "pause_after_ms": 2500},
                  {"text": "아직 안 먹었어요", "pause_after_ms": 2000}],
   "faults": [{"type": "close", "code": 1000, "after_finals": 1}],
   "expect": {"finals": ["안녕하세요 반갑습니다", "아직 안 먹었어요"], "llm_turns": 2}}"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harness", description="Replay recorded calls against a Twilio Media Streams handler.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                metavar="{run,fuzz,load,fakes,make-fixture,record,locustfile}")
    run = sub.add_parser("run", help="replay fixtures against a handler (default: aicall in-process)",
                         description="Replay fixtures against a handler: aicall in-process (default), a command the "
                         "harness launches (--cmd), or a handler already running (--target).")
    run.add_argument("--fixtures", type=Path, help="directory of fixtures (default: ./fixtures/calls if it has any, "
                     "else the calls bundled with the harness)")
    run.add_argument("--report-dir", type=Path, default=Path("harness-report"), help="where reports go (default harness-report/)")
    run.add_argument("--pace", type=parse_pace, default=1.0, metavar="realtime|fast|xN", help="default realtime")
    run.add_argument("-k", dest="name", action="append", metavar="NAME",
                     help="only fixtures whose name contains this (repeatable: any of them)")
    run.add_argument("--twilio-auth-token", metavar="TOKEN", help="sign the stream handshake with X-Twilio-Signature "
                     "(for handlers that check it; the signed URL is the stream URL)")
    add_target_options(run)
    run.add_argument("--fresh-handler", action="store_true", help="with --cmd: one handler process per fixture, so "
                     "no log line can be charged to the wrong call (--jobs of them at once)")
    run.add_argument("--jobs", type=int, default=None, metavar="N", help="with --fresh-handler (and aicall "
                     f"in-process): fixtures replayed at once, each with its own handler and fakes (default {PARALLEL}); "
                     "with --cmd alone: N handler processes side by side, each with its own fakes, the fixtures dealt "
                     "among them (default 1)")
    run.add_argument("--calls-at-once", type=parse_at_once, default=1, metavar="N",
                     help="play up to N calls at once into one handler, as production runs it: each judged by every "
                     "check, plus the cross-call ones (a neighbour's stall, replies reaching their own caller); "
                     "calls of one 'together' group share a wave (default 1: one call at a time)")
    run.add_argument("--max-turn-ms", type=parse_positive, metavar="MS", help="a latency budget: every turn answered "
                     "within MS of the end of the caller's speech (to its own reply's first audio), or the call fails "
                     "turn_latency (overrides a fixture's expect.max_turn_ms)")
    run.add_argument("--handler-log", type=Path, metavar="FILE", help="with --target: the handler's log file, read "
                     "for no_errors (without it no_errors is skipped)")
    run.add_argument("--fake-ports", type=parse_ports, default=(0, 0, 0), metavar="R,L,T",
                     help="with --target: the fakes' ports RTZR,LLM,TTS (default: free ports, printed as export lines)")
    add_network_options(run)
    add_voice_option(run)
    add_fuzz_parser(sub)
    _add_load_parser(sub)
    sub.add_parser("locustfile", help="print the path of the Locust file whose users are Twilio callers",
                   description="Print the path of the installed Locust file (harness.load.locustfile), for locust -f (pip install "
                   "'rtzr-call-testkit[locust]').")
    fakes = sub.add_parser("fakes", help="run the fakes (RTZR, LLM, TTS) for developing a handler offline",
                           description="Run fakertzr, the fake LLM and the fake TTS until Ctrl-C, and print the "
                           "environment a handler needs to use them.")
    fakes.add_argument("--ports", type=parse_ports, default=(8765, 8766, 8767), metavar="R,L,T",
                       help="ports RTZR,LLM,TTS (default 8765,8766,8767; 0 for free ones)")
    fakes.add_argument("--fixture", type=Path, metavar="DIR", help="play this fixture's script, faults, LLM and TTS "
                       "(default: any speech is transcribed as '발화 N', the LLM echoes it)")
    fakes.add_argument("--pace", type=parse_pace, default=1.0, metavar="realtime|fast|xN",
                       help="scales the fakes' scripted delays (default realtime)")
    fakes.add_argument("--max-streams", type=int, default=20, metavar="N",
                       help="RTZR's concurrent streams per client (default 20, RTZR's Basic plan; more for load)")
    fakes.add_argument("--grpc-port", type=int, metavar="PORT",
                       help="also serve RTZR's gRPC streaming API on this port (0: a free one; TLS with --tls)")
    add_network_options(fakes)
    record = sub.add_parser("record", help="record real calls into fixtures: a proxy between Twilio and your handler",
                            description="Stand between Twilio and your handler (and between your handler and RTZR) "
                            "and write every call as a fixture that replays offline.")
    record.add_argument("--target", required=True, metavar="WS_URL", help="your handler's Media Streams URL, "
                        "e.g. ws://127.0.0.1:8080/twilio/media")
    record.add_argument("--port", type=int, default=8770, help="where Twilio connects (default 8770; 0: a free port)")
    record.add_argument("--rtzr-upstream", default="https://openapi.vito.ai", metavar="URL",
                        help="the RTZR your handler should reach (default https://openapi.vito.ai)")
    record.add_argument("--rtzr-port", type=int, default=8771, help="where your handler's RTZR_API_BASE points "
                        "(default 8771; 0: a free port)")
    record.add_argument("--out", type=Path, default=Path("fixtures/recorded"), help="default fixtures/recorded")
    record.add_argument("--name", default="call", help="fixture name: NAME, NAME-2, ... (default call)")
    record.add_argument("--mode", choices=RECORD_MODES, default="new_episodes",
                        help="new_episodes: every call; once: only if NAME is absent; all: overwrite NAME; none: relay only")
    record.add_argument("--redact", metavar="KINDS", help=f"replace only these: {', '.join(REDACTIONS)} in recorded "
                        "text, dtmf: keypad digits become 0 (default: all of them)")
    record.add_argument("--no-redact", action="store_true", help="keep text and keypad digits as they were")
    record.add_argument("--keep-caller-number", action="store_true", help="do not mask the caller's number")
    make = sub.add_parser("make-fixture", help="author a fixture: from a text script (espeak-ng) or from an audio file",
                          description="Author a call fixture (call.json + caller.wav) from a script spoken by espeak-ng, "
                          "from any audio file and its transcript, or from a dual-channel Twilio call recording.",
                          epilog=SPEC_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = make.add_mutually_exclusive_group(required=True)
    source.add_argument("--script", type=Path, metavar="SPEC.json", help="a JSON spec spoken by espeak-ng (apt-get install espeak-ng sox): the utterances and "
                        "the pauses after them, and optionally faults, llm, tts and expect as in call.json (example below)")
    source.add_argument("--audio", type=Path, metavar="FILE", help="WAV, FLAC, Ogg or MP3 (no external program); other formats through pydub and ffmpeg")
    source.add_argument("--twilio-recording", type=Path, metavar="FILE", help="a dual-channel call recording "
                        "(RecordingChannels=dual): the caller's channel becomes the fixture, the bot's is kept as a reference")
    make.add_argument("--caller-channel", type=int, choices=(1, 2), default=1, help="with --twilio-recording: the "
                      "caller's channel (default 1: Twilio puts the parent call, the caller of an inbound call, first)")
    make.add_argument("--transcript", type=Path, metavar="LINES.txt", help="with --audio (required) or "
                      "--twilio-recording (optional): one line per utterance")
    make.add_argument("--name", help="with --audio: the fixture's name (default: the output directory's name)")
    make.add_argument("--out", type=Path, help="output directory (default: beside the spec, or fixtures/calls/NAME)")
    make.add_argument("--gap-ms", type=parse_gap_ms, default=300, help="with --audio: pauses shorter than this do not "
                      "split an utterance (default 300)")
    return parser


def parse_callers(text: str) -> tuple[int, ...]:
    """``10,20,50``: callers per step."""
    try:
        steps = tuple(int(p) for p in text.split(","))
    except ValueError:
        steps = ()
    if not steps or any(n < 1 for n in steps):
        raise argparse.ArgumentTypeError(f"must be caller counts above 0, e.g. 10 or 10,20,50; got {text!r}")
    return steps


def parse_share(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share above 0 and at most 1 (or a percentage: 99%), got {text!r}")
    return value


def _add_load_parser(sub) -> None:
    load = sub.add_parser("load", help="many concurrent callers against a handler: its capacity",
                          description="Play many concurrent real-time callers against a handler (aicall in-process by "
                          "default, --cmd, --target) and measure, per step of concurrency, the turns answered and their "
                          "latency; --find-capacity steps up to the knee.")
    load.add_argument("--fixture", action="append", metavar="NAME|DIR", help="a clean call to play (repeatable; "
                      "default: the bundled seed-three-turns); each caller plays them in turn, call after call")
    steps = load.add_mutually_exclusive_group()
    steps.add_argument("--callers", type=parse_callers, default=(10,), metavar="N[,N...]",
                       help="concurrent callers, one step per number (default 10)")
    steps.add_argument("--find-capacity", action="store_true", help="measure one caller alone (the baseline), then "
                       "double from --start while steps hold, then bisect to the knee")
    load.add_argument("--max-p95", type=parse_positive, metavar="MS", help="a step holds while its p95 turn latency "
                      "stays at or under this (default with --find-capacity: 1000; the recognizer's 0.5 s end-point "
                      "detection is part of every turn)")
    load.add_argument("--min-answered", type=parse_share, default=0.99, metavar="SHARE",
                      help="... and at least this share of turns is answered and of calls does not fail (default 0.99)")
    load.add_argument("--start", type=int, default=10, help="with --find-capacity: the first step (default 10)")
    load.add_argument("--max-callers", type=int, default=2000, help="with --find-capacity: never more (default 2000)")
    load.add_argument("--hold", type=parse_positive, default=30.0, metavar="S",
                      help="each step is measured this long once its callers joined (default 30)")
    joins = load.add_mutually_exclusive_group()
    joins.add_argument("--ramp", type=float, default=5.0, metavar="S", help="a step's new callers join over this "
                       "(default 5)")
    joins.add_argument("--arrival-rate", type=parse_positive, metavar="PER_S", help="new callers join at this rate")
    load.add_argument("--report-dir", type=Path, default=Path("harness-report"),
                      help="load.json and load.html go here (default harness-report/)")
    add_target_options(load)
    add_network_options(load)
    load.add_argument("--fake-ports", type=parse_ports, default=(0, 0, 0), metavar="R,L,T",
                      help="with --target: the fakes' ports RTZR,LLM,TTS (default: free ports, printed as export lines)")


def _make_fixture(args: argparse.Namespace) -> int:
    from harness.authoring.make_fixture import build, from_audio

    if args.script:
        out = build(args.script, args.out)
    else:
        option = "--audio" if args.audio else "--twilio-recording"
        if args.audio and not args.transcript:
            raise HarnessError("--audio needs --transcript (one line per utterance)")
        name = args.name or (args.out.name if args.out else None)
        if not name:
            raise HarnessError(f"{option} needs --name or --out")
        lines = None
        if args.transcript:
            try:
                lines = args.transcript.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise HarnessError(f"{args.transcript}: cannot read: {exc.strerror}") from None
        out = from_audio(args.audio or args.twilio_recording, lines, name, args.out or Path("fixtures/calls") / name,
                         gap_ms=args.gap_ms, caller_channel=None if args.audio else args.caller_channel)
    print(f"wrote {out / 'call.json'} and {out / 'caller.wav'}")
    return 0


LOAD_JUDGES = ("judged by answers and latency only: its callers repeat the same calls at once, which the fakes cannot "
               "tell apart by their words, so the checks are left out; for the checks under concurrency use "
               "harness run --calls-at-once N or harness fuzz --calls-at-once N")


def parse_at_once(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of calls, got {text!r}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"between 1 and 64 calls at once, got {n}")
    return n


def _check_target_options(args: argparse.Namespace) -> None:
    for option, needs in (("path", "cmd"), ("url", "cmd"), ("fresh_handler", "cmd"), ("handler_log", "target")):
        if getattr(args, option, None) and not getattr(args, needs):
            raise HarnessError(f"--{option.replace('_', '-')} goes with --{needs}")
    if getattr(args, "calls_at_once", 1) > 1 and getattr(args, "fresh_handler", False):
        raise HarnessError("--calls-at-once plays calls into one handler; --fresh-handler gives each call its own")
    if args.fake_ports != (0, 0, 0) and not args.target:
        raise HarnessError("--fake-ports goes with --target (with --cmd the harness picks free ports)")
    for option in ("tls", "steer", "voice", "place"):
        if getattr(args, option, False) and not (args.cmd or args.target):
            raise HarnessError(f"--{option} goes with --cmd or --target (aicall in-process is given the fakes' URLs "
                               "directly)")


async def _run(args: argparse.Namespace, fixtures: list, handlers: int = 1,
               finished: list[FixtureRun] | None = None) -> list[FixtureRun]:
    """The replay; each run is added to ``finished`` as it is judged (what an interrupted run still reports)."""
    finished = [] if finished is None else finished

    def progress(run: FixtureRun) -> None:
        finished.append(run)
        print(printable(f"[{len(finished)}/{len(fixtures)}] {run.fixture.name}: {verdict(run)} ({run.wall_s:.1f} s)"),
              flush=True)

    headers_for = None
    if args.twilio_auth_token:
        from aicall.twilio import compute_signature

        def headers_for(url: str) -> dict[str, str]:
            return {"X-Twilio-Signature": compute_signature(args.twilio_auth_token, url)}
    if args.cmd:
        target = CommandTarget(args.cmd, url=args.url, path=args.path, ready_timeout=args.ready_timeout,
                               fresh=args.fresh_handler, log_path=args.report_dir / "handler.log", voice=args.voice,
                               place=args.place)
    elif args.target:
        target = UrlTarget(args.target, handler_log=args.handler_log, ready_timeout=args.ready_timeout, voice=args.voice,
                           place=args.place)
    else:
        with ErrorLog() as errors:
            return await run_target(AicallTarget(errors), fixtures, pace=args.pace, progress=progress,
                                    headers_for=headers_for, parallel=args.jobs, calls_at_once=args.calls_at_once)
    return await run_target(target, fixtures, pace=args.pace, progress=progress, fake_ports=args.fake_ports,
                            headers_for=headers_for, on_fakes=lambda f: print_fakes(f, paste=bool(args.target)),
                            parallel=args.jobs, calls_at_once=args.calls_at_once, handlers=handlers,
                            network=network_of(args))


def _load(args: argparse.Namespace) -> int:
    from harness.fixture import resolve_fixture
    from harness.load.capacity import (
        InProcessTurnLog,
        LoadPlan,
        LoadRunner,
        check_loadable,
    )
    from harness.load.report import console_table
    from harness.load.report import write_html as write_load_html
    from harness.load.report import write_json as write_load_json
    from harness.load.stats import Criteria

    _check_target_options(args)
    if args.min_answered != 0.99 and args.max_p95 is None and not args.find_capacity:
        raise HarnessError("--min-answered goes with --max-p95 or --find-capacity")
    if args.start < 1 or args.max_callers < args.start:
        raise HarnessError("--start must be at least 1 and at most --max-callers")
    if args.ramp < 0:
        raise HarnessError(f"--ramp must be 0 or more seconds, got {args.ramp:g}")
    fixtures = [load_call(resolve_fixture(f)) for f in (args.fixture or ["seed-three-turns"])]
    for fixture in fixtures:
        check_loadable(fixture)
    max_p95 = args.max_p95 or (1000.0 if args.find_capacity else None)
    plan = LoadPlan(steps=args.callers, hold_s=args.hold, ramp_s=args.ramp, arrival_rate=args.arrival_rate,
                    criteria=Criteria(max_p95, args.min_answered) if max_p95 else None, search=args.find_capacity,
                    start=args.start, limit=args.max_callers)
    against = args.target or (f"`{args.cmd}`" if args.cmd else "aicall (in-process)")
    print(f"load: {'capacity search' if plan.search else 'callers ' + ','.join(map(str, plan.steps))} against {against}, "
          f"playing {', '.join(f.name for f in fixtures)}; each step held {plan.hold_s:g} s", flush=True)
    print(f"load: {LOAD_JUDGES}", flush=True)
    progress = ProgressLine()

    async def go():
        if args.cmd:
            target = CommandTarget(args.cmd, url=args.url, path=args.path, ready_timeout=args.ready_timeout,
                                   log_path=args.report_dir / "handler.log")
            runner = LoadRunner(target, fixtures, plan, progress=progress, network=network_of(args))
        elif args.target:
            target = UrlTarget(args.target, ready_timeout=args.ready_timeout)
            runner = LoadRunner(target, fixtures, plan, progress=progress, fake_ports=args.fake_ports,
                                on_fakes=lambda f: print_fakes(f, paste=True), network=network_of(args))
        else:
            runner = None
        if runner is not None:
            try:
                return await runner.run(against)
            finally:
                for line in dict.fromkeys(runner.refused):  # each host once, in the order first seen
                    print(f"load: {line} ({runner.refused.count(line)} time(s))", flush=True)
        with InProcessTurnLog() as turn_log:
            return await LoadRunner(AicallTarget(turn_log), fixtures, plan, progress=progress,
                                    handler_log=turn_log.reader).run(against)

    check_report_dir(args.report_dir)
    result = run_until_signal(go(), loop_factory("auto"))  # uvloop when installed: callers are cheaper
    print()
    console_table(result, sys.stdout)
    write_load_json(result, args.report_dir / "load.json")
    write_load_html(result, args.report_dir / "load.html")
    print(f"\nreports: {args.report_dir / 'load.html'}, load.json" + (", handler.log" if args.cmd else ""))
    if plan.criteria is None:
        return 0
    return 0 if result.knee["held"] is not None else 1


async def _serve_fakes(args: argparse.Namespace) -> int:
    fixture = load_call(args.fixture) if args.fixture else None
    if args.max_streams < 1:
        raise HarnessError(f"--max-streams must be at least 1, got {args.max_streams}")
    if args.grpc_port is not None and not 0 <= args.grpc_port <= 65535:
        raise HarnessError(f"--grpc-port must be 0-65535, got {args.grpc_port}")
    async with network_of(args).fakes(args.ports) as fakes, AsyncExitStack() as stack:
        if fixture is not None:
            configure_fakes(fixture, fakes.rtzr, fakes.llm, fakes.tts, 0.0 if args.pace is None else 1.0 / args.pace)
        fakes.rtzr.update_config({"max_streams": args.max_streams})
        grpc_line = ""
        if args.grpc_port is not None:
            tls = fakes.trust.server_pem() if fakes.trust else None
            grpc_server = await stack.enter_async_context(grpc_api().FakeRtzrGrpcServer(fakes.rtzr, port=args.grpc_port,
                                                                                         tls=tls))
            grpc_line = f"RTZR gRPC {grpc_server.target} ({'TLS' if tls else 'no TLS'})\n"
            if fakes.proxy is not None:
                fakes.proxy.routes["grpc-openapi.vito.ai"] = ("rtzr-grpc", grpc_server.host, grpc_server.port)
        if fakes.proxy is not None:
            grpc_line += (f"steering {', '.join(fakes.proxy.routes)} to the fakes through {fakes.proxy.url}; "
                          "any other host is refused, and said here\n")
            fakes.proxy.on_refused = lambda refusal: print(f"harness fakes: {refusal}", flush=True)
        playing = f"playing {fixture.name}" if fixture else "transcribing any speech as '발화 N'"
        print(f"fakes ({playing}): RTZR {fakes.rtzr_url}, LLM {fakes.llm_url}, TTS {fakes.tts_url}\n{grpc_line}"
              f"{fakes.exports()}\n({TTS_SAYS})\nCtrl-C to stop", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C
    return 0


async def _record(args: argparse.Namespace, kinds: tuple[str, ...]) -> int:
    from fakertzr.record_proxy import RecordingProxy
    from harness.authoring.recorder import TwilioRecordingProxy

    async with RecordingProxy(args.rtzr_upstream, None, port=args.rtzr_port) as rtzr, \
            TwilioRecordingProxy(args.target, args.out, name=args.name, rtzr=rtzr, mask_caller=not args.keep_caller_number,
                                 redact=kinds, mode=args.mode, port=args.port) as proxy:
        print(f"harness record: Twilio -> {proxy.ws_url}/<any path> -> {args.target}\n"
              f"  start your handler with RTZR_API_BASE={rtzr.base_url} (RTZR traffic is recorded on its way to "
              f"{rtzr.upstream})\n  point Twilio's <Stream url> at a public wss:// address that reaches port "
              f"{proxy.port}; each call is written under {args.out}/ (mode {args.mode}). Ctrl-C to stop", flush=True)
        try:
            while True:
                _print_recorded(await proxy.recordings.get())
        except asyncio.CancelledError:  # Ctrl-C or SIGTERM: a call in flight is written as far as it got
            for call, written in proxy.write_in_flight():
                if written is None:
                    print(f"harness record: a call in flight ({call.audio_ms / 1000:.1f} s of caller audio) was not "
                          f"written (mode {args.mode}, or no audio yet)", file=sys.stderr, flush=True)
                else:
                    print("harness record: a call in flight was cut short: written as far as it got", file=sys.stderr)
                    _print_recorded(written)
            raise


def _print_recorded(written: Path) -> None:
    doc = json.loads((written / "call.json").read_text(encoding="utf-8"))
    print(f"recorded {written}: {doc['audio']['duration_ms'] / 1000:.1f} s, "
          f"{sum(r['final'] for r in doc['recognizer']['recorded'])} final(s), faults "
          f"{[f['type'] for f in doc['faults']] or 'none'}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()  # a bare ``harness`` lists its commands
        return 2
    args = parser.parse_args(argv)
    try:
        with signals_interrupt():  # SIGTERM as Ctrl-C from here on: the cleanup runs, one line, 128 + the signal
            return _command(args, argv)
    except Interrupted as exc:  # between the steps that keep their results (a handler starting, fixtures loading)
        print(f"\nharness {args.command}: interrupted by {exc.how}", file=sys.stderr)
        return exc.exit_code


def _command(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    try:
        if args.command == "make-fixture":
            return _make_fixture(args)
        if args.command == "fakes":  # a dev server: Ctrl-C or SIGTERM is how it ends, as nginx's and gunicorn's do
            try:
                return run_until_signal(_serve_fakes(args))
            except Interrupted as exc:
                print(f"harness fakes: stopped by {exc.how}", file=sys.stderr)
                return 0
        if args.command == "record":
            kinds = record_options(args.redact, args.name, args.rtzr_upstream, (args.port, args.rtzr_port),
                                   extra_kinds=("dtmf",), keep_raw=args.no_redact)
            if not args.target.startswith(("ws://", "wss://")):
                raise HarnessError(f"--target must be a ws:// or wss:// URL, got {args.target!r}")
            try:
                return run_until_signal(_record(args, kinds))
            except Interrupted as exc:
                print(f"harness record: stopped by {exc.how}", file=sys.stderr)
                return 0
        if args.command == "fuzz":
            from harness.cli.fuzz import fuzz_command

            return fuzz_command(args, sys.argv[1:] if argv is None else list(argv))
        if args.command == "locustfile":
            print(importlib.util.find_spec("harness.load.locustfile").origin)  # found, not run: it imports locust
            return 0
        if args.command == "load":
            try:
                return _load(args)
            except Interrupted as exc:
                print(f"\nharness load: interrupted by {exc.how}", file=sys.stderr)
                return exc.exit_code
        _check_target_options(args)
        if args.jobs is not None and args.jobs < 1:
            raise HarnessError(f"--jobs must be at least 1, got {args.jobs}")
        if args.jobs is not None and args.target:
            raise HarnessError("--jobs goes with --cmd or aicall in-process: a running handler is one")
        handlers = args.jobs or 1 if args.cmd and not args.fresh_handler else 1
        args.jobs = args.jobs or PARALLEL
        args.fixtures = args.fixtures or default_fixtures_dir()
        directories = discover(args.fixtures, args.name)
        if not directories:
            matching = " or ".join(repr(n) for n in args.name or ())
            raise HarnessError(f"no fixtures in {args.fixtures}" + (f" matching {matching}" if matching else ""))
        fixtures = [with_turn_budget(load_call(d), args.max_turn_ms) for d in directories]
        against = args.target or (f"`{args.cmd}`" if args.cmd else "aicall (in-process)")
        fresh = args.fresh_handler or not (args.cmd or args.target)
        at_once = f", {min(args.jobs, len(fixtures))} at once, each with its own handler and fakes" if fresh and len(fixtures) > 1 else ""
        if handlers > 1:
            at_once = f", {handlers} handler processes side by side, each with its own fakes"
        if args.calls_at_once > 1:
            at_once += (f", up to {args.calls_at_once} calls at once into {'each' if handlers > 1 else 'one'} handler "
                        "(calls that share words or audio are never in flight together; a call that needs a handler "
                        "of its own or has RTZR faults before any audio plays alone)")
        print(f"replaying {len(fixtures)} fixture(s) from {args.fixtures} against {against}, pace {pace_name(args.pace)}"
              f"{at_once}", flush=True)
        check_report_dir(args.report_dir)  # before minutes of replay, not after
        finished: list[FixtureRun] = []
        try:
            runs, stopped = run_until_signal(_run(args, fixtures, handlers, finished)), None
        except Interrupted as exc:
            order = {id(f): n for n, f in enumerate(fixtures)}
            runs, stopped = sorted(finished, key=lambda r: order.get(id(r.fixture), 0)), exc
    except HandlerDidNotStart as exc:
        saved = f" (its output: {args.report_dir / 'handler.log'})" if getattr(args, "cmd", None) else ""
        print(printable(f"harness: error: the handler did not start: {exc}{saved}"), file=sys.stderr)
        return 2
    except (HarnessError, FakeRtzrError, OSError) as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return _report(args, fixtures, runs, stopped)


def _report(args: argparse.Namespace, fixtures: list, runs: list[FixtureRun], stopped: Interrupted | None) -> int:
    """The console table and the three reports; an interrupted run's say so and name the calls not replayed."""
    interrupted = None
    if stopped is not None:
        done = {id(r.fixture) for r in runs}
        interrupted = Interruption(stopped.how, len(runs), len(fixtures),
                                   [f.name for f in fixtures if id(f) not in done])
    print()
    console_table(runs, sys.stdout)
    try:
        write_json(runs, args.report_dir / "report.json", pace_name(args.pace), interrupted)
        write_junit(runs, args.report_dir / "junit.xml", interrupted)
        write_html(runs, args.report_dir / "report.html", pace_name(args.pace), interrupted)
    except (HarnessError, FakeRtzrError) as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return stopped.exit_code if stopped else 2
    logs = ", handler.log" if args.cmd else ""
    print(f"\nreports: {args.report_dir / 'report.html'}, report.json, junit.xml{logs}")
    if stopped is not None:
        print(f"harness run: interrupted by {stopped.how} after {len(runs)} of {len(fixtures)} calls; the reports hold "
              "the finished ones", file=sys.stderr)
        return stopped.exit_code
    return run_exit_code(runs)


NOTHING_JUDGED = 5  # as pytest's "no tests collected": a run that judged nothing is not a pass


def run_exit_code(runs: Sequence[FixtureRun]) -> int:
    """1 if a call failed; else 5 (``NOTHING_JUDGED``) if no call was judged at all (every check of every call
    skipped); else 0. A call not judged beside calls that passed is said in the table and the reports, and
    does not fail the run."""
    if any(r.failed for r in runs):
        return 1
    return 0 if any(r.verdict is not Verdict.NOT_JUDGED for r in runs) else NOTHING_JUDGED


if __name__ == "__main__":
    sys.exit(main())
