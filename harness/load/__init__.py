"""``harness load``: many concurrent callers, step by step, to find a handler's capacity (``capacity``),
its statistics (``stats``), event-loop lag (``loop_lag``), its report (``report``) and the Locust file.

May import: ``harness.replay``, ``harness.judge``, ``harness.fakes``, ``harness.fixture``, ``harness.errors``.
"""
