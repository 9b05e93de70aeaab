"""Each call's transcript in SQLite, written as turns happen, so a crash loses nothing already said."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import AicallError

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_sid TEXT PRIMARY KEY,
    stream_sid TEXT,
    caller TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT
);
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_sid TEXT NOT NULL REFERENCES calls(call_sid),
    turn INTEGER NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_by_call ON lines(call_sid, id);
"""


@dataclass(frozen=True)
class CallSummary:
    call_sid: str
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


class CallStore:
    """One SQLite file for all calls; every write is committed at once (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:  # OperationalError (no such directory, read-only) included
            what = "not an SQLite database" if "not a database" in str(exc) else str(exc)
            raise AicallError(f"AICALL_DB={self.path}: cannot use it as the call store: {what}") from None

    def close(self) -> None:
        self._db.close()

    def call_started(self, call_sid: str, stream_sid: str, caller: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO calls(call_sid, stream_sid, caller, started_at) VALUES (?, ?, ?, ?)",
            (call_sid, stream_sid, caller, time.time()))

    def add_line(self, call_sid: str, turn: int, role: str, text: str, note: str = "") -> None:
        self._db.execute("INSERT INTO lines(call_sid, turn, role, text, note, at) VALUES (?, ?, ?, ?, ?, ?)",
                         (call_sid, turn, role, text, note, time.time()))

    def call_ended(self, call_sid: str, reason: str) -> None:
        self._db.execute("UPDATE calls SET ended_at = ?, end_reason = ? WHERE call_sid = ? AND ended_at IS NULL",
                         (time.time(), reason, call_sid))

    def recent(self, limit: int = 20) -> list[CallSummary]:
        rows = self._db.execute(
            "SELECT c.call_sid, c.caller, c.started_at, c.ended_at, c.end_reason, COUNT(l.id) FROM calls c "
            "LEFT JOIN lines l ON l.call_sid = c.call_sid GROUP BY c.call_sid ORDER BY c.started_at DESC LIMIT ?",
            (limit,)).fetchall()
        return [CallSummary(*row) for row in rows]

    def call(self, call_sid: str) -> tuple[CallSummary, list[Line]] | None:
        row = self._db.execute(
            "SELECT call_sid, caller, started_at, ended_at, end_reason, "
            "(SELECT COUNT(*) FROM lines l WHERE l.call_sid = c.call_sid) FROM calls c WHERE call_sid = ?",
            (call_sid,)).fetchone()
        if row is None:
            return None
        summary = CallSummary(*row)
        rows = self._db.execute("SELECT turn, role, text, note, at FROM lines WHERE call_sid = ? ORDER BY id",
                                (call_sid,)).fetchall()
        return summary, [Line(*row) for row in rows]
