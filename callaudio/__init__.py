"""Telephone audio shared by fakertzr and aicall: G.711 codecs, WAV files, resampling (numpy, no audioop)."""


class AudioFormatError(ValueError):
    """Audio that is not in a format this package reads, with a message naming the source."""


class AudioTooLong(AudioFormatError):
    """Audio longer than the reader was allowed to decode: judged from the header (or a bounded decode)."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds
