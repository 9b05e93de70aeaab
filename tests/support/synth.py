"""Synthetic calls for the property tests: the package's (``harness.fuzz.synthetic``), and the bytes a client streams."""

from __future__ import annotations

import numpy as np

from callaudio.g711 import pcm16_to_ulaw
from harness.fuzz.synthetic import RATE, SynthUtterance, synth_call

__all__ = ["RATE", "SynthUtterance", "encode", "synth_call"]


def encode(samples: np.ndarray, encoding: str) -> bytes:
    """The bytes a client streams for these samples in the given RTZR encoding."""
    if encoding == "MULAW":
        return pcm16_to_ulaw(samples)
    return samples.astype("<i2").tobytes()
