"""The HTML report draws what RTZR refused on its RTZR lane: a token the token endpoint would not give
(POST /v1/authenticate answered an error: the failure-1 fixtures, token-endpoint-unavailable) and a stream whose
handshake was refused, each with its status; how each stream ended, with its close code."""

from __future__ import annotations

from harness.fixture import bundled_calls, load_call
from harness.judge.events import CallStart, RtzrAuthFailed, RtzrEnd, RtzrRefused, Stop
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import passed
from harness.replay.runner import FixtureRun
from harness.reports.html import timeline_svg


def test_refusals_and_ends_are_drawn_with_their_status() -> None:
    events = [CallStart(0.0), RtzrAuthFailed(0.2, status=503), RtzrRefused(0.5, connection=0, status=401, why="expired"),
              RtzrEnd(3.0, connection=1, how="stalled"), RtzrEnd(4.0, connection=2, how="server_closed", code=1000,
                                                                reason="EOS"), Stop(5.0)]
    run = FixtureRun(load_call(bundled_calls() / "token-endpoint-unavailable"), [passed("expectations")], [],
                     CallTimeline(events), 5.0)
    svg = timeline_svg(run)
    assert "token refused: /v1/authenticate answered HTTP 503" in svg
    assert "connection 0: refused (HTTP 401) expired" in svg
    assert "connection 1: stalled<" in svg and "connection 2: server_closed 1000<" in svg
