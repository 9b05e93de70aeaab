"""``harness run``: replay call fixtures against a handler (aicall in-process, a command the harness
launches, or a running URL), check them, measure, report. ``harness fakes``: the fakes alone, for
developing a handler offline. ``harness make-fixture``: author a fixture."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from fakertzr.cli import grpc_api, loop_factory, record_options
from fakertzr.errors import FakeRtzrError
from fakertzr.recording import RECORD_MODES, REDACTIONS

from .errors import HandlerDidNotStart, HarnessError
from .fakes import FakeServices, running_fakes
from .fixture import default_fixtures_dir, discover, load_call
from .html_report import write_html
from .report import console_table, verdict, write_json, write_junit
from .runner import PARALLEL, ErrorLog, FixtureRun, configure_fakes, run_target
from .targets import READY_TIMEOUT_S, AicallTarget, CommandTarget, UrlTarget


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_pace(text: str) -> float | None:
    """``realtime`` -> 1.0, ``fast`` -> None (as fast as the handler takes it), ``x4`` -> 4.0."""
    if text == "realtime":
        return 1.0
    if text == "fast":
        return None
    if text.startswith("x"):
        try:
            value = float(text[1:])
        except ValueError:
            value = 0.0
        if value > 0:
            return value
    raise argparse.ArgumentTypeError(f"pace must be realtime, fast or xN (e.g. x4), got {text!r}")


def parse_ports(text: str) -> tuple[int, int, int]:
    """``RTZR,LLM,TTS`` ports, e.g. ``8765,8766,8767`` (0 for a free one)."""
    try:
        ports = tuple(int(p) for p in text.split(","))
    except ValueError:
        ports = ()
    if len(ports) != 3 or not all(0 <= p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"ports must be three numbers RTZR,LLM,TTS (e.g. 8765,8766,8767), got {text!r}")
    return ports  # type: ignore[return-value]


def whole_above_zero(unit: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number above 0 (``unit``, as "milliseconds", for the error message)."""
    of = f" of {unit}" if unit else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number{of} above 0, got {text!r}")
        return value

    return parse


parse_gap_ms = whole_above_zero("milliseconds")
parse_count = whole_above_zero()


def parse_positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Replay recorded calls against a Twilio Media Streams handler.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
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
    _add_target_options(run)
    run.add_argument("--fresh-handler", action="store_true", help="with --cmd: one handler process per fixture, so "
                     "no log line can be charged to the wrong call (--jobs of them at once)")
    run.add_argument("--jobs", type=int, default=PARALLEL, metavar="N", help="with --fresh-handler (and aicall "
                     f"in-process): fixtures replayed at once, each with its own handler and fakes (default {PARALLEL})")
    run.add_argument("--handler-log", type=Path, metavar="FILE", help="with --target: the handler's log file, read "
                     "for no_errors (without it no_errors is skipped)")
    run.add_argument("--fake-ports", type=parse_ports, default=(0, 0, 0), metavar="R,L,T",
                     help="with --target: the fakes' ports RTZR,LLM,TTS (default: free ports, printed as export lines)")
    _add_fuzz_parser(sub)
    _add_load_parser(sub)
    sub.add_parser("locustfile", help="print the path of the Locust file whose users are Twilio callers",
                   description="Print the path of harness/locustfile.py, for locust -f (pip install "
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
                       help="also serve RTZR's gRPC streaming API on this port (0: a free one; no TLS)")
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
    make = sub.add_parser("make-fixture", help="author a fixture: from a text script (espeak-ng) or from an audio file")
    source = make.add_mutually_exclusive_group(required=True)
    source.add_argument("--script", type=Path, metavar="SPEC.json", help="utterances, pauses, faults (see fixtures/calls/*/source.json)")
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


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--cmd", metavar="COMMAND", help="launch the handler: {port} {rtzr_url} {llm_url} {tts_url} are "
                        "filled in; PORT, RTZR_API_BASE, RTZR_CLIENT_ID, RTZR_CLIENT_SECRET, OPENAI_BASE_URL, "
                        "OPENAI_API_KEY and TTS_BASE_URL are set. Its output is saved as handler.log with the report")
    target.add_argument("--target", metavar="WS_URL", help="a handler already running, pointed at the fakes "
                        "(the harness prints the export lines for them; see --fake-ports)")
    stream = parser.add_mutually_exclusive_group()
    stream.add_argument("--path", help=f"with --cmd: the stream's path on 127.0.0.1:{{port}} (default {'/twilio/media'}; "
                        "pipecat's runner serves /ws)")
    stream.add_argument("--url", metavar="WS_URL_TEMPLATE", help="with --cmd: the stream URL, {port} filled in "
                        "(e.g. ws://127.0.0.1:{port}/media-stream)")
    parser.add_argument("--ready-timeout", type=parse_positive, default=READY_TIMEOUT_S, metavar="S",
                        help=f"how long the handler may take to listen (default {READY_TIMEOUT_S:g} s)")


