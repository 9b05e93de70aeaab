"""Each call's transcript in SQLite, written as turns happen, so a crash loses nothing already said."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import AicallError

log = logging.getLogger("aicall.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_sid TEXT NOT NULL,
    stream_sid TEXT,
    caller TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_sid ON calls(call_sid, id);
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id INTEGER NOT NULL REFERENCES calls(id),
    turn INTEGER NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_by_call ON lines(call_id, id);
"""

# Version 1 keyed calls by call_sid alone: a second stream (or a forged start) with the same callSid was
# merged into the first call's transcript. Its rows are carried over, one call each.
MIGRATE_FROM_V1 = """
ALTER TABLE calls RENAME TO calls_v1;
ALTER TABLE lines RENAME TO lines_v1;
DROP INDEX IF EXISTS lines_by_call;
""" + SCHEMA + """
INSERT INTO calls(call_sid, stream_sid, caller, started_at, ended_at, end_reason)
    SELECT call_sid, stream_sid, caller, started_at, ended_at, end_reason FROM calls_v1 ORDER BY started_at;
INSERT INTO lines(call_id, turn, role, text, note, at)
    SELECT c.id, l.turn, l.role, l.text, l.note, l.at FROM lines_v1 l JOIN calls c ON c.call_sid = l.call_sid ORDER BY l.id;
DROP TABLE lines_v1;
DROP TABLE calls_v1;
"""


@dataclass(frozen=True)
class CallSummary:
    id: int
    call_sid: str
    stream_sid: str | None
    caller: str
    started_at: float
    ended_at: float | None
    end_reason: str | None
    lines: int


@dataclass(frozen=True)
class Line:
    turn: int
    role: str
    text: str
    note: str
    at: float


_SUMMARY = ("SELECT c.id, c.call_sid, c.stream_sid, c.caller, c.started_at, c.ended_at, c.end_reason, "
            "(SELECT COUNT(*) FROM lines l WHERE l.call_id = c.id) FROM calls c")


class CallStore:
    """One SQLite file for all calls; every write is committed at once (WAL). Each Media Stream is one call
    row with its own id, so two streams carrying the same callSid (a second ``<Connect><Stream>`` of one
    call, or a forged start) never share a transcript."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.lost: Counter[int] = Counter()  # call id -> writes that failed (its row, lines, its end)
        self._unwritten = 0  # ids handed out for call rows that could not be written: -1, -2, ...
        self._failing = False
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(calls)")]
            self._db.executescript(SCHEMA if not columns or "id" in columns else f"BEGIN;{MIGRATE_FROM_V1}COMMIT;")
        except sqlite3.DatabaseError as exc:  # OperationalError (no such directory, read-only) included
            what = "not an SQLite database" if "not a database" in str(exc) else str(exc)
            raise AicallError(f"AICALL_DB={self.path}: cannot use it as the call store: {what}") from None

    def close(self) -> None:
        self._db.close()

    def call_started(self, call_sid: str, stream_sid: str, caller: str) -> int:
        """A new call row; returns its id, which every later write names (negative when the row could not be
        written: the call goes on, and what it would have stored is counted as lost)."""
        cursor = self._write(None, "INSERT INTO calls(call_sid, stream_sid, caller, started_at) VALUES (?, ?, ?, ?)",
                             (call_sid, stream_sid, caller, time.time()))
        if cursor is None:
            self._unwritten -= 1
            self.lost[self._unwritten] += 1
            return self._unwritten
        return int(cursor.lastrowid or 0)

    def add_line(self, call_id: int, turn: int, role: str, text: str, note: str = "") -> None:
        self._write(call_id, "INSERT INTO lines(call_id, turn, role, text, note, at) VALUES (?, ?, ?, ?, ?, ?)",
                    (call_id, turn, role, text, note, time.time()))

    def call_ended(self, call_id: int, reason: str) -> None:
        self._write(call_id, "UPDATE calls SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                    (time.time(), reason, call_id))

    def _write(self, call_id: int | None, sql: str, args: tuple) -> sqlite3.Cursor | None:
        """One write; None when it failed (a full disk, a read-only file, a locked database): counted against the
        call in ``lost``, logged once while writes keep failing, never raised into the call it belongs to."""
        if call_id is not None and call_id < 0:  # the call's row itself was never written
            self.lost[call_id] += 1
            return None
        try:
            cursor = self._db.execute(sql, args)
        except sqlite3.Error as exc:
            if call_id is not None:
                self.lost[call_id] += 1
            if not self._failing:
                log.error("event=store_write_failed db=%s error=%s (the calls go on; what they would store is lost "
                          "and counted per call)", self.path, exc)
            self._failing = True
            return None
        if self._failing:
            log.warning("event=store_writes_again db=%s", self.path)
            self._failing = False
        return cursor

    def recent(self, limit: int = 20) -> list[CallSummary]:
        rows = self._db.execute(f"{_SUMMARY} ORDER BY c.started_at DESC, c.id DESC LIMIT ?", (limit,)).fetchall()
        return [CallSummary(*row) for row in rows]

    def streams(self, call_sid: str) -> list[tuple[CallSummary, list[Line]]]:
        """Every call row carrying ``call_sid``, oldest first, each with its transcript."""
        found = []
        for row in self._db.execute(f"{_SUMMARY} WHERE c.call_sid = ? ORDER BY c.id", (call_sid,)).fetchall():
            lines = self._db.execute("SELECT turn, role, text, note, at FROM lines WHERE call_id = ? ORDER BY id",
                                     (row[0],)).fetchall()
            found.append((CallSummary(*row), [Line(*line) for line in lines]))
        return found

    def call(self, call_sid: str) -> tuple[CallSummary, list[Line]] | None:
        """The most recent call row carrying ``call_sid``, with its transcript."""
        found = self.streams(call_sid)
        return found[-1] if found else None
