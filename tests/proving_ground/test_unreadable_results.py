"""Found by ``harness fuzz`` on the correct reference handlers: RTZR sending a message that is not a result
(the ``malformed`` fault) crashed the Python two (an uncaught ``JSONDecodeError`` ended the call's
recognition). Each now skips it, as aicall does, and hears the rest of the call."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from harness.fixture import bundled_calls, load_call
from harness.replay.runs import run_target
from harness.replay.targets import CommandTarget
from proving_ground.mutants import HANDLERS


def malformed_after_first_final(tmp: Path) -> Path:
    fixture = tmp / "seed-three-turns-malformed"
    shutil.copytree(bundled_calls() / "seed-three-turns", fixture)
    doc = json.loads((fixture / "call.json").read_text(encoding="utf-8"))
    doc.update(name=fixture.name, faults=[{"type": "malformed", "after_finals": 1}])
    (fixture / "call.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return fixture


@pytest.mark.timeout(180)
@pytest.mark.parametrize("handler", HANDLERS, ids=[h.name for h in HANDLERS])
def test_a_message_that_is_not_a_result_is_skipped(handler, tmp_path):
    why = handler.available()
    if why:
        pytest.skip(why)
    fixture = load_call(malformed_after_first_final(tmp_path))
    [run] = asyncio.run(run_target(CommandTarget(handler.command, path=handler.path, ready_timeout=60), [fixture],
                                   pace=None))
    assert run.ok, run.failures()
    assert len([c for c in run.checks if c.name == "no_errors" and c.status == "passed"]) == 1
