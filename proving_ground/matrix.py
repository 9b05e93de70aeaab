"""The proving ground: every reference handler, correct and with each bug put back, judged by the harness.

    python -m proving_ground.matrix                 # run it all, print the table
    python -m proving_ground.matrix --write docs/checks.md   # put the table into the docs
    python -m proving_ground.matrix --check docs/checks.md   # exit 1 if the docs' table says otherwise
    python -m proving_ground.matrix --json out.json     # every verdict, for the suite (tests/proving_ground)

A correct handler must pass every bundled call (no false alarm): at ``fast`` pace with four calls in flight, and the calls whose
verdict depends on audio taking time to play at the pace they need (``TIMED``). Each mutant must be
failed by the check named for its bug (``mutants.MUTANTS``), with a message naming the failure. The
runs go through ``harness run --cmd``'s own code (``CommandTarget``), a few at once, each with its own fakes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from examples import readme_tables
from harness.cli.common import parse_pace
from harness.fixture import bundled_calls, discover, load_call
from harness.replay.lanes import together
from harness.replay.runner import FixtureRun
from harness.replay.runs import run_target
from harness.replay.targets import CommandTarget

from .mutants import CHECKS_WITHOUT_A_MUTANT, HANDLERS, MUTANTS, Mutant, ReferenceHandler

TIMED = {"barge-in": "realtime", "failure4-hangup-while-tts-streams": "x4", "failure1-credentials-refused": "x4"}
EVERY_AT_ONCE = 4  # the correct handler takes every bundled call with this many in flight (each judged as if alone)
TOGETHER = {"stalled-neighbour": ("x4", 2), "stalled-tts-neighbour": ("x4", 2), "busy-hour": ("x4", 3)}  # groups played at once: (pace, calls at once)
AT_ONCE = 3  # handler runs in parallel (each a process of its own with its own fakes)
BEGIN, END = "<!-- proving-ground:begin -->", "<!-- proving-ground:end -->"


@dataclass(frozen=True)
class Verdict:
    """One call's verdict: every check's (name, status, message)."""

    fixture: str
    checks: tuple[tuple[str, str, str], ...]

    @classmethod
    def of(cls, run: FixtureRun) -> "Verdict":
        return cls(run.fixture.name, tuple((c.name, c.status, c.message) for c in run.checks))

    @property
    def failed(self) -> dict[str, str]:
        return {name: message for name, status, message in self.checks if status == "failed"}


@dataclass(frozen=True)
class Outcome:
    handler: str
    mutant: str  # "" for the correct handler
    pace: str
    runs: tuple[Verdict, ...]

    def as_json(self) -> dict:
        return {"handler": self.handler, "mutant": self.mutant, "pace": self.pace,
                "runs": [{"fixture": v.fixture, "checks": [list(c) for c in v.checks]} for v in self.runs]}

    @classmethod
    def from_json(cls, data: dict) -> "Outcome":
        return cls(data["handler"], data["mutant"], data["pace"],
                   tuple(Verdict(r["fixture"], tuple(tuple(c) for c in r["checks"])) for r in data["runs"]))


def save(outcomes: list[Outcome], path: Path) -> None:
    path.write_text(json.dumps([o.as_json() for o in outcomes], ensure_ascii=False), encoding="utf-8")


def load(path: Path) -> list[Outcome]:
    return [Outcome.from_json(o) for o in json.loads(path.read_text(encoding="utf-8"))]


def calls_named(name: str) -> list[str]:
    """A bundled call, or the bundled calls of a ``together`` group."""
    if (bundled_calls() / name / "call.json").exists():
        return [name]
    return [p.name for p in discover(bundled_calls()) if together(load_call(p)) == name]


async def run_one(handler: ReferenceHandler, fixtures: list[str], pace: str, mutant: str = "",
                  at_once: int = 1) -> Outcome:
    command = (f"MUTANT={mutant} " if mutant else "") + handler.command
    target = CommandTarget(command, path=handler.path, ready_timeout=60)
    calls = [load_call(bundled_calls() / name) for name in fixtures]
    runs = await run_target(target, calls, pace=parse_pace(pace), calls_at_once=at_once)
    return Outcome(handler.name, mutant, pace, tuple(Verdict.of(r) for r in runs))


def plan(handlers: tuple[ReferenceHandler, ...], mutants: tuple[Mutant, ...] = MUTANTS) -> list[tuple]:
    """Every run: (handler, fixtures, pace, mutant, calls at once)."""
    every = [p.name for p in discover(bundled_calls())]
    runs = []
    for handler in handlers:
        runs.append((handler, every, "fast", "", EVERY_AT_ONCE))
        for fixture, pace in TIMED.items():
            runs.append((handler, [fixture], pace, "", 1))
        for group, (pace, at_once) in TOGETHER.items():
            runs.append((handler, calls_named(group), pace, "", at_once))
        runs += [(handler, calls_named(m.fixture), m.pace, m.name, m.at_once) for m in mutants]
    return runs


async def run_all(handlers: tuple[ReferenceHandler, ...] = HANDLERS, mutants: tuple[Mutant, ...] = MUTANTS,
                  at_once: int = AT_ONCE, progress=lambda text: None) -> list[Outcome]:
    gate = asyncio.Semaphore(at_once)
    todo = plan(handlers, mutants)
    done = 0

    async def one(args) -> Outcome:
        nonlocal done
        async with gate:
            outcome = await run_one(*args)
        done += 1
        progress(f"[{done}/{len(todo)}] {outcome.handler} {outcome.mutant or 'correct'} ({outcome.pace})")
        return outcome

    return list(await asyncio.gather(*(one(args) for args in todo)))


def verdicts(outcomes: list[Outcome]) -> tuple[dict[tuple[str, str], str], dict[str, list[str]]]:
    """(mutant, handler) -> cell, and handler -> its false alarms (correct runs that failed)."""
    cells: dict[tuple[str, str], str] = {}
    alarms: dict[str, list[str]] = {}
    by_name = {m.name: m for m in MUTANTS}
    for o in outcomes:
        if not o.mutant:
            alarms.setdefault(o.handler, [])
            for run in o.runs:
                for name, message in run.failed.items():
                    alarms[o.handler].append(f"{run.fixture} ({o.pace}): {name}: {message.splitlines()[0]}")
            continue
        mutant = by_name[o.mutant]  # the named check failed on a call of the run (a group: any of its calls)
        failed = next((r.failed for r in o.runs if mutant.check in r.failed), o.runs[0].failed if o.runs else {})
        if mutant.check in failed and mutant.says in failed[mutant.check]:
            cells[(o.mutant, o.handler)] = "caught"
        elif mutant.check in failed:
            cells[(o.mutant, o.handler)] = f"caught, but the message does not say {mutant.says!r}"
        else:
            cells[(o.mutant, o.handler)] = "MISSED" + (f" (failed: {', '.join(failed)})" if failed else "")
    return cells, alarms


def markdown(outcomes: list[Outcome], handlers: tuple[ReferenceHandler, ...] = HANDLERS) -> str:
    cells, alarms = verdicts(outcomes)
    names = [h.name for h in handlers]
    lines = ["| bug put back (`MUTANT=`) | call, pace | must fail | " + " | ".join(names) + " |",
             "|---" * (3 + len(names)) + "|"]
    for m in MUTANTS:
        at_once = f", {m.at_once} at once" if m.at_once > 1 else ""
        lines.append(f"| `{m.name}`: {m.bug} | `{m.fixture}`, {m.pace}{at_once} | `{m.check}` | "
                     + " | ".join(cells.get((m.name, n), "-") for n in names) + " |")
    lines.append(f"| **the correct handler**: false alarms | every bundled call fast, {EVERY_AT_ONCE} at once, " + ", ".join(
        f"`{f}` {p}" for f, p in TIMED.items()) + ", " + ", ".join(
        f"`{g}` {p}, {n} at once" for g, (p, n) in TOGETHER.items()) + " | none | " + " | ".join(
        f"{len(alarms.get(n, []))} of {sum(len(o.runs) for o in outcomes if o.handler == n and not o.mutant)} calls"
        for n in names) + " |")
    caught = sum(v == "caught" for v in cells.values())
    lines.append("")
    lines.append(f"{caught} of {len(MUTANTS) * len(names)} mutants caught by their check; "
                 f"{sum(len(a) for a in alarms.values())} false alarms. Checks with no mutant: "
                 + "; ".join(f"`{c}` ({why})" for c, why in CHECKS_WITHOUT_A_MUTANT.items()) + ".")
    return "\n".join(lines)


def readme_table(readme: Path) -> str:
    return readme_tables.read(readme, BEGIN, END)


def explain(outcomes: list[Outcome]) -> str:
    """Why each cell that is not "caught", and each false alarm, is what it is."""
    cells, alarms = verdicts(outcomes)
    out = [f"{h}: false alarm: {a}" for h, found in alarms.items() for a in found]
    for o in outcomes:
        if o.mutant and cells.get((o.mutant, o.handler)) != "caught" and o.runs:
            out.append(f"{o.handler} {o.mutant}: {cells.get((o.mutant, o.handler))}\n" + "\n".join(
                f"  {run.fixture}: {name}: {status}: {message}" for run in o.runs for name, status, message in run.checks))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, metavar="PAGE")
    parser.add_argument("--write", type=Path, metavar="PAGE")
    parser.add_argument("--handler", action="append", help="only these handlers (by name)")
    parser.add_argument("--mutant", action="append", help="only these mutants")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every verdict here (for the suite)")
    args = parser.parse_args()
    handlers = tuple(h for h in HANDLERS if not args.handler or h.name in args.handler)
    mutants = tuple(m for m in MUTANTS if not args.mutant or m.name in args.mutant)
    missing = [f"{h.name}: {h.available()}" for h in handlers if h.available()]
    if missing:
        print("cannot run: " + "; ".join(missing), file=sys.stderr)
        return 2
    outcomes = asyncio.run(run_all(handlers, mutants, progress=lambda t: print(t, flush=True)))
    if args.json:
        save(outcomes, args.json)
    measured = markdown(outcomes, handlers)
    print(measured)
    why = explain(outcomes)
    if why:
        print("\n" + why, file=sys.stderr)
    if args.write:
        readme_tables.write(args.write, BEGIN, END, measured)
    if args.check and readme_table(args.check) != measured:
        print(f"\n{args.check} says otherwise:\n{readme_table(args.check)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
