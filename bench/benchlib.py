"""What the benchmark scripts share: CPU time of a process, percentiles, and the results file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(q / 100 * (len(ordered) - 1))], 2) if ordered else float("nan")


def report(name: str, result: dict[str, Any]) -> None:
    """Print the result as one JSON line and append it, time-stamped, to bench/results/NAME.jsonl."""
    print(json.dumps(result, ensure_ascii=False))
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{name}.jsonl").open("a") as f:
        f.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}, ensure_ascii=False) + "\n")
