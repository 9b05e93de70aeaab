"""The proving ground for the harness's judge: reference handlers in styles the project does not use itself, each
correct and with one bug class put back at a time (``mutants.py``), judged over the bundled calls (``matrix.py``).

Test support and a demonstration, not part of the installed package."""

from __future__ import annotations

import re
from pathlib import Path


PACING_ONLY = ("sleeps-through-reply",)  # not a bug the matrix judges: a style that needs --pace realtime


def handlers_dir_mutants() -> list[str]:
    """The mutant names the Python handlers' core, the Node handler and the FastAPI handler each accept (they must
    agree; the FastAPI handler also takes ``sleeps-through-reply``, for the test of a handler paced by the clock)."""
    here = Path(__file__).parent / "handlers"
    from proving_ground.handlers.call_core import MUTANTS

    node = re.search(r"const MUTANTS = \[(.*?)\];", (here / "node_handler" / "server.js").read_text(), re.S)
    names = re.findall(r'"([a-z-]+)"', node.group(1)) if node else []
    if sorted(names) != sorted(MUTANTS):
        raise AssertionError(f"server.js and call_core.py disagree: {sorted(set(names) ^ set(MUTANTS))}")
    fastapi = [m for m in _tuple_of(here / "fastapi_handler.py", "MUTANTS") if m not in PACING_ONLY]
    if sorted(fastapi) != sorted(MUTANTS):
        raise AssertionError(f"fastapi_handler.py and call_core.py disagree: {sorted(set(fastapi) ^ set(MUTANTS))}")
    return list(MUTANTS)


def _tuple_of(path: Path, name: str) -> list[str]:
    """The names in a module-level ``NAME = (...)`` of strings, read without importing the module (a handler
    module configures itself from the environment when imported)."""
    import ast

    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]
    return []
