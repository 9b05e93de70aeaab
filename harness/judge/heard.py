"""What the caller hears and what the LLM is told: checks of the bot's speech itself, sans-I/O over a timeline.

The fake TTS speaks each request as its own tone, so the bot's audio can be traced, piece by piece, to
the request that spoke it (:mod:`harness.judge.bot_audio`) and the reply that request came from
(:mod:`harness.judge.attribution`). From that: the audio is speech Twilio can play (mu-law, not PCM or a
file), each request's speech is sent once and whole, every sentence of a reply reaches the caller in the
reply's order, and each LLM request carries the conversation so far.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

from harness.judge.events import Clear, LlmRequest, Media, SpeechStart, TtsRequest
from harness.judge.attribution import sources_of_tts
from harness.judge.verdict import CheckResult, skipped

if TYPE_CHECKING:
    from harness.judge.context import CheckContext
    from harness.judge.timeline import CallTimeline

MIN_JUDGED_MS = 200  # less bot audio than this is too little to say what it is
ONCE_RATIO, ONCE_SLACK_MS = 1.2, 120  # a request's audio as sent may exceed what it spoke by this (resampling, framing)
WHOLE_SHARE, WHOLE_SLACK_MS = 0.75, 120  # ... and must reach this share of it, unless the reply was cut
REPLY_GRACE_S = 3.0  # after a reply (and its audio at the replay's pace), its last sentence must have gone to TTS
CLEAR_LATE_S = 1.0  # a clear this soon after the next request still cuts the reply before it (threads race)
HISTORY_TURNS = 3  # each LLM request must carry at least the last this many turns before it (a window may drop older)
_NOT_WORD = re.compile(r"[\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.?!。？！])\s+")


def _norm(text: str) -> str:
    return _NOT_WORD.sub("", text)


def sentences(reply: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(reply) if _norm(s)]


def _answered(timeline: CallTimeline) -> list[TtsRequest]:
    return [t for t in timeline.of(TtsRequest) if t.status < 400 and t.audio_s > 0]


def _tts_by_reply(timeline: CallTimeline) -> dict[int, list[TtsRequest]]:
    """The TTS requests that spoke each LLM request's reply (``attribution.sources_of_tts``), by its index."""
    spoken: dict[int, list[TtsRequest]] = {}
    for tts, source in _sources(timeline):
        if source is not None:
            spoken.setdefault(source.index, []).append(tts)
    return spoken


def _sources(timeline: CallTimeline) -> list[tuple[TtsRequest, LlmRequest | None]]:
    """Each TTS request with the LLM request whose reply it spoke."""
    tts = timeline.of(TtsRequest)
    return list(zip(tts, sources_of_tts(tts, timeline.of(LlmRequest), timeline.of(Clear))))


def _sent_ms(timeline: CallTimeline) -> dict[int, float]:
    """Milliseconds of bot audio sent for each TTS request (by the tone each media message carries)."""
    sent: dict[int, float] = {}
    for m in timeline.of(Media):
        if m.tts is not None:
            sent[m.tts] = sent.get(m.tts, 0.0) + m.ms
    return sent


def bot_audio_is_speech(ctx: CheckContext) -> CheckResult:
    """The caller hears the TTS's speech, not noise: Twilio plays every media payload as 8 kHz mu-law, so
    audio sent in another encoding (linear PCM, A-law, a WAV or MP3 file with its header) carries none of
    the TTS requests' tones. Skipped only when no TTS request was answered."""
    name = "bot_audio_is_speech"
    asked = _answered(ctx.timeline)
    if not asked:
        return skipped(name, "no TTS request was answered: no fake TTS speech to listen for (its own TTS, or recorded prompts)")
    bot = ctx.timeline.bot_audio
    if bot is None or bot.samples < MIN_JUDGED_MS * 8:
        return skipped(name, f"the TTS spoke, but less than {MIN_JUDGED_MS} ms of bot audio was sent: too little to judge")
    if bot.heard:
        return CheckResult(name, True)
    media = ctx.timeline.of(Media)
    hears = "silence" if bot.encoding.startswith("silence") else "noise"
    return CheckResult(name, False, f"{bot.samples / 8000:.1f} s of bot audio sent, and none of it is the TTS's speech: "
                       f"Twilio plays a payload as 8 kHz mu-law, and read so it carries no tone of the {len(asked)} TTS "
                       f"request(s), so the caller hears {hears}. Mu-law expected; it looks like {bot.encoding}",
                       media[0].wall if media else None)


