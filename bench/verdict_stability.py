"""Do verdicts depend on luck or on pace? Replay every fixture N times at several paces and count.

    python bench/verdict_stability.py --repeat 3 --paces fast,x4,realtime
    python bench/verdict_stability.py --repeat 3 --paces fast,realtime -- --path /media-stream \\
        --cmd "cd examples/fastapi_handler && uvicorn app:app --port {port}"

Arguments after ``--`` go to ``harness run`` (the handler; default aicall in-process). Prints one row
per fixture: at each pace, the verdict cells seen (``pass`` / ``FAIL: checks``) and how often. A row
with more than one cell at one pace is luck; different cells across paces is pace.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.verdicts import cell  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paces", default="fast,x4,realtime")
    parser.add_argument("harness_args", nargs="*", help="after --: passed to harness run")
    args = parser.parse_args()
    paces = args.paces.split(",")
    seen: dict[str, dict[str, Counter]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for pace in paces:
            for i in range(args.repeat):
                report_dir = Path(tmp) / f"{pace}-{i}"
                done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--pace", pace, *args.harness_args,
                                       "--report-dir", str(report_dir)], cwd=ROOT, capture_output=True, text=True)
                if done.returncode not in (0, 1):
                    print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                    return 2
                for run in json.loads((report_dir / "report.json").read_text(encoding="utf-8"))["runs"]:
                    seen.setdefault(run["fixture"], {}).setdefault(pace, Counter())[cell(run["checks"])] += 1
                print(f"  {pace} run {i + 1}/{args.repeat} done ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    lucky = paced = 0
    print("| fixture | " + " | ".join(paces) + " |\n" + "|---" * (len(paces) + 1) + "|")
    for fixture in sorted(seen):
        row = seen[fixture]
        lucky += any(len(row.get(p, {})) > 1 for p in paces)
        paced += len({c.split(" (")[0] for p in paces for c in row.get(p, {})}) > 1
        print(f"| `{fixture}` | " + " | ".join(", ".join(f"{c} x{n}" for c, n in row.get(p, {}).items()) for p in paces) + " |")
    print(f"\n{len(seen)} fixtures x {len(paces)} paces x {args.repeat} runs: {lucky} fixture(s) changed verdict at one pace "
          f"(luck), {paced} differ between paces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
