"""The two third-party handlers in examples/, replayed over every bundled fixture with the commands
of docs/handlers.md: the verdicts must be its table ("The two examples").

Their packages (pipecat-ai, pipecat-rtzr, fastapi, uvicorn, openai) are the ``examples`` extra,
which ``dev`` includes. The run starts with the session, beside the rest (tests/support/long_runs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.verdicts import explain, markdown, readme_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "handlers.md"


@pytest.mark.long_run("examples")
@pytest.mark.timeout(900)  # the pipecat bot is replayed at real time: about 4 minutes, from the session's start
def test_the_readme_table_is_what_the_examples_do(long_runs):
    measured, expected = markdown(long_runs.result("examples", 880)), readme_table(PAGE)
    assert measured == expected, f"the verdicts differ from docs/handlers.md's table:\n{explain(measured, expected)}"
