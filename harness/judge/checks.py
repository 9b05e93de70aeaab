"""The harness's checks: what every Twilio handler must do, judged from the fakes' journals, the
caller side and the store - never from the handler's own claims, its log wording or its message
layout. Each can fail, and a failure names the moment on the timeline that shows why."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from typing import Sequence

from harness.judge.events import (Clear, Closed, EventBase, Final, HandlerInvalid, LlmPostcall, LlmRequest, Mark, Media,
                                  Partial, Redirected, RtzrAuthFailed, RtzrClosed, RtzrEnd, RtzrRefused, SpeechEnd,
                                  SpeechStart, Stop, TtsRequest)
from fakertzr.journal import StreamEnd
from harness.fakes.tts import TONES_HZ
from harness.fakes.twilio_messages import PROTOCOL
from harness.judge.attribution import owner, trace_turns
from harness.judge.context import Check, CheckContext
from harness.judge.each_utterance import unanswered_utterance
from harness.judge.verdict import CheckResult, skipped
from harness.judge.handler_log import ErrorBlock
from harness.judge.metrics import turn_latency
from harness.judge.heard import (bot_audio_is_speech, llm_told_conversation, replies_in_order, tts_audio_sent_once,
                                 whole_reply_spoken)
from harness.judge.playback import spans
from harness.judge.timeline import ON_ITS_WAY_S, CallTimeline
from harness.judge.words import occurrences, says

SETTLE_S = 8.0  # after hang-up, every upstream connection must have ended within this
LET_GO_S = 1.0  # ... and every LLM or TTS request still running at the hang-up must be let go of within this
STOP_GRACE_S = ON_ITS_WAY_S  # what was already on the wire when ``stop`` went out (the fake Twilio reads 0.5 s
# past it): the same moment as a final on its way to the handler as the caller hung up, seen from the other side
BARGE_IN_MAX_S = 1.5  # of the caller's speech over the bot's audio (audio seconds) before playback must be cleared
ERROR_WINDOW_S = 2.0  # after a failure the fixture provokes, the handler's error lines about it are expected
REFUSAL_MIN_HEARD_S = 0.3  # a refusal the caller hears: at least this much audio played before the call ended
OFF_TONE_MIN_WINDOWS = 6  # ~0.3 s of bot audio at the wrong pitch ...
OFF_TONE_MIN_SHARE = 0.25  # ... and this share of all the TTS tone heard: played at the wrong sample rate
SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
TTS_RATE = 24000  # the fake TTS speaks at OpenAI's 24 kHz

def llm_deliveries(timeline: CallTimeline) -> list[LlmRequest]:
    """The LLM requests that count as giving the LLM a turn: a request that failed (status >= 400) and
    was retried with the same words (as the openai SDK does on 429/5xx) is one delivery, not two."""
    requests = timeline.of(LlmRequest)
    return [r for i, r in enumerate(requests)
            if not (r.status >= 400 and i + 1 < len(requests)
                    and requests[i + 1].user == r.user)]


GONE = {"vanished": "the caller's line dropped", "api": "the handler ended the call (Status=completed)",
        "redirect": "the handler redirected the call (Twilio stopped its stream)"}  # Stop.how -> what ended the stream


def ended_by_handler(ctx: CheckContext) -> EventBase | None:
    """The moment the handler ended the call itself: it closed the stream, or asked Twilio to end or redirect the
    call (its REST API; Twilio then sends ``stop`` and closes the stream); None when the caller ended it."""
    stop = next(iter(ctx.timeline.of(Stop)), None)
    if stop is not None and stop.by_handler:
        return stop
    closed = next(iter(ctx.timeline.of(Closed)), None)
    return closed if closed is not None and closed.by_handler else None


def stops_sending_after_hangup(ctx: CheckContext) -> CheckResult:
    """The report's failure 4: once the caller has hung up, the handler sends nothing more, asks TTS for
    nothing more, and asks the LLM to answer no words that came after the hang-up (a reply to nobody: the
    first step of what failure 4 sends; post-call work such as a summary is fine). Only what was already on
    the wire when ``stop`` went out (``STOP_GRACE_S``) is
    forgiven; the fake Twilio reads on for 0.5 s past ``stop``, so whatever the handler keeps sending is
    seen, whether or not its failed sends leave an error in its log."""
    name = "stops_sending_after_hangup"
    stop = next(iter(ctx.timeline.of(Stop)), None)
    if stop is None:
        return CheckResult(name, True)
    gone = GONE.get(stop.how, "the caller hung up")
    since = stop.wall + STOP_GRACE_S
    nobody = next((e for e in ctx.timeline.of(LlmPostcall) if e.late_final), None)
    if nobody is not None:  # the first step of a reply after the hang-up: what failure 4 then sends
        came = next((f.wall for f in ctx.timeline.of(Final)
                     if f.text == nobody.late_final and f.wall >= ctx.hangup), stop.wall)
        return CheckResult(name, False, f"failure 4, a reply to nobody: the LLM was asked to answer "
                           f"{(nobody.late_final or '')[:60]!r}, a final that came {came - stop.wall:.2f} s after "
                           f"{gone} (post-call work quotes the call; this answers words the caller will never hear "
                           "answered)", nobody.wall, since=stop.wall)
    late = [e for e in ctx.timeline.events if e.wall > since and (
        isinstance(e, (Media, Mark, Clear)) or (isinstance(e, HandlerInvalid) and e.code != PROTOCOL))]
    if late:
        kinds = Counter("invalid" if isinstance(e, HandlerInvalid) else e.kind for e in late)
        return CheckResult(name, False, f"failure 4: {len(late)} message(s) sent after {gone} "
                           f"({', '.join(f'{n} {k}' for k, n in kinds.items())}), the first {late[0].wall - stop.wall:.2f} s "
                           f"after it: Twilio has ended the {'stream' if stop.how == 'redirect' else 'call'}, and a send "
                           "on its closed socket fails", late[0].wall, since=stop.wall)
    speech = next((e for e in ctx.timeline.of(TtsRequest) if e.wall > since), None)
    if speech is not None:
        return CheckResult(name, False, f"failure 4: TTS was asked to speak {speech.text[:60]!r} "
                           f"{speech.wall - stop.wall:.2f} s after {gone}: nobody is left to hear it", speech.wall, since=stop.wall)
    return CheckResult(name, True)


def twilio_messages(ctx: CheckContext) -> CheckResult:
    """Every message the handler sends is one Twilio takes (see :mod:`harness.fakes.twilio_messages`): JSON text,
    ``media``/``mark``/``clear`` with this stream's ``streamSid``, base64 mu-law without a file header.
    A WebSocket protocol error after the call is over is the server's business, not the caller's."""
    name = "twilio_messages"
    bad = [e for e in ctx.timeline.of(HandlerInvalid)
           if not (e.code == PROTOCOL and e.wall >= ctx.hangup)]
    if not bad:
        return CheckResult(name, True)
    first = bad[0]
    kinds = Counter(e.why for e in bad)
    effect = "Twilio drops it: the caller hears none of it" if first.dropped else "Twilio plays it"
    more = f"; {len(kinds) - 1} other kind(s) too" if len(kinds) > 1 else ""
    return CheckResult(name, False, f"{len(bad)} message(s) Twilio would not take as sent, first: {first.why} "
                       f"(Twilio warning {first.code}; {effect}){more}", first.wall)


def _rate_guess(heard_hz: float) -> str:
    """The likely mistake: the TTS's 24 kHz audio taken for another rate."""
    best = min(((abs(TTS_RATE * heard_hz / tone - rate) / rate, rate, tone) for tone in TONES_HZ for rate in SAMPLE_RATES),
               key=lambda c: c[0])
    error, rate, tone = best
    if error > 0.01 or rate == TTS_RATE:
        return ""
    return (f" ({TTS_RATE} Hz audio sent as {rate} Hz? the caller hears it {TTS_RATE / rate:.2f}x "
            f"{'slower' if rate < TTS_RATE else 'faster'})")


