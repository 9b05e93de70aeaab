"""The two third-party handlers in examples/, replayed over every bundled fixture with the README's
commands: the verdicts must be the README's table ("Bring your own handler").

Their packages (pipecat-ai, pipecat-rtzr, fastapi, uvicorn, openai) are the ``examples`` extra,
which ``dev`` includes. The run starts with the session, beside the rest (tests/support/long_runs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.verdicts import explain, markdown, readme_table

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.long_run("examples")
@pytest.mark.timeout(900)  # the pipecat bot is replayed at real time: about 4 minutes, from the session's start
def test_the_readme_table_is_what_the_examples_do(long_runs):
    measured, expected = markdown(long_runs.result("examples", 880)), readme_table(README)
    assert measured == expected, f"the verdicts differ from the README's table:\n{explain(measured, expected)}"
