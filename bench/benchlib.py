"""What the benchmark scripts share: percentiles and the results file (CPU time: harness.load.capacity.process_group_cpu_s)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(q / 100 * (len(ordered) - 1))], 2) if ordered else float("nan")


def report(name: str, result: dict[str, Any]) -> None:
    """Print the result as one JSON line and append it, time-stamped, to bench/results/NAME.jsonl."""
    print(json.dumps(result, ensure_ascii=False))
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{name}.jsonl").open("a") as f:
        f.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}, ensure_ascii=False) + "\n")
