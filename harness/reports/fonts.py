"""Korean in a report that must read the same on a machine with no Korean font: the glyphs a page uses,
cut from a Korean font found on the machine that writes it, embedded as a data URL.

Found as ``HARNESS_REPORT_FONT`` names it, else through fontconfig (``fc-match :lang=ko``) or the usual
places (Debian's fonts-nanum and fonts-noto-cjk, macOS, Windows). With none found the page names its
font stack and relies on the reader's fonts, and says so, on the page and in the console
(``missing_font_note``): a reader without a Korean font sees boxes.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("harness")

FAMILY = "Report Korean"
KNOWN = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
    "C:/Windows/Fonts/malgun.ttf",
)


def _is_font_file(path: str) -> bool:
    return Path(path).suffix.lower() in (".ttf", ".otf", ".ttc")


@lru_cache(maxsize=1)
def find_korean_font() -> str | None:
    """A font file with Hangul on this machine (``HARNESS_REPORT_FONT`` first), or None."""
    chosen = os.environ.get("HARNESS_REPORT_FONT")
    if chosen:
        if Path(chosen).is_file() and _is_font_file(chosen):
            return chosen
        log.warning("HARNESS_REPORT_FONT=%s is not a font file (.ttf, .otf or .ttc): looking for another", chosen)
    for path in KNOWN:
        if Path(path).is_file():
            return path
    if shutil.which("fc-match"):
        try:
            found = subprocess.run(["fc-match", "-f", "%{file}", ":lang=ko"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        path = found.stdout.strip()
        if found.returncode == 0 and path and _is_font_file(path) and _covers_hangul(path):
            return path
    return None


def _covers_hangul(path: str) -> bool:
    """fc-match answers with its best font even when none has Korean: check for 가."""
    try:
        from fontTools.ttLib import TTFont

        font = TTFont(path, fontNumber=0, lazy=True)
        return 0xAC00 in font.getBestCmap()
    except Exception:  # noqa: BLE001 - an unreadable font is no font
        return False


def embedded_font_css(text: str) -> str:
    """``@font-face`` for the non-ASCII characters of ``text`` (a subset, WOFF, as a data URL), or ""."""
    chars = sorted({c for c in text if ord(c) > 0x7F})
    path = find_korean_font()
    if not chars or path is None:
        return ""
    try:
        from fontTools import subset
        from fontTools.ttLib import TTFont
    except ImportError:
        return ""
    logging.getLogger("fontTools").setLevel(logging.ERROR)  # it warns about every table it drops
    try:
        font = TTFont(path, fontNumber=0)
        options = subset.Options()
        options.flavor = "woff"  # zlib: no brotli needed
        options.layout_features = ["*"]
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=[ord(c) for c in chars])
        subsetter.subset(font)
        out = io.BytesIO()
        font.flavor = "woff"
        font.save(out)
    except Exception as exc:  # noqa: BLE001 - the report still names its font stack
        log.warning("could not embed a Korean font from %s: %s", path, exc)
        return ""
    data = base64.b64encode(out.getvalue()).decode()
    return f'@font-face{{font-family:"{FAMILY}";src:url(data:font/woff;base64,{data}) format("woff")}}'


NO_FONT = ("No Korean font was found on the machine that wrote this report, so its Korean text is not embedded: a "
           "browser without a Korean font shows it as boxes. Install one (apt-get install fonts-nanum, or Noto Sans "
           "CJK) or name one with HARNESS_REPORT_FONT=/path/to/font.ttf, and write the report again.")


def missing_font_note(text: str) -> str | None:
    """What to tell the reader when ``text`` has Korean that no embedded font will draw (None: nothing to say)."""
    if not any("\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e" for c in text):
        return None
    return None if find_korean_font() is not None else NO_FONT