NEAR_TONE = 0.03  # within 3 % of a request's tone: no sample-rate mistake (the nearest, 22.05 vs 24 kHz, is 8 %)


def near_a_tone(hz: float) -> bool:
    return any(abs(hz - tone) <= NEAR_TONE * tone for tone in TONES_HZ)


def bot_audio_rate(ctx: CheckContext) -> CheckResult:
    """The bot's audio plays at the speed the TTS spoke it: the fake TTS speaks each request as a tone,
    and a tone heard at another pitch was sent at the wrong sample rate (mu-law 8 kHz is what Twilio
    plays; 24 kHz TTS audio sent as 8 kHz is three times too slow)."""
    name = "bot_audio_rate"
    bot = ctx.timeline.bot_audio
    if bot is None or not bot.heard:
        return skipped(name, "no fake TTS tone in the bot's audio (it said nothing, or speaks through another TTS)")
    off = [h for h in bot.off_tone if not near_a_tone(h.hz)]  # near one: the seam of audio cut or repeated, no rate
    if len(off) < OFF_TONE_MIN_WINDOWS or len(off) < OFF_TONE_MIN_SHARE * len(bot.heard):
        return CheckResult(name, True)
    hz = statistics.median(h.hz for h in off)
    media = ctx.timeline.of(Media)
    k = next((i for i, offset in enumerate(bot.offsets) if offset + bot.message_samples(i) > off[0].start), 0)
    at = media[k].wall if k < len(media) else None
    return CheckResult(name, False, f"{len(off) / len(bot.heard):.0%} of the bot's TTS audio plays at the wrong pitch: "
                       f"{hz:.0f} Hz, where every TTS request spoke a tone of {TONES_HZ[0]:.0f}-{TONES_HZ[-1]:.0f} Hz: "
                       f"audio sent at the wrong sample rate{_rate_guess(hz)}", at)


