"""The architecture as import-linter contracts (``[tool.importlinter]`` in pyproject.toml): no import circle
anywhere, the harness's layers, and fakertzr and aicall independent of each other and of the harness. The
same contracts run on a copy of the tree with the circle fakertzr once had (``workers`` importing ``cli``)
and a judge that imports the CLI must be broken, naming both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "fakertzr", "aicall", "callaudio")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("KEPT") == 3, done.stdout


def test_a_circle_and_a_layer_skipped_are_found(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    workers = tmp_path / "fakertzr" / "workers.py"
    workers.write_text(workers.read_text(encoding="utf-8") + "\n\ndef _late():\n    from .cli import main  # noqa\n",
                       encoding="utf-8")
    checks = tmp_path / "harness" / "judge" / "checks.py"
    checks.write_text(checks.read_text(encoding="utf-8") + "\n\ndef _late():\n    from harness.cli.main import main  # noqa\n",
                      encoding="utf-8")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "No cycles are allowed in fakertzr" in done.stdout and ".workers -> .cli" in done.stdout, done.stdout
    assert "harness.judge is not allowed to import harness.cli" in done.stdout, done.stdout
