"""A small RIFF/WAVE reader and mu-law writer.

The standard ``wave`` module reads only PCM; fixtures are mu-law (format 7), and the fake must
also skip a WAV header that some RTZR clients send at the start of a LINEAR16 stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from . import AudioFormatError

_FORMATS = {1: "LINEAR16", 6: "ALAW", 7: "MULAW"}
_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class WavAudio:
    """Decoded WAV container: encoding name, rate, channels and the raw sample bytes."""

    encoding: str
    sample_rate: int
    channels: int
    bits_per_sample: int
    data: bytes


def riff_data_offset(prefix: bytes) -> int | None:
    """Where the sample data starts in a stream that may begin with a WAV header.

    Returns 0 when ``prefix`` is not a RIFF/WAVE header, the offset of the ``data`` chunk's
    payload when it is, and None when more bytes are needed to tell.
    """
    if len(prefix) < 12:
        return None if b"RIFF"[: len(prefix)] == prefix[:4] else 0
    if prefix[:4] != b"RIFF" or prefix[8:12] != b"WAVE":
        return 0
    pos = 12
    while True:
        if len(prefix) < pos + 8:
            return None
        chunk_id, size = prefix[pos : pos + 4], struct.unpack_from("<I", prefix, pos + 4)[0]
        if chunk_id == b"data":
            return pos + 8
        pos += 8 + size + (size & 1)


def parse_wav(blob: bytes, *, source: str = "WAV data") -> WavAudio:
    """Parse a whole WAV file held in memory."""
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AudioFormatError(f"{source}: not a RIFF/WAVE file")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        size = struct.unpack_from("<I", blob, pos + 4)[0]
        body = blob[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise AudioFormatError(f"{source}: WAV file has no 'fmt ' or no 'data' chunk")
    if len(fmt) < 16:
        raise AudioFormatError(f"{source}: WAV 'fmt ' chunk is {len(fmt)} bytes; it needs at least 16")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    encoding = _FORMATS.get(tag)
    if encoding is None or (encoding == "LINEAR16" and bits != 16):
        raise AudioFormatError(
            f"{source}: unsupported WAV format tag {tag} with {bits} bits "
            "(need 16-bit PCM, mu-law or A-law)"
        )
    return WavAudio(encoding, rate, channels, bits, data)


def read_wav(path: Path) -> WavAudio:
    """Read a WAV file (16-bit PCM, mu-law or A-law)."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise AudioFormatError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_wav(blob, source=str(path))


def mulaw_wav_bytes(ulaw: bytes, sample_rate: int = 8000) -> bytes:
    """A mono mu-law WAV file (format 7, with the 'fact' chunk non-PCM files need)."""
    fmt = struct.pack("<HHIIHHH", 7, 1, sample_rate, sample_rate, 1, 8, 0)
    fact = struct.pack("<I", len(ulaw))
    pad = b"\0" if len(ulaw) & 1 else b""
    body = (
        b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"fact" + struct.pack("<I", 4) + fact
        + b"data" + struct.pack("<I", len(ulaw)) + ulaw + pad
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body