def _given(user: str, text: str, others: set[str]) -> int:
    """How many times a request gives the final ``text``: its words' occurrences in the request's new user
    content, less those inside another final the request gives ("네" inside "네 알겠습니다")."""
    inside = sum(occurrences(user, other) * occurrences(other, text) for other in others if other != text)
    return max(0, occurrences(user, text) - inside)


def times_said(finals: Sequence[Final], text: str) -> int:
    """How many times the caller said ``text``: its finals, those recognised from the same stretch of the caller's
    audio counted once (a handler that resent audio RTZR had already answered gets the same words again; the
    caller said them once)."""
    return sum(f.text == text for f in distinct_finals(finals))


def finals_to_llm_once(ctx: CheckContext) -> CheckResult:
    """Each final goes to the LLM at most once, and at least once if the handler asked the LLM about a later
    final (a request made after it for an earlier one is no sign it was dropped: a handler holds a final RTZR
    cut while the caller talks on, and the caller may hang up before it is asked). A request's words are the
    user messages it adds to the previous one's (history sent again is not given again; two finals as two
    new messages are both given), counted by occurrence: the same words twice in one request are given twice.
    Post-call work (a summary after the hang-up) is no delivery."""
    requests = llm_deliveries(ctx.timeline)
    finals = ctx.finals_before_hangup()
    texts = {f.text for f in finals}
    for k, final in enumerate(finals):
        text = final.text
        if not re.search(r"\w", text):
            continue  # punctuation alone: no words to give the LLM
        later = [r for r in requests if r.wall >= final.wall]
        first = next(f for f in finals if f.text == text)
        given = [(r, _given(r.user, text, texts)) for r in requests if r.wall >= first.wall]
        times = sum(n for _, n in given)
        said = times_said(finals, text)  # a caller who says "네" twice gives it twice
        if times > said:
            twice = next((r for r, n in given if n > 1), None)
            where = (f", {_given(twice.user, text, texts)} times in one request (its new user content "
                     "repeats the caller's words)") if twice is not None else ""
            at = twice or [r for r, n in given if n][1]
            return CheckResult("finals_to_llm_once", False, f"final {text!r} was given to the LLM {times} times{where}",
                               at.wall)
        newer = [f.text for f in finals[k + 1:] if f.text != text]
        past_it = [r for r in later if any(says(r.user, t) for t in newer)]
        if past_it and not any(_given(r.user, text, texts) for r in later):
            return CheckResult("finals_to_llm_once", False, f"final {text!r} never reached the LLM (the LLM was "
                               "asked about a later one)", final.wall)
    return CheckResult("finals_to_llm_once", True)


def finals_persisted(ctx: CheckContext) -> CheckResult:
    if ctx.stored_caller_lines is None:
        return skipped("finals_persisted", "the handler's store is not readable by the harness (only aicall's is)")
    stored = Counter(ctx.stored_caller_lines)
    # the same words from the same audio again (a stream dropped as its final went out, the audio resent) are one
    # recognition: a handler that never got the first copy stores the words once
    for final in distinct_finals(ctx.finals_before_hangup()):
        if stored[final.text] == 0:
            return CheckResult("finals_persisted", False, f"final {final.text!r} is not in the store", final.wall)
        stored[final.text] -= 1
    return CheckResult("finals_persisted", True)




def _stale_token(ctx: CheckContext, end: EventBase) -> str:
    """When every stream the handler tried to open after ``end`` was refused for its token: say so."""
    refused = [e for e in ctx.timeline.of(RtzrRefused) if e.wall >= end.wall and e.status == 401]
    if not refused or ctx.timeline.of(RtzrAuthFailed):
        return ""
    why = refused[0].why or "HTTP 401"
    fresh = "" if len(refused) < 2 else f", {len(refused)} times"
    return (f": RTZR refused the handler's token for a new stream ({why}{fresh}): it reused a token RTZR no longer "
            f"takes; a token must be refreshed from /v1/authenticate when RTZR refuses it, or before its expire_at")


