"""Script mode: what a fixture says was said, heard only where its audio actually arrived.

The recognizer maps each connection's audio onto the call's timeline by finding it in the
fixture's audio (a reconnect resumes mid-call; a handler may drop frames), checks continuity
every 5 ms of voiced audio, and reports a word as heard when at least half of its audio
arrived on this connection. All positions it reports are in the connection's own audio.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .align import BLOCK, RATE, WINDOW, AudioLocator, Match, voiced_blocks
from .events import HeardWord, RecognizerEvent, RecordedResultHeard, ScriptedPartialText, SpeechEnd, SpeechStart
from .fixture import CallScript

MIN_PROBE_MS = 100  # audio needed before the first search; a confident match decides
RETRY_EVERY_MS = 250
CONTINUITY_MIN_SCORE = 0.6
EXACT_RUN_MS = 20  # equal sample for sample this long (and not a constant): the client is sample-exact
WORD_HEARD_FRACTION = 0.5
MAX_PENDING = 60 * RATE  # unplaced audio kept while searching; older audio stays unheard
EXACT_FRACTION = 0.99  # of probe samples equal to the call audio for sample-exact checking

_UTT_START, _WORD_END, _PARTIAL, _UTT_END, _RECORDED = range(5)


@dataclass(frozen=True)
class _Mark:
    call: int  # sample position in the call audio
    kind: int
    utt: int
    item: int  # word or partial index


def _ms(samples: float) -> float:
    return samples * 1000.0 / RATE


def _samples(ms: float) -> int:
    return int(round(ms * RATE / 1000.0))


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """[lo, hi) of the longest run of True in ``mask`` ((0, 0) if none)."""
    if not mask.any():
        return 0, 0
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


class _Intervals:
    """Received call-audio spans, merged; appends are almost always at the end."""

    def __init__(self) -> None:
        self.spans: list[list[int]] = []

    def add(self, a: int, b: int) -> None:
        if b <= a:
            return
        if self.spans and self.spans[-1][0] <= a <= self.spans[-1][1]:
            self.spans[-1][1] = max(self.spans[-1][1], b)
            return
        self.spans.append([a, b])
        self.spans.sort()
        merged: list[list[int]] = []
        for s in self.spans:
            if merged and s[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], s[1])
            else:
                merged.append(s)
        self.spans = merged

    def covered(self, a: int, b: int) -> int:
        return sum(max(0, min(b, e) - max(a, s)) for s, e in self.spans if s < b and e > a)

    def first_in(self, a: int, b: int) -> int | None:
        for s, e in self.spans:
            if s < b and e > a:
                return max(a, s)
        return None


@dataclass
class _Segment:
    conn_start: int
    conn_end: int
    offset: int  # call = conn + offset


def _leading_zeros(probe: np.ndarray) -> int:
    """How many samples of digital silence (exact zeros) open ``probe``, in whole blocks: audio with nothing
    to find it by. Placed by correlation it would only weaken the match of the speech after it, and, taken
    for the pause the match implies, stand for call audio (words) the line never carried."""
    nonzero = np.flatnonzero(probe)
    first = int(nonzero[0]) if len(nonzero) else len(probe)
    return first // BLOCK * BLOCK


def _find_exact(probe: np.ndarray, locator: AudioLocator) -> int | None:
    """Where ``probe`` is sample for sample the call audio, if it is so at exactly one place (and not silence):
    a byte search instead of a cross-correlation, for clients that pass the call's audio through unchanged."""
    if not probe.any() or len(probe) > len(locator):
        return None
    haystack, needle = locator.bytes, probe.tobytes()
    found, start = [], 0
    while len(found) < 2 and (at := haystack.find(needle, start)) >= 0:
        if at % 2 == 0:  # on a sample boundary
            found.append(at // 2)
        start = at + 1
    return found[0] if len(found) == 1 else None


class ScriptRecognizer:
    """Hears a fixture's words in a connection's audio; see the module docstring."""

    def __init__(
        self,
        scripts: Sequence[CallScript],
        locators: Sequence[AudioLocator],
        on_select: Callable[[CallScript], None] | None = None,
    ) -> None:
        if not scripts:
            raise ValueError("script mode needs at least one loaded script")
        self._candidates = list(zip(scripts, locators))
        self.script: CallScript | None = None
        self._locator: AudioLocator | None = None
        self._marks: list[_Mark] = []
        self._mark_calls: list[int] = []
        self.conn_samples = 0  # audio analysed so far (8 kHz samples)
        self._hold = np.zeros(0, dtype=np.int16)
        self._exact = False  # learned from the alignment probe: audio arrives sample-exact
        self._pending: list[np.ndarray] = []
        self._pending_start = 0
        self._next_attempt = 0
        self._segments: list[_Segment] = []
        self._offset: int | None = None
        self._received = _Intervals()
        self._call_cursor = 0
        self._mark_i = 0
        self._active_utt: int | None = None
        self._consumed: set[tuple[int, int]] = set()
        self.alignment_log: list[dict[str, Any]] = []
        self._on_select = on_select

    # ----------------------------------------------------------------- feeding
    def feed(self, samples: np.ndarray) -> list[RecognizerEvent]:
        """Take the next received audio (int16, 8 kHz) and return what is heard in it.

        Audio is analysed in whole 20 ms blocks; a remainder waits for the next call (or for
        ``flush``), so clients that send tiny frames are checked like any other.
        """
        if not len(self._hold) and len(samples) % BLOCK == 0:
            events = self._continue_exactly(samples)
            if events is not None:
                return events
        if len(self._hold):
            samples = np.concatenate((self._hold, samples))
        whole = len(samples) // BLOCK * BLOCK
        self._hold = samples[whole:]
        return self._feed_blocks(samples[:whole]) if whole else []

    def _continue_exactly(self, samples: np.ndarray) -> list[RecognizerEvent] | None:
        """The common case, cheaply: whole blocks that continue the current segment sample for sample (what
        ``_feed_blocks`` and ``_map`` would conclude, in one comparison). None: take the general path."""
        n, offset, segments = len(samples), self._offset, self._segments
        if not n or offset is None or not self._exact or not segments:
            return None
        start = self.conn_samples
        segment = segments[-1]
        k0 = start + offset
        if segment.offset != offset or segment.conn_end != start or k0 < 0:
            return None
        assert self._locator is not None
        if samples.tobytes() != self._locator.bytes[2 * k0 : 2 * (k0 + n)]:
            return None  # a gap, a discontinuity or the call's end: the general path says which
        k1 = k0 + n
        self.conn_samples = segment.conn_end = start + n
        self._received.add(k0, k1)
        events = self._run_marks(k1, lambda k: k - offset) if self._mark_i < len(self._marks) \
            and self._marks[self._mark_i].call <= k1 else []
        self._call_cursor = max(self._call_cursor, k1)
        return events

    def _feed_blocks(self, samples: np.ndarray) -> list[RecognizerEvent]:
        start = self.conn_samples
        self.conn_samples += len(samples)
        if self._offset is None:
            return self._feed_unaligned(samples, start)
        cut = self._first_mismatch(samples, start + self._offset)
        if cut is None:
            return self._map(start, start + len(samples))
        events = self._map(start, start + cut)
        self.alignment_log.append({"conn_ms": _ms(start + cut), "event": "discontinuity"})
        self._offset = None
        self._pending, self._pending_start = [], start + cut
        self._next_attempt = 0
        return events + self._feed_unaligned(samples[cut:], start + cut)

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

    def flush(self, conn_ms: float) -> list[RecognizerEvent]:
        """Finalize/EOS: words in progress that are mostly received count as heard now."""
        events: list[RecognizerEvent] = []
        if len(self._hold):
            held, self._hold = self._hold, np.zeros(0, dtype=np.int16)
            events += self._feed_blocks(held)
        if self._offset is None and self._pending:
            events += self._feed_unaligned(np.zeros(0, dtype=np.int16), self.conn_samples, force=True)
        if self.script is None:
            return events
        if self.script.recognizer.recorded:
            return events + self._flush_recorded(conn_ms)
        for mark in self._marks[self._mark_i :]:
            if mark.kind == _UTT_START:
                break
            if mark.kind != _WORD_END or (mark.utt, mark.item) in self._consumed:
                continue
            word = self.script.utterances[mark.utt].words[mark.item]
            a, b = _samples(word.start_ms), _samples(word.end_ms)
            if a >= self._call_cursor:
                break
            if self._received.covered(a, b) >= WORD_HEARD_FRACTION * (b - a):
                self._consumed.add((mark.utt, mark.item))
                events.extend(self._heard(mark, conn_ms))
        return events

    def _flush_recorded(self, conn_ms: float) -> list[RecognizerEvent]:
        """EOS/Finalize with a recorded schedule: what the recognizer sent in answer to EOS, for utterances begun
        in the audio received; failing that, the recording's next final if its utterance had begun (the
        recognizer finalizes what it has). Results in between are skipped."""
        assert self.script is not None
        recorded = self.script.recognizer.recorded
        offset = self._offset if self._offset is not None else (self._segments[-1].offset if self._segments else 0)
        begun = [m for m in self._marks if (m.utt, -1) not in self._consumed
                 and _samples(recorded[m.utt].start_ms) < self._call_cursor]
        events: list[RecognizerEvent] = []
        for mark in (m for m in begun if recorded[m.utt].after_eos):
            events += self._recorded(mark.utt, conn_ms, lambda k: k - offset, whole=False)
        if events:
            return events
        for mark in self._marks[self._mark_i :]:
            if not recorded[mark.utt].final:
                continue
            if mark not in begun:
                return []
            events = self._recorded(mark.utt, conn_ms, lambda k: k - offset, whole=False)
            if events:
                self._mark_i = self._marks.index(mark) + 1
            return events
        return []

    # --------------------------------------------------------------- alignment
    def _feed_unaligned(self, samples: np.ndarray, start: int, force: bool = False) -> list[RecognizerEvent]:
        self._pending.append(samples)
        if self.conn_samples - self._pending_start > MAX_PENDING:  # never matched: keep the newest
            self._pending = [np.concatenate(self._pending)[-MAX_PENDING:]]
            self._pending_start = self.conn_samples - len(self._pending[0])
        pending_len = self.conn_samples - self._pending_start
        if not force and (_ms(pending_len) < MIN_PROBE_MS or pending_len < self._next_attempt):
            return []
        probe = np.concatenate(self._pending)
        silent = _leading_zeros(probe)
        if silent:  # digital silence (a muted or held line) has no place in the call: it stays unheard
            probe = probe[silent:]
            self._pending, self._pending_start = ([probe] if len(probe) else []), self.conn_samples - len(probe)
            if not force and _ms(len(probe)) < MIN_PROBE_MS:
                self._next_attempt = 0
                return []
        self._next_attempt = len(probe) + _samples(RETRY_EVERY_MS)
        probe_start = self.conn_samples - len(probe)  # audio trimmed from the buffer stays unheard
        if not len(probe):
            return []
        candidates = [(self.script, self._locator)] if self.script else self._candidates
        chosen = next(((s, loc) for s, loc in candidates if self._exact_at(probe, loc, probe_start)), None)
        offset = 0
        if chosen is None:  # the call's audio from elsewhere, sample for sample (a resend, a replay): one memmem
            found = next(((s, loc, at) for s, loc in candidates if (at := _find_exact(probe, loc)) is not None), None)
            if found is not None:
                chosen, offset = found[:2], found[2] - probe_start
        if chosen is not None:  # fast path: the stream is the call, sample for sample
            segments = [(probe_start, self.conn_samples, offset, True, 1.0)]
        else:
            best = None
            for script, locator in candidates:
                match = locator.locate(probe)
                if match and (best is None or match.score > best[2].score):
                    best = (script, locator, match)
            if best is None or not best[2].is_confident():
                if best is not None:
                    self.alignment_log.append({"conn_ms": _ms(self.conn_samples), "event": "no_match",
                                               "script": best[0].name, "score": round(best[2].score, 3)})
                return []
            chosen = best[:2]
            segments = self._consistent_segments(probe, probe_start, best[1], best[2])
        if not segments:
            return []
        self._select(*chosen)
        events: list[RecognizerEvent] = []
        for lo, hi, offset, exact, score in segments:
            self._offset, self._exact = offset, exact
            self.alignment_log.append({"conn_ms": _ms(lo), "call_ms": _ms(lo + offset), "event": "aligned",
                                       "script": chosen[0].name, "score": round(score, 3), "exact": exact})
            events += self._map(lo, hi)
        placed_to = segments[-1][1]
        if placed_to < self.conn_samples:  # the newest audio is not placed yet: keep looking with more
            self._offset = None
            self._pending, self._pending_start = [probe[placed_to - probe_start :]], placed_to
            self._next_attempt = 0
        else:
            self._pending = []
        return events

    def _consistent_segments(self, probe: np.ndarray, probe_start: int, locator: AudioLocator,
                             match: Match | None, depth: int = 0) -> list[tuple[int, int, int, bool, float]]:
        """Where the probe's audio lies, as (conn_lo, conn_hi, offset, exact, score) in connection order.

        The match places part of the probe; the longest run that really continues the call audio
        there is kept, and what comes before and after it is placed on its own (or stays unheard).
        """
        if match is None or not match.is_confident():
            return []
        offset = match.offset - (probe_start + len(probe) - match.used)
        mask, exact = self._continuity(probe, probe_start + offset, locator)
        lo, hi = _longest_run(mask)
        if hi - lo < _samples(MIN_PROBE_MS):
            return []
        segments = [(probe_start + lo, probe_start + hi, offset, exact, match.score)]
        if depth < 3 and lo >= _samples(MIN_PROBE_MS):
            before = probe[:lo]
            segments = self._consistent_segments(before, probe_start, locator, locator.locate(before), depth + 1) + segments
        if depth < 3 and len(probe) - hi >= _samples(MIN_PROBE_MS):
            after = probe[hi:]
            segments += self._consistent_segments(after, probe_start + hi, locator, locator.locate(after), depth + 1)
        return segments

    @staticmethod
    def _continuity(probe: np.ndarray, call_start: int, locator: AudioLocator) -> tuple[np.ndarray, bool]:
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
        run_lo, run_hi = _longest_run(same)
        if run_hi - run_lo >= _samples(EXACT_RUN_MS) and np.ptp(probe[run_lo:run_hi]) > 0:
            return same, True
        n = len(probe) // WINDOW
        scores = locator.window_scores(probe[: n * WINDOW], call_start)
        good = ~voiced_blocks(probe[: n * WINDOW], WINDOW) | (scores >= CONTINUITY_MIN_SCORE)
        mask = np.concatenate((np.repeat(good, WINDOW), np.full(len(probe) - n * WINDOW, True)))
        return mask & inside, False

    @staticmethod
    def _exact_at(probe: np.ndarray, locator: AudioLocator, call_start: int) -> bool:
        """Is ``probe`` sample for sample the call audio at ``call_start`` (and not silence)?"""
        if call_start < 0 or call_start + len(probe) > len(locator) or not probe.any():
            return False
        return probe.tobytes() == locator.samples[call_start : call_start + len(probe)].tobytes()

    def _select(self, script: CallScript, locator: AudioLocator) -> None:
        if self.script is script:
            return
        self.script, self._locator = script, locator
        if self._on_select:
            self._on_select(script)
        if script.recognizer.recorded:  # a recorded schedule: the recognizer's own results, where they came
            self._marks = [_Mark(_samples(r.call_ms), _RECORDED, i, 0) for i, r in enumerate(script.recognizer.recorded)]
            self._mark_calls = [m.call for m in self._marks]
            return
        marks = []
        for u, utt in enumerate(script.utterances):
            marks.append(_Mark(_samples(utt.start_ms), _UTT_START, u, 0))
            for w, word in enumerate(utt.words):
                marks.append(_Mark(_samples(word.end_ms), _WORD_END, u, w))
            for p, partial in enumerate(utt.partials):
                marks.append(_Mark(_samples(partial.at_ms), _PARTIAL, u, p))
            marks.append(_Mark(_samples(utt.end_ms), _UTT_END, u, 0))
        self._marks = sorted(marks, key=lambda m: (m.call, m.kind))
        self._mark_calls = [m.call for m in self._marks]

    # ----------------------------------------------------------------- mapping
    def _map(self, c0: int, c1: int) -> list[RecognizerEvent]:
        """Audio [c0, c1) of this connection is call audio [c0+offset, c1+offset)."""
        assert self._offset is not None
        if c1 <= c0:
            return []
        offset = self._offset
        k0, k1 = c0 + offset, c1 + offset
        events: list[RecognizerEvent] = []
        if not self._segments or self._segments[-1].offset != offset or self._segments[-1].conn_end != c0:
            events += self._jump(k0, c0)
            self._segments.append(_Segment(c0, c1, offset))
        else:
            self._segments[-1].conn_end = c1
        self._received.add(max(0, k0), k1)
        events += self._run_marks(k1, lambda k: k - offset)
        self._call_cursor = max(self._call_cursor, k1)
        return events

    def _jump(self, k0: int, c0: int) -> list[RecognizerEvent]:
        """The connection's audio continues at call position k0 (start, reconnect, or gap)."""
        if k0 < self._call_cursor:  # audio from earlier in the call, heard again
            self._mark_i = bisect.bisect_right(self._mark_calls, k0)
            self._active_utt = None
            self._call_cursor = k0
            events: list[RecognizerEvent] = []
        else:  # skipped audio: whatever happened in it happened "at" c0
            events = self._run_marks(k0, lambda k: c0, heard=False)
            self._call_cursor = k0
        assert self.script is not None
        for u, utt in enumerate(self.script.utterances):
            if _samples(utt.start_ms) < k0 < _samples(utt.end_ms) and self._active_utt != u:
                self._active_utt = u
                events.append(SpeechStart(_ms(c0)))
        return events

    def _run_marks(self, upto: int, conn_of: Callable[[int], int], heard: bool = True) -> list[RecognizerEvent]:
        assert self.script is not None
        events: list[RecognizerEvent] = []
        while self._mark_i < len(self._marks) and self._marks[self._mark_i].call <= upto:
            mark = self._marks[self._mark_i]
            self._mark_i += 1
            at_ms = _ms(conn_of(mark.call))
            if mark.kind == _RECORDED:
                answered_eos = self.script.recognizer.recorded[mark.utt].after_eos  # replayed by flush, at EOS
                if heard and not answered_eos and (mark.utt, -1) not in self._consumed:
                    events.extend(self._recorded(mark.utt, at_ms, conn_of))
                continue
            utt = self.script.utterances[mark.utt]
            if mark.kind == _UTT_START and heard:
                self._active_utt = mark.utt
                events.append(SpeechStart(at_ms))
            elif mark.kind == _WORD_END and (mark.utt, mark.item) not in self._consumed:
                word = utt.words[mark.item]
                a, b = _samples(word.start_ms), _samples(word.end_ms)
                if self._received.covered(a, b) >= WORD_HEARD_FRACTION * (b - a):
                    if self._active_utt != mark.utt:
                        self._active_utt = mark.utt
                        events.append(SpeechStart(self._conn_ms_of(a, at_ms)))
                    events.extend(self._heard(mark, at_ms))
            elif mark.kind == _PARTIAL and heard and self._active_utt == mark.utt:
                events.append(ScriptedPartialText(at_ms, utt.partials[mark.item].text))
            elif mark.kind == _UTT_END and self._active_utt == mark.utt:
                self._active_utt = None
                events.append(SpeechEnd(at_ms))
        return events

    def _recorded(self, i: int, at_ms: float, conn_of: Callable[[int], int], *, whole: bool = True) -> list[RecognizerEvent]:
        """Recorded result ``i``, if most of the audio it speaks of arrived on this connection (``whole``), or
        any of it (a final forced by EOS/Finalize)."""
        assert self.script is not None
        r = self.script.recognizer.recorded[i]
        a, b = _samples(r.start_ms), max(_samples(r.end_ms), _samples(r.start_ms) + 1)
        needed = WORD_HEARD_FRACTION * (b - a) if whole else 1
        if self._received.covered(a, b) < needed:
            return []
        self._consumed.add((i, -1))
        first = self._received.first_in(a, b)
        start_ms = min(self._conn_ms_of(first if first is not None else a, at_ms), at_ms)
        words = tuple((w.text, _ms(conn_of(_samples(w.start_ms))), _ms(conn_of(_samples(w.end_ms)))) for w in r.words)
        end_ms = min(max(start_ms, _ms(conn_of(_samples(r.end_ms)))), at_ms)
        return [RecordedResultHeard(at_ms, r.final, r.text, start_ms, end_ms, r.confidence, r.lag_ms, words)]

    def _heard(self, mark: _Mark, end_ms: float) -> list[RecognizerEvent]:
        assert self.script is not None
        utt = self.script.utterances[mark.utt]
        word = utt.words[mark.item]
        a, b = _samples(word.start_ms), _samples(word.end_ms)
        first = self._received.first_in(a, b)
        start_ms = self._conn_ms_of(first if first is not None else a, end_ms)
        return [HeardWord(word.text, min(start_ms, end_ms), end_ms, utt.confidence, emit_partial=not utt.partials)]

    def _conn_ms_of(self, call: int, fallback_ms: float) -> float:
        """Connection position at which call sample ``call`` was received (latest segment)."""
        for seg in reversed(self._segments):
            if seg.conn_start <= call - seg.offset < seg.conn_end:
                return _ms(call - seg.offset)
        return fallback_ms
