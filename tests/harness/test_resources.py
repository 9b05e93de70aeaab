"""A launched handler's memory and descriptors over many calls (harness.replay.resources): growth that levels off
after a warm-up is no leak; growth with every call is one, named with its numbers; too few samples say nothing."""

from __future__ import annotations

import os

from harness.replay.resources import Resources, Sample, sample


def series(rss, fds=None) -> Resources:
    return Resources([Sample(k * 4, float(r), (fds or [20] * len(rss))[k]) for k, r in enumerate(rss)])


def test_a_warm_up_that_levels_off_is_no_leak():
    assert series([40, 55, 61, 62, 62, 63, 62, 63, 63]).leak() is None
    assert series([40, 41, 40, 42, 41, 40, 41, 42, 41]).leak() is None  # noise around a level
    # a heap that collects lazily (Node's V8, seen on the correct Node handler): fast growth, then slowing
    assert series([71, 75, 78, 92, 97, 100, 104, 106, 107]).leak() is None


def test_memory_that_grows_with_every_call_is_a_leak_with_its_numbers():
    leak = series([40 + 3 * k for k in range(9)]).leak()
    assert leak is not None and "memory grew from" in leak and "0.75 MB a call" in leak


def test_descriptors_that_grow_with_every_call_are_a_leak():
    leak = series([50] * 9, [10 + 4 * k for k in range(9)]).leak()
    assert leak is not None and "open descriptors grew" in leak and "memory" not in leak


def test_too_few_samples_or_calls_say_nothing():
    assert series([40 + 10 * k for k in range(5)]).leak() is None  # 5 samples
    few_calls = Resources([Sample(k, 40.0 + 10 * k, 20) for k in range(9)])  # 8 calls apart
    assert few_calls.leak() is None


def test_this_process_group_can_be_sampled():
    taken = sample(os.getpgid(0), 3)
    assert taken is not None and taken.calls == 3 and taken.rss_mb > 1 and taken.fds > 0
    assert sample(2**22 + 12345, 0) is None  # no such group
