"""How ``harness fuzz`` fares on the proving ground: for each bug class put back into a reference handler, how
many drawn calls it took to find, which check failed, and how small the shrunk call is; and how many calls
each correct handler passes (any failure there is a false alarm).

    python -m proving_ground.fuzz_matrix                          # websockets handler, 100 examples a mutant
    python -m proving_ground.fuzz_matrix --handler "node ws" --examples 100 --correct 200 --at-once 2

Each search is ``harness fuzz --cmd ...`` itself (a process of its own, from a fresh database, seed fixed by
``--seed``) at the mutant's pace from the catalogue, and a bug that shows only between calls with as many calls in
flight as its bundled group (``harness fuzz --calls-at-once``); the longest searches start first. Results are
printed as a markdown table and kept as JSON (``harness-report/fuzz-matrix/HANDLER/matrix.json``, each search's
report and shrunk failure beside it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
from pathlib import Path

from .mutants import HANDLERS, MUTANTS

ROOT = Path(__file__).resolve().parents[1]


def fuzz(handler, mutant: str, pace: str, examples: int, seed: int, report_dir: Path, shrink_limit: int,
         at_once: int = 1) -> dict:
    """One ``harness fuzz`` search; its summary (fuzz.json's only search) and the command. A bug that shows only
    between calls (the catalogue's ``at_once``) is searched with that many calls in flight into the handler."""
    command = [sys.executable, "-m", "harness.cli", "fuzz", "--cmd", (f"MUTANT={mutant} " if mutant else "")
               + handler.command, "--path", handler.path, "--pace", pace, "--examples", str(examples),
               "--seed", str(seed), "--shrink-limit", str(shrink_limit), "--no-database", "--report-dir", str(report_dir)]
    command += ["--calls-at-once", str(at_once)] if at_once > 1 else []
    out = report_dir / "fuzz.json"
    out.unlink(missing_ok=True)  # a search run before into this directory
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if not out.exists():
        raise RuntimeError(f"harness fuzz exited {done.returncode}: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    summary = json.loads(out.read_text(encoding="utf-8"))["searches"][0]
    return {"mutant": mutant, "pace": pace, "at_once": at_once, "summary": summary}


# how long a drawn call takes at each pace, against its length in audio (fast: only the handler's own time)
PACE_COST = {"realtime": 1.0, "x2": 0.5, "x4": 0.25, "fast": 0.1}


def longest_first(searches: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """(name, pace, examples) in the order to start them: the searches that take longest first, so a run with
    a few real-time searches is not left waiting on them alone at its end."""
    def slowest(search: tuple[str, str, int]) -> tuple[float, float]:
        per_call = PACE_COST.get(search[1], 1.0)
        return -per_call * search[2], -per_call  # of two alike, the slower pace first

    return sorted(searches, key=slowest)


def cell(result: dict, expected_check: str | None) -> str:
    s = result["summary"]
    f = s["failure"]
    if f is None:
        return f"no failure in {s['drawn']} calls" if expected_check else f"pass ({s['drawn']} calls)"
    failed = [c["name"] for c in f["checks"] if c["status"] == "failed"]
    named = "" if expected_check is None or expected_check in failed else f" (not {expected_check})"
    first = f.get("first_size") or f["size"]
    beside = f.get("neighbours") or []
    return (f"call {s['drawn']}: {', '.join(failed)}{named}; shrunk {first[0]}u/{first[1]}f"
            f" -> {f['size'][0]}u/{f['size'][1]}f in {s['shrink_tries']} tries"
            + (f", failing only with {len(beside)} call(s) beside it" if beside else "")
            + ("" if f["reproduced"] else "; NOT reproduced"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handler", default="websockets", choices=[h.name for h in HANDLERS])
    parser.add_argument("--examples", type=int, default=100, help="calls a mutant's search may draw")
    parser.add_argument("--correct", type=int, default=200, help="calls the correct handler's search draws")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--at-once", type=int, default=2)
    parser.add_argument("--mutants", help="comma-separated names (default: every one)")
    parser.add_argument("--no-correct", action="store_true", help="search the mutants only")
    parser.add_argument("--correct-paces", default="fast,x2", help="the paces the correct handler is searched at "
                        "(default fast,x2: at fast pace bot audio takes no time to play, so barge-in is judged at x2)")
    parser.add_argument("--shrink-limit", type=int, default=150, help="harness fuzz --shrink-limit (default 150)")
    parser.add_argument("--report-dir", type=Path, default=Path("harness-report/fuzz-matrix"),
                        help="each search's report (its shrunk failure included) goes to DIR/HANDLER/MUTANT")
    args = parser.parse_args()
    handler = next(h for h in HANDLERS if h.name == args.handler)
    chosen = [m for m in MUTANTS if not args.mutants or m.name in args.mutants.split(",")]
    here = args.report_dir / handler.name.replace(" ", "-")
    with concurrent.futures.ThreadPoolExecutor(args.at_once) as pool:
        searches = [] if args.no_correct else [("", pace, args.correct) for pace in args.correct_paces.split(",")]
        searches += [(m.name, m.pace, args.examples) for m in chosen]
        by_name = {m.name: m for m in chosen}
        jobs = {pool.submit(fuzz, handler, name, pace, examples, args.seed, here / (name or f"correct-{pace}"),
                            args.shrink_limit, by_name[name].at_once if name else 1): by_name.get(name)
                for name, pace, examples in longest_first(searches)}
        results = []
        for job in concurrent.futures.as_completed(jobs):
            m = jobs[job]
            result = job.result()
            result["expected"] = m.check if m else None
            results.append(result)
            at_once = f", {result['at_once']} at once" if result["at_once"] > 1 else ""
            print(f"{m.name if m else 'correct'} ({result['pace']}{at_once}): {cell(result, m.check if m else None)}",
                  flush=True)
    (here / "matrix.json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    order = {m.name: k for k, m in enumerate(MUTANTS)}
    print(f"\n| bug class ({handler.name}) | pace | harness fuzz --examples {args.examples} --seed {args.seed} |\n|---|---|---|")
    for r in sorted(results, key=lambda r: order.get(r["mutant"], -1)):
        pace = r["pace"] + (f", {r['at_once']} at once" if r.get("at_once", 1) > 1 else "")
        print(f"| {r['mutant'] or 'correct handler'} | {pace} | {cell(r, r['expected'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
