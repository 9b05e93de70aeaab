"""The ``harness`` command: ``main`` (run, load, fakes, make-fixture, record, locustfile), ``fuzz``, and
what they share (``common``).

May import: every part of the harness; nothing imports it but the entry point.
"""
from harness.cli.main import main

__all__ = ["main"]
