"""Personal numbers in Korean call transcripts, found and replaced: phone numbers, resident registration
numbers (주민등록번호) and card numbers, however the recognizer spelled them.

A recognizer writes a number said aloud in many ways: ``010-1234-5678``, ``010 - 1234 - 5678``,
``010.1234.5678``, ``010 1234 5678``, in Sino-Korean numerals (``공일공 일이삼사 오육칠팔``), mixed, or
cut in two by end-point detection (``010-1234`` in one final, ``5678`` in the next). So a number is
found as a run of digit groups (ASCII digits or numeral syllables) joined by separators, and each run
is split into the numbers it holds by their digit count and prefix, in one pass: what a number is does
not depend on the order the kinds are asked in (an RRN is never first taken for a phone number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

KINDS = ("phone", "rrn", "card")  # what ``redact`` can replace, as ``<kind>``
NUMERALS = {"공": "0", "영": "0", "빵": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5", "육": "6",
            "륙": "6", "칠": "7", "팔": "8", "구": "9"}
ASCII_GROUP = re.compile(r"[0-9０-９]+")
HANGUL_WORD = re.compile(r"[가-힣]+")
SEPARATOR = re.compile(r"[\s\-‐‑–—.·/()]*")  # what may stand between the groups of one number (nothing, too)
PARTIAL_DIGITS = 4  # a partial's run of this many digits or more is hidden (its final may be a number)


@dataclass(frozen=True)
class Group:
    start: int
    end: int
    digits: str
    particle: bool = False  # a 이 that may be the particle after the number (오육칠팔이에요): used only if needed


def _digits(text: str) -> str:
    return "".join(NUMERALS.get(c, c) for c in text).translate(str.maketrans("０１２３４５６７８９", "0123456789"))


def kind_of(digits: str) -> str | None:
    """What a number of these digits is: a Korean phone number (0 and 8-10 more digits, or 82 without the
    0), a resident registration number (13 digits, the 7th 1-8), a card number (13-19 digits), or None."""
    n = len(digits)
    if (digits.startswith("0") and 9 <= n <= 11) or (digits.startswith("82") and 10 <= n <= 12):
        return "phone"
    if n == 13 and digits[6] in "12345678":
        return "rrn"
    if 13 <= n <= 19:
        return "card"
    return None


def groups(text: str) -> list[list[Group]]:
    """The runs of digit groups in ``text``, groups joined by separators only. A group is a run of ASCII
    digits, or one numeral syllable of those a word begins with: ``오육칠팔이에요`` is 5 6 7 8 2 and a
    particle, and a number may end before its 이; a word that begins with one numeral syllable (이번, 오늘)
    is a word, and a lone syllable counts only next to other digits."""
    found = [Group(m.start(), m.end(), _digits(m.group())) for m in ASCII_GROUP.finditer(text)]
    for m in HANGUL_WORD.finditer(text):
        word = m.group()
        lead = len(word) - len(word.lstrip("".join(NUMERALS)))
        if lead >= 2 or (lead == 1 and len(word) == 1 and _next_to_digits(text, m.start(), m.end())):
            found += [Group(m.start() + k, m.start() + k + 1, NUMERALS[word[k]],
                            particle=k == lead - 1 < len(word) - 1 and word[k] == "이") for k in range(lead)]
    runs: list[list[Group]] = []
    for group in sorted(found, key=lambda g: g.start):
        if runs and SEPARATOR.fullmatch(text[runs[-1][-1].end:group.start]):
            runs[-1].append(group)
        else:
            runs.append([group])
    return runs


def _next_to_digits(text: str, start: int, end: int) -> bool:
    near = (text[max(0, start - 3):start] + text[end:end + 3]).replace(" ", "").replace("-", "")
    return any(c.isdigit() or c in NUMERALS for c in near)


def spans(text: str, kinds: Iterable[str]) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each number of the chosen kinds in ``text``: each run of groups split into
    consecutive numbers so that as many of its digits as possible belong to one (of two that cover as
    many, the shorter)."""
    wanted = set(kinds)
    found = []
    for run in groups(text):
        best: list[tuple[int, list[tuple[int, int, str]]]] = [(0, [])] * (len(run) + 1)
        for i in range(len(run) - 1, -1, -1):
            best[i] = best[i + 1]  # group i is in no number
            digits, weight = "", 0
            for j in range(i, len(run)):
                digits += run[j].digits
                weight += 0 if run[j].particle else len(run[j].digits)  # a particle's 이 covers nothing
                if len(digits) > 19:
                    break
                kind = kind_of(digits)
                if kind in wanted and weight + best[j + 1][0] > best[i][0]:
                    best[i] = (weight + best[j + 1][0], [(run[i].start, run[j].end, kind), *best[j + 1][1]])
        found += best[0][1]
    return found


def _replace(text: str, found: list[tuple[int, int, str]], counts: dict[str, int], count: bool = True) -> str:
    for start, end, kind in sorted(found, reverse=True):
        text = text[:start] + f"<{kind}>" + text[end:]
        if count:
            counts[kind] = counts.get(kind, 0) + 1
    return text


def redact(text: str, kinds: Iterable[str], counts: dict[str, int]) -> str:
    """``text`` with every number of the chosen kinds replaced by ``<kind>``; ``counts`` says how many."""
    return _replace(text, spans(text, kinds), counts)


def redact_finals(texts: list[str], kinds: Iterable[str], counts: dict[str, int]) -> list[str]:
    """Consecutive finals, redacted as one text: a number cut in two by end-point detection is found
    across the cut, and each final loses its part of it (counted once)."""
    kinds = tuple(kinds)
    joined = " ".join(texts)
    bounds, at = [], 0
    for text in texts:
        bounds.append((at, at + len(text)))
        at += len(text) + 1
    found = spans(joined, kinds)
    for _, _, kind in found:
        counts[kind] = counts.get(kind, 0) + 1
    out = []
    for (lo, hi), text in zip(bounds, texts):
        mine = [(max(s, lo) - lo, min(e, hi) - lo, k) for s, e, k in found if s < hi and e > lo]
        out.append(_replace(text, mine, counts, count=False))
    return out


def hide_digits(text: str, counts: dict[str, int], at_least: int = PARTIAL_DIGITS) -> str:
    """A partial with every run of ``at_least`` digits or more hidden: a number grows in partials digit by
    digit, and no partial is whole enough to be told apart from the number it becomes (the partials of a
    final that held a number lose every digit: ``at_least=1``)."""
    runs = [(r[0].start, r[-1].end) for r in groups(text) if sum(len(g.digits) for g in r) >= at_least]
    for start, end in sorted(runs, reverse=True):
        text = text[:start] + "<redacted>" + text[end:]
        counts["digits in partials"] = counts.get("digits in partials", 0) + 1
    return text
