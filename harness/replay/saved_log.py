"""``handler.log``: a launched handler's output written to disk as it comes, with the harness's own markers
(``---- harness: fixture ..., call CA... ----``) where they happened, and a cap. A handler that writes gigabytes of
log costs the harness a capped file and nothing in memory (the judge keeps only error blocks and a tail,
``harness.judge.handler_log``); the cut is marked in the file, as journald marks what it suppressed."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

MAX_LOG_BYTES = 64 * 1024 * 1024


class SavedLog:
    """One file for every process of a target (``--jobs`` of them, or one started again): opened (emptied) by the
    first, closed when the last one open is done."""

    def __init__(self, path: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.path, self.max_bytes = path, max_bytes
        self.written = 0  # bytes of the handler's lines saved
        self.unsaved = 0  # ... and not saved, past the cap
        self._out: TextIO | None = None
        self._users = 0
        self._started = False

    def open(self) -> None:
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the first opening of a run empties it; a later one (the handler started again) goes on after it
            self._out = self.path.open("a" if self._started else "w", encoding="utf-8", errors="replace")
            self._started = True
        self._users += 1

    def line(self, text: str) -> None:
        if self._out is None:
            return
        size = len(text) + 1
        if self.written + size > self.max_bytes:
            if not self.unsaved:
                self.marker(f"handler.log is cut here: the handler wrote more than {self.max_bytes // 2**20} MiB; "
                            "the rest is not saved (its error lines are still judged)")
            self.unsaved += size
            return
        self.written += size
        self._out.write(text + "\n")

    def marker(self, text: str) -> None:
        if self._out is not None:
            self._out.write(f"---- harness: {text} ----\n")

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    def close(self) -> None:
        self._users -= 1
        if self._users > 0 or self._out is None:
            return
        if self.unsaved:
            self.marker(f"{self.unsaved} bytes of the handler's output were not saved (over the "
                        f"{self.max_bytes // 2**20} MiB cap)")
        self._out.close()
        self._out = None
