"""``harness run``: replay the bundled call fixtures against aicall, check them, measure, report."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import NoReturn, Sequence

import aiohttp

from fakertzr.errors import FakeRtzrError

from .fixture import discover, load_call
from .external import run_external
from .html_report import write_html
from .report import console_table, write_json, write_junit
from .runner import ErrorLog, FixtureRun, run_fixture

PARALLEL = 4


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Replay recorded calls against a Twilio Media Streams handler.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="replay fixtures against aicall with every fake in-process")
    run.add_argument("--fixtures", type=Path, default=Path("fixtures/calls"), help="directory of fixtures (default fixtures/calls)")
    run.add_argument("--report-dir", type=Path, default=Path("harness-report"), help="where reports go (default harness-report/)")
    run.add_argument("--pace", type=parse_pace, default=1.0, metavar="realtime|fast|xN", help="default realtime")
    run.add_argument("-k", dest="name", help="only fixtures whose name contains this")
    run.add_argument("--twilio-auth-token", metavar="TOKEN", help="sign the stream handshake with X-Twilio-Signature "
                     "(for handlers that check it; the signed URL is the target URL)")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--target", metavar="WS_URL", help="a handler already running and pointed at the fakes "
                        "(they listen on ports 8765, 8766, 8767)")
    target.add_argument("--cmd", metavar="COMMAND", help="launch the handler: {rtzr_url} {llm_url} {tts_url} {port} "
                        "are filled in and set as RTZR_API_BASE, OPENAI_BASE_URL, TTS_BASE_URL, PORT")
    make = sub.add_parser("make-fixture", help="author a fixture: from a text script (espeak-ng) or from an audio file")
    source = make.add_mutually_exclusive_group(required=True)
    source.add_argument("--script", type=Path, metavar="SPEC.json", help="utterances, pauses, faults (see fixtures/calls/*/source.json)")
    source.add_argument("--audio", type=Path, metavar="FILE", help="any audio pydub reads (wav; mp3 and others need ffmpeg)")
    make.add_argument("--transcript", type=Path, metavar="LINES.txt", help="with --audio: one line per utterance")
    make.add_argument("--name", help="with --audio: the fixture's name (default: the output directory's name)")
    make.add_argument("--out", type=Path, help="output directory (default: beside the spec, or fixtures/calls/NAME)")
    make.add_argument("--gap-ms", type=int, default=300, help="with --audio: pauses shorter than this do not split an utterance")
    return parser


def _make_fixture(args: argparse.Namespace) -> int:
    from .authoring import build, from_audio

    if args.script:
        out = build(args.script, args.out)
    else:
        if not args.transcript:
            raise FakeRtzrError("--audio needs --transcript (one line per utterance)")
        name = args.name or (args.out.name if args.out else None)
        if not name:
            raise FakeRtzrError("--audio needs --name or --out")
        try:
            lines = args.transcript.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise FakeRtzrError(f"{args.transcript}: cannot read: {exc.strerror}") from None
        out = from_audio(args.audio, lines, name, args.out or Path("fixtures/calls") / name, gap_ms=args.gap_ms)
    print(f"wrote {out / 'call.json'} and {out / 'caller.wav'}")
    return 0


async def _run_all(fixtures: list, pace: float | None) -> list[FixtureRun]:
    gate = asyncio.Semaphore(PARALLEL)
    done = 0

    async def one(fixture) -> FixtureRun:
        nonlocal done
        async with gate:
            with tempfile.TemporaryDirectory() as tmp:
                result = await run_fixture(fixture, pace=pace, workdir=Path(tmp), errors=errors)
        done += 1
        print(f"[{done}/{len(fixtures)}] {fixture.name}: {'PASS' if result.ok else 'FAIL'} ({result.wall_s:.1f} s)", flush=True)
        return result

    with ErrorLog() as errors:
        return list(await asyncio.gather(*(one(f) for f in fixtures)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "make-fixture":
        try:
            return _make_fixture(args)
        except FakeRtzrError as exc:
            print(f"harness: error: {exc}", file=sys.stderr)
            return 2
    try:
        directories = discover(args.fixtures, args.name)
        if not directories:
            raise FakeRtzrError(f"no fixtures in {args.fixtures}" + (f" matching {args.name!r}" if args.name else ""))
        fixtures = [load_call(d) for d in directories]
    except FakeRtzrError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    pace_name = "fast" if args.pace is None else ("realtime" if args.pace == 1.0 else f"x{args.pace:g}")
    against = args.target or (f"`{args.cmd}`" if args.cmd else "aicall (in-process)")
    print(f"replaying {len(fixtures)} fixture(s) against {against}, pace {pace_name}", flush=True)
    if args.target or args.cmd:
        def progress(run: FixtureRun) -> None:
            print(f"{run.fixture.name}: {'PASS' if run.ok else 'FAIL'} ({run.wall_s:.1f} s)", flush=True)

        try:
            runs = asyncio.run(run_external(fixtures, pace=args.pace, target=args.target, cmd=args.cmd, progress=progress,
                                            twilio_auth_token=args.twilio_auth_token))
        except aiohttp.WSServerHandshakeError as exc:
            print(f"harness: error: the handler refused the stream handshake: HTTP {exc.status}", file=sys.stderr)
            return 2
        except (RuntimeError, OSError, aiohttp.ClientError) as exc:
            print(f"harness: error: {exc}", file=sys.stderr)
            return 2
    else:
        runs = asyncio.run(_run_all(fixtures, args.pace))
    print()
    console_table(runs, sys.stdout)
    write_json(runs, args.report_dir / "report.json", pace_name)
    write_junit(runs, args.report_dir / "junit.xml")
    write_html(runs, args.report_dir / "report.html", pace_name)
    print(f"\nreports: {args.report_dir / 'report.html'}, report.json, junit.xml")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