def recognition_continues(ctx: CheckContext) -> CheckResult:
    """After an RTZR stream ends mid-call, whichever side ended it (RTZR's close 1000 after a final, a
    drop, a stall, or the handler's own close or EOS), the caller is recognised again if they speak on
    (the report's failure 2)."""
    hung_up_ms = next((e.audio_ms for e in ctx.timeline.of(Stop)), None)
    for end in ctx.timeline.of(RtzrEnd):
        if end.opened is not None and end.opened >= ctx.hangup:
            continue  # opened after the caller hung up: it could not have heard them (upstream_closed_after_hangup judges it)
        # where the stream ended in the call's audio, when known: the same at any pace (at fast pace all the
        # audio may be sent, and the line hung up, before a stall shows in time); else when, in time
        position = end.call_ms
        after_the_call = (position >= hung_up_ms if position is not None and hung_up_ms is not None
                          else end.wall >= ctx.hangup)
        if after_the_call:
            continue
        how, by_server = end.how, end.by_server
        later_speech = [e for e in ctx.timeline.of(SpeechEnd) if e.wall < ctx.hangup and (
            e.audio_ms > position if position is not None else e.wall > end.wall)]
        # recognised again: by another stream after this one ended, or by another stream of the call's audio past
        # where this one ended (a second stream the handler opened and closed while its first went on)
        reopened = [e for e in ctx.timeline.of(Partial, Final) if e.connection != end.connection
                    and (e.wall > end.wall or position is not None and (e.call_ms or 0.0) > position)]
        if later_speech and not reopened:
            side = "by RTZR" if by_server else "by the handler"
            said = " ".join(str(v) for v in (how, end.code) if v is not None)
            where = f" at {position / 1000:.1f} s of the call" if position is not None else ""
            return CheckResult("recognition_continues", False,
                               f"failure 2: RTZR connection {end.connection} ended {side} ({said}){where}, "
                               f"and the caller, who spoke on, was not recognised again{_stale_token(ctx, end)}", end.wall)
    return CheckResult("recognition_continues", True)


def upstream_closed_after_hangup(ctx: CheckContext) -> CheckResult:
    if ctx.hangup == float("inf"):
        return CheckResult("upstream_closed_after_hangup", True)
    for end in ctx.timeline.of(RtzrEnd, RtzrClosed):
        if isinstance(end, RtzrClosed) and end.open:
            return CheckResult("upstream_closed_after_hangup", False, f"RTZR connection {end.connection} "
                               f"was still open {end.wall - ctx.hangup:.1f} s after the call", end.wall)
        if end.wall - ctx.hangup > SETTLE_S:
            return CheckResult("upstream_closed_after_hangup", False, f"RTZR connection {end.connection} "
                               f"outlived the call by {end.wall - ctx.hangup:.1f} s", end.wall)
    requests = ctx.timeline.of(LlmRequest, TtsRequest)
    open_requests = [e for e in requests if e.open]
    if open_requests:
        return CheckResult("upstream_closed_after_hangup", False, f"failure 3: the {_what(open_requests[0])} was still "
                           "open after the call: work for a call that has ended", open_requests[0].wall)
    # a request running at the hang-up, or a TTS request begun after it (a reply that ran on; post-call LLM work,
    # a summary, is not judged here), must be let go of within LET_GO_S
    kept = next((e for e in requests if (e.ended or 0.0) > ctx.hangup + LET_GO_S), None)
    if kept is not None:
        begun = "" if kept.wall < ctx.hangup else f", begun {kept.wall - ctx.hangup:.1f} s after it"
        return CheckResult("upstream_closed_after_hangup", False, f"failure 3: the {_what(kept)} went on "
                           f"{(kept.ended or 0.0) - ctx.hangup:.1f} s after the call ended{begun} (let go of within "
                           f"{LET_GO_S:g} s: work for a call that has ended)", kept.wall)
    return CheckResult("upstream_closed_after_hangup", True)


def _what(request: LlmRequest | TtsRequest) -> str:
    return "LLM request" if isinstance(request, LlmRequest) else "TTS request"


