"""One streaming connection's protocol logic, with no sockets and no sleeping.

Feed it the binary and text frames a client sends; it returns the actions its I/O shell must
perform, in order. The audio position is its only clock: results and audio-point faults are
placed in the connection's audio, never in wall time.
"""

from __future__ import annotations

import json
from typing import Protocol, Sequence

import numpy as np

from .actions import TERMINAL, Action, Close, SendResult
from .align import RATE
from .events import RecognizerEvent
from .faults import Fault, TriggeredFault
from callaudio.g711 import alaw_to_pcm16, ulaw_to_pcm16
from .params import StreamParams
from .results import Result, ResultBuilder
from callaudio.wavfile import riff_data_offset

MAX_HEADER_PROBE = 4096
LE_INT16 = np.dtype("<i2")


class Recognizer(Protocol):
    conn_samples: int

    def feed(self, samples: np.ndarray) -> list[RecognizerEvent]: ...

    def flush(self, conn_ms: float) -> list[RecognizerEvent]: ...


class To8k:
    """Streaming linear-interpolation resampler to 8 kHz (alignment and VAD only need 8 kHz)."""

    def __init__(self, rate: int) -> None:
        self.ratio = rate / RATE
        self._next = 0.0  # next output position, in input samples relative to the next chunk
        self._last = 0.0

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        if self.ratio == 1.0 or len(chunk) == 0:
            return chunk
        x = np.concatenate(([self._last], chunk.astype(np.float64)))
        count = max(0, int(np.ceil((len(chunk) - self._next) / self.ratio)))
        positions = self._next + np.arange(count) * self.ratio
        out = np.interp(positions + 1.0, np.arange(len(x)), x)
        self._next = self._next + count * self.ratio - len(chunk)
        self._last = float(chunk[-1])
        return np.round(out).astype(np.int16)


def is_eos(text: str) -> bool:
    """The client's text frame that ends the stream (RTZR's ``EOS``)."""
    return text.strip() == "EOS"


class StreamSession:
    """See the module docstring. ``ended`` turns true at a close, drop or stall."""

    def __init__(
        self,
        params: StreamParams,
        recognizer: Recognizer,
        builder: ResultBuilder,
        faults: Sequence[Fault] = (),
        *,
        connection_index: int = 0,
    ) -> None:
        self.params = params
        self.recognizer = recognizer
        self.builder = builder
        self.connection_index = connection_index
        self.faults = faults  # shared with the backend: faults added at run time apply live
        self.audio_bytes = 0
        self.finals_sent = 0
        self.ended = False
        self.fired: list[dict] = []
        self._head: bytes | None = b""  # None once any WAV header has been dealt with
        self._odd = b""
        self._resample = To8k(params.sample_rate)

    @property
    def audio_ms(self) -> float:
        """How much audio (ms) this connection has received."""
        return self.recognizer.conn_samples * 1000.0 / RATE

    # ------------------------------------------------------------------ input
    def receive_audio(self, data: bytes) -> list[Action]:
        self.audio_bytes += len(data)
        if self.ended:
            return []
        samples = self._decode(data)
        if not self.faults:  # the common case: no audio point can fall inside this frame
            return self._process(self.recognizer.feed(samples)) if len(samples) else []
        actions: list[Action] = []
        while not self.ended:
            actions += self._fire_audio_points()
            if self.ended or len(samples) == 0:
                break
            upto = self._samples_before_next_point(len(samples))
            actions += self._process(self.recognizer.feed(samples[:upto]))
            samples = samples[upto:]
        return actions

    def receive_text(self, text: str) -> list[Action]:
        """``EOS`` ends the stream; ``{"type": "Finalize"}`` finalizes now; the rest is ignored."""
        if self.ended:
            return []
        if is_eos(text):
            actions = self._finalize()
            if not self.ended:
                actions.append(self._terminal_close())
            return actions
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes: ignored
            return []
        if isinstance(message, dict) and message.get("type") == "Finalize":
            return self._finalize()
        return []

    # --------------------------------------------------------------- internals
    def _terminal_close(self) -> Action:
        self.ended = True
        return Close(1000, "EOS")

    def _finalize(self) -> list[Action]:
        events = self.recognizer.flush(self.audio_ms)
        actions = self._process(events)
        if not self.ended:
            actions += self._emit(self.builder.finalize(self.audio_ms))
        return actions

    def _decode(self, data: bytes) -> np.ndarray:
        if self._head is not None:
            data = self._head + data
            offset = riff_data_offset(data)
            if offset is None and len(data) < MAX_HEADER_PROBE:
                self._head = data
                return np.zeros(0, dtype=np.int16)
            self._head = None
            data = data[offset or 0 :]
        if self.params.encoding == "LINEAR16":
            if self._odd or len(data) & 1:  # a sample split between frames
                data = self._odd + data
                whole = len(data) // 2 * 2
                self._odd, data = data[whole:], data[:whole]
            pcm = np.frombuffer(data, dtype=LE_INT16).astype(np.int16, copy=False)  # a view on little-endian hosts
        elif self.params.encoding == "MULAW":
            pcm = ulaw_to_pcm16(data)
        else:
            pcm = alaw_to_pcm16(data)
        return pcm if self._resample.ratio == 1.0 else self._resample(pcm)

    def _triggered(self) -> list[TriggeredFault]:
        return [f for f in self.faults if isinstance(f, TriggeredFault) and f.applies_to(self.connection_index)]

    def _samples_before_next_point(self, available: int) -> int:
        points = [f.at_ms for f in self._triggered() if f.at_ms is not None and f.at_ms > self.audio_ms]
        if not points:
            return available
        needed = int(np.ceil((min(points) - self.audio_ms) * RATE / 1000.0))
        return max(1, min(available, needed))

    def _fire_audio_points(self) -> list[Action]:
        actions: list[Action] = []
        for fault in self._triggered():
            if fault.due_at_audio(self.audio_ms) and not self.ended:
                actions += self._fire(fault)
        return actions

    def _fire(self, fault: TriggeredFault) -> list[Action]:
        fault.fire()
        self.fired.append({"audio_ms": round(self.audio_ms, 1), **fault.describe()})
        effects = fault.effect(self.audio_ms)
        if any(isinstance(a, TERMINAL) for a in effects):
            self.ended = True
        return effects

    def _process(self, events: list[RecognizerEvent]) -> list[Action]:
        if not events:  # most frames: nothing heard, at most a final coming due
            due = self.builder.advance(self.audio_ms)
            return self._emit(due) if due else []
        results: list[Result] = []
        for event in events:
            results += self.builder.advance(event.at_ms)
            results += self.builder.apply(event)
        results += self.builder.advance(self.audio_ms)
        return self._emit(results)

    def _emit(self, results: list[Result]) -> list[Action]:
        actions: list[Action] = []
        for result in results:
            if self.ended:
                break
            action = SendResult(result)
            for fault in self.faults:
                if fault.applies_to(self.connection_index):
                    action = fault.transform(action)
            actions.append(action)
            if result.final:
                self.finals_sent += 1
                for fault in self._triggered():
                    if fault.due_after_final(self.finals_sent) and not self.ended:
                        actions += self._fire(fault)
        return actions

