"""harness: replay recorded calls against any Twilio Media Streams handler; check, measure, report.

Layers, each importing only those below it (``[tool.importlinter]`` in pyproject.toml holds CI to it):

- ``cli``, ``pytest_plugin``: the ways in (``harness ...``, the pytest fixtures).
- ``reports`` | ``load`` | ``fuzz`` | ``authoring``: what is done with replayed calls, side by side and
  independent of each other.
- ``replay``: the target interface (aicall in-process, a command, a URL) and the runner that plays one
  fixture against a target and judges it.
- ``judge``: sans-I/O: the timeline of a played call, the checks, the latency figures, the log reader.
- ``fakes``: what the handler talks to: Twilio's side of the call, the fake LLM and TTS (fakertzr is RTZR).
- ``fixture``, ``files``, ``terminal``: the call fixture model, report files written whole or not at all, and
  handler text made safe for a terminal.
- ``errors``: the harness's errors.

``harness.strategies`` is the public name of ``harness.fuzz.strategies``.

What users import is exported here (``from harness import replay_call, FixtureRun, Verdict``), loaded on first use
so that ``import harness`` stays cheap; the API reference (docs/api.md) lists it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for type checkers (explicit re-exports)
    from harness.errors import FixtureError as FixtureError
    from harness.errors import HandlerDidNotStart as HandlerDidNotStart
    from harness.errors import HarnessError as HarnessError
    from harness.fixture import CallFixture as CallFixture
    from harness.fixture import bundled_calls as bundled_calls
    from harness.fixture import load_call as load_call
    from harness.judge import events as events
    from harness.judge.timeline import CallTimeline as CallTimeline
    from harness.judge.verdict import CheckResult as CheckResult
    from harness.judge.verdict import Status as Status
    from harness.judge.verdict import Verdict as Verdict
    from harness.replay.runner import ErrorLog as ErrorLog
    from harness.replay.runner import FixtureRun as FixtureRun
    from harness.replay.runner import replay as replay_call

_EXPORTS = {
    "HarnessError": "harness.errors", "FixtureError": "harness.errors", "HandlerDidNotStart": "harness.errors",
    "CallFixture": "harness.fixture", "load_call": "harness.fixture", "bundled_calls": "harness.fixture",
    "CallTimeline": "harness.judge.timeline",
    "CheckResult": "harness.judge.verdict", "Status": "harness.judge.verdict", "Verdict": "harness.judge.verdict",
    "ErrorLog": "harness.replay.runner", "FixtureRun": "harness.replay.runner",
}
__all__ = [*_EXPORTS, "events", "replay_call"]


def __getattr__(name: str) -> Any:
    if name == "replay_call":  # ``harness.replay`` is the package: the function is exported by this name
        return importlib.import_module("harness.replay.runner").replay
    if name == "events":
        return importlib.import_module("harness.judge.events")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
