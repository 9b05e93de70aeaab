"""The call store: one row per Media Stream, and a store written by the first schema carried over."""

from __future__ import annotations

import sqlite3

import pytest

from aicall.errors import AicallError
from aicall.store import CallStore

V1_SCHEMA = """
CREATE TABLE calls (call_sid TEXT PRIMARY KEY, stream_sid TEXT, caller TEXT, started_at REAL NOT NULL,
                    ended_at REAL, end_reason TEXT);
CREATE TABLE lines (id INTEGER PRIMARY KEY AUTOINCREMENT, call_sid TEXT NOT NULL REFERENCES calls(call_sid),
                    turn INTEGER NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
                    at REAL NOT NULL);
CREATE INDEX lines_by_call ON lines(call_sid, id);
INSERT INTO calls VALUES ('CA1', 'MZ1', '+8210', 1.0, 2.0, 'caller hung up');
INSERT INTO calls VALUES ('CA2', 'MZ2', '+8220', 3.0, NULL, NULL);
INSERT INTO lines(call_sid, turn, role, text, at) VALUES ('CA1', 1, 'caller', '안녕하세요', 1.5);
INSERT INTO lines(call_sid, turn, role, text, at) VALUES ('CA2', 1, 'caller', '여보세요', 3.5);
INSERT INTO lines(call_sid, turn, role, text, at) VALUES ('CA1', 1, 'bot', '네', 1.7);
"""


def test_two_streams_with_one_call_sid_are_two_calls(tmp_path):
    store = CallStore(tmp_path / "calls.db")
    a = store.call_started("CA1", "MZa", "+8210")
    b = store.call_started("CA1", "MZb", "+8220")
    store.add_line(a, 1, "caller", "first")
    store.add_line(b, 1, "caller", "second")
    store.call_ended(b, "caller hung up")
    streams = store.streams("CA1")
    assert [(s.caller, [l.text for l in lines]) for s, lines in streams] == [("+8210", ["first"]), ("+8220", ["second"])]
    assert streams[0][0].end_reason is None and streams[1][0].end_reason == "caller hung up"
    assert store.call("CA1")[0].stream_sid == "MZb" and len(store.recent()) == 2


def test_a_first_schema_store_is_carried_over(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    store = CallStore(path)
    summary, lines = store.call("CA1")
    assert (summary.caller, summary.end_reason) == ("+8210", "caller hung up")
    assert [(l.role, l.text) for l in lines] == [("caller", "안녕하세요"), ("bot", "네")]
    assert [l.text for l in store.call("CA2")[1]] == ["여보세요"]
    new = store.call_started("CA1", "MZ9", "+8299")
    assert new > summary.id and len(store.streams("CA1")) == 2
    store.close()
    assert CallStore(path).call("CA2")[0].caller == "+8220", "a second open finds the new schema"


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00junk" * 1000)
    with pytest.raises(AicallError, match="not an SQLite database"):
        CallStore(junk)
