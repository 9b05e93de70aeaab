"""The fuzz matrix starts its longest searches first: a run's few real-time searches are not left to run alone
at its end (a real-time search of 100 calls takes about as long as all its fast ones together)."""

from proving_ground.fuzz_matrix import longest_first
from proving_ground.mutants import MUTANTS


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