def parse_faults(text: str) -> tuple[str, ...]:
    """``close,stall`` (or ``none``): the fault kinds a drawn call may have."""
    from .strategies import FAULT_KINDS

    kinds = () if text == "none" else tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or (not kinds and text != "none"):
        raise argparse.ArgumentTypeError(f"fault kinds are none or a list of {', '.join(FAULT_KINDS)}; got {text!r}")
    return kinds


def _add_fuzz_parser(sub) -> None:
    from .strategies import FAULT_KINDS

    fuzz = sub.add_parser("fuzz", help="draw whole calls with hypothesis against a handler; shrink the first failure",
                          description="Draw whole calls (utterances, pauses, RTZR faults, LLM and TTS timing, hang-ups, "
                          "DTMF, barge-in) with hypothesis and replay each against a handler (aicall in-process by "
                          "default, --cmd, --target), judged by every check. The first call that fails is shrunk to a "
                          "small one and written as a fixture under REPORT_DIR/fuzz-failures/ that harness run replays.")
    fuzz.add_argument("--examples", type=parse_count, default=50, metavar="N",
                      help="calls to draw, at most (default 50; shrinking a failure replays more)")
    fuzz.add_argument("--seed", type=int, help="draw the same calls again (default: a fresh seed, printed)")
    fuzz.add_argument("--pace", type=parse_pace, default=None, metavar="realtime|fast|xN",
                      help="default fast; a handler whose turn taking waits on wall-clock timers (pipecat) needs realtime")
    fuzz.add_argument("--max-duration", type=parse_positive, metavar="S", help="at most this much caller audio a call")
    fuzz.add_argument("--faults", type=parse_faults, default=FAULT_KINDS, metavar="KINDS",
                      help="the faults a call may have (RTZR's, and no_credentials: the handler started without "
                      f"its RTZR credentials), or none (default all: {','.join(FAULT_KINDS)})")
    fuzz.add_argument("--max-faults", type=int, default=2, metavar="N", help="faults a call may have (default 2)")
    fuzz.add_argument("--max-utterances", type=parse_count, default=4, metavar="N",
                      help="utterances a call may have (default 4)")
    fuzz.add_argument("--no-barge-in", action="store_true", help="no caller talking over a long reply")
    fuzz.add_argument("--no-long-utterances", action="store_true",
                      help="no utterance long enough for RTZR to cut it at max_utter_duration")
    fuzz.add_argument("--no-hangups", action="store_true", help="every caller says everything (no early hang-up, no dropped line)")
    fuzz.add_argument("--no-dtmf", action="store_true", help="no keypad presses")
    fuzz.add_argument("--maximize", choices=("latency",), help="latency: steer the search toward the longest end of "
                      "speech -> first bot audio of its reply (hypothesis's target()); the worst call is written too")
    fuzz.add_argument("--shrink-limit", type=parse_count, default=150, metavar="N",
                      help="new calls replayed while shrinking a failure, at most (default 150)")
    fuzz.add_argument("--database", type=Path, default=Path(".hypothesis/harness-fuzz"), metavar="DIR",
                      help="hypothesis's example database: a failure found once is tried first next time "
                      "(default .hypothesis/harness-fuzz)")
    fuzz.add_argument("--no-database", action="store_true", help="keep nothing between runs (CI)")
    fuzz.add_argument("--workers", type=parse_count, default=1, metavar="N",
                      help="N searches side by side, each with its own handler and fakes and its own seed "
                      "(--examples shared among them); each shrinks what it finds")
    fuzz.add_argument("--worker", help=argparse.SUPPRESS)  # K/N: one of --workers' searches (internal)
    fuzz.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # a worker's result, for its parent (internal)
    fuzz.add_argument("--report-dir", type=Path, default=Path("harness-report"),
                      help="fuzz.json, fuzz-junit.xml, fuzz-report.html and fuzz-failures/ go here (default harness-report/)")
    fuzz.add_argument("--twilio-auth-token", metavar="TOKEN", help="sign the stream handshake with X-Twilio-Signature")
    _add_target_options(fuzz)
    fuzz.add_argument("--handler-log", type=Path, metavar="FILE", help="with --target: the handler's log file")
    fuzz.add_argument("--fake-ports", type=parse_ports, default=(0, 0, 0), metavar="R,L,T",
                      help="with --target: the fakes' ports RTZR,LLM,TTS (default: free ports, printed as export lines)")


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
    _add_target_options(load)
    load.add_argument("--fake-ports", type=parse_ports, default=(0, 0, 0), metavar="R,L,T",
                      help="with --target: the fakes' ports RTZR,LLM,TTS (default: free ports, printed as export lines)")


