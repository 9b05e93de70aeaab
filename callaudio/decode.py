"""Audio files of any common format as samples: libsndfile (in soundfile's wheel) for WAV, FLAC, Ogg and MP3,
pydub with ffmpeg for the rest (m4a, mp4, amr, ...), when they are installed."""

from __future__ import annotations

import io
import os
import shutil
import sys
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import numpy as np
import soxr

from . import AudioFormatError, AudioTooLong

RATE_8K = 8000


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a C library's own printing (Python's sys.stderr is untouched).
    Process-wide: not for a server whose other threads may be writing logs."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


RATES = (1000, 384_000)  # sample rates a file may declare: a header's 1 Hz made a 97 KB WAV decode to 3 GiB


def read_channels(source: Path | bytes, name: str, *, quiet: bool = True,
                  max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """(samples on the int16 scale, shape (n, channels), float64; the rate). ``AudioFormatError`` names ``name``;
    ``AudioTooLong`` when the audio is over ``max_seconds``, judged before decoding from the header (libsndfile's
    formats) or by decoding no more than that (ffmpeg's), so a small file cannot decode to hours."""
    import soundfile  # noqa: PLC0415 - libsndfile loads on first use

    def opened():
        return io.BytesIO(source) if isinstance(source, bytes) else str(source)

    try:
        with quiet_stderr() if quiet else nullcontext():  # libsndfile's decoders print notes about files they cannot parse
            info = soundfile.info(opened())
            _check(name, info.samplerate, info.frames / info.samplerate if info.samplerate else 0.0, max_seconds)
            frames = -1 if max_seconds is None else int(max_seconds * info.samplerate) + 1
            data, rate = soundfile.read(opened(), frames=frames, dtype="float64", always_2d=True)
        _check(name, rate, len(data) / rate, max_seconds)  # a header that said less than the file holds
        return data * 32767, int(rate)
    except soundfile.LibsndfileError:
        pass  # not a format libsndfile knows: try pydub and ffmpeg
    except OSError as exc:
        raise AudioFormatError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if not (shutil.which("ffmpeg") or shutil.which("avconv")):
        raise AudioFormatError(f"{name}: not WAV, FLAC, Ogg or MP3; reading other formats needs ffmpeg "
                               "(apt-get install ffmpeg) and pydub (pip install 'rtzr-call-testkit[audio]')")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            from pydub import AudioSegment  # noqa: PLC0415 - only compressed formats need pydub and ffmpeg
    except ImportError:
        raise AudioFormatError(f"{name}: reading this format needs pydub (pip install 'rtzr-call-testkit[audio]')") from None
    try:  # ffmpeg decodes at most a second past the limit (its -t): enough to tell the audio is over it
        segment = AudioSegment.from_file(opened() if isinstance(source, bytes) else source,
                                         **({} if max_seconds is None else {"duration": max_seconds + 1}))
    except Exception as exc:  # noqa: BLE001 - pydub raises many kinds; say which file
        first = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        raise AudioFormatError(f"{name}: cannot read audio: {first[0]}") from None
    _check(name, segment.frame_rate, len(segment) / 1000, max_seconds)
    channels = np.array(segment.get_array_of_samples(), dtype=np.float64).reshape(-1, segment.channels)
    return channels / (2 ** (8 * segment.sample_width - 1)) * 32767, segment.frame_rate


def _check(name: str, rate: int, seconds: float, max_seconds: float | None) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioTooLong(f"{name}: {seconds:.0f} s of audio, over the {max_seconds:g} s allowed", seconds)
    if not RATES[0] <= rate <= RATES[1]:
        raise AudioFormatError(f"{name}: a sample rate of {rate} Hz (readable: {RATES[0]}-{RATES[1]} Hz)")


def to_8k(mono: np.ndarray, rate: int) -> np.ndarray:
    """int16 samples at 8 kHz (soxr's resampler)."""
    pcm = soxr.resample(mono.astype(np.float32), rate, RATE_8K) if rate != RATE_8K else mono
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16)
