"""A table a docs page holds between two markers, measured by a script: read it, or put a new one in its place."""

from __future__ import annotations

import re
from pathlib import Path


def read(readme: Path, begin: str, end: str) -> str:
    text = readme.read_text(encoding="utf-8")
    found = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    if not found:
        raise SystemExit(f"{readme}: no table between {begin} and {end}")
    return found.group(1).strip()


def write(readme: Path, begin: str, end: str, table: str) -> None:
    text = readme.read_text(encoding="utf-8")
    start, stop = text.index(begin) + len(begin), text.index(end)
    readme.write_text(text[:start] + "\n" + table + "\n" + text[stop:], encoding="utf-8")
