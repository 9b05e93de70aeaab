"""Caller-controlled text made safe for a log line or a terminal.

A callSid, a custom parameter or a transcript line can carry a newline (a forged log line), an ANSI or
OSC escape (a recoloured or retitled terminal) or a bidi override. Everything unprintable is escaped.
"""

from __future__ import annotations

import json


def escaped(text: str) -> str:
    """``text`` with every unprintable character (newline, ESC, BEL, bidi overrides) written as an escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def shown(value: object, limit: int = 40) -> str:
    """Any value from a peer, escaped and cut to ``limit`` characters (saying how much was cut)."""
    if isinstance(value, (dict, list)):
        return f"{'an object' if isinstance(value, dict) else 'a list'} of {len(value)}"
    text = value if isinstance(value, str) else json.dumps(value)  # null, true, 12, Infinity
    return escaped(text[:limit]) + (f"...(+{len(text) - limit} chars)" if len(text) > limit else "")
