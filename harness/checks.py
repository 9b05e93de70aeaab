"""The harness's checks: what every Twilio handler must do, judged from the fakes' journals, the
caller side and the store - never from the handler's own claims. Each can fail, and a failure
names the moment on the timeline that shows why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from .timeline import CallTimeline, Event

SETTLE_S = 8.0  # after hang-up, every upstream connection must have ended within this
STOP_GRACE_S = 1.0  # messages in flight when the caller hung up


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str = ""
    at: float | None = None  # wall time of the event that shows the failure


@dataclass
class CheckContext:
    timeline: CallTimeline
    expect: dict
    stored_caller_lines: list[str] | None  # None when the store is not reachable
    errors_logged: list[str] = field(default_factory=list)
    call_refused_allowed: bool = False
    audio_plays: bool = True  # False at 'fast' pacing: bot audio takes no time, nothing can be talked over

    @property
    def hangup(self) -> float:
        stops = self.timeline.of("stop", "closed")
        return min((e.wall for e in stops), default=float("inf"))

    def finals_before_hangup(self) -> list[Event]:
        return [e for e in self.timeline.of("final") if e.wall < self.hangup]


Check = Callable[[CheckContext], CheckResult]


def stops_sending_after_hangup(ctx: CheckContext) -> CheckResult:
    """The report's failure 4: after the caller hangs up, the handler stops sending.

    Messages already on the wire when ``stop`` was sent still arrive, so only what keeps coming
    more than ``STOP_GRACE_S`` later counts; a send on a closed socket shows up in ``no_errors``.
    """
    stop = next(iter(ctx.timeline.of("stop")), None)
    if stop is None:
        return CheckResult("stops_sending_after_hangup", True)
    late = [e for e in ctx.timeline.events if e.wall > stop.wall + STOP_GRACE_S and e.kind in ("media", "mark", "clear")]
    if late:
        return CheckResult("stops_sending_after_hangup", False, f"{len(late)} message(s) more than {STOP_GRACE_S:g} s "
                           f"after the caller hung up, first: {late[0].kind}", late[0].wall)
    return CheckResult("stops_sending_after_hangup", True)


def finals_to_llm_once(ctx: CheckContext) -> CheckResult:
    """Each final goes to the LLM at most once, and at least once if the handler asked the LLM later."""
    requests = ctx.timeline.of("llm_request")
    for final in ctx.finals_before_hangup():
        text = final.detail["text"]
        later = [r for r in requests if r.wall >= final.wall]
        containing = [r for r in later if text in r.detail["user"]]
        if len(containing) > 1:
            return CheckResult("finals_to_llm_once", False, f"final {text!r} was given to the LLM {len(containing)} times", containing[1].wall)
        if later and not containing:
            return CheckResult("finals_to_llm_once", False, f"final {text!r} never reached the LLM", final.wall)
    return CheckResult("finals_to_llm_once", True)


def finals_persisted(ctx: CheckContext) -> CheckResult:
    if ctx.stored_caller_lines is None:
        return CheckResult("finals_persisted", True, "store not reachable: skipped")
    stored = Counter(ctx.stored_caller_lines)
    for final in ctx.finals_before_hangup():
        if stored[final.detail["text"]] == 0:
            return CheckResult("finals_persisted", False, f"final {final.detail['text']!r} is not in the store", final.wall)
        stored[final.detail["text"]] -= 1
    return CheckResult("finals_persisted", True)


def recognition_continues(ctx: CheckContext) -> CheckResult:
    """After the recognizer ends a stream mid-call, the handler opens another (the report's failure 2)."""
    for end in ctx.timeline.of("rtzr_end"):
        server_side = end.detail.get("how") in ("server_closed", "dropped", "stalled", "idle_timeout")
        if not server_side or end.detail.get("reason") == "EOS" or end.wall >= ctx.hangup:
            continue
        later_speech = [e for e in ctx.timeline.of("speech_end") if e.wall > end.wall and e.wall < ctx.hangup]
        reopened = [e for e in ctx.timeline.of("partial", "final") if e.wall > end.wall and e.detail["connection"] != end.detail["connection"]]
        if later_speech and not reopened:
            return CheckResult("recognition_continues", False,
                               f"RTZR connection {end.detail['connection']} ended ({end.detail.get('how')} {end.detail.get('code')}) "
                               f"and the caller was not recognised again", end.wall)
    return CheckResult("recognition_continues", True)


def upstream_closed_after_hangup(ctx: CheckContext) -> CheckResult:
    if ctx.hangup == float("inf"):
        return CheckResult("upstream_closed_after_hangup", True)
    for end in ctx.timeline.of("rtzr_end", "rtzr_closed"):
        if end.detail.get("open"):
            return CheckResult("upstream_closed_after_hangup", False, f"RTZR connection {end.detail['connection']} "
                               f"was still open {end.wall - ctx.hangup:.1f} s after the call", end.wall)
        if end.wall - ctx.hangup > SETTLE_S:
            return CheckResult("upstream_closed_after_hangup", False, f"RTZR connection {end.detail['connection']} "
                               f"outlived the call by {end.wall - ctx.hangup:.1f} s", end.wall)
    open_requests = [e for e in ctx.timeline.of("llm_request", "tts_request") if e.detail.get("open")]
    if open_requests:
        return CheckResult("upstream_closed_after_hangup", False, f"{open_requests[0].kind} still open after the call", open_requests[0].wall)
    return CheckResult("upstream_closed_after_hangup", True)


def replies_in_order(ctx: CheckContext) -> CheckResult:
    """Sentences go to TTS in the order of the replies they come from (no later reply spoken first)."""
    replies = [e.detail.get("reply", "") for e in ctx.timeline.of("llm_request")]
    last = -1
    for tts in ctx.timeline.of("tts_request"):
        sources = [i for i, reply in enumerate(replies) if tts.detail["text"] and tts.detail["text"] in reply]
        if not sources:
            continue  # not from a reply (an apology, a fallback)
        source = min((i for i in sources if i >= last), default=min(sources))
        if source < last:
            return CheckResult("replies_in_order", False, f"{tts.detail['text']!r} (reply {source + 1}) was spoken "
                               f"after reply {last + 1} had started", tts.wall)
        last = source
    return CheckResult("replies_in_order", True)


def no_errors(ctx: CheckContext) -> CheckResult:
    """No error-level log line, unless the fixture expects that event (``expect.errors_allowed``)."""
    allowed = set(ctx.expect.get("errors_allowed", ())) | ({"rtzr_auth_failed"} if ctx.call_refused_allowed else set())
    unexpected = [e for e in ctx.errors_logged if not any(f"event={name}" in e for name in allowed)]
    if unexpected:
        return CheckResult("no_errors", False, f"{len(unexpected)} error(s) logged, first: {unexpected[0][:200]}")
    return CheckResult("no_errors", True)


def expectations(ctx: CheckContext) -> CheckResult:
    expect = ctx.expect
    finals = [e.detail["text"] for e in ctx.timeline.of("final")]
    if "finals" in expect and finals[: len(expect["finals"])] != expect["finals"]:
        return CheckResult("expectations", False, f"finals {finals} != expected {expect['finals']}")
    requests = ctx.timeline.of("llm_request")
    if "llm_turns" in expect and len(requests) != expect["llm_turns"]:
        return CheckResult("expectations", False, f"{len(requests)} LLM request(s), expected {expect['llm_turns']}")
    if "answered_turns" in expect:
        speech = ctx.timeline.of("speech_end")
        answered = sum(1 for i, s in enumerate(speech) if any(
            s.wall < m.wall < (speech[i + 1].wall if i + 1 < len(speech) else float("inf")) for m in ctx.timeline.of("media")))
        if answered != expect["answered_turns"]:
            return CheckResult("expectations", False, f"{answered} turn(s) answered, expected {expect['answered_turns']}")
    if expect.get("barge_in") and ctx.audio_plays and not ctx.timeline.of("clear"):
        return CheckResult("expectations", False, "the caller spoke over the bot but playback was never cleared")
    if expect.get("call_refused"):
        closed = next(iter(ctx.timeline.of("closed")), None)
        if closed is None or not closed.detail.get("by_handler"):
            return CheckResult("expectations", False, "the handler was expected to end the call itself")
    return CheckResult("expectations", True)


CHECKS: tuple[Check, ...] = (stops_sending_after_hangup, finals_to_llm_once, finals_persisted, recognition_continues,
                             upstream_closed_after_hangup, replies_in_order, no_errors, expectations)


def run_checks(ctx: CheckContext) -> list[CheckResult]:
    return [check(ctx) for check in CHECKS]
