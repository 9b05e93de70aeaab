"""A handler's log, read as it is written: every line kept (for the report), error blocks found in it.

Sans-I/O: ``feed(line, at)`` with the wall time the line was read. It recognises error-level lines
of the common formats (stdlib ``logging`` defaults and ``%(levelname)s`` formats, uvicorn, loguru as
pipecat uses it, ``level=error`` key-value logs) and whole tracebacks, "Task exception was never
retrieved" included; a traceback that follows an error line belongs to it. A block is tied to a call
by a Twilio call SID anywhere in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

CALL_SID = re.compile(r"\bCA[0-9a-fA-F]{32}\b")
_LEVEL_WORD = r"(?:ERROR|CRITICAL|FATAL)"
ERROR_START = (
    re.compile(rf"^{_LEVEL_WORD}:"),  # stdlib basicConfig default, uvicorn ("ERROR:    Exception in ASGI application")
    re.compile(rf"\|\s*{_LEVEL_WORD}\s*\|"),  # loguru: "2026-01-01 10:00:00.000 | ERROR    | module:fn:12 - ..."
    re.compile(rf"^.{{0,60}}?(?:^|[\s\[(]){_LEVEL_WORD}[\s\]):]"),  # "%(asctime)s ERROR name msg", "[ERROR] ..."
    re.compile(r"\blevel=(?:error|critical|fatal)\b", re.IGNORECASE),
    re.compile(r"Task exception was never retrieved|Exception in callback|Unhandled exception"),
)
TRACEBACK = "Traceback (most recent call last):"
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")


def is_error_start(line: str) -> bool:
    return line.startswith(TRACEBACK) or any(p.search(line) for p in ERROR_START)


def _continues_traceback(line: str) -> bool:
    """Lines inside a traceback: indented frames, loguru's decorated frames, asyncio's ``future:`` line."""
    return not line.strip() or line[0] in " \t>│└" or line.startswith(("future:", "File ", TRACEBACK, *_CHAIN))


@dataclass
class ErrorBlock:
    at: float  # when its first line was read
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).rstrip()

    @property
    def call_sids(self) -> set[str]:
        return set(CALL_SID.findall(self.text))


class LogReader:
    """Feeds lines, keeps them all, and groups error lines with their tracebacks into ``blocks``."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self.blocks: list[ErrorBlock] = []
        self._open: ErrorBlock | None = None
        self._in_traceback = False  # inside a traceback whose exception line has not come yet
        self._partial = ""

    def feed_text(self, text: str, at: float) -> None:
        """Raw output (possibly ending mid-line): split into lines, the unfinished one kept for later."""
        data = self._partial + text
        *whole, self._partial = data.split("\n")
        for line in whole:
            self.feed(line.rstrip("\r"), at)

    def flush(self, at: float) -> None:
        if self._partial:
            self.feed(self._partial, at)
            self._partial = ""
        self._open = None

    def feed(self, line: str, at: float) -> None:
        line = _strip_ansi(line)
        self.lines.append((at, line))
        block = self._open
        if block is not None:
            if line.startswith(TRACEBACK):
                self._in_traceback = True
                block.lines.append(line)
                return
            if self._in_traceback:
                block.lines.append(line)
                if not _continues_traceback(line):
                    self._in_traceback = False  # that was the exception line: "KeyError: 'CA...'"
                return
            if line.strip() and (line.startswith((*_CHAIN, "future:")) or line[0] in " \t") and not is_error_start(line):
                block.lines.append(line)  # a multi-line message, or the chain between tracebacks
                return
            if not line.strip():
                return
            self._open = None
        if is_error_start(line):
            self._open = ErrorBlock(at, [line])
            self.blocks.append(self._open)
            self._in_traceback = line.startswith(TRACEBACK)

    def errors_for(self, call_sid: str, start: float, end: float) -> list[str]:
        """The error blocks of one call: those naming its SID, and those naming no call SID at all that
        were read in its window ``[start, end)`` (call SIDs are fresh per replay: another SID is another call)."""
        found = []
        for block in self.blocks:
            sids = block.call_sids
            if (call_sid in sids) if sids else start <= block.at < end:
                found.append(block.text)
        return found

    def write(self, path: Path, markers: list[tuple[float, str]] = ()) -> None:
        """Save every line, with the harness's own markers (fixture starts) in between."""
        write_log(path, self.lines, markers)


def write_log(path: Path, lines: list[tuple[float, str]], markers: list[tuple[float, str]] = ()) -> None:
    """Timed lines and ``---- harness: ... ----`` markers, in the order they happened."""
    entries = sorted([*((t, 1, l) for t, l in lines), *((t, 0, f"---- harness: {m} ----") for t, m in markers)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(l + "\n" for _, _, l in entries), encoding="utf-8")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def _strip_ansi(line: str) -> str:
    """Colours (loguru colours its output on a terminal) would hide the level from the patterns."""
    return _ANSI.sub("", line) if "\x1b" in line else line
