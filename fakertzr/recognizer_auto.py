"""Auto mode, for offline development with any audio: an energy VAD finds utterances.

Each utterance takes the next text from a given list (numbered placeholders once the list runs
out); its words are revealed one per ``word_ms`` of speech, the rest when speech ends.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .align import BLOCK, RATE
from .events import HeardWord, RecognizerEvent, SpeechEnd, SpeechStart

ONSET_BLOCKS = 2  # 40 ms of energy above threshold starts speech


class AutoRecognizer:
    """VAD-driven recognizer; texts are consumed in order, one per utterance."""

    def __init__(
        self,
        texts: Sequence[str],
        *,
        epd_ms: float,
        threshold_dbfs: float = -40.0,
        word_ms: float = 350.0,
        confidence: float = 0.9,
    ) -> None:
        self.texts = list(texts)
        self.epd_ms = epd_ms
        self.word_ms = word_ms
        self.confidence = confidence
        self._power = (32768.0 * 10 ** (threshold_dbfs / 20)) ** 2
        self._carry = np.zeros(0, dtype=np.int16)
        self._block_index = 0  # blocks seen so far
        self._voiced_run = 0
        self._speaking = False
        self._speech_end_ms: float | None = None
        self._utterance_open = False
        self._words: list[str] = []
        self._next_word = 0
        self._word_cursor_ms = 0.0
        self._utterance_count = 0
        self.conn_samples = 0

    def _next_text(self) -> list[str]:
        n = self._utterance_count
        self._utterance_count += 1
        text = self.texts[n] if n < len(self.texts) else f"발화 {n + 1}"
        return text.split() or [f"발화 {n + 1}"]

    def feed(self, samples: np.ndarray) -> list[RecognizerEvent]:
        data = np.concatenate((self._carry, samples)) if len(self._carry) else samples
        n = len(data) // BLOCK
        self._carry = data[n * BLOCK :].copy()
        if n == 0:
            return []
        blocks = data[: n * BLOCK].astype(np.float64).reshape(n, BLOCK)
        loud = np.mean(blocks * blocks, axis=1) > self._power
        events: list[RecognizerEvent] = []
        for is_loud in loud:
            events.extend(self._step(bool(is_loud)))
            self._block_index += 1
        self.conn_samples = self._block_index * BLOCK  # position = audio analysed
        return events

    def _step(self, loud: bool) -> list[RecognizerEvent]:
        now_ms = (self._block_index + 1) * BLOCK * 1000.0 / RATE  # end of this block
        events: list[RecognizerEvent] = []
        if self._utterance_open and not self._speaking and self._speech_end_ms is not None:
            if now_ms - self._speech_end_ms >= self.epd_ms:  # the builder's final is due now
                events.extend(self._rest_of_text(self._speech_end_ms))
                self._utterance_open = False
        if loud:
            self._voiced_run += 1
            if not self._speaking and self._voiced_run >= ONSET_BLOCKS:
                onset_ms = now_ms - ONSET_BLOCKS * BLOCK * 1000.0 / RATE
                self._speaking = True
                self._speech_end_ms = None
                events.append(SpeechStart(onset_ms))
                if not self._utterance_open:
                    self._utterance_open = True
                    self._words, self._next_word = self._next_text(), 0
                    self._word_cursor_ms = onset_ms
            if self._speaking:  # reveal a word per word_ms of speech, the last one only at the end
                while (
                    self._next_word < len(self._words) - 1
                    and now_ms - self._word_cursor_ms >= self.word_ms
                ):
                    events.append(self._word(self._word_cursor_ms + self.word_ms))
        else:
            self._voiced_run = 0
            if self._speaking:
                self._speaking = False
                self._speech_end_ms = now_ms - BLOCK * 1000.0 / RATE
                events.append(SpeechEnd(self._speech_end_ms))
        return events

    def _rest_of_text(self, end_ms: float) -> list[RecognizerEvent]:
        """The words not yet revealed, spread up to ``end_ms``."""
        remaining = len(self._words) - self._next_word
        if remaining <= 0:
            return []
        step = max(1.0, (end_ms - self._word_cursor_ms) / remaining)
        return [self._word(min(max(end_ms, self._word_cursor_ms), self._word_cursor_ms + step))
                for _ in range(remaining)]

    def _word(self, end_ms: float) -> HeardWord:
        word = HeardWord(self._words[self._next_word], self._word_cursor_ms, end_ms, self.confidence)
        self._next_word += 1
        self._word_cursor_ms = end_ms
        return word

    def flush(self, conn_ms: float) -> list[RecognizerEvent]:
        """Finalize/EOS: the rest of the current text is heard now; the next speech is new."""
        events = self._rest_of_text(max(conn_ms, self._word_cursor_ms)) if self._utterance_open else []
        self._utterance_open = False
        return events