def provoked_windows(ctx: CheckContext) -> list[tuple[float, float, str]]:
    """When the fixture made something fail on purpose (an LLM or TTS request answered with an error, a
    refused RTZR token or handshake, RTZR closing, dropping or stalling a stream): from then until
    ``ERROR_WINDOW_S`` after the handler was done with it, its error lines about it are expected."""
    tl = ctx.timeline
    windows = [(e.wall, e.wall + ERROR_WINDOW_S, f"the {'TTS' if isinstance(e, TtsRequest) else 'LLM'} answered HTTP {e.status}")
               for e in tl.of(LlmRequest, LlmPostcall, TtsRequest) if e.status >= 400]
    windows += [(e.wall, e.wall + ERROR_WINDOW_S, f"RTZR refused ({e.status})")
                for e in tl.of(RtzrRefused, RtzrAuthFailed)]
    closed = {e.connection: e.wall for e in tl.of(RtzrClosed)}
    for e in tl.of(RtzrEnd):
        if e.by_server:
            windows.append((e.wall, max(e.wall, closed.get(e.connection, e.wall)) + ERROR_WINDOW_S,
                            f"RTZR {e.how}"))
    refusals = [w[0] for w in windows if w[2].startswith("RTZR refused")]
    if (ctx.call_refused_allowed or ctx.expect.get("call_refused")) and refusals:
        windows.append((min(refusals), float("inf"), "the call was refused"))  # the rest of a refused call
    return windows


def _block(error: ErrorBlock | str) -> ErrorBlock:
    return error if isinstance(error, ErrorBlock) else ErrorBlock(float("nan"), error.splitlines() or [""])


def no_errors(ctx: CheckContext) -> CheckResult:
    """No error-level log block, but those about a failure the fixture provokes (logged while it lasts, and
    handled: an exception nobody caught is never expected). Judged by when they came, not their wording."""
    if ctx.errors_logged is None:
        return skipped("no_errors", ctx.no_log_why)
    windows = provoked_windows(ctx)
    unexpected = []
    for error in map(_block, ctx.errors_logged):
        if error.unhandled or not any(start <= error.at <= end for start, end, _ in windows):
            unexpected.append(error)
    if unexpected:
        more = f" ({len(unexpected) - 1} more in the report)" if len(unexpected) > 1 else ""
        first = unexpected[0]
        provoked = next((why for start, end, why in windows if start <= first.at <= end), None)
        if first.unhandled:
            what = "an exception nobody caught" + (f" (while {provoked}: a failure must be handled)" if provoked else "")
        else:
            what = "caught and logged by the handler at error level, about no failure this call provoked"
        at = first.at if first.at == first.at else None  # NaN: a block with no time
        return CheckResult("no_errors", False, f"{len(unexpected)} error(s) logged{more}; the first is {what}:\n"
                           f"{first.text}", at)
    return CheckResult("no_errors", True)


def answered(ctx: CheckContext) -> tuple[int, list[int]]:
    """How many turns the caller heard answered (replies heard: a reply to two utterances at once is one
    answer), and the utterances no heard reply carried."""
    traces = [t for t in trace_turns(ctx.timeline, ctx.play_pace) if t.end is not None]
    heard = {(t.request.index if t.request is not None else ("clock", t.utterance))
             for t in traces if t.first_audio is not None}
    return len(heard), [t.utterance for t in traces if t.first_audio is None]


def _speech_end_ms(ctx: CheckContext, utterance: int) -> float:
    return next(e.audio_ms for e in ctx.timeline.of(SpeechEnd) if e.utterance == utterance)


def asked_while_talking(ctx: CheckContext) -> tuple[LlmRequest, Final, int] | None:
    """A delivered LLM request whose latest final lies inside an utterance the caller was still speaking
    (RTZR cut it at ``max_utter_duration``): judged in the call's audio, the same at any pace."""
    starts = sorted(((e.utterance, e) for e in ctx.timeline.of(SpeechStart)), key=lambda u: u[1].wall)
    ends = {e.utterance: e.audio_ms for e in ctx.timeline.of(SpeechEnd)}
    finals = [f for f in ctx.timeline.of(Final) if f.call_ms is not None]
    for request in llm_deliveries(ctx.timeline):
        carried = [f for f in finals if f.wall <= request.wall and says(request.user, f.text)]
        if not carried:
            continue
        last = max(carried, key=lambda f: f.call_ms or 0.0)
        own = owner(last, starts)  # the utterance it was recognised from: cut before that utterance's end?
        if own is not None and own in ends and (last.call_ms or 0.0) < ends[own]:
            return request, last, own
    return None


PACED_LATE_S = 1.0  # at fast pace, a final unanswered this long with the LLM and TTS idle waited on the handler's clock


