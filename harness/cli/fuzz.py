"""``harness fuzz``'s command line: the handler to fuzz, one search or ``--workers`` of them side by side, what is
printed and written (``fuzz.json``, ``fuzz-junit.xml``, ``fuzz-report.html``, ``fuzz-failures/NAME/``)."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

from harness.cli.common import (
    ProgressLine,
    add_network_options,
    add_target_options,
    add_voice_option,
    network_of,
    parse_count,
    parse_pace,
    parse_ports,
    parse_positive,
    print_fakes,
)
from harness.cli.interrupts import Interrupted, signals_interrupt
from harness.terminal import printable
from harness.errors import HarnessError
from harness.fuzz.search import (
    FuzzOptions,
    FuzzResult,
    LATE_WARNING_MS,
    HandlerSession,
    reproduce_command,
    search,
    without_options,
)
from harness.fuzz.strategies import FAULT_KINDS, DrawnCall
from harness.replay.resources import Resources
from harness.replay.targets import CommandTarget, UrlTarget
from harness.files import check_report_dir, write_atomically
from harness.reports.html import write_html
from harness.reports.results import write_xml


def parse_faults(text: str) -> tuple[str, ...]:
    """``close,stall`` (or ``none``): the fault kinds a drawn call may have."""
    kinds = () if text == "none" else tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or (not kinds and text != "none"):
        raise argparse.ArgumentTypeError(f"fault kinds are none or a list of {', '.join(FAULT_KINDS)}; got {text!r}")
    return kinds


def add_fuzz_parser(sub) -> None:
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
    fuzz.add_argument("--fixed-times", action="store_true", help="no caller who times words on the bot (caller.reacts): "
                      "every utterance at its time in the audio, as in a recording")
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
    fuzz.add_argument("--calls-at-once", type=parse_count, default=1, metavar="N",
                      help="N calls in flight into the one handler, each judged by every check and the cross-call ones "
                      "(a failing call is replayed alone first; one that fails only with others is cut down to the "
                      "fewest calls it needs) (default 1)")
    fuzz.add_argument("--worker", help=argparse.SUPPRESS)  # K/N: one of --workers' searches (internal)
    fuzz.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # a worker's result, for its parent (internal)
    fuzz.add_argument("--report-dir", type=Path, default=Path("harness-report"),
                      help="fuzz.json, fuzz-junit.xml, fuzz-report.html and fuzz-failures/ go here (default harness-report/)")
    fuzz.add_argument("--twilio-auth-token", metavar="TOKEN", help="sign the stream handshake with X-Twilio-Signature")
    add_target_options(fuzz)
    add_network_options(fuzz)
    add_voice_option(fuzz)
    fuzz.add_argument("--handler-log", type=Path, metavar="FILE", help="with --target: the handler's log file")
    fuzz.add_argument("--fake-ports", type=parse_ports, default=(0, 0, 0), metavar="R,L,T",
                      help="with --target: the fakes' ports RTZR,LLM,TTS (default: free ports, printed as export lines)")


def options_of(args: argparse.Namespace) -> FuzzOptions:
    return FuzzOptions(examples=args.examples, seed=args.seed, pace=args.pace, max_duration_s=args.max_duration,
                       fault_kinds=args.faults, max_faults=args.max_faults, max_utterances=args.max_utterances,
                       barge_in=not args.no_barge_in, hangups=not args.no_hangups, keypad=not args.no_dtmf,
                       long_utterances=not args.no_long_utterances, reacts=not args.fixed_times,
                       database=None if args.no_database else args.database,
                       target_latency=args.maximize == "latency", shrink_limit=args.shrink_limit,
                       calls_at_once=args.calls_at_once)


def _target(args: argparse.Namespace, worker: str):
    if args.cmd:
        log = args.report_dir / f"fuzz-handler{worker}.log"
        return CommandTarget(args.cmd, url=args.url, path=args.path, ready_timeout=args.ready_timeout, log_path=log,
                             voice=args.voice, place=args.place)
    if args.target:
        return UrlTarget(args.target, handler_log=args.handler_log, ready_timeout=args.ready_timeout, voice=args.voice,
                         place=args.place)
    return None  # aicall in-process


def _headers_for(args: argparse.Namespace):
    if not args.twilio_auth_token:
        return None
    from aicall.twilio import compute_signature

    return lambda url: {"X-Twilio-Signature": compute_signature(args.twilio_auth_token, url)}


def fuzz_command(args: argparse.Namespace, argv: list[str]) -> int:
    for option, needs in (("path", "cmd"), ("url", "cmd"), ("handler_log", "target")):
        if getattr(args, option, None) and not getattr(args, needs):
            raise HarnessError(f"--{option.replace('_', '-')} goes with --{needs}")
    if args.fake_ports != (0, 0, 0) and not args.target:
        raise HarnessError("--fake-ports goes with --target")
    if args.workers > 1 and args.target:
        raise HarnessError("--workers needs a handler per worker: use --cmd, or aicall in-process (a running handler is one)")
    if args.calls_at_once > 1 and args.maximize:
        raise HarnessError("--maximize steers one call at a time: leave out --calls-at-once")
    if args.max_faults < 0:
        raise HarnessError(f"--max-faults must be 0 or more, got {args.max_faults}")
    for option in ("tls", "steer", "voice", "place"):
        if getattr(args, option, None) and not (args.cmd or args.target):
            raise HarnessError(f"--{option} goes with --cmd or --target (aicall in-process is given the fakes' URLs "
                               "directly)")
    against = args.target or (f"`{args.cmd}`" if args.cmd else "aicall (in-process)")
    if args.workers > 1:
        return _parent(args, argv, against)
    if args.target and "no_credentials" in args.faults:  # as harness run skips failure1-credentials-missing
        args.faults = tuple(k for k in args.faults if k != "no_credentials")
        if not args.worker:
            print("fuzz: no_credentials is not drawn: a running handler cannot be started without its RTZR "
                  "credentials (use --cmd to let the harness launch it)", flush=True)
    options = options_of(args)
    progress = ProgressLine() if not args.worker else (lambda text: None)
    worker = f"-{args.worker.split('/')[0]}" if args.worker else ""
    if not args.worker:
        at_once = f", {options.calls_at_once} at once" if options.calls_at_once > 1 else ""
        print(f"fuzz: up to {options.examples} call(s) against {against}, pace "
              f"{_pace_label(options.pace)}{at_once}", flush=True)
    check_report_dir(args.report_dir)
    with signals_interrupt():  # SIGTERM as Ctrl-C: the search stops, the handler is ended, what was found is kept
        with HandlerSession(_target(args, worker), pace=options.pace, headers_for=_headers_for(args),
                            fake_ports=args.fake_ports, on_fakes=lambda f: _fakes_line(f, bool(args.target)),
                            network=network_of(args)) as session:
            result = search(session, options, progress=progress)
    saved = _save(result, args.report_dir, worker)
    if args.json:  # a worker: its parent says it all
        _write_html([result], args.report_dir / f"fuzz-report{worker}.html", _pace_label(args.pace))
        write_atomically(args.json, json.dumps(_summary(result, saved), ensure_ascii=False))
        return _exit_code(result)
    progress("done\n")
    _write_reports([_summary(result, saved)], [result], args.report_dir, _pace_label(options.pace))
    code = _print(args, argv, [_summary(result, saved)])
    if result.interrupted is not None:
        stop = result.interrupted
        how = stop.how if isinstance(stop, Interrupted) else "Ctrl-C (SIGINT)"
        print(f"harness fuzz: interrupted by {how} after {result.drawn} of {options.examples} call(s); the reports "
              "hold what was judged" + (" and the failure as far as it was cut down" if result.failure else ""),
              file=sys.stderr)
    return _exit_code(result) if result.interrupted is not None else code


def _exit_code(result: FuzzResult) -> int:
    """130 / 143 when a signal stopped it; else 1 when a call failed."""
    stop = result.interrupted
    if stop is not None:
        return stop.exit_code if isinstance(stop, Interrupted) else 130
    return 1 if result.failure else 0


def _fakes_line(fakes, paste: bool) -> None:
    print_fakes(fakes, paste=paste)


def _save(result: FuzzResult, report_dir: Path, worker: str) -> dict[str, str]:
    saved = {}
    if result.failure is not None and result.neighbours:  # a cross-call failure: the calls it needs, one group
        group = result.failure.call.name
        for call in sorted((result.failure.call, *result.neighbours), key=lambda c: c.scenario.lane):
            placed = DrawnCall(call.scenario, {**call.doc, "together": {"group": group}}, call.ulaw)
            path = placed.save(report_dir / "fuzz-failures" / group / call.name)
            saved.setdefault("failure", str(path))
    elif result.failure is not None:
        saved["failure"] = str(result.failure.call.save(report_dir / "fuzz-failures" / result.failure.call.name))
    if result.worst is not None:
        saved["worst"] = str(result.worst[1].call.save(report_dir / "fuzz-worst" / result.worst[1].call.name))
    return saved


def _summary(result: FuzzResult, saved: dict[str, str]) -> dict:
    failure = result.failure
    first = result.first_failure
    return {
        "seed": result.seed, "drawn": result.drawn, "replayed": result.replayed, "shrink_tries": result.shrink_tries,
        "wall_s": round(result.wall_s, 1), "audio_s": round(result.audio_s, 1), "played_s": round(result.played_s, 1),
        "loop_late_ms": round(result.loop_late_ms),
        **({"interrupted": getattr(result.interrupted, "how", "Ctrl-C (SIGINT)")} if result.interrupted else {}),
        **({"handler_resources": result.resources.as_json()} if result.resources else {}),
        "statistics": dict(result.statistics),
        "failure": None if failure is None else {
            "fixture": saved.get("failure"), "name": failure.call.name, "reproduced": result.reproduced,
            "drawn": failure.call.describe(),  # the call as the fixture it is, in words
            "size": list(failure.call.size), "first_size": list(first.call.size) if first else None,
            "checks": [{"name": c.name, "status": c.status, "message": c.message} for c in failure.run.checks],
            "turns": len(failure.run.turns), "neighbours": [c.name for c in result.neighbours],
            "alone_passed": result.alone_passed},
        "worst": None if result.worst is None else {
            "fixture": saved.get("worst"), "latency_ms": result.worst[0], "name": result.worst[1].call.name},
    }


def _pace_label(pace: float | None) -> str:
    return "fast" if pace is None else "realtime" if pace == 1.0 else f"x{pace:g}"


def _write_reports(summaries: list[dict], results: list[FuzzResult], report_dir: Path, pace: str = "fast") -> None:
    write_atomically(report_dir / "fuzz.json", json.dumps({"searches": summaries}, ensure_ascii=False, indent=1) + "\n")
    drawn = sum(s["drawn"] for s in summaries)
    suite = ElementTree.Element("testsuite", name="harness fuzz", tests=str(max(1, sum(bool(s["failure"]) for s in summaries))),
                                failures=str(sum(bool(s["failure"]) for s in summaries)))
    if not any(s["failure"] for s in summaries):
        ElementTree.SubElement(suite, "testcase", classname="harness.fuzz.search", name=f"{drawn} drawn calls")
    for s in summaries:
        if s["failure"]:
            case = ElementTree.SubElement(suite, "testcase", classname="harness.fuzz.search", name=s["failure"]["name"])
            failed = [c for c in s["failure"]["checks"] if c["status"] == "failed"]
            node = ElementTree.SubElement(case, "failure", message=", ".join(c["name"] for c in failed))
            node.text = "\n".join(f"{c['name']}: {c['message']}" for c in failed) + f"\nfixture: {s['failure']['fixture']}"
    write_xml(suite, report_dir / "fuzz-junit.xml")
    if results:
        _write_html(results, report_dir / "fuzz-report.html", pace)


def _write_html(results: list[FuzzResult], path: Path, pace: str) -> None:
    """The shrunk failure and the worst call found, as ``harness run``'s report shows a fixture's run."""
    runs = [r.failure.run for r in results if r.failure] + [r.worst[1].run for r in results if r.worst]
    if runs:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_html(runs, path, pace)


DRAWN_CALLS_EXPECT = ("what each drawn call expects: every check of `harness run` (docs/checks.md); a call drawn without "
                      "credentials, or with them revoked, refused aloud and ended by the handler; any other never ended "
                      "by the handler, and each utterance finished before the hang-up or a fault recognised, given to "
                      "the LLM and answered (unless the caller spoke again first); a barge-in call's talk-over cleared; "
                      "no reply while an utterance RTZR cut goes on; where nothing drawn fails or streams in real time, "
                      "each turn answered within what the fakes take at real time and 1.5 s (turn_latency)")


def _print(args: argparse.Namespace, argv: list[str], summaries: list[dict]) -> int:
    statistics = sum((Counter(s["statistics"]) for s in summaries), Counter())
    drawn = sum(s["drawn"] for s in summaries)
    audio, played = sum(s["audio_s"] for s in summaries), sum(s["played_s"] for s in summaries)
    print(f"\n{drawn} call(s) drawn, {sum(s['replayed'] for s in summaries)} replayed; the drawn calls' "
          f"{audio:.0f} s of caller audio took {played:.0f} s to replay and judge"
          + (f" ({played / audio:.2f}x their length)" if audio else "") + "; what they went through:")
    for what, n in sorted(statistics.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:5d}  {what}")
    print(DRAWN_CALLS_EXPECT)
    for s in summaries:
        if s.get("handler_resources"):
            print(Resources.from_json(s["handler_resources"]).describe())
    late = max(s.get("loop_late_ms", 0) for s in summaries)
    print(f"the harness's own event loop ran at most {late:.0f} ms late"
          + (f": above {LATE_WARNING_MS:.0f} ms the calls' timings are the machine's as much as the handler's "
             "(fewer --calls-at-once or --workers)" if late > LATE_WARNING_MS else ""))
    failed = [s for s in summaries if s["failure"]]
    for s in summaries:
        if s["worst"]:
            print(f"\nthe worst turn latency found: {s['worst']['latency_ms']:.0f} ms ({LATENCY_NAME}), "
                  f"call written to {s['worst']['fixture']}")
    if not failed:
        print(f"\nno call failed (seed {summaries[0]['seed']}{'' if len(summaries) == 1 else ', ...'})")
        return 0
    targets = _target_args(argv)
    for s in failed:
        f = s["failure"]
        checks = [c for c in f["checks"] if c["status"] == "failed"]
        print(f"\nFAILED: {', '.join(c['name'] for c in checks)} (after {s['drawn']} call(s); shrunk from "
              f"{f['first_size'][0]} utterance(s) and {f['first_size'][1]} fault(s) to {f['size'][0]} and "
              f"{f['size'][1]} in {s['shrink_tries']} tries; failed again when replayed afresh: "
              f"{'yes' if f['reproduced'] else 'not tried (interrupted)' if f['reproduced'] is None else 'NO (a flaky verdict)'})")
        for c in checks:
            print(printable(f"  {c['name']}: {c['message']}"))
        own = shlex.quote(str(args.report_dir / f"replay-{f['name']}"))  # its reports beside, not over, the run's
        if f.get("neighbours"):
            n = len(f["neighbours"]) + 1
            print(f"  it passes alone and fails with {n - 1} other call(s) in flight: the {n} calls: "
                  f"{Path(f['fixture']).parent}")
        else:
            print(f"  the call: {f['fixture']}")
        if f.get("drawn"):  # the call as the fixture it is, in words
            print(printable("\n".join(f"    {line}" for line in f["drawn"].splitlines())))
        if f.get("neighbours"):
            print(f"  replay them: harness run --fixtures {Path(f['fixture']).parent} --calls-at-once "
                  f"{len(f['neighbours']) + 1} --report-dir {own} {targets}".rstrip())
        else:
            print(f"  replay it: harness run --fixtures {Path(f['fixture']).parent} -k {f['name']} "
                  f"--report-dir {own} {targets}".rstrip())
        print(f"  search again: {reproduce_command(argv, s['seed'], args.report_dir)}")
    return 1


LATENCY_NAME = "speech end -> first bot audio of its reply"


TARGET_OPTIONS = ("--cmd", "--path", "--url", "--target", "--pace", "--handler-log", "--fake-ports",
                  "--twilio-auth-token", "--ready-timeout", "--voice", "--place")  # each takes a value
TARGET_FLAGS = ("--tls", "--steer")


def _target_args(argv: list[str]) -> str:
    """The options of this command that say which handler and how it is reached (for the ``harness run`` line)."""
    keep, take = [], 0
    for arg in argv:
        if take:
            keep.append(shlex.quote(arg))
            take -= 1
        elif arg in TARGET_OPTIONS:
            keep.append(arg)
            take = 1
        elif arg in TARGET_FLAGS or arg.split("=", 1)[0] in TARGET_OPTIONS:
            keep.append(shlex.quote(arg))
    if not any(a == "--pace" or a.startswith("--pace=") for a in argv):
        keep += ["--pace", "fast"]
    return " ".join(keep)


def _parent(args: argparse.Namespace, argv: list[str], against: str) -> int:
    """``--workers N``: N searches side by side, each a process of its own with its own handler, fakes and seed;
    the examples are shared out among them, and each shrinks what it finds."""
    import random

    first = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31 - args.workers)
    each = math.ceil(args.examples / args.workers)
    print(f"fuzz: up to {args.examples} call(s) against {against} in {args.workers} workers ({each} each, seeds "
          f"{first}..{first + args.workers - 1}), pace {_pace_label(args.pace)}", flush=True)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    rest = without_options(argv, ("--workers", "--seed", "--examples", "--json", "--worker"))
    procs = []
    for k in range(args.workers):
        out = args.report_dir / f"fuzz-worker-{k + 1}.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "harness.cli", *rest, "--worker", f"{k + 1}/{args.workers}",
                   "--seed", str(first + k), "--examples", str(each), "--json", str(out)]
        procs.append((out, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    started = time.monotonic()
    errors: dict[int, str] = {}
    stopped: Interrupted | None = None
    pool = concurrent.futures.ThreadPoolExecutor(args.workers)  # a thread waits on each worker
    try:
        with signals_interrupt():
            waits = {pool.submit(p.communicate): k for k, (_, p) in enumerate(procs)}
            for done, finished in enumerate(concurrent.futures.as_completed(waits), 1):
                errors[waits[finished]] = finished.result()[1] or ""
                print(f"fuzz: worker {waits[finished] + 1} done ({done} of {args.workers}, "
                      f"{time.monotonic() - started:.0f} s)", flush=True)
    except Interrupted as exc:  # each worker is told as CI would tell it: it ends its handler and writes what it has
        stopped = exc
        for _, p in procs:
            if p.poll() is None:
                p.terminate()
        concurrent.futures.wait(waits, timeout=60)
    finally:
        pool.shutdown(wait=stopped is None, cancel_futures=True)
    summaries = []
    for k, (out, p) in enumerate(procs):
        if not out.exists():
            if stopped is not None:
                continue
            raise HarnessError(f"fuzz worker {k + 1} failed (exit {p.returncode}): {errors.get(k, '')[-2000:]}")
        summaries.append(json.loads(out.read_text(encoding="utf-8")))
    _write_reports(summaries, [], args.report_dir)  # each worker wrote its own fuzz-report-K.html
    code = _print(args, argv, summaries) if summaries else 1
    if stopped is not None:
        print(f"harness fuzz: interrupted by {stopped.how}: {len(summaries)} of {args.workers} workers wrote what "
              "they had judged", file=sys.stderr)
        return stopped.exit_code
    return code