def tts_audio_sent_once(ctx: CheckContext) -> CheckResult:
    """Each TTS request's speech is sent once: the audio traced to a request (by its tone, at the right pitch)
    is no longer than the TTS spoke it. Longer is audio repeated (each chunk sent twice, a reply replayed),
    which the caller hears as stuttering or a doubled reply, not as a wrong sample rate."""
    name = "tts_audio_sent_once"
    sent = _sent_ms(ctx.timeline)
    if not sent:
        return skipped(name, "no bot audio traced to a fake TTS request (no tone heard at the right pitch)")
    media = ctx.timeline.of(Media)
    for tts in _answered(ctx.timeline):
        index, spoke = tts.index, tts.audio_s * 1000
        ms = sent.get(index, 0.0)
        if ms > spoke * ONCE_RATIO + ONCE_SLACK_MS:
            ratio = ms / spoke
            how = ("each piece of it sent twice" if 1.8 <= ratio <= 2.25 else
                   f"it was sent {ratio:.1f} times over" if ratio >= 2.25 else "part of it sent again")
            first = next((m.wall for m in media if m.tts == index), tts.wall)
            return CheckResult(name, False, f"TTS request {index + 1} ({tts.text[:40]!r}) spoke "
                               f"{spoke / 1000:.2f} s, and the handler sent {ms / 1000:.2f} s of it at the right pitch "
                               f"({ratio:.1f}x): {how}; the caller hears it repeated", first)
    return CheckResult(name, True)


def _cut(ctx: CheckContext, request: LlmRequest, mine: list[TtsRequest], later: float) -> str:
    """Why a reply may rightly end before its last sentence ("" when nothing excuses it): the caller hung up
    before the handler could have spoken it all, playback was cleared, the caller spoke while it was being
    spoken, the handler let go of the LLM's or TTS's stream, or the LLM or TTS failed or stalled (as the fixture
    made it). ``later``: when the handler began to speak a later reply (inf: never)."""
    timeline = ctx.timeline
    t0 = timeline.events[0].wall if timeline.events else 0.0
    if request.abandoned:
        return "the handler let go of the LLM's stream before its end"
    if request.stalled or request.open:
        return "the LLM stalled"
    failed = next((t for t in mine if t.status >= 400 or t.stalled
                   or t.abandoned), None)
    if failed is not None:
        return f"TTS request {failed.index + 1} failed, stalled or was let go of"
    pace = ctx.play_pace
    audio_s = sum(t.audio_s for t in mine)
    spoken_until = max([request.ended or request.wall, *((t.ended or t.wall) for t in mine)])
    judged = min(later, spoken_until + REPLY_GRACE_S + (audio_s / pace if pace else 0.0))
    if ctx.hangup < judged:
        return f"the caller hung up at {ctx.hangup - t0:.1f} s, before it could all be spoken"
    clear = next((e for e in timeline.of(Clear) if request.wall <= e.wall < judged), None)
    if clear is not None:
        return f"playback was cleared at {clear.wall - t0:.1f} s"
    talk = next((e for e in timeline.of(SpeechStart) if request.wall <= e.wall <= spoken_until), None)
    if talk is not None:
        return f"the caller spoke at {talk.wall - t0:.1f} s (utterance {talk.utterance + 1}) while it was spoken"
    return ""


def _done_sending(ctx: CheckContext) -> set[int]:
    """The TTS requests whose audio the handler had finished sending while the caller was on the line: audio of
    a later request followed it, or the handler sent nothing in the last second before the hang-up (a handler
    that paces its sends may still have been sending when the caller hung up)."""
    media = [m for m in ctx.timeline.of(Media) if m.wall < ctx.hangup]
    traced = [m.tts for m in media if m.tts is not None]
    done: set[int] = set()
    latest = -1  # the latest request whose audio came after this point
    for t in reversed(traced):
        if latest > t:
            done.add(t)
        latest = max(latest, t)
    if media and ctx.hangup - media[-1].wall >= 1.0:
        done.update(traced)
    return done


