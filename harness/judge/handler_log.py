"""A handler's log, read as it is written: every line kept (for the report), error blocks found in it.

Sans-I/O: ``feed(line, at)`` with the wall time the line was read. It recognises error-level lines
of the common formats (stdlib ``logging`` defaults and ``%(levelname)s`` formats, uvicorn, loguru as
pipecat uses it, ``level=error`` key-value logs), whole Python tracebacks ("Task exception was never
retrieved" included) and JavaScript stack traces (Node's ``console.error(message, err)`` and its
uncaught exceptions: a line naming an ``...Error`` followed by ``    at ...`` lines), which carry no
level word. A traceback that follows an error line belongs to it; one that follows a warning or info
line is that line's (``logger.warning(..., exc_info=True)``), not an error; one written at once with a line
that has no level word is that line's error (a library logger nobody configured prints through logging's
last-resort handler: ``unexpected internal error`` and its traceback). A block is tied to a call
by a Twilio call SID anywhere in it. A block is *unhandled* when nobody caught the exception (a bare
traceback or stack, "Task exception was never retrieved", "Exception in ASGI application"...).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

CALL_SID = re.compile(r"\bCA[0-9a-fA-F]{32}\b")
_ERROR_WORD = r"(?:ERROR|CRITICAL|FATAL)"
_OTHER_WORD = r"(?:WARNING|WARN|INFO|DEBUG|TRACE|NOTICE)"


def _level_patterns(word: str) -> tuple[re.Pattern[str], ...]:
    return (
        re.compile(rf"^{word}:"),  # stdlib basicConfig default, uvicorn ("ERROR:    Exception in ASGI application")
        re.compile(rf"\|\s*{word}\s*\|"),  # loguru: "2026-01-01 10:00:00.000 | ERROR    | module:fn:12 - ..."
        re.compile(rf"^.{{0,60}}?(?:^|[\s\[(]){word}[\s\]):]"),  # "%(asctime)s ERROR name msg", "[ERROR] ..."
        re.compile(rf"\blevel=[\"']?{word}\b", re.IGNORECASE),
    )


ERROR_START = (*_level_patterns(_ERROR_WORD),
               re.compile(r"Task exception was never retrieved|Exception in callback|Unhandled exception|"
                          r"^Exception in thread |^Exception ignored in"))
OTHER_LEVEL = _level_patterns(_OTHER_WORD)
UNHANDLED = re.compile(r"Task exception was never retrieved|Exception in callback|Unhandled exception|"
                       r"Exception in ASGI application|Exception in thread|Exception ignored in|Uncaught|unhandledRejection|"
                       r"connection handler failed|Error in connection handler|Error handling request|"
                       r"Error on request|Exception on \S+ \[[A-Z]+\]|"  # werkzeug's server; Flask's view that raised
                       r"^(?:\w+\.)*[A-Z]\w*(?:Error|Exception)\b")
TRACEBACK = "Traceback (most recent call last):"
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
# an exception's own line at the left margin: "KeyError: 'CA1'", "websockets.exceptions.ConnectionClosedError: ...";
# a chained cause raised nowhere (``raise X from OSError(...)``) is printed as this line alone, no traceback above it
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Iteration|Closed|ClosedOK|Timeout)"
                            r"(?::|$)")
JS_FRAME = re.compile(r"^\s+at \S")  # "    at Timeout._onTimeout (/app/server.js:42:19)"
JS_ERROR = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")  # TypeError, Error, AbortError, ...


def is_error_start(line: str) -> bool:
    return line.startswith(TRACEBACK) or any(p.search(line) for p in ERROR_START)


def is_other_level(line: str) -> bool:
    """A log line at a level below error (a warning, info, debug)."""
    return any(p.search(line) for p in OTHER_LEVEL)


def _continues_traceback(line: str) -> bool:
    """Lines inside a traceback: indented frames, loguru's decorated frames, asyncio's ``future:`` line."""
    return not line.strip() or line[0] in " \t>│└" or line.startswith(("future:", "File ", TRACEBACK, *_CHAIN))


@dataclass
class ErrorBlock:
    at: float  # when its first line was read
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        """One more line, unless it holds ``MAX_BLOCK_LINES`` already (then one line says so)."""
        if len(self.lines) < MAX_BLOCK_LINES:
            self.lines.append(line)
        elif len(self.lines) == MAX_BLOCK_LINES:
            self.lines.append(f"... (more lines; the block is cut at {MAX_BLOCK_LINES})")

    @property
    def text(self) -> str:
        return "\n".join(self.lines).rstrip()

    @property
    def call_sids(self) -> set[str]:
        return set(CALL_SID.findall(self.text))

    @property
    def unhandled(self) -> bool:
        """Nobody caught it: a fixture's expected errors never include one of these."""
        first = self.lines[0] if self.lines else ""
        return first.startswith(TRACEBACK) or bool(UNHANDLED.search(first))