def _make_fixture(args: argparse.Namespace) -> int:
    from .authoring import build, from_audio

    if args.script:
        out = build(args.script, args.out)
    else:
        option = "--audio" if args.audio else "--twilio-recording"
        if args.audio and not args.transcript:
            raise FakeRtzrError("--audio needs --transcript (one line per utterance)")
        name = args.name or (args.out.name if args.out else None)
        if not name:
            raise FakeRtzrError(f"{option} needs --name or --out")
        lines = None
        if args.transcript:
            try:
                lines = args.transcript.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise FakeRtzrError(f"{args.transcript}: cannot read: {exc.strerror}") from None
        out = from_audio(args.audio or args.twilio_recording, lines, name, args.out or Path("fixtures/calls") / name,
                         gap_ms=args.gap_ms, caller_channel=None if args.audio else args.caller_channel)
    print(f"wrote {out / 'call.json'} and {out / 'caller.wav'}")
    return 0


def _pace_name(pace: float | None) -> str:
    return "fast" if pace is None else ("realtime" if pace == 1.0 else f"x{pace:g}")


def _check_target_options(args: argparse.Namespace) -> None:
    for option, needs in (("path", "cmd"), ("url", "cmd"), ("fresh_handler", "cmd"), ("handler_log", "target")):
        if getattr(args, option, None) and not getattr(args, needs):
            raise HarnessError(f"--{option.replace('_', '-')} goes with --{needs}")
    if args.fake_ports != (0, 0, 0) and not args.target:
        raise HarnessError("--fake-ports goes with --target (with --cmd the harness picks free ports)")


TTS_SAYS = ("the fake TTS answers as OpenAI's does: mp3 unless response_format asks for wav, flac, opus or pcm, at "
            "24 kHz (pcm: raw 16-bit little-endian mono at 24 kHz); each request speaks its own tone")


def _print_fakes(fakes: FakeServices, *, paste: bool) -> None:
    if paste:
        print("the fakes are up; start your handler with:\n" + fakes.exports() + f"\n({TTS_SAYS})", flush=True)
    else:
        print(f"fakes: RTZR {fakes.rtzr_url}, LLM {fakes.llm_url}, TTS {fakes.tts_url}\n({TTS_SAYS})", flush=True)