def whole_reply_spoken(ctx: CheckContext) -> CheckResult:
    """The caller hears the whole reply: every sentence the LLM gave goes to TTS, and each TTS request's audio
    is sent (most of it), unless the reply was cut for a reason (:func:`_cut`: then where, and why that was
    right, is said in the pass). A reply is judged once the handler speaks a later one, or ``REPLY_GRACE_S``
    after it (and its audio at the replay's pace) if the caller is still on the line."""
    name = "whole_reply_spoken"
    timeline = ctx.timeline
    replies = [r for r in timeline.of(LlmRequest) if r.status < 400 and _norm(r.reply)]
    if not replies:
        return skipped(name, "no LLM reply to speak")
    tts_all = timeline.of(TtsRequest)
    if not tts_all:
        return skipped(name, "no request to the fake TTS: the handler speaks through another TTS, or not at all")
    spoken_by = _tts_by_reply(timeline)
    sent, traced = _sent_ms(timeline), any(m.tts is not None for m in timeline.of(Media))
    done_sending = _done_sending(ctx)
    excused = []
    for k, request in enumerate(replies, 1):
        mine = [t for t in spoken_by.get(request.index, []) if _norm(t.text)
                and _norm(t.text) in _norm(request.reply)]
        later = min((t.wall for i, ts in spoken_by.items() if i > request.index for t in ts), default=float("inf"))
        why = _cut(ctx, request, mine, later)
        if why:
            excused.append(f"reply {k} may end early: {why}")
            continue
        spoken = "".join(_norm(t.text) for t in mine if t.status < 400)
        parts = sentences(request.reply)
        missing = [s for s in parts if _norm(s) not in spoken]
        if missing:
            return CheckResult(name, False, f"reply {k} was not all spoken: {missing[0]!r} (sentence "
                               f"{parts.index(missing[0]) + 1} of {len(parts)}) never went to TTS, though the caller stayed "
                               f"on the line and did not talk over it", (mine[-1] if mine else request).wall)
        for tts in mine if traced else ():
            spoke = tts.audio_s * 1000
            if tts.index in done_sending and sent.get(tts.index, 0.0) < spoke * WHOLE_SHARE - WHOLE_SLACK_MS:
                return CheckResult(name, False, f"reply {k}: only {sent.get(tts.index, 0.0) / 1000:.2f} s of "
                                   f"TTS request {tts.index + 1}'s {spoke / 1000:.2f} s of speech "
                                   f"({tts.text[:40]!r}) reached the caller as that speech: the rest was never "
                                   f"sent, or sent garbled", tts.wall)
    return CheckResult(name, True, "; ".join(excused))


def _reply_positions(timeline: CallTimeline) -> dict[int, tuple[int, int]]:
    """For each TTS request from a reply: (that LLM request's index, where in the reply its text stands). Found
    in the order the requests were made, each from where the one before it ended: a reply whose sentences begin
    alike (the fuzzer's "네 w0 w1 ...") places each at its own sentence, not at the first that begins so."""
    positions: dict[int, tuple[int, int]] = {}
    cursor: dict[int, int] = {}
    for k, (tts, source) in enumerate(_sources(timeline)):
        text = _norm(tts.text)
        if source is None or not text:
            continue
        reply, key = _norm(source.reply), source.index
        at = reply.find(text, cursor.get(key, 0))
        at = reply.find(text) if at < 0 else at
        if at >= 0:
            positions[tts.index] = (key, at)
            cursor[key] = at + len(text)
    return positions


def replies_in_order(ctx: CheckContext) -> CheckResult:
    """Sentences go to TTS in the order of the replies they come from (no later reply spoken first), and the
    caller hears them so: each request's audio whole before the next one's (not two sentences' audio
    interleaved), a reply's sentences in the reply's order."""
    name = "replies_in_order"
    timeline = ctx.timeline
    replies = [e.reply for e in timeline.of(LlmRequest)]
    last = -1
    for tts in timeline.of(TtsRequest):
        sources = [i for i, reply in enumerate(replies) if tts.text and tts.text in reply]
        if not sources:
            continue  # not from a reply (an apology, a fallback)
        source = min((i for i in sources if i >= last), default=min(sources))
        if source < last:
            return CheckResult(name, False, f"{tts.text!r} (reply {source + 1}) was spoken "
                               f"after reply {last + 1} had started", tts.wall)
        last = source
    tts_by_index = {t.index: t for i, t in enumerate(timeline.of(TtsRequest))}
    positions = _reply_positions(timeline)
    by_tone: dict[float | None, list[tuple[float, int]]] = {}
    for i, t in tts_by_index.items():
        by_tone.setdefault(t.tone_hz, []).append((t.wall, i))
    heard: list[int] = []  # the TTS requests in the order their audio came, each run of one request once
    for m in timeline.of(Media):
        index = m.tts
        if index is None or (heard and heard[-1] == index) or _shares_tone(index, m.wall, tts_by_index, by_tone):
            continue
        if index in heard:
            other = tts_by_index.get(heard[-1])
            return CheckResult(name, False, f"the audio of TTS requests {index + 1} "
                               f"({tts_by_index[index].text[:30]!r}) and {heard[-1] + 1} "
                               f"({other.text[:30] if other else ''!r}) was sent interleaved: the caller hears "
                               f"pieces of two sentences in turn, out of order", m.wall)
        if heard and index in tts_by_index and heard[-1] in tts_by_index:
            now, before = positions.get(index), positions.get(heard[-1])
            if now and before and now[0] == before[0] and now[1] < before[1]:
                return CheckResult(name, False, f"{tts_by_index[index].text[:40]!r} was heard after "
                                   f"{tts_by_index[heard[-1]].text[:40]!r}, which comes later in the same reply: "
                                   f"heard out of order",
                                   m.wall)
        heard.append(index)
    return CheckResult(name, True)


