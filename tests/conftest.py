"""Fixtures the suite's long runs share (see tests/support/long_runs.py)."""

from __future__ import annotations

import pytest

from tests.support.long_runs import LongRuns

LONG_TESTS = {"examples": "tests/examples/", "matrix": "tests/proving_ground/"}


@pytest.fixture(scope="session")
def long_runs(request):
    """Both long runs the session's selected tests need, started at once the first time either is asked for."""
    runs = LongRuns()
    selected = {item.nodeid for item in request.session.items}
    runs.start({name for name, prefix in LONG_TESTS.items() if any(n.startswith(prefix) for n in selected)})
    yield runs
    runs.close()
