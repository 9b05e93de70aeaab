"""harness: replay recorded calls against any Twilio Media Streams handler; check, measure, report.

Layers, each importing only those below it (``[tool.importlinter]`` in pyproject.toml holds CI to it):

- ``cli``, ``pytest_plugin``: the ways in (``harness ...``, the pytest fixtures).
- ``reports`` | ``load`` | ``fuzz`` | ``authoring``: what is done with replayed calls, side by side and
  independent of each other.
- ``replay``: the target interface (aicall in-process, a command, a URL) and the runner that plays one
  fixture against a target and judges it.
- ``judge``: sans-I/O: the timeline of a played call, the checks, the latency figures, the log reader.
- ``fakes``: what the handler talks to: Twilio's side of the call, the fake LLM and TTS (fakertzr is RTZR).
- ``fixture``, ``files``, ``terminal``: the call fixture model, report files written whole or not at all, and
  handler text made safe for a terminal.
- ``errors``: the harness's errors.

``harness.strategies`` is the public name of ``harness.fuzz.strategies``.
"""
