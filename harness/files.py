"""Report files written so that a failure never destroys a good one: each goes to a temporary file beside it and is
renamed over the old one only once whole (as git writes its index and refs: a lock file, then ``rename``), and the
report directory is tried before a run spends minutes replaying."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.errors import HarnessError


class ReportNotWritten(HarnessError):
    """A report could not be written; the earlier one at that path, if any, is as it was."""


def write_atomically(path: Path, data: str | bytes) -> None:
    """``path`` holds ``data`` whole, or (on any error: a full disk, a read-only directory) what it held before.

    Raises ``ReportNotWritten`` naming the path and the reason."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ReportNotWritten(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a report from the CI user that collects it
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        kept = " (the earlier one there is kept)" if path.exists() else ""
        raise ReportNotWritten(f"cannot write {path}: {exc.strerror or exc}{kept}") from None


def check_report_dir(directory: Path, option: str = "--report-dir") -> None:
    """Before the run: ``directory`` exists (or can be made) and a file can be created in it; else one line."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise HarnessError(f"{option} {directory}: is a file, not a directory") from None
    except OSError as exc:
        raise HarnessError(f"{option} {directory}: cannot create it: {exc.strerror or exc}") from None
    if not directory.is_dir():
        raise HarnessError(f"{option} {directory}: is not a directory")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise HarnessError(f"{option} {directory}: cannot write there: {exc.strerror or exc}") from None
