"""The suite's long runs (tests/support/long_runs.py): started when the session is collected, for the tests
marked ``long_run("examples")`` or ``long_run("matrix")`` that were selected, and shared by them."""

from __future__ import annotations

import pytest

from tests.support.long_runs import LongRuns

RUNS = LongRuns()


def pytest_collection_finish(session):
    """Start the long runs the selected tests read: they go on beside the rest of the suite."""
    if not session.config.option.collectonly:
        RUNS.start({m.args[0] for item in session.items for m in item.iter_markers("long_run")})


def pytest_sessionfinish(session):
    RUNS.close()


@pytest.fixture(scope="session")
def long_runs():
    return RUNS