async def _run(args: argparse.Namespace, fixtures: list) -> list[FixtureRun]:
    done = 0

    def progress(run: FixtureRun) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{len(fixtures)}] {run.fixture.name}: {verdict(run)} ({run.wall_s:.1f} s)", flush=True)

    headers_for = None
    if args.twilio_auth_token:
        from aicall.twilio import compute_signature

        def headers_for(url: str) -> dict[str, str]:
            return {"X-Twilio-Signature": compute_signature(args.twilio_auth_token, url)}
    if args.cmd:
        target = CommandTarget(args.cmd, url=args.url, path=args.path, ready_timeout=args.ready_timeout,
                               fresh=args.fresh_handler, log_path=args.report_dir / "handler.log")
    elif args.target:
        target = UrlTarget(args.target, handler_log=args.handler_log, ready_timeout=args.ready_timeout)
    else:
        with ErrorLog() as errors:
            return await run_target(AicallTarget(errors), fixtures, pace=args.pace, progress=progress,
                                    headers_for=headers_for, parallel=args.jobs)
    return await run_target(target, fixtures, pace=args.pace, progress=progress, fake_ports=args.fake_ports,
                            headers_for=headers_for, on_fakes=lambda f: _print_fakes(f, paste=bool(args.target)),
                            parallel=args.jobs)


class ProgressLine:
    """The load run's live line: rewritten in place on a terminal, one line every 10 s otherwise; a
    message ending in a newline stays."""

    def __init__(self, out=sys.stdout) -> None:
        self.out, self.tty = out, out.isatty()
        self._last = 0.0
        self._width = 0

    def __call__(self, message: str) -> None:
        if message.endswith("\n"):
            self._clear()
            self.out.write(message)
        elif self.tty:
            self._clear()
            self.out.write(message[:160])
            self._width = len(message[:160])
        elif time.monotonic() - self._last >= 10.0:
            self._last = time.monotonic()
            self.out.write(message + "\n")
        self.out.flush()

    def _clear(self) -> None:
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self._width = 0