TAIL_BYTES = 4 * 1024 * 1024  # the lines kept in memory: the latest this many bytes of them
MAX_LINE_CHARS = 16_384  # a longer line is cut (a handler that writes without newlines)
MAX_BLOCKS = 5_000  # the error blocks kept (the latest); each at most
MAX_BLOCK_LINES = 400


class LogReader:
    """Feeds lines and groups error lines with their tracebacks into ``blocks``. Memory is bounded whatever the
    handler writes: the latest ``TAIL_BYTES`` of lines are kept (every line goes to ``sink``, the saved log, as it
    comes), lines are cut at ``MAX_LINE_CHARS``, and the latest ``MAX_BLOCKS`` blocks of ``MAX_BLOCK_LINES`` kept."""

    def __init__(self, sink: Callable[[str], None] | None = None) -> None:
        self.lines: deque[tuple[float, str]] = deque()
        self.blocks: list[ErrorBlock] = []
        self.sink = sink
        self.cut_lines = 0  # lines longer than MAX_LINE_CHARS, cut
        self._tail_bytes = 0
        self._open: ErrorBlock | None = None
        self._in_traceback = False  # inside a traceback whose exception line has not come yet
        self._quiet_traceback = False  # inside a traceback that belongs to a warning or info line
        self._quiet_chain = False  # after such a traceback's exception line: a chained one may follow
        self._head: tuple[float, str] | None = None  # the last line at the left margin: a JS stack's head
        self._head_level = ""  # "other" when the last line at the left margin was below error level
        self._partial = ""
        self._partial_cut = False  # the unfinished line was too long: fed cut, the rest of it is dropped

    def feed_text(self, text: str, at: float) -> None:
        """Raw output (possibly ending mid-line): split into lines, the unfinished one kept for later (up to
        ``MAX_LINE_CHARS``: a line that goes on is fed cut, the rest of it dropped)."""
        data = self._partial + text
        *whole, self._partial = data.split("\n")
        for line in whole:
            if self._partial_cut:  # the end of a line already fed cut
                self._partial_cut = False
                continue
            self.feed(line.rstrip("\r"), at)
        if len(self._partial) > MAX_LINE_CHARS:
            if not self._partial_cut:
                self.feed(self._partial, at)
            self._partial, self._partial_cut = "", True

    def flush(self, at: float) -> None:
        if self._partial and not self._partial_cut:
            self.feed(self._partial, at)
        self._partial, self._partial_cut = "", False
        self._open = None

    @property
    def last_line_at(self) -> float:
        return self.lines[-1][0] if self.lines else 0.0

    def feed(self, line: str, at: float) -> None:
        if len(line) > MAX_LINE_CHARS:
            self.cut_lines += 1
            line = line[:MAX_LINE_CHARS] + f" ...[line cut at {MAX_LINE_CHARS} characters]"
        line = _strip_ansi(line)
        if self.sink is not None:
            self.sink(line)
        self.lines.append((at, line))
        self._tail_bytes += len(line) + 1
        while self._tail_bytes > TAIL_BYTES and len(self.lines) > 2:
            self._tail_bytes -= len(self.lines.popleft()[1]) + 1
        if self._quiet_chain:  # a warning's chained traceback goes on: still the warning's
            if not line.strip() or line.startswith(_CHAIN):
                return
            self._quiet_chain = False
            if line.startswith(TRACEBACK):
                self._quiet_traceback = True
                return
        if self._quiet_traceback:  # a warning's traceback: read through to its exception line
            if not _continues_traceback(line):
                self._quiet_traceback, self._quiet_chain = False, True
            return
        block = self._open
        if block is not None:
            if line.startswith(TRACEBACK):
                self._in_traceback = True
                block.add(line)
                return
            if self._in_traceback:
                block.add(line)
                if not _continues_traceback(line):
                    self._in_traceback = False  # that was the exception line: "KeyError: 'CA...'"
                return
            if line.strip() and (line.startswith((*_CHAIN, "future:")) or line[0] in " \t") and not is_error_start(line):
                block.add(line)  # a multi-line message, the chain between tracebacks, a JS stack
                return
            if EXCEPTION_LINE.match(line) and not is_error_start(line) and not is_other_level(line):
                block.add(line)  # a chained cause with no traceback of its own: the chain goes on
                return
            if not line.strip():
                return
            self._open = None
        if JS_FRAME.match(line):
            head = self._head
            if head is not None and self._head_level != "other" and JS_ERROR.search(head[1]):
                self._open = ErrorBlock(head[0], [head[1], line])  # console.error(msg, err), an uncaught error
                self._add_block(self._open)
            self._head = None
            return
        if line.startswith(TRACEBACK) and self._head_level == "other":
            self._quiet_traceback = True  # logger.warning(..., exc_info=True): not an error
            return
        if line.startswith(TRACEBACK) and self._logged_with(at):
            # a record with no level word and its traceback, written at once: ``logger.error(msg, exc_info=True)``
            # through logging's last-resort handler (a library's logger nobody configured), werkzeug's
            # "Error on request:": caught and logged by someone (unless its message says otherwise)
            head_at, head_line = self.lines[-2]
            self._open = ErrorBlock(head_at, [head_line, line])
            self._add_block(self._open)
            self._in_traceback, self._head_level = True, "error"
            return
        if line.strip() and line[0] not in " \t":
            self._head, self._head_level = (at, line), ("other" if is_other_level(line) else "")
        if is_error_start(line):
            self._open = ErrorBlock(at, [line])
            self._add_block(self._open)
            # a traceback may start inside the record's own line: ``logger.error(traceback.format_exc())``
            self._in_traceback = line.rstrip().endswith(TRACEBACK)
            self._head_level = "error"

    def _add_block(self, block: ErrorBlock) -> None:
        self.blocks.append(block)
        if len(self.blocks) > MAX_BLOCKS + MAX_BLOCKS // 10:  # the oldest let go, a tenth at a time
            del self.blocks[: len(self.blocks) - MAX_BLOCKS]

    def _logged_with(self, at: float) -> bool:
        """The line before this traceback is a record's message read in the same moment (one write), at the
        left margin, with no level below error: the traceback is that record's."""
        if len(self.lines) < 2 or self._head is None or self._head_level:
            return False
        head_at, head = self.lines[-2]
        return head_at == at and self._head == (head_at, head) and not EXCEPTION_LINE.match(head) \
            and not JS_FRAME.match(head)

    def blocks_for(self, call_sid: str, start: float, end: float) -> list[ErrorBlock]:
        """The error blocks of one call: those naming its SID, and those naming no call SID at all that
        were read in its window ``[start, end)`` (call SIDs are fresh per replay: another SID is another call)."""
        found = []
        for block in self.blocks:
            sids = block.call_sids
            if (call_sid in sids) if sids else start <= block.at < end:
                found.append(block)
        return found

    def errors_for(self, call_sid: str, start: float, end: float) -> list[str]:
        """``blocks_for``, as text."""
        return [block.text for block in self.blocks_for(call_sid, start, end)]


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def _strip_ansi(line: str) -> str:
    """Colours (loguru colours its output on a terminal) would hide the level from the patterns."""
    return _ANSI.sub("", line) if "\x1b" in line else line
