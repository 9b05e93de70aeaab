"""A handler that paces itself by the wall clock (it sleeps out each reply's playback time: ``MUTANT=
sleeps-through-reply``, a style and not a bug class of the matrix), judged at fast pace, where bot audio takes no
time: it answers fewer turns, and the failure says what the timeline shows and names ``--pace realtime``. In two
styles: the FastAPI handler sleeps in its Twilio receive loop (it does not read the caller meanwhile), the
``websockets`` one in its reply task. The correct handlers pass the same call."""

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

LONG_REPLY = "{user}, 잘 들었습니다. 오늘 날씨가 맑고 따뜻하니 산책을 하시면 좋겠습니다. 식사는 거르지 마시고 물도 자주 드세요. 더 도와드릴까요?"


def long_replies(tmp: Path) -> Path:
    """The seed's three turns, each answered with about 5 s of speech: longer than the fast caller waits."""
    fixture = tmp / "seed-three-turns-long-replies"
    shutil.copytree(bundled_calls() / "seed-three-turns", fixture)
    doc = json.loads((fixture / "call.json").read_text(encoding="utf-8"))
    doc.update(name=fixture.name, llm={"replies": [LONG_REPLY]})
    (fixture / "call.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return fixture


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mutant", ["sleeps-through-reply", ""], ids=["clock-paced", "correct"])
@pytest.mark.parametrize("name", ["fastapi prod", "websockets"])
def test_a_clock_paced_handler_at_fast_pace_is_told_to_replay_at_realtime(name, mutant, tmp_path):
    handler = next(h for h in HANDLERS if h.name == name)
    command = (f"MUTANT={mutant} " if mutant else "") + handler.command
    [run] = asyncio.run(run_target(CommandTarget(command, path=handler.path, ready_timeout=60),
                                   [load_call(long_replies(tmp_path))], pace=None))
    if not mutant:
        assert run.ok, run.failures()
        return
    failed = {c.name: c.message for c in run.checks if not c.ok}
    assert "expectations" in failed, run.failures()
    assert "paced by the wall clock" in failed["expectations"] and "--pace realtime" in failed["expectations"]
