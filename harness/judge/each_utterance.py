"""What a caller expects of each thing they say (``expect.every_utterance``): it is recognised, its words
reach the LLM, and it is answered. Judged per utterance from what the call gave the handler time for, not
as counts a fixture states, so that a drawn call (``harness fuzz``), whose faults and hang-up make the
counts depend on the draw, can expect it.

An utterance is owed nothing once the caller has hung up, or once the call's own fixture made something
fail (RTZR ended or refused a stream, the LLM or TTS failed or stalled: ``own_trouble``): from there,
what a correct handler does depends on how it recovers, which other checks judge. Within that:

- **recognised**: once the caller sent its end point (the recognizer's end-point time of audio after the
  last word) and RTZR's delays passed (``CheckContext.recognised_s``), a final comes from it within
  ``RECOGNISE_SLACK_S`` (or holds its words with the next one's: a pause shorter than the end point is no
  end to RTZR); RTZR finalises only the audio the handler forwards, so none is audio not sent;
- **asked**: a final's words reach an LLM request within ``ASK_SLACK_S`` of the handler being idle (no
  LLM or TTS request open, no bot audio playing: a handler may queue words while it answers);
- **answered**: the reply to that request is heard within ``ANSWER_SLACK_S`` of the handler being idle
  after the LLM ended it, unless the caller spoke again first (a reply cut by a barge-in, or merged
  with the next utterance's, is the handler's choice).
"""

from __future__ import annotations

from harness.judge.events import Final, LlmRequest, TtsRequest
from harness.judge.attribution import TurnTrace, trace_turns
from harness.judge.context import CheckContext
from harness.judge.crosscall import own_trouble
from harness.judge.playback import spans
from harness.judge.timeline import CallTimeline
from harness.judge.verdict import CheckResult
from harness.judge.words import says

RECOGNISE_SLACK_S = 1.0  # after RTZR could finalise an utterance: its final is late, or none will come
ASK_SLACK_S = 3.5  # of the handler idle after a final: dropped (a handler may hold a final 3 s for the caller to go on)
ANSWER_SLACK_S = 2.0  # of the handler idle after the LLM's reply ended: it was never spoken


def _busy(timeline: CallTimeline, pace: float | None) -> list[tuple[float, float]]:
    """When the handler had work in hand: an LLM or TTS request open, bot audio playing."""
    end = timeline.hangup
    busy = [(e.wall, e.ended or end) for e in timeline.of(LlmRequest, TtsRequest)]
    busy += [(s.start, s.end) for s in spans(timeline.events, pace, until=end) if s.end > s.start]
    return sorted(busy)


def _idle(busy: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds within ``[start, end)`` that no busy interval covers."""
    free, at = 0.0, start
    for a, b in busy:
        if b <= at:
            continue
        if a >= end:
            break
        free += max(0.0, min(a, end) - at)
        at = max(at, b)
        if at >= end:
            return free
    return free + max(0.0, end - at)


def _said(trace: TurnTrace) -> str:
    return f"utterance {trace.utterance + 1} ({trace.said[:40]!r})"


def unanswered_utterance(ctx: CheckContext) -> CheckResult | None:
    """The first utterance the caller was owed something for and did not get (a failed ``expectations``), or
    None."""
    timeline = ctx.timeline
    until = min(ctx.hangup, own_trouble(timeline))
    if until == float("inf"):
        until = timeline.events[-1].wall if timeline.events else 0.0
    busy = _busy(timeline, ctx.play_pace)
    traces = trace_turns(timeline, ctx.play_pace)
    starts = sorted(t.start.wall for t in traces if t.start is not None)
    finals = timeline.of(Final)
    for trace in traces:
        end = trace.end
        if end is None or end.end_point_sent is None:
            continue  # the caller hung up before the end point: nothing was owed
        due = end.end_point_sent + ctx.recognised_s
        if not trace.finals:
            if any(says(f.text, trace.said) for f in finals):
                continue  # recognised in one final with the next (a pause shorter than RTZR's end point): judged with it
            if until - due > RECOGNISE_SLACK_S:
                return CheckResult("expectations", False, f"{_said(trace)}, which ended at "
                                   f"{end.audio_ms / 1000:.1f} s of the call, was never recognised: no final "
                                   f"came from it in the {until - due:.1f} s the call went on after RTZR could have "
                                   "finalised it (RTZR finalises only the audio a handler forwards: was the caller's "
                                   "audio sent while the bot spoke?)", due + RECOGNISE_SLACK_S)
            continue
        heard = trace.finals[0]
        if heard.wall >= until:
            continue
        if trace.request is None:
            idle = _idle(busy, heard.wall, until)
            if idle > ASK_SLACK_S:
                return CheckResult("expectations", False, f"{_said(trace)} was recognised (final "
                                   f"{heard.text[:40]!r}) but never reached the LLM: the handler was idle "
                                   f"{idle:.1f} s after it before the call ended", heard.wall)
            continue
        request = trace.request
        ended = request.ended
        if trace.first_audio is not None or ended is None or request.status >= 400:
            continue
        spoke_again = next((s for s in starts if s > end.wall), float("inf"))
        idle = _idle(busy, ended, min(until, spoke_again))
        if idle > ANSWER_SLACK_S:
            reply = request.reply
            return CheckResult("expectations", False, f"{_said(trace)} was asked of the LLM, whose reply "
                               f"{reply[:40]!r} ended, but no audio of it was heard: the handler was idle "
                               f"{idle:.1f} s after it before the caller spoke again or the call ended", ended)
    return None
