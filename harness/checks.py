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


NO_LOG = "no handler log to read: give one with --handler-log FILE"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: passed, failed, or skipped (``ok`` and ``skipped``, with why in ``message``)."""

    name: str
    ok: bool
    message: str = ""
    at: float | None = None  # wall time of the event that shows the failure
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.ok else "failed"


def skipped(name: str, why: str) -> CheckResult:
    """A check that could not be judged for this handler: not a pass, and never shown as one."""
    return CheckResult(name, True, why, skipped=True)


@dataclass
class CheckContext:
    timeline: CallTimeline
    expect: dict
    stored_caller_lines: list[str] | None  # None when the store is not reachable
    errors_logged: list[str] | None = field(default_factory=list)  # None when the handler's log is not readable
    call_refused_allowed: bool = False
    audio_plays: bool = True  # False at 'fast' pacing: bot audio takes no time, nothing can be talked over
    no_log_why: str = NO_LOG
    started_without: tuple[str, ...] = ()  # the handler was started without these variables (failure 1)

    @property
    def hangup(self) -> float:
        stops = self.timeline.of("stop", "closed")
        return min((e.wall for e in stops), default=float("inf"))

    def finals_before_hangup(self) -> list[Event]:
        return [e for e in self.timeline.of("final") if e.wall < self.hangup]


Check = Callable[[CheckContext], CheckResult]


def llm_deliveries(timeline: CallTimeline) -> list[Event]:
    """The LLM requests that count as giving the LLM a turn: a request that failed (status >= 400) and
    was retried with the same words (as the openai SDK does on 429/5xx) is one delivery, not two."""
    requests = timeline.of("llm_request")
    return [r for i, r in enumerate(requests)
            if not (r.detail.get("status", 200) >= 400 and i + 1 < len(requests)
                    and requests[i + 1].detail.get("user") == r.detail.get("user"))]


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
    requests = llm_deliveries(ctx.timeline)
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
        return skipped("finals_persisted", "the handler's store is not readable by the harness (only aicall's is)")
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
        # where the stream ended in the call's audio, when known: the same at any pace (at fast pace all the
        # audio may be sent, and the line hung up, before a stall shows in time); else when, in time
        position = end.detail.get("call_ms")
        hung_up_ms = next((e.detail.get("audio_ms") for e in ctx.timeline.of("stop")), None)
        after_the_call = (position >= hung_up_ms if position is not None and hung_up_ms is not None
                          else end.wall >= ctx.hangup)
        if not server_side or end.detail.get("reason") == "EOS" or after_the_call:
            continue
        later_speech = [e for e in ctx.timeline.of("speech_end") if e.wall < ctx.hangup and (
            e.detail.get("audio_ms", 0) > position if position is not None else e.wall > end.wall)]
        reopened = [e for e in ctx.timeline.of("partial", "final") if e.wall > end.wall and e.detail["connection"] != end.detail["connection"]]
        if later_speech and not reopened:
            return CheckResult("recognition_continues", False,
                               f"RTZR connection {end.detail['connection']} ended "
                               f"({' '.join(str(v) for v in (end.detail.get('how'), end.detail.get('code')) if v is not None)}) "
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
    """No error-level log block, unless it holds words the fixture allows (``expect.errors_allowed``,
    e.g. aicall's event name ``llm_failed`` when the fixture makes the LLM fail)."""
    if ctx.errors_logged is None:
        return skipped("no_errors", ctx.no_log_why)
    allowed = set(ctx.expect.get("errors_allowed", ())) | ({"rtzr_auth_failed"} if ctx.call_refused_allowed else set())
    unexpected = [e for e in ctx.errors_logged if not any(name in e for name in allowed)]  # aicall's event=NAME, or any words
    if unexpected:
        more = f" ({len(unexpected) - 1} more in the report)" if len(unexpected) > 1 else ""
        return CheckResult("no_errors", False, f"{len(unexpected)} error(s) logged{more}, first:\n{unexpected[0]}")
    return CheckResult("no_errors", True)


def expectations(ctx: CheckContext) -> CheckResult:
    expect = ctx.expect
    final_events = ctx.timeline.of("final")
    finals = [e.detail["text"] for e in final_events]
    end = ctx.hangup if ctx.hangup != float("inf") else (ctx.timeline.events[-1].wall if ctx.timeline.events else None)
    if "finals" in expect and finals[: len(expect["finals"])] != expect["finals"]:
        wanted = expect["finals"]
        k = next((i for i, (a, b) in enumerate(zip(finals, wanted)) if a != b), min(len(finals), len(wanted)))
        got = repr(finals[k]) if k < len(finals) else "nothing"
        at = final_events[k].wall if k < len(final_events) else end
        return CheckResult("expectations", False, f"final {k + 1} should be {wanted[k]!r}, got {got} "
                           f"({len(finals)} final(s) in all, {len(wanted)} expected)", at)
    requests = llm_deliveries(ctx.timeline)
    if expect.get("no_reply_while_talking"):
        talking = list(zip(ctx.timeline.of("speech_start"), ctx.timeline.of("speech_end")))
        early = next(((r, s) for r in requests for s, e in talking if s.wall < r.wall < e.wall), None)
        if early is not None:
            request, start = early
            return CheckResult("expectations", False, f"the LLM was asked while the caller was still talking "
                               f"(utterance {start.detail['utterance'] + 1}, from a final cut mid-speech?)", request.wall)
    if "llm_turns" in expect and len(requests) != expect["llm_turns"]:
        at = requests[expect["llm_turns"]].wall if len(requests) > expect["llm_turns"] else end
        return CheckResult("expectations", False, f"{len(requests)} LLM turn(s) (a retried request counts once), "
                           f"expected {expect['llm_turns']}", at)
    if "answered_turns" in expect:
        speech = ctx.timeline.of("speech_end")
        answered = sum(1 for i, s in enumerate(speech) if any(
            s.wall < m.wall < (speech[i + 1].wall if i + 1 < len(speech) else float("inf")) for m in ctx.timeline.of("media")))
        if answered != expect["answered_turns"]:
            silent = next((s for i, s in enumerate(speech) if not any(
                s.wall < m.wall < (speech[i + 1].wall if i + 1 < len(speech) else float("inf")) for m in ctx.timeline.of("media"))), None)
            return CheckResult("expectations", False, f"{answered} turn(s) answered, expected {expect['answered_turns']}",
                               silent.wall if silent else end)
    if expect.get("call_refused"):
        closed = next(iter(ctx.timeline.of("closed")), None)
        if closed is None or not closed.detail.get("by_handler"):
            return CheckResult("expectations", False, "the handler was expected to end the call itself", end)
    return CheckResult("expectations", True)


def barge_in(ctx: CheckContext) -> CheckResult:
    """A fixture whose caller talks over the bot (``expect.barge_in``): the handler clears playback.
    At ``fast`` pace bot audio takes no time, so nothing can be talked over: skipped, never a pass."""
    if not ctx.audio_plays:
        return skipped("barge_in", "at fast pace bot audio takes no time to play: nothing can be talked over")
    if not ctx.timeline.of("clear"):
        speech = ctx.timeline.of("speech_end")
        return CheckResult("barge_in", False, "the caller spoke over the bot but playback was never cleared",
                           speech[-1].wall if speech else None)
    return CheckResult("barge_in", True)


def refuses_without_credentials(ctx: CheckContext) -> CheckResult:
    """The report's failure 1, for a handler started without its RTZR credentials that still took the
    call: it must tell the caller (some audio) and end the call itself, not leave a dead line."""
    name = "refuses_without_credentials"
    closed = next(iter(ctx.timeline.of("closed")), None)
    ended = closed is not None and closed.detail.get("by_handler")
    spoke = bool(ctx.timeline.of("media")) and (closed is None or ctx.timeline.of("media")[0].wall <= closed.wall)
    missing = ", ".join(ctx.started_without)
    if ended and spoke:
        return CheckResult(name, True, f"started without {missing}: the call was refused audibly and ended")
    what = "ended the call without a word" if ended else "left the caller on a dead line" if not spoke \
        else "spoke but never ended the call"
    return CheckResult(name, False, f"failure 1: started without {missing}, the handler took the call and {what}",
                       closed.wall if closed else ctx.hangup if ctx.hangup != float("inf") else None)


CHECKS: tuple[Check, ...] = (stops_sending_after_hangup, finals_to_llm_once, finals_persisted, recognition_continues,
                             upstream_closed_after_hangup, replies_in_order, no_errors, expectations)


def run_checks(ctx: CheckContext) -> list[CheckResult]:
    checks = [*CHECKS, *([barge_in] if ctx.expect.get("barge_in") else []),
              *([refuses_without_credentials] if ctx.started_without else [])]
    return [check(ctx) for check in checks]
