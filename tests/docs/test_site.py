"""The docs build as a site in strict mode (a broken link or anchor fails), and the README's links reach
pages and anchors that exist; every check and every mutant of the proving ground has its place in the
checks page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.judge.checks import CHECKS, barge_in, refuses_without_credentials
from harness.judge.crosscall import CROSS_CALL_CHECKS
from proving_ground.mutants import MUTANTS

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strictly(site):
    assert (site / "index.html").exists() and (site / "checks" / "index.html").exists()


def test_every_readme_link_reaches_a_page_and_anchor_that_exist(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    local = [link for link in LINK.findall(readme) if not link.startswith(("http://", "https://"))]
    assert local, "the README links to no page"
    for link in local:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            page = site / path.removeprefix("docs/").removesuffix(".md") / "index.html"
            assert f'id="{anchor}"' in page.read_text(encoding="utf-8"), f"README links to {link}: no such anchor"


def test_every_docs_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if f": {p.name}" not in nav]
    assert not missing, f"pages no menu reaches: {missing}"


def test_the_checks_page_has_every_check_and_under_it_every_mutant_that_proves_it():
    page = (ROOT / "docs" / "checks.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## )", page, re.M | re.S))
    names = [c.__name__ for c in (*CHECKS, barge_in, refuses_without_credentials, *CROSS_CALL_CHECKS)] + ["replay"]
    assert [n for n in names if n not in sections] == [], "checks the page does not describe"
    for mutant in MUTANTS:
        assert f"`MUTANT={mutant.name}`" in sections[mutant.check], f"{mutant.name} is not under {mutant.check}"
