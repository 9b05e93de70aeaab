"""The public API as a type checker sees it: mypy, strict, over the modules ``[tool.mypy]`` lists (the public
surface and ``harness.judge``) finds nothing; and the judge's types refuse the mistakes a string-typed timeline let
through (tests/type_checks/misspelled.py: each line marked ``# refused`` is an error, no other line is). At run
time the same mistakes raise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.judge.events import KINDS, EVENT_TYPES, Final, LlmRequest, Media, Stop
from harness.judge.timeline import CallTimeline

ROOT = Path(__file__).resolve().parents[1]
MISSPELLED = ROOT / "tests" / "type_checks" / "misspelled.py"

pytestmark = pytest.mark.timeout(300)  # mypy reads numpy's and aiohttp's stubs afresh: ~15 s on one core


def mypy(cache: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary", *map(str, files)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def test_the_public_api_and_the_judge_type_check_strictly(cache: Path) -> None:
    done = mypy(cache)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_misspelling_of_the_judge_is_refused_and_nothing_else(cache: Path) -> None:
    done = mypy(cache, MISSPELLED)
    assert done.returncode == 1, done.stdout + done.stderr
    refused = {int(n) for n in re.findall(rf"{MISSPELLED.name}:(\d+): error:", done.stdout)}
    marked = {n for n, line in enumerate(MISSPELLED.read_text(encoding="utf-8").splitlines(), 1)
              if re.search(r"\S  # refused", line)}
    assert len(marked) >= 8
    assert refused == marked, done.stdout


def test_the_same_mistakes_raise_at_run_time() -> None:
    timeline = CallTimeline([Final(1.0, text="안녕"), Stop(2.0)])
    with pytest.raises(TypeError, match="event classes"):
        timeline.of("final")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="txt"):
        Final(1.0, txt="안녕")  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        timeline.of(Stop)[0].text  # type: ignore[attr-defined]
    assert timeline.of(Final) == [Final(1.0, text="안녕")] and timeline.of(Media) == []


def test_every_kind_is_one_class_and_says_its_fields() -> None:
    assert len(KINDS) == len(EVENT_TYPES) and all(KINDS[cls.kind] is cls for cls in EVENT_TYPES)
    asked = LlmRequest(1.0, index=2, user="가나", told=(("user", "가나"),))
    assert asked.fields() == {"index": 2, "user": "가나", "last_user": "", "reply": "", "told": [("user", "가나")],
                              "abandoned": False, "status": 200, "stream": False, "ended": None, "open": False}
    assert "stalled" not in asked.fields() and asked.fields(known=False)["stalled"] is False
    assert Media(1.0, ms=20.0, tts=0).fields() == {"ms": 20.0, "tts": 0}, "TTS request 0 is a request, not nothing"


@pytest.mark.parametrize("package", ["harness", "fakertzr", "aicall", "callaudio"])
def test_every_package_says_it_is_typed(package: str) -> None:
    from importlib.resources import files

    assert files(package).joinpath("py.typed").is_file(), f"{package} ships no py.typed: its users' checkers ignore its types"
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8").split(f"\n{package} = [", 1)[1].split("\n")[0]
