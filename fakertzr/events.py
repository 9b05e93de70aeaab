"""What a recognizer hears, positioned in the connection's audio (ms from its first byte)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeechStart:
    at_ms: float


@dataclass(frozen=True)
class HeardWord:
    text: str
    start_ms: float
    end_ms: float
    confidence: float = 0.93
    emit_partial: bool = True

    @property
    def at_ms(self) -> float:
        return self.end_ms


@dataclass(frozen=True)
class ScriptedPartialText:
    at_ms: float
    text: str


@dataclass(frozen=True)
class SpeechEnd:
    at_ms: float


RecognizerEvent = SpeechStart | HeardWord | ScriptedPartialText | SpeechEnd
