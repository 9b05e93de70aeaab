"""The stretch of a call's timeline that shows why a check failed, as short lines a person reads.

Runs of bot ``media`` and of marks are folded into one line each ("bot audio 1.20-3.40 s, 112
frames"), so the events that matter (finals, closes, LLM and TTS requests, the hang-up) stay in view.
"""

from __future__ import annotations

import json

from harness.judge.events import Event, Partial
from harness.judge.checks import CheckResult
from harness.judge.timeline import CallTimeline
WINDOW_S = 2.0
FOLDED = {"media": "bot audio", "mark": "marks sent", "mark_played": "marks echoed", "partial": "partials"}


def _detail(event: Event) -> str:
    detail = {k: v for k, v in event.fields().items() if k not in ("reply", "told") and v is not None and v != ""
              and v is not False}
    return json.dumps(detail, ensure_ascii=False)[:140] if detail else ""


def condensed(events: list[Event], t0: float) -> list[str]:
    """One line per event, runs of the same folded kind as one line."""
    lines: list[str] = []
    i = 0
    while i < len(events):
        e = events[i]
        if e.kind in FOLDED:
            j = i
            while j + 1 < len(events) and events[j + 1].kind == e.kind:
                j += 1
            if j > i:
                last = events[j]
                extra = f", last {last.text!r}" if isinstance(last, Partial) else ""
                lines.append(f"{e.wall - t0:8.3f}s {FOLDED[e.kind]} {e.wall - t0:.2f}-{last.wall - t0:.2f} s, "
                             f"{j - i + 1} {'frames' if e.kind == 'media' else 'messages'}{extra}")
                i = j + 1
                continue
        lines.append(f"{e.wall - t0:8.3f}s {e.kind:<14} {_detail(e)}".rstrip())
        i += 1
    return lines


def why(timeline: CallTimeline, check: CheckResult, seconds: float = WINDOW_S) -> list[str]:
    """The condensed stretch around the moment a failed check points at (empty when it points nowhere)."""
    if check.ok or check.at is None or not timeline.events:
        return []
    since = check.at if check.since is None else min(check.since, check.at)
    stretch = [e for e in timeline.events if since - seconds <= e.wall <= check.at + seconds]
    return condensed(stretch, timeline.events[0].wall)
