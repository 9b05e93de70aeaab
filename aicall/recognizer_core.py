"""The decisions of one call's RTZR stream, with no I/O: audio, results and the time in; what to send, what to
deliver, when to give up on a stream and how long to wait before the next one out.

``rtzr_client.RecognizerStream`` is the aiohttp shell around it: it moves bytes, sleeps and wakes on the
same tick as ever, and asks this core at each point what to do. The core keeps:

- **the resend buffer**: the call's audio since the last final (up to 60 s), sent again in full on every
  new connection, trimmed when a final says its audio is transcribed;
- **stall detection**: ``STALL_MIN_SPEECH_MS`` of speech sent and nothing back for ``STALL_WAIT_S``
  since; a result re-stamps the speech it did not reach;
- **the "caller still talking" hold**: a final is held, with the results after it, until the caller's
  audio past its end says whether the caller talks on (RTZR cut the utterance) or not;
- **backoff and finishing**: after a stream ends, reconnect at once (a clean close) or after a growing
  backoff; after the call ends, wait for the last final, reconnecting for it for ``EOS_WAIT_S`` at most.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from callaudio.g711 import ULAW_TO_PCM16

MAX_BUFFER_MS = 60_000  # audio kept for resending since the last final
KEEPALIVE_AFTER_S = 5.0  # send 20 ms of silence when no audio has gone out for this long
EOS_WAIT_S = 5.0  # how long the last final may take after EOS
STALL_MIN_SPEECH_MS = 100  # caller speech (a short "네" is ~200 ms) sent since the recognizer last said anything ...
STALL_WAIT_S = 2.5  # ... and nothing back this long after the first of it: stalled (RTZR answers speech within ~1 s)
SPEECH_POWER = (32768 * 10 ** (-40 / 20)) ** 2  # -40 dBFS: a frame loud enough to be speech
ULAW_POWER = ULAW_TO_PCM16.astype(np.float64) ** 2  # each mu-law byte's power: the speech check is one lookup
BACKOFF_S = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
TALKING_GUARD_MS = 100.0  # after a final's end, the tail of its last word (word ends are approximate)
TALKING_PROBE_MS = 200.0  # caller audio looked at past that: voiced there, the caller talks on


def backoff_s(attempt: int) -> float:
    """The wait before the ``attempt``-th retry in a row (0: at once), growing to 2 s."""
    return BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]


def is_speech(frame: bytes, encoding: str) -> bool:
    """Mean power above -40 dBFS (the check runs on every frame, so mu-law is one table lookup)."""
    if encoding == "LINEAR16":
        samples = np.frombuffer(frame[: len(frame) // 2 * 2], dtype="<i2").astype(np.float64)
        return len(samples) > 0 and float(samples @ samples) > SPEECH_POWER * len(samples)
    return len(frame) > 0 and float(ULAW_POWER.take(np.frombuffer(frame, dtype=np.uint8)).sum()) > SPEECH_POWER * len(frame)


@dataclass(frozen=True)
class Timings:
    """The core's waits, in seconds (the shell passes its module's values, so tests can shorten them)."""

    stall_wait_s: float = STALL_WAIT_S
    keepalive_after_s: float = KEEPALIVE_AFTER_S
    eos_wait_s: float = EOS_WAIT_S


@dataclass(frozen=True)
class Delivery:
    """A result to hand on. ``talks_on`` (finals only): the caller's audio right after the final's end is
    speech, so the final is a cut (``max_utter_duration``), not the end of a turn."""

    result: dict[str, Any]
    talks_on: bool | None = None

    @property
    def final(self) -> bool:
        return bool(self.result.get("final"))


# What the sender does once every buffered frame is out (``RecognizerCore.when_sent``).
@dataclass(frozen=True)
class AbandonStalled:
    """Close this stream: it stalled. The next one resends the audio since the last final."""


@dataclass(frozen=True)
class SendEos:
    """The call is over and its audio sent: send EOS and wait for the last final."""


@dataclass(frozen=True)
class SendKeepalive:
    """Nothing went out for ``keepalive_after_s``: send this 20 ms of silence."""

    frame: bytes


@dataclass(frozen=True)
class Wait:
    """Sleep until new audio, ``finish``, or the tick."""


SenderStep = AbandonStalled | SendEos | SendKeepalive | Wait


class RecognizerCore:
    """One call's recognizer stream as decisions; see the module docstring. Times are ``time.monotonic()``
    seconds, given by the caller of each method."""

    def __init__(self, encoding: str = "LINEAR16", sample_rate: int = 8000, timings: Timings = Timings()) -> None:
        self.encoding = encoding
        self.bytes_per_ms = sample_rate * (2 if encoding == "LINEAR16" else 1) / 1000.0
        self.timings = timings
        self.keepalive_frame = (b"\x00\x00" if encoding == "LINEAR16" else b"\xff") * (sample_rate // 50)
        # the resend buffer
        self.frames: deque[bytes] = deque()  # audio since the last final, oldest first
        self.base = 0  # index of frames[0] among all frames of the call
        self.buffered_ms = 0.0
        self.lost_ms = 0.0  # audio dropped because the resend buffer overflowed
        # the call
        self.finishing = False
        self.finish_at = 0.0
        self.stalls = 0
        self._attempt = 0  # streams in a row that did not close cleanly
        self._held: list[dict[str, Any]] = []  # a final waiting for the audio after it, and the results after it
        # the current stream
        self.position = 0  # the next frame to send
        self.conn_ms = 0.0  # audio sent on this stream
        self.last_send = 0.0
        self._sent: deque[tuple[int, float]] = deque()  # (frame index, connection ms at its end)
        # speech not yet answered: (connection ms at its end, ms, since when it waits: sent, or the last result)
        self._speech_sent: deque[tuple[float, float, float]] = deque()
        self.unanswered_speech_ms = 0.0
        self.stalled_now = False  # this stream was abandoned as stalled
        self._eos_deadline = 0.0

    # ------------------------------------------------------------- the call
    def audio(self, frame: bytes) -> list[Delivery]:
        """A frame of the caller's audio; results held for the audio after a final may now be due."""
        if self.finishing:
            return []
        self.frames.append(frame)
        self.buffered_ms += len(frame) / self.bytes_per_ms
        while self.buffered_ms > MAX_BUFFER_MS and len(self.frames) > 1:
            dropped = self.frames.popleft()
            self.base += 1
            self.buffered_ms -= len(dropped) / self.bytes_per_ms
            self.lost_ms += len(dropped) / self.bytes_per_ms
        if self._held:
            return self._release_held(self._talking_after())
        return []

    def finish(self, now: float) -> list[Delivery]:
        """The call is over: send what is left, then EOS, and wait for the last final."""
        self.finishing = True
        self.finish_at = now
        if self._held:
            return self._release_held(False)  # no more audio will come to tell
        return []

    def gave_up_finishing(self, now: float) -> bool:
        """After the call ended, reconnecting (to get the last words recognised) has ``eos_wait_s``."""
        return self.finishing and now - self.finish_at >= self.timings.eos_wait_s

    # ----------------------------------------------------------- a stream
    def stream_opened(self) -> None:
        """A new stream: nothing on it is sent or awaited yet."""
        self._sent = deque()
        self.unanswered_speech_ms = 0.0
        self._speech_sent.clear()
        self.stalled_now = False

    def sender_started(self, now: float) -> None:
        """The stream's sender starts: with everything since the last final."""
        self.position = self.base
        self.conn_ms = 0.0
        self.last_send = now

    def stream_ended(self, clean: bool) -> float | None:
        """A stream ended (``clean``: closed 1000 or 1001). None: the call's recognition is over. Else the
        wait before the next stream."""
        if self.finishing and not self.stalled_now:
            return None
        delay = backoff_s(self._attempt) if not clean else 0.0
        self._attempt = 0 if clean else self._attempt + 1
        return delay

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next frame to send on this stream (its index in the call, and the bytes), or None: all sent."""
        if self.position >= self.base + len(self.frames):
            return None
        self.position = max(self.position, self.base)
        return self.position, self.frames[self.position - self.base]

    def frame_sent(self, index: int, frame: bytes, now: float) -> None:
        """Frame ``index`` (from ``next_frame``) went out."""
        frame_ms = len(frame) / self.bytes_per_ms
        self.conn_ms += frame_ms
        self._sent.append((index, self.conn_ms))
        self.position = index + 1
        self.last_send = now
        if is_speech(frame, self.encoding):
            self.unanswered_speech_ms += frame_ms
            self._speech_sent.append((self.conn_ms, frame_ms, now))

    def when_sent(self, now: float) -> SenderStep:
        """Every buffered frame is out: what next."""
        if self.stalled(now):
            return AbandonStalled()
        if self.finishing:
            return SendEos()
        if now - self.last_send >= self.timings.keepalive_after_s:
            return SendKeepalive(self.keepalive_frame)
        return Wait()

    def keepalive_sent(self, now: float) -> None:
        self.conn_ms += 20.0
        self.last_send = now

    def eos_sent(self, now: float) -> None:
        self._eos_deadline = now + self.timings.eos_wait_s

    def awaiting_last_final(self, now: float) -> bool:
        """After EOS: still time for the last final (after that the stream is closed)."""
        return now < self._eos_deadline

    def stalled(self, now: float) -> bool:
        """``STALL_MIN_SPEECH_MS`` of speech went out and nothing came back for ``stall_wait_s`` since. Speech
        waiting that long is counted, not all of it: a wisp left unanswered (the last speech frame straddling
        the end of the words a final reached) and speech that follows seconds later are no stall the moment
        that speech goes out (harness fuzz found aicall reconnecting then, as the next final came)."""
        cutoff = now - self.timings.stall_wait_s
        waited = 0.0
        for _, ms, since in self._speech_sent:
            if since > cutoff:
                break
            waited += ms
            if waited >= STALL_MIN_SPEECH_MS:
                return True
        return False

    def abandon(self) -> None:
        """The sender gives up on this stream as stalled."""
        self.stalls += 1
        self.stalled_now = True

    # ------------------------------------------------------------- results
    def receive(self, message: str | bytes, now: float) -> list[Delivery] | None:
        """A message from RTZR: the results to hand on now. None: it says nothing of what was heard (the
        speech sent stays unanswered: a stream that stalls after it, or sends nothing else, is still found
        stalled; harness fuzz found one that was not)."""
        try:
            result = json.loads(message)
            alternatives = result["alternatives"]
        except (ValueError, KeyError, TypeError):
            return None
        self._answered(result if isinstance(result, dict) else {}, now)
        deliveries: list[Delivery] = []
        if result.get("final") and self._held:
            deliveries += self._release_held(True)  # another final: the caller did talk on after the held one
        if result.get("final"):
            end_ms = float(result.get("start_at", 0)) + float(result.get("duration", 0))
            while self._sent and self._sent[0][1] <= end_ms:  # this audio is transcribed: no need to resend it
                index, _ = self._sent.popleft()
                while self.base <= index and self.frames:
                    dropped = self.frames.popleft()
                    self.base += 1
                    self.buffered_ms -= len(dropped) / self.bytes_per_ms
        if not alternatives:
            return deliveries
        if self._held or result.get("final"):
            self._held.append(result)
            deliveries += self._release_held(self._talking_after() if not self.finishing else False)
        else:
            deliveries.append(Delivery(result))
        return deliveries

    def _answered(self, result: dict[str, Any], now: float) -> None:
        """The recognizer is alive, and has heard the audio up to where this result reaches (a final: its
        end; a partial: at least its utterance's start). Speech sent past that is still unanswered, from
        now: audio sent faster than real time must not hide a stall behind one early partial."""
        try:
            reach = float(result.get("start_at", 0)) + (float(result.get("duration", 0)) if result.get("final") else 0.0)
        except (TypeError, ValueError):
            reach = float("inf")
        while self._speech_sent and self._speech_sent[0][0] <= reach:
            self._speech_sent.popleft()
        self._speech_sent = deque((end, ms, now) for end, ms, _ in self._speech_sent)
        self.unanswered_speech_ms = sum(ms for _, ms, _ in self._speech_sent)

    def _talking_after(self) -> bool | None:
        """Is the audio after the last final's end speech? None until it is here (guard and probe)."""
        seen = 0.0
        for frame in self.frames:  # the frames after the last final's end (the first may straddle it)
            seen += len(frame) / self.bytes_per_ms
            if seen <= TALKING_GUARD_MS:
                continue
            if is_speech(frame, self.encoding):
                return True
            if seen >= TALKING_GUARD_MS + TALKING_PROBE_MS:
                return False
        return None

    def _release_held(self, talks_on: bool | None) -> list[Delivery]:
        if talks_on is None:
            return []
        held, self._held = self._held, []
        return [Delivery(result, talks_on if result.get("final") else None) for result in held]
