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


@dataclass(frozen=True)
class RecordedResultHeard:
    """A recorded result whose audio arrived: replayed as it was sent, positions in connection audio."""

    at_ms: float
    final: bool
    text: str
    start_ms: float
    end_ms: float
    confidence: float
    lag_ms: float
    words: tuple[tuple[str, float, float], ...] = ()  # (text, start_ms, end_ms)


RecognizerEvent = SpeechStart | HeardWord | ScriptedPartialText | SpeechEnd | RecordedResultHeard
