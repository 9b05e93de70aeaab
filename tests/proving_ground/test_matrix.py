"""The proving ground (proving_ground/): four reference handlers in other styles than the project's own (a plain
``websockets`` app, synchronous Flask + flask-sock, Node.js ``ws``, a production-style FastAPI backend), each correct
and with every bug class the
checks exist for put back. Every correct handler passes every bundled call (no false alarm); every mutant is
failed by the check named for its bug, with a message naming the failure; docs/checks.md's table is what they did."""

from __future__ import annotations

from pathlib import Path

import pytest

from proving_ground import handlers_dir_mutants  # noqa: F401 - the handlers' own list of mutants, checked below
from proving_ground.matrix import explain, markdown, readme_table, verdicts
from proving_ground.mutants import HANDLERS, MUTANTS, OVER_MANY_CALLS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "checks.md"
MISSING = [f"{h.name}: {h.available()}" for h in HANDLERS if h.available()]
pytestmark = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))


def test_every_handler_knows_every_mutant_of_the_catalogue():
    assert set(handlers_dir_mutants()) == {m.name for m in MUTANTS} | set(OVER_MANY_CALLS)


@pytest.mark.long_run("matrix")
@pytest.mark.timeout(900)
def test_no_false_alarm_and_every_mutant_caught_by_its_check(long_runs):
    outcomes = long_runs.result("matrix", 880)
    cells, alarms = verdicts(outcomes)
    assert not any(alarms.values()) and set(cells.values()) == {"caught"}, explain(outcomes)
    assert len(cells) == len(MUTANTS) * len(HANDLERS)


@pytest.mark.long_run("matrix")
@pytest.mark.timeout(900)
def test_the_docs_table_is_what_the_handlers_did(long_runs):
    measured, expected = markdown(long_runs.result("matrix", 880)), readme_table(PAGE)
    assert measured == expected, f"docs/checks.md's proving-ground table differs:\nmeasured:\n{measured}\n\ndocs:\n{expected}"