def _was_cut(reply: LlmRequest, later: LlmRequest, clears: Sequence[Clear], spoken: Sequence[TtsRequest]) -> bool:
    """A reply the handler cut short before the ``later`` request: it let go of the LLM's stream or of one of its
    TTS streams, or cleared playback from when it was asked until ``CLEAR_LATE_S`` after the later request began
    (a handler whose threads race may send its ``clear`` just after asking anew). Such a reply may be kept as
    heard, or dropped."""
    if reply.abandoned or any(t.abandoned for t in spoken):
        return True
    return any(reply.wall <= c.wall <= later.wall + CLEAR_LATE_S for c in clears)


def _shares_tone(index: int, wall: float, tts_by_index: dict[int, TtsRequest],
                 by_tone: dict[float | None, list[tuple[float, int]]]) -> bool:
    """Another request of the same tone had begun by then: which of the two spoke this audio is a guess
    (``timeline.Speakers``), and order is judged only where it is not."""
    tone = tts_by_index[index].tone_hz if index in tts_by_index else 0.0
    return bool(tone) and any(i != index and at <= wall for at, i in by_tone.get(tone, []))


def _turns_told(told: Sequence[tuple[str, str]], role: str) -> str:
    return _norm(" ".join(content for r, content in told if r == role and isinstance(content, str)))


def llm_told_conversation(ctx: CheckContext) -> CheckResult:
    """Each LLM request carries the conversation so far: the caller's words of the last ``HISTORY_TURNS`` turns
    before it, and the bot's replies to them that were spoken and not cleared (a reply cut by a barge-in may be
    kept as heard, or dropped: both are seen in good handlers).
    A deliberately stateless bot opts out with ``"expect": {"llm_history": false}`` in its fixtures."""
    name = "llm_told_conversation"
    if ctx.expect.get("llm_history") is False:
        return skipped(name, "the fixture says the bot keeps no history (expect.llm_history: false)")
    timeline = ctx.timeline
    delivered = [r for r in timeline.of(LlmRequest) if r.status < 400]
    if len(delivered) < 2:
        return skipped(name, "fewer than two LLM turns: no earlier turn to carry")
    spoken = {t.text for t in timeline.of(TtsRequest) if t.status < 400}
    clears = timeline.of(Clear)
    tts_of = _tts_by_reply(timeline)
    for k, request in enumerate(delivered[1:], 1):
        users, replies = _turns_told(request.told, "user"), _turns_told(request.told, "assistant")
        for j in range(max(0, k - HISTORY_TURNS), k):
            earlier = delivered[j]
            said = [line for line in earlier.user.split("\n") if _norm(line)]
            lost = next((line for line in said if _norm(line) not in users), None)
            if lost is not None:
                return CheckResult(name, False, f"LLM request {k + 1} does not carry what the caller said in turn {j + 1} "
                                   f"({lost[:40]!r}): the LLM answers without the conversation", request.wall)
            reply = earlier.reply
            opening = _norm(reply)[:8]
            was_spoken = any(s and _norm(s) and _norm(s) in _norm(reply) for s in spoken)
            cut = _was_cut(earlier, request, clears, tts_of.get(earlier.index, []))
            if opening and was_spoken and not cut and opening not in replies:
                return CheckResult(name, False, f"LLM request {k + 1} does not carry the bot's reply of turn {j + 1} "
                                   f"({reply[:40]!r}), which the caller heard: the LLM does not know what it said",
                                   request.wall)
    return CheckResult(name, True)
