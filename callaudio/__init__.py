"""Telephone audio shared by fakertzr and aicall: G.711 codecs, WAV files, resampling (numpy, no audioop)."""


class AudioFormatError(ValueError):
    """Audio that is not in a format this package reads, with a message naming the source."""
