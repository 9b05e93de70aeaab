"""Text from the handler under test (its log lines, its messages) reaches a terminal only as text: every control
character but newline and tab is shown escaped (``\\x1b``), so a log line cannot clear the screen, move the
cursor, rewrite an earlier line with ``\\r`` or ``\\b``, or send the terminal a DCS/OSC command (C1 ``\\x9b`` included),
as ``git`` and ``less`` show control characters in untrusted text (``less -R`` lets only colour through)."""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters (C0 but ``\\n`` and ``\\t``, DEL, C1) written as ``\\xNN``."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
