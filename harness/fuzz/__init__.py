"""``harness fuzz``: hypothesis strategies for whole calls (``strategies``, public as ``harness.strategies``), each
drawn as a ``Scenario`` of frozen dataclasses (``scenario``), over synthetic caller audio (``synthetic``), and the
search that replays them and shrinks a failure to a fixture (``search``).

May import: ``harness.replay``, ``harness.fakes``, ``harness.fixture``, ``harness.errors``.
"""
