"""Script mode: what a fixture says was said, heard only where its audio actually arrived.

Two halves: ``script_aligner`` says where each stretch of the connection's audio lies in the call's audio
(a reconnect resumes mid-call; a handler may drop frames), and ``script_schedule`` says what falls due in
it (a word is heard when at least half of its audio arrived on this connection). All positions reported
are in the connection's own audio.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .align import AudioLocator
from .events import RecognizerEvent
from .fixture import CallScript
from .script_aligner import Placement, ScriptAligner
from .script_aligner import find_exact as _find_exact  # noqa: F401  (tests reach it here)
from .script_schedule import ScriptSchedule


class ScriptRecognizer:
    """Hears a fixture's words in a connection's audio: the aligner's placements handed to the schedule."""

    def __init__(
        self,
        scripts: Sequence[CallScript],
        locators: Sequence[AudioLocator],
        on_select: Callable[[CallScript], None] | None = None,
    ) -> None:
        self._aligner = ScriptAligner(scripts, locators, on_select=on_select)
        self._schedule: ScriptSchedule | None = None  # made when the aligner finds the call
        self.alignment_log: list[dict[str, Any]] = self._aligner.alignment_log  # a live view, for the journal

    @property
    def script(self) -> CallScript | None:
        """The call this connection's audio was found in, once it was."""
        return self._aligner.script

    @property
    def conn_samples(self) -> int:
        """Audio analysed so far (8 kHz samples)."""
        return self._aligner.conn_samples

    def feed(self, samples: np.ndarray) -> list[RecognizerEvent]:
        """Take the next received audio (int16, 8 kHz) and return what is heard in it.

        Audio is analysed in whole 20 ms blocks; a remainder waits for the next call (or for
        ``flush``), so clients that send tiny frames are checked like any other.
        """
        return self._hear(self._aligner.feed(samples))

    def flush(self, conn_ms: float) -> list[RecognizerEvent]:
        """Finalize/EOS: words in progress that are mostly received count as heard now."""
        events = self._hear(self._aligner.flush())
        if self._aligner.script is None:
            return events
        return events + self._schedule_of(self._aligner.script).flush(conn_ms)

    def _hear(self, placements: list[Placement]) -> list[RecognizerEvent]:
        if not placements:
            return []
        schedule = self._schedule
        if schedule is None:
            assert self._aligner.script is not None  # placed audio is placed in a call
            schedule = self._schedule_of(self._aligner.script)
        if len(placements) == 1:
            return schedule.hear(placements[0])
        events: list[RecognizerEvent] = []
        for placement in placements:
            events += schedule.hear(placement)
        return events

    def _schedule_of(self, script: CallScript) -> ScriptSchedule:
        if self._schedule is None:
            self._schedule = ScriptSchedule(script)
        return self._schedule
