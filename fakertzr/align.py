"""Where does received audio lie in a call's audio? Normalised cross-correlation with numpy.

A streaming connection may start mid-call (a reconnect) or skip audio (a handler that drops
frames); the fake maps each connection's audio onto the call's timeline with this, so that
only words whose audio actually arrived are transcribed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 8000
BLOCK = 160  # 20 ms at 8 kHz: the unit in which received audio is analysed
WINDOW = 40  # 5 ms: continuity is checked per window, so a gap is located within 5 ms
VOICED_DBFS = -45.0
MAX_PROBE = 4 * RATE
MIN_SPREAD = WINDOW  # a match must rest on at least 5 ms worth of the probe's energy (see Match.spread)
_VOICED_POWER = (32768.0 * 10 ** (VOICED_DBFS / 20)) ** 2


def voiced_blocks(samples: np.ndarray, size: int = BLOCK) -> np.ndarray:
    """Boolean per whole block of ``size`` samples: is its energy above the voiced threshold?"""
    n = len(samples) // size
    if n == 0:
        return np.zeros(0, dtype=bool)
    blocks = samples[: n * size].astype(np.float64).reshape(n, size)
    return np.mean(blocks * blocks, axis=1) > _VOICED_POWER


@dataclass(frozen=True)
class Match:
    """Best placement of a probe: offset (samples into the call), score, and the runner-up's score."""

    offset: int
    score: float
    runner_up: float
    used: int  # how many trailing samples of the probe were searched for
    spread: float = float("inf")  # how many samples the probe's energy rests on: (sum x^2)^2 / sum x^4

    def is_confident(self, minimum: float = 0.8, margin: float = 0.05) -> bool:
        """A high score clear of the runner-up, resting on more than a few samples: a probe whose energy is one
        loud sample (a stream that kept one sample of a word, then only a pause) scores high against any word's
        edge, and placed there it has its pause taken for the call's (unvoiced audio is not checked)."""
        return self.score >= minimum and self.score - self.runner_up >= margin and self.spread >= MIN_SPREAD


class AudioLocator:
    """Searches one call's audio for probes; the FFT of the call is computed once."""

    def __init__(self, audio: np.ndarray) -> None:
        self.samples = np.ascontiguousarray(audio, dtype=np.int16)  # for exact comparisons
        self.bytes = self.samples.tobytes()  # for exact searches
        self.audio = audio.astype(np.float64)
        squares = np.concatenate(([0.0], np.cumsum(self.audio * self.audio)))
        self._cum_sq = squares
        self._nfft = 1 << int(np.ceil(np.log2(len(self.audio) + MAX_PROBE + 1)))
        self._spectrum = np.fft.rfft(self.audio, self._nfft)

    def __len__(self) -> int:
        return len(self.audio)

    def locate(self, probe: np.ndarray) -> Match | None:
        """Best offset of the last (up to 4 s of) ``probe`` in the call audio, or None if silent."""
        m = min(len(probe), MAX_PROBE, len(self.audio))
        probe = probe[len(probe) - m :].astype(np.float64)
        if m == 0:
            return None
        squares = probe * probe
        probe_energy = float(squares.sum())
        if probe_energy <= 0:
            return None
        spread = probe_energy * probe_energy / float(squares @ squares)
        corr = np.fft.irfft(self._spectrum * np.conj(np.fft.rfft(probe, self._nfft)), self._nfft)
        lags = len(self.audio) - m + 1
        window = self._cum_sq[m : m + lags] - self._cum_sq[:lags]
        ncc = corr[:lags] / np.sqrt(np.maximum(window, 1e-9) * probe_energy)
        best = int(np.argmax(ncc))
        guard = RATE // 25  # 40 ms either side belongs to the same peak
        masked = ncc.copy()
        masked[max(0, best - guard) : best + guard + 1] = -1.0
        runner_up = float(masked.max()) if lags > 1 else -1.0
        return Match(best, float(ncc[best]), runner_up, m, spread)

    def window_scores(self, received: np.ndarray, call_start: int, size: int = WINDOW) -> np.ndarray:
        """Per window of ``received``, its correlation with the call audio at ``call_start``.

        Windows that lie outside the call audio score 0.
        """
        n = len(received) // size
        scores = np.zeros(n)
        available = max(0, min(n, (len(self.audio) - call_start) // size)) if call_start >= 0 else 0
        if available == 0:
            return scores
        r = received[: available * size].astype(np.float64).reshape(available, size)
        a = self.audio[call_start : call_start + available * size].reshape(available, size)
        dots = np.einsum("ij,ij->i", r, a)
        norms = np.sqrt(np.einsum("ij,ij->i", r, r) * np.einsum("ij,ij->i", a, a))
        scores[:available] = np.where(norms > 0, dots / np.maximum(norms, 1e-9), 0.0)
        return scores
