"""G.711 mu-law and A-law <-> 16-bit PCM with numpy lookup tables (no ``audioop``)."""

from __future__ import annotations

import numpy as np

_BIAS = 0x84


def _build_ulaw_decode() -> np.ndarray:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def _build_ulaw_encode() -> np.ndarray:
    # Sun's reference encoder (the one audioop and most telephony code use): 14-bit magnitude
    # after an arithmetic shift, so negative boundaries round the same way everywhere.
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + (_BIAS >> 2)
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, magnitude)
    value = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return ((value ^ mask) & 0xFF).astype(np.uint8)


ULAW_TO_PCM16 = _build_ulaw_decode()
ALAW_TO_PCM16 = _build_alaw_decode()
PCM16_TO_ULAW = _build_ulaw_encode()


def ulaw_to_pcm16(data: bytes | np.ndarray) -> np.ndarray:
    """Decode mu-law bytes to int16 samples."""
    return ULAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


_ULAW_TO_LE16 = ULAW_TO_PCM16.astype("<i2")


def ulaw_to_linear16(data: bytes) -> bytes:
    """Decode mu-law bytes straight to LINEAR16 bytes (little-endian), as a recognizer takes them."""
    return _ULAW_TO_LE16.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def alaw_to_pcm16(data: bytes | np.ndarray) -> np.ndarray:
    """Decode A-law bytes to int16 samples."""
    return ALAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def pcm16_to_ulaw(samples: np.ndarray) -> bytes:
    """Encode int16 samples to mu-law bytes."""
    index = samples.astype(np.int32) + 32768
    return PCM16_TO_ULAW[index].tobytes()