def clock_paced_hint(ctx: CheckContext) -> str:
    """At fast pace, why a handler that paces itself by the wall clock (it sleeps out each reply's playback
    time) answers fewer turns, when the timeline shows it: the caller finished an utterance while the bot's
    previous reply would still have been playing in real time, and the next LLM request came over
    ``PACED_LATE_S`` later (or never, before the hang-up) while nothing was asked of the LLM or TTS. "" when
    nothing shows it, or at any other pace."""
    if ctx.pace is not None and ctx.audio_plays:
        return ""
    tl = ctx.timeline
    work, media, delivered = tl.of(LlmRequest, TtsRequest), tl.of(Media), llm_deliveries(tl)
    for said in tl.of(SpeechEnd):
        if said.wall >= ctx.hangup:
            break
        asked = next((r for r in delivered if r.wall >= said.wall), None)
        until = asked.wall if asked is not None else ctx.hangup
        if until - said.wall <= PACED_LATE_S:
            continue
        if any(w.wall < until and (w.ended or until) > said.wall for w in work):
            continue  # the LLM or TTS was at work: the reply was late for that, not for a clock
        before = [r for r in delivered if r.wall < said.wall]
        burst = [m for m in media if m.wall <= said.wall and (not before or m.wall >= before[-1].wall)]
        plays = sum(m.ms for m in burst) / 1000
        if not burst or burst[0].wall + plays <= said.wall:
            continue  # the previous reply, sent before the caller finished, had played out by then
        how = (f"the LLM was asked {asked.wall - said.wall:.1f} s later" if asked is not None
               else "the LLM was not asked again before the hang-up")
        return (f"; the handler looks paced by the wall clock: the caller finished utterance "
                f"{said.utterance + 1} while the bot's previous reply ({plays:.1f} s of audio) would still "
                f"have been playing in real time, and {how}, with the LLM and TTS idle meanwhile: at --pace fast bot "
                "audio takes no time, so a handler that sleeps out its playback falls behind the caller; replay it "
                "with --pace realtime")
    return ""


def distinct_finals(finals: Sequence[Final]) -> list[Final]:
    """The finals, each stretch of the caller's audio once: the same words from the same audio again (a handler
    that lost a final with a dropped stream and resent that audio gets it again) are one recognition."""
    seen: set[tuple[str, int]] = set()
    kept = []
    for f in finals:
        place = f.call_ms
        key = (f.text, round(place / 100)) if place is not None else None
        if key is None or key not in seen:
            kept.append(f)
        if key is not None:
            seen.add(key)
    return kept


def expectations(ctx: CheckContext) -> CheckResult:
    expect = ctx.expect
    refused = _refused_for_no_reason(ctx)
    if refused is not None:
        return refused
    final_events = distinct_finals(ctx.timeline.of(Final))
    finals = [e.text for e in final_events]
    end = ctx.hangup if ctx.hangup != float("inf") else (ctx.timeline.events[-1].wall if ctx.timeline.events else None)
    if "finals" in expect and finals[: len(expect["finals"])] != expect["finals"]:
        wanted = expect["finals"]
        k = next((i for i, (a, b) in enumerate(zip(finals, wanted)) if a != b), min(len(finals), len(wanted)))
        got = repr(finals[k]) if k < len(finals) else "nothing"
        at = final_events[k].wall if k < len(final_events) else end
        ends = ctx.timeline.of(RtzrEnd)
        return CheckResult("expectations", False, f"final {k + 1} should be {wanted[k]!r}, got {got} "
                           f"({len(finals)} final(s) in all, {len(wanted)} expected)"
                           f"{_stale_token(ctx, ends[0]) if ends else ''}", at)
    requests = llm_deliveries(ctx.timeline)
    if expect.get("no_reply_while_talking"):
        early = asked_while_talking(ctx)
        if early is not None:
            request, final, utterance = early
            return CheckResult("expectations", False, f"the LLM was asked while the caller was still talking: with final "
                               f"{final.text[:40]!r}, cut at {(final.call_ms or 0.0) / 1000:.1f} s of the call, "
                               f"inside utterance {utterance + 1}, which goes on to "
                               f"{_speech_end_ms(ctx, utterance) / 1000:.1f} s", request.wall)
    if "llm_turns" in expect and len(requests) != expect["llm_turns"]:
        at = requests[expect["llm_turns"]].wall if len(requests) > expect["llm_turns"] else end
        return CheckResult("expectations", False, f"{len(requests)} LLM turn(s) (a retried request counts once), "
                           f"expected {expect['llm_turns']}" + (clock_paced_hint(ctx) if len(requests) < expect["llm_turns"]
                                                                else ""), at)
    if "answered_turns" in expect:
        count, unheard = answered(ctx)
        if count != expect["answered_turns"]:
            speech_ends = {e.utterance: e for e in ctx.timeline.of(SpeechEnd)}
            silent = speech_ends.get(unheard[0]) if unheard else None
            said = ", ".join(f"t{i + 1}" for i in unheard)
            return CheckResult("expectations", False, f"{count} turn(s) answered, expected {expect['answered_turns']}"
                               + (f" (no reply heard for {said})" if said else "")
                               + (clock_paced_hint(ctx) if count < expect["answered_turns"] else ""),
                               silent.wall if silent else end)
    if expect.get("every_utterance"):
        unanswered = unanswered_utterance(ctx)
        if unanswered is not None:
            return unanswered
    if expect.get("call_refused") and ended_by_handler(ctx) is None:
        return CheckResult("expectations", False, "the handler was expected to end the call itself", end)
    return CheckResult("expectations", True)


