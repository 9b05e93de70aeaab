"""Playing fixtures against a handler: ``targets`` (aicall in-process, a command the harness starts, a
running URL, all one ``Target`` interface), ``runner`` (one fixture played, then judged), ``together`` (calls at
once into one handler) and ``loop_lag`` (how late the harness's own event loop runs: what its timings carry).

May import: ``harness.judge``, ``harness.fakes``, ``harness.fixture``, ``harness.errors``, fakertzr, aicall.
"""
