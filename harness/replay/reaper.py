"""The launched handler's parent: ``python -m harness.replay.reaper REPORT -- COMMAND``.

The harness starts this in a session of its own; it runs ``COMMAND`` with a shell, in its process group, and when
the handler exits or the harness stops it (SIGTERM to the group), it ends *everything* the handler started, however
it detached. On Linux it is a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, unprivileged, as systemd's
service manager and tini use it): a daemon that double-forks and calls ``setsid`` leaves the process group but is
re-parented here, not to init, so it is found as a descendant and killed. It also asks to be sent SIGTERM when the
harness dies (``PR_SET_PDEATHSIG``), so even a SIGKILLed harness leaves nothing behind. Elsewhere (macOS) only the
process group is ended. Every process killed after the handler itself was gone is written to ``REPORT``, one
``pid command`` line each: the harness reports them.

Its exit status is the handler's (128 + N when a signal N ended it), as a shell gives it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
HANDLER_GRACE_S = 5.0  # the handler's own shutdown after SIGTERM (the harness waits 10 s for all of this)
LEFTOVER_GRACE_S = 2.0


class Stop(Exception):
    """SIGTERM: the harness is done with the handler."""


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process this user can see (Linux ``/proc``; empty elsewhere)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()  # after "(comm)", which may hold spaces and parentheses
        if len(fields) > 1 and fields[0] != "Z":  # a zombie is dead already: only its parent's wait is missing
            found[int(entry.parent.name)] = int(fields[1])
    return found


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid``."""
    parents = _parents()
    below, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        below += children
        frontier += children
    return below


def command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return text if len(text) <= 160 else text[:157] + "..."


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap() -> None:
    """Collect every child that has exited (orphans re-parented here included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def end_everything(grace_s: float, stopped: bool) -> list[str]:
    """SIGTERM every descendant, then SIGKILL what is left after ``grace_s``. Returns the ``pid command`` of each
    leftover: every one when the handler exited by itself; when it was stopped, those that had detached from its
    process group (they never got the stop) and those that did not end within the grace."""
    me, group = os.getpid(), os.getpgid(0)
    left = descendants(me)
    if not left:
        return []
    named = {pid: command_of(pid) for pid in left}
    leftovers = set(left) if not stopped else {pid for pid in left if _group_of(pid) not in (group, None)}
    _signal_all(left, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and descendants(me):
        _reap()
        time.sleep(0.05)  # other processes' exits: nothing to wait on but the clock (and waitpid, done above)
    survivors = descendants(me)
    _signal_all(survivors, signal.SIGKILL)
    leftovers |= set(survivors)
    time.sleep(0.05)
    _reap()
    return [f"{pid} {named.get(pid) or command_of(pid)}" for pid in sorted(leftovers)]


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m harness.replay.reaper REPORT -- COMMAND", file=sys.stderr)
        return 2
    report, command = Path(argv[0]), " ".join(argv[2:])
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def stop(signum: int, frame: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)  # (the handler gets the default action back when the shell is executed)
    handler = subprocess.Popen(command, shell=True)
    try:
        returncode = handler.wait()
        stopped = False
    except Stop:
        stopped = True
        try:
            returncode = handler.wait(HANDLER_GRACE_S)
        except (subprocess.TimeoutExpired, Stop):
            _signal_all([handler.pid, *descendants(handler.pid)], signal.SIGKILL)
            returncode = handler.wait()
    try:
        leftovers = end_everything(LEFTOVER_GRACE_S if stopped else 0.5, stopped)
    except Stop:  # told twice: finish at once
        _signal_all(descendants(os.getpid()), signal.SIGKILL)
        leftovers = []
    if leftovers:
        report.write_text("".join(line + "\n" for line in leftovers), encoding="utf-8")
    return _status(returncode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
