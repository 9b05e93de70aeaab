"""Which of a script's results are due when: script mode's second half (``script_aligner`` is the first).

The schedule is told where each stretch of the connection's audio lies in the call (a ``Placement``) and
answers with what the recognizer hears in it: an utterance starting, a word whose audio ended (heard if at
least half of its audio arrived on this connection), a scripted partial, an utterance ending, or, for a
recorded schedule, the recognizer's own result. All positions it reports are in the connection's audio.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, ClassVar

from .events import HeardWord, RecognizerEvent, RecordedResultHeard, ScriptedPartialText, SpeechEnd, SpeechStart
from .fixture import CallScript
from .script_aligner import Placement, ms_of, samples_at

WORD_HEARD_FRACTION = 0.5


# What falls due at a call position (8 kHz samples into the call audio); at one position, in ``rank`` order.
@dataclass(frozen=True, slots=True)
class UtteranceStarts:
    call: int
    utt: int
    rank: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class WordEnds:
    call: int
    utt: int
    word: int
    rank: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PartialDue:
    call: int
    utt: int
    partial: int
    rank: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class UtteranceEnds:
    call: int
    utt: int
    rank: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class RecordedDue:
    """A recorded schedule's result ``result`` (an index into ``recognizer.recorded``), sent when the
    recognizer had heard the call up to ``call``."""

    call: int
    result: int
    rank: ClassVar[int] = 4


Mark = UtteranceStarts | WordEnds | PartialDue | UtteranceEnds | RecordedDue


def marks_of(script: CallScript) -> list[Mark]:
    """Everything in ``script`` that falls due, in call order."""
    if script.recognizer.recorded:  # a recorded schedule: the recognizer's own results, where they came
        return [RecordedDue(samples_at(r.call_ms), i) for i, r in enumerate(script.recognizer.recorded)]
    marks: list[Mark] = []
    for u, utt in enumerate(script.utterances):
        marks.append(UtteranceStarts(samples_at(utt.start_ms), u))
        marks += [WordEnds(samples_at(word.end_ms), u, w) for w, word in enumerate(utt.words)]
        marks += [PartialDue(samples_at(partial.at_ms), u, p) for p, partial in enumerate(utt.partials)]
        marks.append(UtteranceEnds(samples_at(utt.end_ms), u))
    return sorted(marks, key=lambda m: (m.call, m.rank))


class ReceivedAudio:
    """The call audio that arrived on this connection, as merged [start, end) spans; appends are almost
    always at the end."""

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
        """How much of call audio [a, b) arrived."""
        return sum(max(0, min(b, e) - max(a, s)) for s, e in self.spans if s < b and e > a)

    def first_in(self, a: int, b: int) -> int | None:
        """The first call sample of [a, b) that arrived."""
        for s, e in self.spans:
            if s < b and e > a:
                return max(a, s)
        return None


@dataclass
class _Segment:
    """Connection audio [conn_start, conn_end) was call audio shifted by ``offset``: placements merged."""

    conn_start: int
    conn_end: int
    offset: int  # call = conn + offset


ConnOf = Callable[[int], int]  # a call position as the connection position it is reported at


class ScriptSchedule:
    """Says which of ``script``'s results are due as placements of the connection's audio arrive."""

    def __init__(self, script: CallScript) -> None:
        self.script = script
        self._marks = marks_of(script)
        self._mark_calls = [m.call for m in self._marks]
        self._next = 0  # the first mark not yet passed
        self._call_cursor = 0  # how far into the call the connection's audio has reached
        self._active_utt: int | None = None
        self._heard_words: set[tuple[int, int]] = set()  # (utterance, word)
        self._replayed: set[int] = set()  # recorded results sent
        self._received = ReceivedAudio()
        self._segments: list[_Segment] = []

    def hear(self, placement: Placement) -> list[RecognizerEvent]:
        """Connection audio [conn_start, conn_end) is call audio at ``placement.offset``: what is due in it."""
        c0, c1, offset = placement
        if c1 <= c0:
            return []
        k0, k1 = c0 + offset, c1 + offset
        events: list[RecognizerEvent] = []
        last = self._segments[-1] if self._segments else None
        if last is None or last.offset != offset or last.conn_end != c0:
            events += self._jump(k0, c0)
            self._segments.append(_Segment(c0, c1, offset))
        else:
            last.conn_end = c1
        self._received.add(max(0, k0), k1)
        if self._next < len(self._marks) and self._marks[self._next].call <= k1:
            events += self._run_marks(k1, lambda k: k - offset)
        self._call_cursor = max(self._call_cursor, k1)
        return events

    def flush(self, conn_ms: float) -> list[RecognizerEvent]:
        """Finalize/EOS: words in progress that are mostly received count as heard now."""
        if self.script.recognizer.recorded:
            return self._flush_recorded(conn_ms)
        events: list[RecognizerEvent] = []
        for mark in self._marks[self._next :]:
            if isinstance(mark, UtteranceStarts):
                break
            if not isinstance(mark, WordEnds) or (mark.utt, mark.word) in self._heard_words:
                continue
            word = self.script.utterances[mark.utt].words[mark.word]
            a, b = samples_at(word.start_ms), samples_at(word.end_ms)
            if a >= self._call_cursor:
                break
            if self._received.covered(a, b) >= WORD_HEARD_FRACTION * (b - a):
                self._heard_words.add((mark.utt, mark.word))
                events.append(self._heard(mark, conn_ms))
        return events

    def _flush_recorded(self, conn_ms: float) -> list[RecognizerEvent]:
        """EOS/Finalize with a recorded schedule: what the recognizer sent in answer to EOS, for utterances begun
        in the audio received; failing that, the recording's next final if its utterance had begun (the
        recognizer finalizes what it has). Results in between are skipped."""
        recorded = self.script.recognizer.recorded
        offset = self._segments[-1].offset if self._segments else 0
        conn_of: ConnOf = lambda k: k - offset  # noqa: E731
        begun = {i for i, m in enumerate(self._marks) if isinstance(m, RecordedDue) and m.result not in self._replayed
                 and samples_at(recorded[m.result].start_ms) < self._call_cursor}
        events: list[RecognizerEvent] = []
        for i in sorted(begun):
            mark = self._marks[i]
            assert isinstance(mark, RecordedDue)
            if recorded[mark.result].after_eos:
                events += self._recorded(mark.result, conn_ms, conn_of, whole=False)
        if events:
            return events
        for i in range(self._next, len(self._marks)):
            mark = self._marks[i]
            assert isinstance(mark, RecordedDue)
            if not recorded[mark.result].final:
                continue
            if i not in begun:
                return []
            events = self._recorded(mark.result, conn_ms, conn_of, whole=False)
            if events:
                self._next = i + 1
            return events
        return []

    def _jump(self, k0: int, c0: int) -> list[RecognizerEvent]:
        """The connection's audio continues at call position k0 (start, reconnect, or gap)."""
        if k0 < self._call_cursor:  # audio from earlier in the call, heard again
            self._next = bisect.bisect_right(self._mark_calls, k0)
            self._active_utt = None
            self._call_cursor = k0
            events: list[RecognizerEvent] = []
        else:  # skipped audio: whatever happened in it happened "at" c0
            events = self._run_marks(k0, lambda k: c0, heard=False)
            self._call_cursor = k0
        for u, utt in enumerate(self.script.utterances):
            if samples_at(utt.start_ms) < k0 < samples_at(utt.end_ms) and self._active_utt != u:
                self._active_utt = u
                events.append(SpeechStart(ms_of(c0)))
        return events

    def _run_marks(self, upto: int, conn_of: ConnOf, heard: bool = True) -> list[RecognizerEvent]:
        """The marks up to call position ``upto``, reported at ``conn_of`` their call position; ``heard``:
        their audio arrived (False: it was skipped, and only words received before count)."""
        events: list[RecognizerEvent] = []
        marks = self._marks
        while self._next < len(marks) and marks[self._next].call <= upto:
            mark = marks[self._next]
            self._next += 1
            at_ms = ms_of(conn_of(mark.call))
            if isinstance(mark, RecordedDue):
                answered_eos = self.script.recognizer.recorded[mark.result].after_eos  # replayed by flush, at EOS
                if heard and not answered_eos and mark.result not in self._replayed:
                    events.extend(self._recorded(mark.result, at_ms, conn_of))
            elif isinstance(mark, UtteranceStarts):
                if heard:
                    self._active_utt = mark.utt
                    events.append(SpeechStart(at_ms))
            elif isinstance(mark, WordEnds):
                if (mark.utt, mark.word) in self._heard_words:
                    continue
                word = self.script.utterances[mark.utt].words[mark.word]
                a, b = samples_at(word.start_ms), samples_at(word.end_ms)
                if self._received.covered(a, b) >= WORD_HEARD_FRACTION * (b - a):
                    if self._active_utt != mark.utt:
                        self._active_utt = mark.utt
                        events.append(SpeechStart(self._conn_ms_of(a, at_ms)))
                    events.append(self._heard(mark, at_ms))
            elif isinstance(mark, PartialDue):
                if heard and self._active_utt == mark.utt:
                    events.append(ScriptedPartialText(at_ms, self.script.utterances[mark.utt].partials[mark.partial].text))
            elif self._active_utt == mark.utt:  # UtteranceEnds
                self._active_utt = None
                events.append(SpeechEnd(at_ms))
        return events

    def _recorded(self, i: int, at_ms: float, conn_of: ConnOf, *, whole: bool = True) -> list[RecognizerEvent]:
        """Recorded result ``i``, if most of the audio it speaks of arrived on this connection (``whole``), or
        any of it (a final forced by EOS/Finalize)."""
        r = self.script.recognizer.recorded[i]
        a, b = samples_at(r.start_ms), max(samples_at(r.end_ms), samples_at(r.start_ms) + 1)
        needed = WORD_HEARD_FRACTION * (b - a) if whole else 1
        if self._received.covered(a, b) < needed:
            return []
        self._replayed.add(i)
        first = self._received.first_in(a, b)
        start_ms = min(self._conn_ms_of(first if first is not None else a, at_ms), at_ms)
        words = tuple((w.text, ms_of(conn_of(samples_at(w.start_ms))), ms_of(conn_of(samples_at(w.end_ms))))
                      for w in r.words)
        end_ms = min(max(start_ms, ms_of(conn_of(samples_at(r.end_ms)))), at_ms)
        return [RecordedResultHeard(at_ms, r.final, r.text, start_ms, end_ms, r.confidence, r.lag_ms, words)]

    def _heard(self, mark: WordEnds, end_ms: float) -> HeardWord:
        utt = self.script.utterances[mark.utt]
        word = utt.words[mark.word]
        a = samples_at(word.start_ms)
        first = self._received.first_in(a, samples_at(word.end_ms))
        start_ms = self._conn_ms_of(first if first is not None else a, end_ms)
        return HeardWord(word.text, min(start_ms, end_ms), end_ms, utt.confidence, emit_partial=not utt.partials)

    def _conn_ms_of(self, call: int, fallback_ms: float) -> float:
        """Connection position at which call sample ``call`` was received (latest segment)."""
        for seg in reversed(self._segments):
            if seg.conn_start <= call - seg.offset < seg.conn_end:
                return ms_of(call - seg.offset)
        return fallback_ms
