"""Benchmarks of aicall, driven by ``harness load`` and measured beside a floor in the same run.

    python bench/aicall_bench.py calls --callers 100,200,300           # real-time callers, step by step
    python bench/aicall_bench.py capacity --max-p95 1000               # harness load --find-capacity, per handler
    python bench/aicall_bench.py overhead --calls 20                   # calls one after another, as fast as possible

Each handler is launched as its own process (``--handlers``, default ``floor,aicall:asyncio,aicall:uvloop``):
``floor`` is ``bench/floor_handler.py``, the least a Media Streams handler on RTZR can do (forward the audio,
answer each final with prepared audio); ``aicall:LOOP`` is ``aicall serve --loop LOOP``; ``gunicorn:N`` is aicall
in N gunicorn workers (uvloop); ``pipecat`` is the
stock pipecat bot of ``examples/pipecat_bot``. The callers, fakertzr
and the fake LLM and TTS run in this process (``harness load``). Figures are read as ratios to the floor's
in the same run: an absolute number from one machine is not a claim.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchlib import percentile, report  # noqa: E402
from fakertzr.loops import loop_factory  # noqa: E402
from harness.fixture import load_call  # noqa: E402
from harness.load.capacity import LoadPlan, LoadRunner  # noqa: E402
from harness.load.stats import Criteria, StepResult  # noqa: E402
from harness.replay.runs import run_target  # noqa: E402
from harness.replay.targets import CommandTarget  # noqa: E402

SEED = load_call(ROOT / "fixtures" / "calls" / "seed-three-turns")


def target(handler: str, workdir: Path) -> CommandTarget:
    """The handler as the harness launches it (its output saved in ``workdir``)."""
    kind, _, loop = handler.partition(":")
    log = workdir / f"{handler.replace(':', '-')}.log"
    if kind == "floor":
        return CommandTarget(f"{sys.executable} {ROOT / 'bench' / 'floor_handler.py'} --port {{port}} "
                             f"--loop {loop or 'auto'}", log_path=log)
    if kind == "aicall":
        return CommandTarget(f"AICALL_DB={workdir}/calls-{{port}}.db {sys.executable} -m aicall.cli serve "
                             f"--port {{port}} --loop {loop or 'auto'}", log_path=log)
    if kind == "gunicorn":  # aicall on N cores: gunicorn forks N workers that each build the app (aicall.app:from_env)
        workers = loop or "2"  # gunicorn:N - the part after the colon is a worker count here
        return CommandTarget(f"AICALL_DB={workdir}/calls-{{port}}.db {sys.executable} -m gunicorn aicall.app:from_env "
                             f"--worker-class aiohttp.GunicornUVLoopWebWorker --workers {workers} "
                             f"--bind 127.0.0.1:{{port}}", log_path=log)
    if kind == "pipecat":  # the any-handler example: a stock pipecat bot (pipecat-rtzr, Silero VAD, OpenAI services)
        return CommandTarget(f"{sys.executable} {ROOT / 'examples' / 'pipecat_bot' / 'bot.py'} --port {{port}}",
                             path="/ws", log_path=log)
    raise SystemExit(f"--handlers: floor[:LOOP], aicall:LOOP, gunicorn:WORKERS or pipecat, got {handler!r}")


def progress(line: str) -> None:
    if line.endswith("\n"):
        print(line, end="", file=sys.stderr, flush=True)


async def load(handlers: list[str], plan: LoadPlan) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for handler in handlers:
            print(f"--- {handler}", file=sys.stderr, flush=True)
            result = await LoadRunner(target(handler, Path(tmp)), [SEED], plan, progress=progress).run(handler)
            steps: list[StepResult] = ([result.baseline] if result.baseline else []) + result.steps
            rows += [{"handler": handler, **step.as_json()} for step in steps]
            if plan.search:
                rows.append({"handler": handler, "knee": result.knee})
    return rows


def table(rows: list[dict]) -> None:
    floor = {r["callers"]: r for r in rows if r["handler"].startswith("floor") and "callers" in r}
    print(f"{'callers':>7} {'handler':<15} {'answered':>9} {'p50':>7} {'p95':>7} {'p99':>7} {'handler p99':>11} "
          f"{'handler CPU':>11} {'x floor':>7} {'harness CPU':>11} {'harness late p99':>16}", file=sys.stderr)
    for r in rows:
        if "knee" in r:
            print(f"{'':>7} {r['handler']:<15} knee: held {r['knee']['held']}, broke {r['knee']['broke']} "
                  f"{r['knee']['why']}", file=sys.stderr)
            continue
        base = floor.get(r["callers"])
        ratio = (round(r["handler_cpu_percent"] / base["handler_cpu_percent"], 2)
                 if base and base["handler_cpu_percent"] and r["handler_cpu_percent"] is not None else None)
        r["cpu_vs_floor"] = ratio
        lat = r["latency_ms"]
        print(f"{r['callers']:>7} {r['handler']:<15} {r['answered']:>4}/{r['turns']:<4} {lat['p50']!s:>7} "
              f"{lat['p95']!s:>7} {lat['p99']!s:>7} {r['handler_ms'].get('p99', '-')!s:>11} "
              f"{r['handler_cpu_percent']!s:>10}% {ratio!s:>7} {r['harness_cpu_percent']!s:>10}% "
              f"{r['harness_late_ms'].get('p99', '-')!s:>16}", file=sys.stderr)
        if r["handler_steps_p99_ms"]:  # aicall's per-turn line: where the time from the final went
            print(f"{'':>7} {'':<15} from the final, p99 ms: " + ", ".join(
                f"{name} {value}" for name, value in r["handler_steps_p99_ms"].items()), file=sys.stderr)


async def overhead(calls: int) -> dict:
    """aicall's own per-turn figure (final received -> first media out) over ``calls`` seed calls played as fast
    as aicall takes them, one after another, by the harness (zero-latency fakes)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "aicall-auto.log"
        runs = await run_target(target("aicall:auto", Path(tmp)), [SEED] * calls, pace=None)
        values = [float(m) for m in re.findall(r"final_to_first_media_ms=([\d.]+)", log.read_text())]
    return {"bench": "aicall_overhead", "calls": calls, "passed": sum(r.ok for r in runs), "turns": len(values),
            "final_to_first_media_ms_p50": percentile(values, 50), "final_to_first_media_ms_p99": percentile(values, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("calls", "capacity"):
        p = sub.add_parser(name)
        p.add_argument("--handlers", default="floor,aicall:asyncio,aicall:uvloop")
        p.add_argument("--hold", type=float, default=20.0)
        p.add_argument("--ramp", type=float, default=5.0)
        if name == "calls":
            p.add_argument("--callers", default="100,200,300")
        else:
            p.add_argument("--max-p95", type=float, default=1000.0)
            p.add_argument("--start", type=int, default=10)
    o = sub.add_parser("overhead")
    o.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        if args.command == "overhead":
            result = runner.run(overhead(args.calls))
        else:
            search = args.command == "capacity"
            plan = LoadPlan(steps=tuple(int(n) for n in args.callers.split(",")) if not search else (1,),
                            hold_s=args.hold, ramp_s=args.ramp, search=search,
                            criteria=Criteria(args.max_p95 if search else 1e9), start=getattr(args, "start", 10))
            rows = runner.run(load(args.handlers.split(","), plan))
            table(rows)
            result = {"bench": f"aicall_{args.command}", "rows": rows}
    report(result["bench"], result)


if __name__ == "__main__":
    main()