def _refused_for_no_reason(ctx: CheckContext) -> CheckResult | None:
    """``expect.call_refused: false``: the handler ended the call itself though nothing gave it a reason to (first
    among the expectations: it explains the finals and turns that then never came)."""
    closed = ended_by_handler(ctx)
    if ctx.expect.get("call_refused") is not False or closed is None:
        return None
    refused = ctx.timeline.of(RtzrRefused, RtzrAuthFailed)
    said = refused[-1].why if refused and isinstance(refused[-1], RtzrRefused) else ""
    why = (f" (RTZR refused it {len(refused)} time(s): HTTP {refused[-1].status}"
           f"{', ' + said if said else ''})" if refused else "")
    stale = _stale_token(ctx, refused[0]) if refused and isinstance(refused[0], RtzrRefused) else ""
    return CheckResult("expectations", False, f"the handler ended the call itself, though nothing in the call gave it a "
                       f"reason to{stale or why}", closed.wall)


def deaf_stretches(ctx: CheckContext) -> list[tuple[float, float]]:
    """Where RTZR had stalled the handler's stream: from the stall until a result on a later stream (or the
    hang-up). The caller's speech then reached no one who could tell the handler; recognition_continues judges
    the recovery, and its time is the handler's watchdog's, in wall seconds, however fast the replay."""
    results = ctx.timeline.of(Partial, Final)
    stretches = []
    for end in ctx.timeline.of(RtzrEnd):
        if end.how == StreamEnd.STALLED:
            later = [r.wall for r in results if r.connection != end.connection and r.wall > end.wall]
            stretches.append((end.wall, min(later, default=ctx.hangup)))
    return stretches


def _heard(a: float, b: float, deaf: list[tuple[float, float]]) -> float:
    """The part of (a, b) outside every deaf stretch."""
    return (b - a) - sum(max(0.0, min(b, d1) - max(a, d0)) for d0, d1 in deaf)


def barge_in(ctx: CheckContext) -> CheckResult:
    """A fixture whose caller talks over the bot (``expect.barge_in``): whenever the caller speaks while the
    bot's audio plays, playback is cleared within ``BARGE_IN_MAX_S`` of their speech. At ``fast`` pace bot
    audio takes no time, so nothing can be talked over: skipped, never a pass; so is a call in which the
    bot's audio never played while the caller spoke, and talk-over while RTZR had stalled the stream (nothing
    could tell the handler: ``deaf_stretches``)."""
    name = "barge_in"
    if not ctx.audio_plays:
        return skipped(name, "at fast pace bot audio takes no time to play: nothing can be talked over")
    pace = ctx.pace or 1.0
    played = [s for s in spans(ctx.timeline.events, pace, until=ctx.hangup) if s.end > s.start]
    ends = {e.utterance: e.wall for e in ctx.timeline.of(SpeechEnd)}
    deaf = deaf_stretches(ctx)
    overlapped = unheard = False
    for start in ctx.timeline.of(SpeechStart):
        until = ends.get(start.utterance, ctx.hangup)
        over = [(max(s.start, start.wall), min(s.end, until)) for s in played if s.start < until and s.end > start.wall]
        talked_over = sum(_heard(a, b, deaf) for a, b in over) * pace
        if not over:
            continue
        if talked_over <= 0.0:
            unheard = True  # all of it while RTZR was stalled
            continue
        overlapped = True
        if talked_over > BARGE_IN_MAX_S:
            cleared = [e for e in ctx.timeline.of(Clear) if e.wall >= start.wall]
            how = ("and playback was never cleared" if not ctx.timeline.of(Clear) else
                   "and playback was not cleared in time" if cleared else
                   "and playback was cleared only before it, never while the caller talked")
            return CheckResult(name, False, f"the caller talked over the bot for {talked_over:.1f} s (utterance "
                               f"{start.utterance + 1}) {how}", start.wall)
    if not overlapped and unheard:
        return skipped(name, "the caller talked over the bot only while RTZR had stalled the stream: nothing could "
                       "tell the handler (recognition_continues judges the stall)")
    if not overlapped:
        return skipped(name, "the bot's audio never played while the caller spoke (its reply came after the caller's "
                       "last word): nothing to barge in on")
    return CheckResult(name, True)


