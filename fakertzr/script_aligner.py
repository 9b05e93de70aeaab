"""Where in a call's audio a connection's audio lies: script mode's first half (``script_schedule`` is the second).

Fed the connection's audio, the aligner answers with placements, each saying "this stretch of the
connection's audio is that stretch of the call's". It finds a stream's audio in the fixture's audio (a
reconnect resumes mid-call; a handler may drop frames), checks continuity every 5 ms of voiced audio
(sample by sample for a client that passes the call's audio through unchanged), and starts looking
again where the audio stops continuing the call. Audio it cannot place with confidence is not placed.
It keeps ``alignment_log``, the journal's view of what it decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .align import BLOCK, RATE, WINDOW, AudioLocator, Match, voiced_blocks
from .fixture import CallScript

MIN_PROBE_MS = 100  # audio needed before the first search; a confident match decides
RETRY_EVERY_MS = 250
CONTINUITY_MIN_SCORE = 0.6
EXACT_RUN_MS = 20  # equal sample for sample this long (and not a constant): the client is sample-exact
MAX_PENDING = 60 * RATE  # unplaced audio kept while searching; older audio stays unheard


def ms_of(samples: float) -> float:
    """Samples of 8 kHz audio as milliseconds."""
    return samples * 1000.0 / RATE


def samples_at(ms: float) -> int:
    """Milliseconds as a whole number of 8 kHz samples."""
    return int(round(ms * RATE / 1000.0))


class Placement(NamedTuple):
    """Connection audio [conn_start, conn_end) is call audio [conn_start + offset, conn_end + offset).
    (A named tuple: one is made per 20 ms frame, and a tuple is the cheapest to make.)"""

    conn_start: int
    conn_end: int
    offset: int  # call position = connection position + offset

    @property
    def call_start(self) -> int:
        return self.conn_start + self.offset

    @property
    def call_end(self) -> int:
        return self.conn_end + self.offset


@dataclass(frozen=True, slots=True)
class PlacedRun:
    """A stretch of a probe placed in the call, and how it was checked: sample for sample (``exact``) or by
    correlation, with the match's ``score``."""

    conn_start: int
    conn_end: int
    offset: int
    exact: bool
    score: float


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """[lo, hi) of the longest run of True in ``mask`` ((0, 0) if none)."""
    if not mask.any():
        return 0, 0
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


def leading_zeros(probe: np.ndarray) -> int:
    """How many samples of digital silence (exact zeros) open ``probe``, in whole blocks: audio with nothing
    to find it by. Placed by correlation it would only weaken the match of the speech after it, and, taken
    for the pause the match implies, stand for call audio (words) the line never carried."""
    nonzero = np.flatnonzero(probe)
    first = int(nonzero[0]) if len(nonzero) else len(probe)
    return first // BLOCK * BLOCK