def _load(args: argparse.Namespace) -> int:
    from .fixture import resolve_fixture
    from .load import InProcessTurnLog, LoadPlan, LoadRunner, check_loadable
    from .load_report import console_table, write_html as write_load_html, write_json as write_load_json
    from .load_stats import Criteria

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
    progress = ProgressLine()

    async def go():
        if args.cmd:
            target = CommandTarget(args.cmd, url=args.url, path=args.path, ready_timeout=args.ready_timeout,
                                   log_path=args.report_dir / "handler.log")
            return await LoadRunner(target, fixtures, plan, progress=progress).run(against)
        if args.target:
            target = UrlTarget(args.target, ready_timeout=args.ready_timeout)
            runner = LoadRunner(target, fixtures, plan, progress=progress, fake_ports=args.fake_ports,
                                on_fakes=lambda f: _print_fakes(f, paste=True))
            return await runner.run(against)
        with InProcessTurnLog() as turn_log:
            return await LoadRunner(AicallTarget(turn_log), fixtures, plan, progress=progress,
                                    handler_log=turn_log.reader).run(against)

    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:  # uvloop when installed: callers are cheaper
        result = runner.run(go())
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
    async with running_fakes(args.ports) as fakes, AsyncExitStack() as stack:
        if fixture is not None:
            configure_fakes(fixture, fakes.rtzr, fakes.llm, fakes.tts, 0.0 if args.pace is None else 1.0 / args.pace)
        fakes.rtzr.update_config({"max_streams": args.max_streams})
        grpc_line = ""
        if args.grpc_port is not None:
            grpc_server = await stack.enter_async_context(grpc_api().FakeRtzrGrpcServer(fakes.rtzr, port=args.grpc_port))
            grpc_line = f"RTZR gRPC {grpc_server.target} (no TLS)\n"
        playing = f"playing {fixture.name}" if fixture else "transcribing any speech as '발화 N'"
        print(f"fakes ({playing}): RTZR {fakes.rtzr_url}, LLM {fakes.llm_url}, TTS {fakes.tts_url}\n{grpc_line}"
              f"{fakes.exports()}\n({TTS_SAYS})\nCtrl-C to stop", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C
    return 0


async def _record(args: argparse.Namespace, kinds: tuple[str, ...]) -> int:
    from fakertzr.record_proxy import RecordingProxy

    from .recorder import TwilioRecordingProxy

    async with RecordingProxy(args.rtzr_upstream, None, port=args.rtzr_port) as rtzr, \
            TwilioRecordingProxy(args.target, args.out, name=args.name, rtzr=rtzr, mask_caller=not args.keep_caller_number,
                                 redact=kinds, mode=args.mode, port=args.port) as proxy:
        print(f"harness record: Twilio -> {proxy.ws_url}/<any path> -> {args.target}\n"
              f"  start your handler with RTZR_API_BASE={rtzr.base_url} (RTZR traffic is recorded on its way to "
              f"{rtzr.upstream})\n  point Twilio's <Stream url> at a public wss:// address that reaches port "
              f"{proxy.port}; each call is written under {args.out}/ (mode {args.mode}). Ctrl-C to stop", flush=True)
        while True:
            written = await proxy.recordings.get()
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
        if args.command == "make-fixture":
            return _make_fixture(args)
        if args.command == "fakes":
            try:
                return asyncio.run(_serve_fakes(args))
            except KeyboardInterrupt:
                return 0
        if args.command == "record":
            kinds = record_options(args.redact, args.name, args.rtzr_upstream, (args.port, args.rtzr_port),
                                   extra_kinds=("dtmf",), keep_raw=args.no_redact)
            if not args.target.startswith(("ws://", "wss://")):
                raise HarnessError(f"--target must be a ws:// or wss:// URL, got {args.target!r}")
            try:
                return asyncio.run(_record(args, kinds))
            except KeyboardInterrupt:
                return 0
        if args.command == "fuzz":
            from .fuzz_cli import fuzz_command

            return fuzz_command(args, sys.argv[1:] if argv is None else list(argv))
        if args.command == "locustfile":
            print(Path(__file__).with_name("locustfile.py"))
            return 0
        if args.command == "load":
            try:
                return _load(args)
            except KeyboardInterrupt:
                print("\nharness load: interrupted", file=sys.stderr)
                return 130
        _check_target_options(args)
        if args.jobs < 1:
            raise HarnessError(f"--jobs must be at least 1, got {args.jobs}")
        if args.jobs != PARALLEL and (args.target or args.cmd and not args.fresh_handler):
            raise HarnessError("--jobs goes with --fresh-handler, or with aicall in-process: one handler takes one call at a time")
        args.fixtures = args.fixtures or default_fixtures_dir()
        directories = discover(args.fixtures, args.name)
        if not directories:
            matching = " or ".join(repr(n) for n in args.name or ())
            raise HarnessError(f"no fixtures in {args.fixtures}" + (f" matching {matching}" if matching else ""))
        fixtures = [load_call(d) for d in directories]
        against = args.target or (f"`{args.cmd}`" if args.cmd else "aicall (in-process)")
        fresh = args.fresh_handler or not (args.cmd or args.target)
        at_once = f", {min(args.jobs, len(fixtures))} at once, each with its own handler and fakes" if fresh and len(fixtures) > 1 else ""
        print(f"replaying {len(fixtures)} fixture(s) from {args.fixtures} against {against}, pace {_pace_name(args.pace)}"
              f"{at_once}", flush=True)
        runs = asyncio.run(_run(args, fixtures))
    except HandlerDidNotStart as exc:
        saved = f" (its output: {args.report_dir / 'handler.log'})" if getattr(args, "cmd", None) else ""
        print(f"harness: error: the handler did not start: {exc}{saved}", file=sys.stderr)
        return 2
    except (FakeRtzrError, OSError) as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    print()
    console_table(runs, sys.stdout)
    write_json(runs, args.report_dir / "report.json", _pace_name(args.pace))
    write_junit(runs, args.report_dir / "junit.xml")
    write_html(runs, args.report_dir / "report.html", _pace_name(args.pace))
    logs = ", handler.log" if args.cmd else ""
    print(f"\nreports: {args.report_dir / 'report.html'}, report.json, junit.xml{logs}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
