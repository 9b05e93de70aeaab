"""Turns heard words and speech boundaries into RTZR result messages (sans-I/O).

Endpointing follows the real service: a final is due ``epd_time`` of *audio* after speech ends,
or at once on Finalize/EOS; speech that resumes before then continues the same utterance. Speech
that goes on for ``max_utter_duration`` without a pause is cut there: a final with the words heard
so far, while the caller is still talking, and the next words open a new utterance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .events import HeardWord, RecognizerEvent, RecordedResultHeard, ScriptedPartialText, SpeechEnd, SpeechStart

PARTIAL_CONFIDENCE_FACTOR = 0.95


@dataclass(frozen=True)
class Result:
    """One result message, the audio position (connection ms) it became due at, and its delay."""

    payload: dict[str, Any]
    audio_ms: float
    delay_ms: float

    @property
    def final(self) -> bool:
        return bool(self.payload["final"])


class ResultBuilder:
    """Accumulates the open utterance of one connection and emits partials and finals."""

    def __init__(
        self,
        epd_ms: float,
        *,
        partials: bool = True,
        final_delay_ms: float = 0.0,
        partial_delay_ms: float = 0.0,
        max_utter_ms: float | None = None,
    ) -> None:
        self.epd_ms = epd_ms
        self.max_utter_ms = max_utter_ms  # None: never cut
        self.partials = partials
        self.final_delay_ms = final_delay_ms
        self.partial_delay_ms = partial_delay_ms
        self.seq = 0
        self.words: list[HeardWord] = []
        self.final_due_ms: float | None = None
        self.speech_end_ms: float | None = None  # where speech last stopped, until it resumes

    def advance(self, audio_ms: float) -> list[Result]:
        """Emit the final if its endpoint, or the cut of an utterance that is too long, lies at or before
        ``audio_ms``. Words are applied at their end, so the words held here all ended by the cut."""
        cut = self.cut_ms
        if cut is not None and cut <= audio_ms and (self.final_due_ms is None or cut < self.final_due_ms):
            return self._final(cut)
        if self.final_due_ms is not None and self.final_due_ms <= audio_ms:
            return self._final(self.final_due_ms)
        return []

    @property
    def cut_ms(self) -> float | None:
        """Where the open utterance reaches ``max_utter_ms`` while the caller is still talking."""
        if self.max_utter_ms is None or not self.words or self.speech_end_ms is not None:
            return None
        return self.words[0].start_ms + self.max_utter_ms

    def apply(self, event: RecognizerEvent) -> list[Result]:
        """Feed one event; the caller has already advanced to the event's position."""
        if isinstance(event, SpeechStart):
            self.final_due_ms = self.speech_end_ms = None  # resumed within epd: same utterance
            return []
        if isinstance(event, HeardWord):
            self.words.append(event)
            if self.speech_end_ms is not None:  # a word recognised after speech stopped
                self.final_due_ms = self.speech_end_ms + self.epd_ms
            if event.emit_partial and self.partials:
                text = " ".join(w.text for w in self.words)
                return [self._partial(text, event.end_ms)]
            return []
        if isinstance(event, ScriptedPartialText):
            return [self._partial(event.text, event.at_ms)] if self.partials else []
        if isinstance(event, SpeechEnd):
            self.speech_end_ms = event.at_ms
            if self.words:
                self.final_due_ms = event.at_ms + self.epd_ms
            return []
        if isinstance(event, RecordedResultHeard):
            return [self._recorded(event)]
        raise TypeError(f"unknown recognizer event {event!r}")

    def finalize(self, audio_ms: float) -> list[Result]:
        """Finalize/EOS: the open utterance becomes final now; nothing if it is empty."""
        return self._final(audio_ms) if self.words else []

    def _partial(self, text: str, audio_ms: float) -> Result:
        start = self.words[0].start_ms if self.words else audio_ms
        confidence = (self.words[-1].confidence if self.words else 0.9) * PARTIAL_CONFIDENCE_FACTOR
        payload = {
            "seq": self.seq,
            "start_at": round(start),
            "duration": 0,
            "final": False,
            "alternatives": [{"text": text, "confidence": round(confidence, 3)}],
        }
        return Result(payload, audio_ms, self.partial_delay_ms)

    def _recorded(self, heard: RecordedResultHeard) -> Result:
        """The recognizer's own result, as it sent it, numbered on this connection, after its recorded lag."""
        start = round(heard.start_ms)
        best: dict[str, Any] = {"text": heard.text, "confidence": round(heard.confidence, 3)}
        if heard.final and heard.words:
            best["words"] = [{"text": "|" + text, "start_at": max(0, round(a) - start), "duration": max(0, round(b - a))}
                             for text, a, b in heard.words]
        payload = {"seq": self.seq, "start_at": start, "duration": max(0, round(heard.end_ms) - start) if heard.final else 0,
                   "final": heard.final, "alternatives": [best]}
        if heard.final:
            self.seq += 1
        return Result(payload, heard.at_ms, heard.lag_ms)

    def _final(self, audio_ms: float) -> list[Result]:
        words, self.words, self.final_due_ms, self.speech_end_ms = self.words, [], None, None
        start = round(words[0].start_ms)
        payload = {
            "seq": self.seq,
            "start_at": start,
            "duration": max(0, round(words[-1].end_ms) - start),
            "final": True,
            "alternatives": [
                {
                    "text": " ".join(w.text for w in words),
                    "confidence": round(min(w.confidence for w in words), 3),
                    "words": [
                        {
                            "text": "|" + w.text,
                            "start_at": max(0, round(w.start_ms) - start),
                            "duration": max(0, round(w.end_ms - w.start_ms)),
                        }
                        for w in words
                    ],
                }
            ],
        }
        self.seq += 1
        return [Result(payload, audio_ms, self.final_delay_ms)]
