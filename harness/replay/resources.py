"""What a launched handler holds over many calls: its process group's memory (RSS) and open descriptors, sampled
as calls go by, and growth that does not level off told from a warm-up (sans-I/O but for ``sample``).

A handler's memory grows over its first calls (imports, pools, caches) and then holds; one that keeps
something of every call (its audio in a global list, a session dict never emptied, a socket never closed)
grows with every call for as long as it runs. After the first third of the samples (the warm-up), the
median of the last third must not have grown over the middle third's by more than ``LEAK_MB`` (or
``LEAK_SHARE`` of it, if more) of memory, or ``LEAK_FDS`` descriptors, while the middle third also grew
over the first and the growth is not slowing (the last step at least ``STEADY_SHARE`` of the one before: a
heap that garbage-collects lazily, as V8's, grows fast over the first calls and then slows): then it is a
leak, named with its numbers. Read from Linux's ``/proc``; elsewhere nothing
is sampled, and nothing is said.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

LEAK_MB, LEAK_SHARE, LEAK_FDS = 2.0, 0.03, 5
STEADY_SHARE = 0.6  # ... and still growing at this share of the rate before it: slowing growth is levelling off
MIN_SAMPLES, MIN_CALLS = 6, 12  # fewer, and a warm-up cannot be told from a leak: nothing is said


@dataclass(frozen=True)
class Sample:
    calls: int  # calls the handler had taken when it was taken
    rss_mb: float  # resident memory of its process group
    fds: int  # descriptors its process group holds open


@dataclass(frozen=True)
class GroupStats:
    cpu_s: float  # user + system, so far, of its live processes
    rss_mb: float
    fds: int


def group_stats(pgid: int, *, descriptors: bool = True) -> GroupStats | None:
    """What the live processes of process group ``pgid`` use now (None: no such group, or no ``/proc``)."""
    page, ticks = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    cpu, rss, fds, seen = 0, 0, 0, False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            if int(entry) == pgid and b"harness.replay.reaper" in Path(f"/proc/{entry}/cmdline").read_bytes():
                continue  # the harness's own reaper leads a launched handler's group: not the handler's
            cpu += int(fields[11]) + int(fields[12])  # fields 14, 15: user and system ticks
            rss += int(fields[21]) * page  # field 24: resident pages
            fds += len(os.listdir(f"/proc/{entry}/fd")) if descriptors else 0
            seen = True
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return GroupStats(cpu / ticks, round(rss / 2**20, 1), fds) if seen else None


def sample(pgid: int, calls: int) -> Sample | None:
    """The process group ``pgid``'s memory and descriptors now, ``calls`` calls in."""
    stats = group_stats(pgid)
    return Sample(calls, stats.rss_mb, stats.fds) if stats is not None else None


@dataclass
class Resources:
    """The samples of one handler process group, in order."""

    samples: list[Sample] = field(default_factory=list)

    def add(self, taken: Sample | None) -> None:
        if taken is not None:
            self.samples.append(taken)

    def _thirds(self, value) -> tuple[float, float, float] | None:
        n = len(self.samples)
        if n < MIN_SAMPLES or self.samples[-1].calls - self.samples[0].calls < MIN_CALLS:
            return None
        k = n // 3
        parts = (self.samples[:k], self.samples[k: n - k], self.samples[n - k:])
        return tuple(statistics.median(value(s) for s in part) for part in parts)  # type: ignore[return-value]

    def leak(self) -> str | None:
        """What grows without levelling off, with its numbers (None: nothing does, or too few samples to say)."""
        found = []
        memory = self._thirds(lambda s: s.rss_mb)
        if memory is not None:
            first, middle, last = memory
            limit = max(LEAK_MB, LEAK_SHARE * middle)
            if middle > first and last - middle > limit and last - middle >= STEADY_SHARE * (middle - first):
                found.append(f"memory grew from {first:.1f} to {middle:.1f} to {last:.1f} MB (medians of each third of "
                             f"the samples) and did not level off: {self._per_call(lambda s: s.rss_mb):.2f} MB a call")
        fds = self._thirds(lambda s: s.fds)
        if fds is not None:
            first, middle, last = fds
            if middle > first and last - middle > LEAK_FDS and last - middle >= STEADY_SHARE * (middle - first):
                found.append(f"open descriptors grew from {first:.0f} to {middle:.0f} to {last:.0f} and did not "
                             f"level off: {self._per_call(lambda s: s.fds):.2f} a call")
        return "; ".join(found) or None

    def _per_call(self, value) -> float:
        first, last = self.samples[len(self.samples) // 3], self.samples[-1]
        return (value(last) - value(first)) / max(1, last.calls - first.calls)

    def describe(self) -> str:
        """The first and last samples, and a leak (``LEAK? ...``) if memory or descriptors never level off."""
        if not self.samples:
            return "the handler's memory: not sampled"
        first, last = self.samples[0], self.samples[-1]
        line = (f"the handler's memory: {first.rss_mb:.1f} MB after {first.calls} call(s), {last.rss_mb:.1f} MB after "
                f"{last.calls}; open descriptors: {first.fds} then {last.fds}")
        leak = self.leak()
        return f"{line}\nLEAK? {leak}" if leak else line

    def as_json(self) -> dict:
        return {"samples": [[s.calls, s.rss_mb, s.fds] for s in self.samples], "leak": self.leak()}

    @classmethod
    def from_json(cls, data: dict) -> "Resources":
        return cls([Sample(int(c), float(r), int(f)) for c, r, f in data.get("samples", [])])