def _heard_before_close(ctx: CheckContext) -> float:
    """Seconds of the bot's audio the caller heard before the call ended."""
    return sum(s.ms for s in spans(ctx.timeline.events, ctx.play_pace, until=ctx.hangup)) / 1000


def refuses_without_credentials(ctx: CheckContext) -> CheckResult:
    """The report's failure 1, for a handler started without its RTZR credentials that still took the
    call, or whose credentials RTZR refused during the call: it must tell the caller (audio they hear)
    and end the call itself, not leave a dead line or hang up without a word."""
    name = "refuses_without_credentials"
    closed = ended_by_handler(ctx)
    ended = closed is not None
    heard = _heard_before_close(ctx)
    said = [t for e in ctx.timeline.of(Redirected) for t in e.said if t.strip()]  # Twilio spoke them (a redirect)
    spoke = heard >= REFUSAL_MIN_HEARD_S or bool(said)
    cause = f"started without {', '.join(ctx.started_without)}" if ctx.started_without else "RTZR refused its credentials"
    if ended and spoke:
        how = f"{heard:.1f} s" if heard >= REFUSAL_MIN_HEARD_S else f"Twilio said {said[0][:60]!r} after a redirect"
        return CheckResult(name, True, f"{cause}: the call was refused audibly ({how}) and ended")
    what = ("ended the call without a word" if ended else "left the caller on a dead line" if not spoke
            else "spoke but never ended the call")
    return CheckResult(name, False, f"failure 1: {cause}, and the handler took the call and {what}",
                       closed.wall if closed else ctx.hangup if ctx.hangup != float("inf") else None)


def reaches_only_faked_hosts(ctx: CheckContext) -> CheckResult:
    """Steered (``--steer``): the handler reached no host the harness does not fake. Each such connection was
    refused by the steering proxy, so nothing real was called; the call fails, naming the host, since in
    production that connection would have gone to a real service the replay never judged."""
    hosts = ctx.unfaked_hosts or ()
    if not hosts:
        return CheckResult("reaches_only_faked_hosts", True)
    named = ", ".join(dict.fromkeys(hosts))
    return CheckResult("reaches_only_faked_hosts", False, f"the handler tried to reach {named}: not faked, refused "
                       "(a service the harness does not fake: a real call in production that this replay cannot judge)")


CHECKS: tuple[Check, ...] = (stops_sending_after_hangup, twilio_messages, bot_audio_is_speech, bot_audio_rate,
                             tts_audio_sent_once, whole_reply_spoken, finals_to_llm_once, finals_persisted,
                             recognition_continues, upstream_closed_after_hangup, replies_in_order, llm_told_conversation,
                             no_errors, expectations)


def run_checks(ctx: CheckContext) -> list[CheckResult]:
    from harness.judge.crosscall import CROSS_CALL_CHECKS

    checks = [*CHECKS, *([barge_in] if ctx.expect.get("barge_in") else []),
              *([turn_latency] if ctx.expect.get("max_turn_ms") else []),
              *([refuses_without_credentials] if ctx.started_without or ctx.expect.get("call_refused") else []),
              *(CROSS_CALL_CHECKS if ctx.neighbours is not None else ()),
              *([reaches_only_faked_hosts] if ctx.unfaked_hosts is not None else [])]
    return [check(ctx) for check in checks] + redirect_not_followed(ctx)


def redirect_not_followed(ctx: CheckContext) -> list[CheckResult]:
    """A redirect to a new ``<Connect><Stream>``, which the fake Twilio does not open: what came after was not
    played, and so not judged (said, as ``replay`` skipped; the call is judged up to the redirect)."""
    return [skipped("replay", f"the handler redirected the call to a new Media Stream ({e.url or 'TwiML given inline'})"
                    ": the fake Twilio plays one stream per call and ended the call there; the rest of the call was not "
                    "played, and is not judged") for e in ctx.timeline.of(Redirected) if e.outcome == "stream"]
