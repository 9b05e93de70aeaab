"""The HTML report in a real headless browser, on a machine with no Korean font: the calls render,
words included (Korean as glyphs, not boxes). The report is written where a Korean font exists (it
embeds the glyphs it uses) and read in a browser that sees none. Needs chromium and a Korean font to
embed (CI installs both: apt-get install chromium fonts-nanum)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.fixture import load_call
from harness.judge.conversation import turns
from harness.reports.fonts import find_korean_font
from harness.reports.html import write_html
from harness.replay.runner import ErrorLog
from harness.replay.runs import run_target
from harness.replay.targets import AicallTarget

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no headless chromium (apt-get install chromium)"),
              pytest.mark.skipif(find_korean_font() is None or shutil.which("fc-list") is None,
                                 reason="no Korean font on this machine for the report to embed (apt-get install fonts-nanum)")]


def fonts_without_korean(tmp: Path) -> dict[str, str]:
    """An environment whose fontconfig sees only the machine's fonts that have no Hangul."""
    from fontTools.ttLib import TTFont

    listed = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True).stdout.split()
    kept = tmp / "fonts"
    kept.mkdir()
    for i, path in enumerate(sorted(set(listed))):
        try:
            if 0xAC00 in TTFont(path, fontNumber=0, lazy=True).getBestCmap():
                continue
        except Exception:  # noqa: BLE001 - not a font fontTools reads: leave it out
            continue
        (kept / f"{i}{Path(path).suffix}").symlink_to(path)
    (tmp / "fonts.conf").write_text(f"<?xml version='1.0'?><!DOCTYPE fontconfig SYSTEM 'fonts.dtd'><fontconfig>"
                                    f"<dir>{kept}</dir><cachedir>{tmp / 'cache'}</cachedir></fontconfig>")
    return {"FONTCONFIG_FILE": str(tmp / "fonts.conf"), "HOME": str(tmp)}


def screenshot(page: Path, png: Path, env: dict[str, str], size: str = "1100,1400") -> np.ndarray:
    from PIL import Image

    subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size}", f"--screenshot={png}", page.as_uri()],
                   env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, timeout=120, check=True)
    return np.asarray(Image.open(png).convert("L"), dtype=np.int16)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    async def replay(name: str, pace: float):
        with ErrorLog() as errors:
            return await run_target(AicallTarget(errors), [load_call(f"fixtures/calls/{name}")], pace=pace)

    def cut(run) -> bool:
        return any(t.cut for t in turns(run.timeline, run.pace))

    # The barge-in at real time, replayed until a reply is cut (three tries at most): this test is about showing a
    # cut, and on a 2-core CI busy with the suite's long runs the handler's clear has come after the reply's end
    # (aicall's barge-in itself is judged by the barge_in check elsewhere, not here).
    tries = []
    while len(tries) < 3 and not (tries and cut(tries[-1])):
        tries.append(asyncio.run(replay("barge-in", 1.0))[0])
    assert cut(tries[-1]), f"the barge-in cut no reply in {len(tries)} tries: " + "; ".join(
        f"{c.name}: {c.status} {c.message[:200]}" for c in tries[-1].checks if c.status != "passed")
    runs = asyncio.run(replay("seed-three-turns", 4.0)) + [tries[-1]]
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html(runs, path, "x4")
    return path


def words_page(report: Path, words: list[str], *, with_report_fonts: bool) -> Path:
    """The report's own styles, and each word in a box of its own at a known place."""
    styles = re.search(r"<style>(.*?)</style>", report.read_text(encoding="utf-8"), re.S).group(1)
    if not with_report_fonts:
        styles = re.sub(r"@font-face\{[^}]*\}", "", styles)
    boxes = "".join(f"<div style='position:absolute;left:10px;top:{10 + 60 * i}px;font-size:32px'>{w}</div>"
                    for i, w in enumerate(words))
    page = report.with_name(f"words-{with_report_fonts}.html")
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><style>{styles}</style></head>"
                    f"<body>{boxes}</body></html>", encoding="utf-8")
    return page


def boxes(image: np.ndarray, n: int) -> list[np.ndarray]:
    return [image[10 + 60 * i : 60 + 60 * i, 0:400] for i in range(n)]


def test_the_report_renders_its_calls_and_korean_words_without_a_korean_font(report, tmp_path):
    env = fonts_without_korean(tmp_path)
    shot = screenshot(report, tmp_path / "report.png", env)
    assert (shot < 128).mean() > 0.01, "the report's page rendered (nearly) nothing"
    # two different words of the same length from the report: as glyphs they differ, as missing-glyph boxes they are alike
    said = list(dict.fromkeys(re.findall(r"<td(?: class='differs')?>([가-힣 ]+)</td>", report.read_text(encoding="utf-8"))))
    first, second = said[0].replace(" ", "")[:4], said[1].replace(" ", "")[:4]
    assert first != second and len(first) == len(second) == 4, said
    control = boxes(screenshot(words_page(report, [first, second], with_report_fonts=False), tmp_path / "c.png", env,
                               "500,200"), 2)
    assert np.abs(control[0] - control[1]).sum() == 0, "this machine renders Korean without the report's font: the test proves nothing"
    shown = boxes(screenshot(words_page(report, [first, second], with_report_fonts=True), tmp_path / "w.png", env,
                             "500,200"), 2)
    assert all((box < 128).mean() > 0.005 for box in shown), "a word rendered as nothing"
    assert np.abs(shown[0] - shown[1]).sum() > 0, "Korean rendered as missing-glyph boxes"


def test_the_report_starts_with_a_summary_failures_first_and_shows_the_words(report):
    page = report.read_text(encoding="utf-8")
    summary = page.index("<table class='summary'>")
    assert summary < page.index("<section"), "the summary comes first"
    assert "href='#call-seed-three-turns'" in page and "id='call-seed-three-turns'" in page
    assert "<td>t1</td><td>안녕하세요 반갑습니다</td>" in page, "the conversation is text, turns from t1"
    assert "cut short (barge-in)" in page
    assert re.search(r"<audio controls preload='none' src='data:audio/mpeg;base64,[A-Za-z0-9+/]{1000,}", page)
    assert re.search(r">\d+(\.\d+)? s</text>", page), "the time axis is labelled"
