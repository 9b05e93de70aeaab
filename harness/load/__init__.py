"""``harness load``: many concurrent callers, step by step, to find a handler's capacity (``capacity``),
its statistics (``stats``), its report (``report``) and the Locust file (its own loop's lag: ``harness.replay.loop_lag``).

May import: ``harness.replay``, ``harness.judge``, ``harness.fakes``, ``harness.fixture``, ``harness.errors``.
"""
