"""The proving ground for the harness's judge: reference handlers in styles the project does not use itself, each
correct and with one bug class put back at a time (``mutants.py``), judged over the bundled calls (``matrix.py``).

Test support and a demonstration, not part of the installed package."""

from __future__ import annotations

import re
from pathlib import Path


def handlers_dir_mutants() -> list[str]:
    """The mutant names the Python handlers' core and the Node handler each accept (they must agree)."""
    here = Path(__file__).parent / "handlers"
    from proving_ground.handlers.call_core import MUTANTS

    node = re.search(r"const MUTANTS = \[(.*?)\];", (here / "node_handler" / "server.js").read_text(), re.S)
    names = re.findall(r'"([a-z-]+)"', node.group(1)) if node else []
    if sorted(names) != sorted(MUTANTS):
        raise AssertionError(f"server.js and call_core.py disagree: {sorted(set(names) ^ set(MUTANTS))}")
    return list(MUTANTS)
