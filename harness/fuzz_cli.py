"""``harness fuzz``'s command line: the handler to fuzz, one search or ``--workers`` of them side by side, what is
printed and written (``fuzz.json``, ``fuzz-junit.xml``, ``fuzz-report.html``, ``fuzz-failures/NAME/``)."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

from .errors import HarnessError
from .fuzz import FuzzOptions, FuzzResult, HandlerSession, reproduce_command, search, without_options
from .html_report import write_html
from .report import write_xml
from .targets import CommandTarget, UrlTarget


def options_of(args: argparse.Namespace) -> FuzzOptions:
    return FuzzOptions(examples=args.examples, seed=args.seed, pace=args.pace, max_duration_s=args.max_duration,
                       fault_kinds=args.faults, max_faults=args.max_faults, max_utterances=args.max_utterances,
                       barge_in=not args.no_barge_in, hangups=not args.no_hangups, keypad=not args.no_dtmf,
                       long_utterances=not args.no_long_utterances,
                       database=None if args.no_database else args.database,
                       target_latency=args.maximize == "latency", shrink_limit=args.shrink_limit)


def _target(args: argparse.Namespace, worker: str):
    if args.cmd:
        log = args.report_dir / f"fuzz-handler{worker}.log"
        return CommandTarget(args.cmd, url=args.url, path=args.path, ready_timeout=args.ready_timeout, log_path=log)
    if args.target:
        return UrlTarget(args.target, handler_log=args.handler_log, ready_timeout=args.ready_timeout)
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
    if args.max_faults < 0:
        raise HarnessError(f"--max-faults must be 0 or more, got {args.max_faults}")
    from .cli import ProgressLine

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
        print(f"fuzz: up to {options.examples} call(s) against {against}, pace "
              f"{_pace_label(options.pace)}", flush=True)
    with HandlerSession(_target(args, worker), pace=options.pace, headers_for=_headers_for(args),
                        fake_ports=args.fake_ports, on_fakes=lambda f: _fakes_line(f, bool(args.target))) as session:
        result = search(session, options, progress=progress)
    saved = _save(result, args.report_dir, worker)
    if args.json:  # a worker: its parent says it all
        _write_html([result], args.report_dir / f"fuzz-report{worker}.html", _pace_label(args.pace))
        args.json.write_text(json.dumps(_summary(result, saved), ensure_ascii=False), encoding="utf-8")
        return 1 if result.failure else 0
    progress("done\n")
    _write_reports([_summary(result, saved)], [result], args.report_dir, _pace_label(options.pace))
    return _print(args, argv, [_summary(result, saved)])


def _fakes_line(fakes, paste: bool) -> None:
    from .cli import _print_fakes

    _print_fakes(fakes, paste=paste)


def _save(result: FuzzResult, report_dir: Path, worker: str) -> dict[str, str]:
    saved = {}
    if result.failure is not None:
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
        "statistics": dict(result.statistics),
        "failure": None if failure is None else {
            "fixture": saved.get("failure"), "name": failure.call.name, "reproduced": result.reproduced,
            "size": list(failure.call.size), "first_size": list(first.call.size) if first else None,
            "checks": [{"name": c.name, "status": c.status, "message": c.message} for c in failure.run.checks],
            "turns": len(failure.run.turns)},
        "worst": None if result.worst is None else {
            "fixture": saved.get("worst"), "latency_ms": result.worst[0], "name": result.worst[1].call.name},
    }


def _pace_label(pace: float | None) -> str:
    return "fast" if pace is None else "realtime" if pace == 1.0 else f"x{pace:g}"


def _write_reports(summaries: list[dict], results: list[FuzzResult], report_dir: Path, pace: str = "fast") -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "fuzz.json").write_text(json.dumps({"searches": summaries}, ensure_ascii=False, indent=1) + "\n",
                                          encoding="utf-8")
    drawn = sum(s["drawn"] for s in summaries)
    suite = ElementTree.Element("testsuite", name="harness fuzz", tests=str(max(1, sum(bool(s["failure"]) for s in summaries))),
                                failures=str(sum(bool(s["failure"]) for s in summaries)))
    if not any(s["failure"] for s in summaries):
        ElementTree.SubElement(suite, "testcase", classname="harness.fuzz", name=f"{drawn} drawn calls")
    for s in summaries:
        if s["failure"]:
            case = ElementTree.SubElement(suite, "testcase", classname="harness.fuzz", name=s["failure"]["name"])
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


def _print(args: argparse.Namespace, argv: list[str], summaries: list[dict]) -> int:
    statistics = sum((Counter(s["statistics"]) for s in summaries), Counter())
    drawn = sum(s["drawn"] for s in summaries)
    audio, played = sum(s["audio_s"] for s in summaries), sum(s["played_s"] for s in summaries)
    print(f"\n{drawn} call(s) drawn, {sum(s['replayed'] for s in summaries)} replayed; the drawn calls' "
          f"{audio:.0f} s of caller audio took {played:.0f} s to replay and judge"
          + (f" ({played / audio:.2f}x their length)" if audio else "") + "; what they went through:")
    for what, n in sorted(statistics.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:5d}  {what}")
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
              f"{'yes' if f['reproduced'] else 'NO (a flaky verdict)'})")
        for c in checks:
            print(f"  {c['name']}: {c['message']}")
        print(f"  the call: {f['fixture']}\n  replay it: harness run --fixtures {Path(f['fixture']).parent} "
              f"-k {f['name']} {targets}".rstrip())
        print(f"  search again: {reproduce_command(argv, s['seed'])}")
    return 1


LATENCY_NAME = "speech end -> first bot audio of its reply"


def _target_args(argv: list[str]) -> str:
    """The options of this command that say which handler (for the ``harness run`` line)."""
    import shlex

    keep, take = [], 0
    for arg in argv:
        if take:
            keep.append(shlex.quote(arg))
            take -= 1
        elif arg in ("--cmd", "--path", "--url", "--target", "--pace", "--handler-log", "--fake-ports",
                     "--twilio-auth-token", "--ready-timeout"):
            keep.append(arg)
            take = 1
    if "--pace" not in argv:
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
    try:
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:  # a thread waits on each worker
            waits = {pool.submit(p.communicate): k for k, (_, p) in enumerate(procs)}
            for done, finished in enumerate(concurrent.futures.as_completed(waits), 1):
                errors[waits[finished]] = finished.result()[1] or ""
                print(f"fuzz: worker {waits[finished] + 1} done ({done} of {args.workers}, "
                      f"{time.monotonic() - started:.0f} s)", flush=True)
    except KeyboardInterrupt:
        for _, p in procs:
            p.terminate()
        raise
    summaries = []
    for k, (out, p) in enumerate(procs):
        if not out.exists():
            raise HarnessError(f"fuzz worker {k + 1} failed (exit {p.returncode}): {errors.get(k, '')[-2000:]}")
        summaries.append(json.loads(out.read_text(encoding="utf-8")))
    _write_reports(summaries, [], args.report_dir)  # each worker wrote its own fuzz-report-K.html
    return _print(args, argv, summaries)