def find_exact(probe: np.ndarray, locator: AudioLocator) -> int | None:
    """Where ``probe`` is sample for sample the call audio, if it is so at exactly one place (and not silence):
    a byte search instead of a cross-correlation, for clients that pass the call's audio through unchanged."""
    if not probe.any() or len(probe) > len(locator):
        return None
    haystack, needle = locator.bytes, probe.tobytes()
    found: list[int] = []
    start = 0
    while len(found) < 2 and (at := haystack.find(needle, start)) >= 0:
        if at % 2 == 0:  # on a sample boundary
            found.append(at // 2)
        start = at + 1
    return found[0] if len(found) == 1 else None


def exact_at(probe: np.ndarray, locator: AudioLocator, call_start: int) -> bool:
    """Is ``probe`` sample for sample the call audio at ``call_start`` (and not silence)?"""
    if call_start < 0 or call_start + len(probe) > len(locator) or not probe.any():
        return False
    return probe.tobytes() == locator.samples[call_start : call_start + len(probe)].tobytes()


def continuity(probe: np.ndarray, call_start: int, locator: AudioLocator) -> tuple[np.ndarray, bool]:
    """Per sample of ``probe``: does it continue the call audio placed at ``call_start``? And is the
    client sample-exact (a run of at least 20 ms equal sample for sample, not a constant)?

    A shorter bar than the 100 ms probe: a stream may keep only a few blocks before a gap (found
    by the nightly profile: 80 ms kept, then a gap, taken as correlation-checked audio whose
    pauses were assumed to continue the call, so a word never received was transcribed)."""
    lo, hi = max(0, call_start), min(len(locator.samples), call_start + len(probe))
    inside = np.zeros(len(probe), dtype=bool)
    inside[max(0, lo - call_start) : max(0, hi - call_start)] = True
    same = np.zeros(len(probe), dtype=bool)
    if hi > lo:
        same[lo - call_start : hi - call_start] = probe[lo - call_start : hi - call_start] == locator.samples[lo:hi]
    run_lo, run_hi = longest_run(same)
    if run_hi - run_lo >= samples_at(EXACT_RUN_MS) and np.ptp(probe[run_lo:run_hi]) > 0:
        return same, True
    n = len(probe) // WINDOW
    scores = locator.window_scores(probe[: n * WINDOW], call_start)
    good = ~voiced_blocks(probe[: n * WINDOW], WINDOW) | (scores >= CONTINUITY_MIN_SCORE)
    mask = np.concatenate((np.repeat(good, WINDOW), np.full(len(probe) - n * WINDOW, True)))
    return mask & inside, False


def consistent_runs(probe: np.ndarray, probe_start: int, locator: AudioLocator,
                    match: Match | None, depth: int = 0) -> list[PlacedRun]:
    """Where the probe's audio lies, in connection order.

    The match places part of the probe; the longest run that really continues the call audio
    there is kept, and what comes before and after it is placed on its own (or stays unheard).
    """
    if match is None or not match.is_confident():
        return []
    offset = match.offset - (probe_start + len(probe) - match.used)
    mask, exact = continuity(probe, probe_start + offset, locator)
    lo, hi = longest_run(mask)
    if hi - lo < samples_at(MIN_PROBE_MS):
        return []
    runs = [PlacedRun(probe_start + lo, probe_start + hi, offset, exact, match.score)]
    if depth < 3 and lo >= samples_at(MIN_PROBE_MS):
        before = probe[:lo]
        runs = consistent_runs(before, probe_start, locator, locator.locate(before), depth + 1) + runs
    if depth < 3 and len(probe) - hi >= samples_at(MIN_PROBE_MS):
        after = probe[hi:]
        runs += consistent_runs(after, probe_start + hi, locator, locator.locate(after), depth + 1)
    return runs


class ScriptAligner:
    """Places a connection's audio in one of the scripts' audio; see the module docstring.

    ``feed`` takes audio as it arrives and returns the placements it allows, in connection order; ``flush``
    (EOS, Finalize) analyses what is held back and searches with whatever unplaced audio there is.
    """

    def __init__(
        self,
        scripts: Sequence[CallScript],
        locators: Sequence[AudioLocator],
        on_select: Callable[[CallScript], None] | None = None,
    ) -> None:
        if not scripts:
            raise ValueError("script mode needs at least one loaded script")
        self._candidates = list(zip(scripts, locators))
        self.script: CallScript | None = None  # the call this connection's audio was found in
        self._locator: AudioLocator | None = None
        self.conn_samples = 0  # audio analysed so far (8 kHz samples)
        self._hold = np.zeros(0, dtype=np.int16)  # less than a block, waiting for the rest
        self._exact = False  # learned from the alignment probe: audio arrives sample-exact
        self._pending: list[np.ndarray] = []  # unplaced audio, searched for
        self._pending_start = 0
        self._next_attempt = 0
        self._offset: int | None = None  # where the newest audio lies, while it continues the call
        self._last: Placement | None = None  # the newest placement
        self.alignment_log: list[dict[str, Any]] = []
        self._on_select = on_select

    # ----------------------------------------------------------------- feeding
    def feed(self, samples: np.ndarray) -> list[Placement]:
        """Take the next received audio (int16, 8 kHz) and say where it lies.

        Audio is analysed in whole 20 ms blocks; a remainder waits for the next call (or for
        ``flush``), so clients that send tiny frames are checked like any other.
        """
        if not len(self._hold) and len(samples) % BLOCK == 0:
            placements = self._continue_exactly(samples)
            if placements is not None:
                return placements
        if len(self._hold):
            samples = np.concatenate((self._hold, samples))
        whole = len(samples) // BLOCK * BLOCK
        self._hold = samples[whole:]
        placed: list[Placement] = []
        if whole:
            self._feed_blocks(samples[:whole], placed)
        return placed

    def flush(self) -> list[Placement]:
        """Finalize/EOS: the held remainder is analysed, and unplaced audio searched for however short."""
        placed: list[Placement] = []
        if len(self._hold):
            held, self._hold = self._hold, np.zeros(0, dtype=np.int16)
            self._feed_blocks(held, placed)
        if self._offset is None and self._pending:
            self._feed_unaligned(np.zeros(0, dtype=np.int16), placed, force=True)
        return placed

    def _continue_exactly(self, samples: np.ndarray) -> list[Placement] | None:
        """The common case, cheaply: whole blocks that continue the newest placement sample for sample (what
        ``_feed_blocks`` would conclude, in one comparison). None: take the general path."""
        n, offset, last = len(samples), self._offset, self._last
        if not n or offset is None or not self._exact or last is None:
            return None
        start = self.conn_samples
        k0 = start + offset
        if last.offset != offset or last.conn_end != start or k0 < 0:
            return None
        assert self._locator is not None
        if samples.tobytes() != self._locator.bytes[2 * k0 : 2 * (k0 + n)]:
            return None  # a gap, a discontinuity or the call's end: the general path says which
        self.conn_samples = start + n
        self._last = Placement(start, start + n, offset)
        return [self._last]

    def _place(self, c0: int, c1: int, placed: list[Placement]) -> None:
        """Audio [c0, c1) of this connection lies at the current offset."""
        assert self._offset is not None
        if c1 > c0:
            self._last = Placement(c0, c1, self._offset)
            placed.append(self._last)

    def _feed_blocks(self, samples: np.ndarray, placed: list[Placement]) -> None:
        start = self.conn_samples
        self.conn_samples += len(samples)
        if self._offset is None:
            self._feed_unaligned(samples, placed)
            return
        cut = self._first_mismatch(samples, start + self._offset)
        if cut is None:
            self._place(start, start + len(samples), placed)
            return
        self._place(start, start + cut, placed)
        self.alignment_log.append({"conn_ms": ms_of(start + cut), "event": "discontinuity"})
        self._offset = None
        self._pending, self._pending_start = [], start + cut
        self._next_attempt = 0
        self._feed_unaligned(samples[cut:], placed)

    def _first_mismatch(self, samples: np.ndarray, call_start: int) -> int | None:
        """Where received audio stops continuing the call audio, or None if it all does.

        A client that passed the call's audio through exactly (G.711 decoded, no filtering)
        is checked sample by sample, so a gap is found even in a pause; any other is checked
        by correlation over 5 ms windows where there is speech.
        """
        assert self._locator is not None
        if self._exact:
            audio = self._locator.samples
            end = min(len(audio), call_start + len(samples))
            reference = audio[max(0, call_start) : end] if call_start >= 0 else audio[:0]
            if len(reference) == len(samples) and samples.tobytes() == reference.tobytes():
                return None  # the common case: one memcmp
            same = samples[: len(reference)] == reference
            mismatches = np.nonzero(~same)[0]
            return int(mismatches[0]) if len(mismatches) else len(reference)
        scores = self._locator.window_scores(samples, call_start)
        voiced = voiced_blocks(samples, WINDOW)
        bad = np.nonzero(voiced & (scores < CONTINUITY_MIN_SCORE))[0]
        return int(bad[0]) * WINDOW if len(bad) else None

    # --------------------------------------------------------------- searching
    def _feed_unaligned(self, samples: np.ndarray, placed: list[Placement], force: bool = False) -> None:
        self._pending.append(samples)
        if self.conn_samples - self._pending_start > MAX_PENDING:  # never matched: keep the newest
            self._pending = [np.concatenate(self._pending)[-MAX_PENDING:]]
            self._pending_start = self.conn_samples - len(self._pending[0])
        pending_len = self.conn_samples - self._pending_start
        if not force and (ms_of(pending_len) < MIN_PROBE_MS or pending_len < self._next_attempt):
            return
        probe = np.concatenate(self._pending)
        silent = leading_zeros(probe)
        if silent:  # digital silence (a muted or held line) has no place in the call: it stays unheard
            probe = probe[silent:]
            self._pending, self._pending_start = ([probe] if len(probe) else []), self.conn_samples - len(probe)
            if not force and ms_of(len(probe)) < MIN_PROBE_MS:
                self._next_attempt = 0
                return
        self._next_attempt = len(probe) + samples_at(RETRY_EVERY_MS)
        probe_start = self.conn_samples - len(probe)  # audio trimmed from the buffer stays unheard
        if not len(probe):
            return
        found = self._search(probe, probe_start)
        if found is None:
            return
        (script, locator), runs = found
        self._select(script, locator)
        for run in runs:
            self._offset, self._exact = run.offset, run.exact
            self.alignment_log.append({"conn_ms": ms_of(run.conn_start), "call_ms": ms_of(run.conn_start + run.offset),
                                       "event": "aligned", "script": script.name, "score": round(run.score, 3),
                                       "exact": run.exact})
            self._place(run.conn_start, run.conn_end, placed)
        placed_to = runs[-1].conn_end
        if placed_to < self.conn_samples:  # the newest audio is not placed yet: keep looking with more
            self._offset = None
            self._pending, self._pending_start = [probe[placed_to - probe_start :]], placed_to
            self._next_attempt = 0
        else:
            self._pending = []

    def _search(self, probe: np.ndarray, probe_start: int
                ) -> tuple[tuple[CallScript, AudioLocator], list[PlacedRun]] | None:
        """Which call the probe is from and where its parts lie: sample for sample where the stream continues
        (or, found by a byte search, anywhere), else by cross-correlation. None: nowhere with confidence."""
        candidates = self._candidates
        if self.script is not None:
            assert self._locator is not None
            candidates = [(self.script, self._locator)]
        chosen: tuple[CallScript, AudioLocator] | None = next(((s, loc) for s, loc in candidates if exact_at(probe, loc, probe_start)), None)
        offset = 0
        if chosen is None:  # the call's audio from elsewhere, sample for sample (a resend, a replay): one memmem
            found = next(((s, loc, at) for s, loc in candidates if (at := find_exact(probe, loc)) is not None), None)
            if found is not None:
                chosen, offset = (found[0], found[1]), found[2] - probe_start
        if chosen is not None:  # fast path: the stream is the call, sample for sample
            return chosen, [PlacedRun(probe_start, self.conn_samples, offset, True, 1.0)]
        best: tuple[CallScript, AudioLocator, Match] | None = None
        for script, locator in candidates:
            match = locator.locate(probe)
            if match and (best is None or match.score > best[2].score):
                best = (script, locator, match)
        if best is None or not best[2].is_confident():
            if best is not None:
                self.alignment_log.append({"conn_ms": ms_of(self.conn_samples), "event": "no_match",
                                           "script": best[0].name, "score": round(best[2].score, 3)})
            return None
        runs = consistent_runs(probe, probe_start, best[1], best[2])
        return ((best[0], best[1]), runs) if runs else None

    def _select(self, script: CallScript, locator: AudioLocator) -> None:
        if self.script is script:
            return
        self.script, self._locator = script, locator
        if self._on_select:
            self._on_select(script)
