"""Playing fixtures against a handler: ``targets`` (aicall in-process, a command the harness starts, a
running URL, all one ``Target`` interface) and ``runner`` (one fixture played, then judged).

May import: ``harness.judge``, ``harness.fakes``, ``harness.fixture``, ``harness.errors``, fakertzr, aicall.
"""
