"""Whole-word matching of a final's words in what a request gave the LLM (punctuation aside)."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def occurrences(user: str, text: str) -> int:
    """How many times the words of ``text`` stand, whole and in order, in ``user`` (not overlapping): a final
    "w1" is not in "w12 w13", nor "네" in "네요"; "X\\nX" holds "X" twice."""
    wanted, said = words(text), words(user)
    n, count, i = len(wanted), 0, 0
    if not n:
        return 0
    while i + n <= len(said):
        if said[i:i + n] == wanted:
            count, i = count + 1, i + n
        else:
            i += 1
    return count


def says(user: str, text: str) -> bool:
    """Whether ``user`` holds the words of ``text`` at least once."""
    return occurrences(user, text) > 0
