"""The fuzz matrix starts its longest searches first: a run's few real-time searches are not left to run alone
at its end (a real-time search of 100 calls takes about as long as all its fast ones together)."""

import json
import subprocess

from proving_ground import fuzz_matrix
from proving_ground.fuzz_matrix import longest_first
from proving_ground.mutants import HANDLERS, MUTANTS


def test_real_time_searches_start_before_faster_ones() -> None:
    searches = [("", "fast", 200), ("", "x2", 200)] + [(m.name, m.pace, 100) for m in MUTANTS]  # as main() lists them
    ordered = longest_first(searches)
    assert sorted(ordered) == sorted(searches)  # every search, once
    paces = [pace for _, pace, _ in ordered]
    realtime = [k for k, pace in enumerate(paces) if pace == "realtime"]
    assert realtime == list(range(len(realtime))) and realtime  # the real-time ones, all of them first
    assert ordered[len(realtime)] == ("", "x2", 200)  # then the correct handler's 200 calls at x2
    assert paces[-1] == "fast"


def test_the_catalogue_order_is_kept_among_equals() -> None:
    fast = [(m.name, m.pace, 100) for m in MUTANTS if m.pace == "fast"]
    assert longest_first(fast) == fast


def test_a_bug_between_calls_is_searched_with_calls_at_once(tmp_path, monkeypatch) -> None:
    """The catalogue's cross-call bugs (``at_once`` > 1) cannot show one call at a time: their search is given
    ``--calls-at-once``, and the cell says a failure needed calls beside it."""
    seen: list[list[str]] = []

    def fake_run(command, **kwargs):
        seen.append(command)
        (tmp_path / "fuzz.json").write_text(json.dumps({"searches": [{"drawn": 9, "shrink_tries": 4, "failure": {
            "checks": [{"name": "replies_reach_own_caller", "status": "failed"}], "size": [1, 0], "first_size": None,
            "reproduced": True, "neighbours": ["fuzz-a", "fuzz-b"]}}]}))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(fuzz_matrix.subprocess, "run", fake_run)
    crossing = next(m for m in MUTANTS if m.name == "one-current-call")
    result = fuzz_matrix.fuzz(HANDLERS[0], crossing.name, crossing.pace, 100, 1, tmp_path, 60, crossing.at_once)
    assert seen[0][seen[0].index("--calls-at-once") + 1] == "3"
    assert "failing only with 2 call(s) beside it" in fuzz_matrix.cell(result, crossing.check)
    fuzz_matrix.fuzz(HANDLERS[0], "leaves-rtzr-open", "fast", 100, 1, tmp_path, 60)
    assert "--calls-at-once" not in seen[1]
