"""Making fixtures: from a script spoken by espeak-ng or any audio and its transcript (``make_fixture``), and
from real calls (``recorder``: ``harness record``).

May import: ``harness.fakes``, ``harness.fixture``, ``harness.errors``, fakertzr, callaudio (and aicall, to
record aicall itself).
"""
