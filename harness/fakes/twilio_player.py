"""The fake Twilio: plays a fixture's caller audio into a Media Streams WebSocket, as Twilio does.

``connected``, ``start`` (callSid, streamSid, customParameters, mediaFormat), ``media`` every 20 ms
with sequence numbers and timestamps, ``dtmf``, ``mark`` echoed when the bot audio sent before it
would have finished playing (at once after a ``clear``), then ``stop``, and then, as Twilio does when
the call ends, it closes the WebSocket itself (after ``CLOSE_AFTER_STOP_S`` for messages in flight):
a handler that waits for the socket to close rather than reading ``stop`` ends its call all the same.
A ``vanish`` hang-up drops the line without ``stop`` or a close frame, but only after every frame
sent reached the handler's socket (a TCP FIN), so the verdict never depends on what was still queued.
Pacing is real time times ``pace`` (2.0 plays twice as fast), or ``None``: as fast as the handler reads.

A call may start as Twilio starts it (``WebhookStart``: the handler's voice webhook asked for TwiML and the TwiML
followed to its ``<Connect><Stream>``), or be placed by the handler (``PlaceStart``: it creates the call through the
REST API and Twilio dials the caller), the call kept in the fake REST API (``harness.fakes.twilio_call``). A handler
that ends it there (``Status=completed``) is obeyed: the caller stops, and ``stop`` goes out as Twilio sends it; one
that redirects it (new ``Twiml`` or ``Url``) has its stream stopped the same way, and the new TwiML followed.

A caller may time words on the bot (``caller.reacts``): the line holds silence, or cuts a pause short, so that
an utterance starts a set time after the bot's reply to an earlier turn starts or ends; and a caller who hangs
up once a turn is answered (``hangup_after_turns``) waits for that answer when they have said everything first.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import OrderedDict
from typing import Callable

import aiohttp
import numpy as np

from callaudio.g711 import pcm16_to_ulaw
from harness.errors import HarnessError
from harness.fakes.patience import Patience
from harness.fakes.twilio_call import CallStart, PlaceStart, TwilioCall, outbound_number
from harness.fakes.twilio_line import FRAME_MS, PlayerRecord, TwilioLine
from harness.fakes.twilio_webhook import SIGNATURE_HEADER, signature
from harness.fakes.wrong_path import why_closed_at_once, why_refused
from harness.fixture import CallFixture, Reaction

ANSWER_POINT_MS = 700  # fast pacing stops this long after an utterance's last word (or, if longer, its end point
# and 200 ms) to let it be answered, unless the next utterance starts sooner (RTZR cannot end the first one then)
FAST_ANSWER_WAIT_S = 3.0  # fast pacing waits this long for each turn's answer before talking on (counted while the
# harness ran on time: ``harness.fakes.patience``) ...
FAST_DONE_QUIET_S = 0.05  # ... and then for the reply to be over: nothing in flight and no message this long
QUIET_S = 0.3  # the bot counts as done speaking after this long without a message
LISTEN_LIMIT_S = 10.0  # at most this long listening to the end of the bot's reply before hanging up
LEAD_MS = 100  # a reacting utterance resumes the fixture's audio this long before its first word
MIN_GAP_MS = 700  # ... and never starts sooner than this after the previous utterance ends (RTZR's epd is 500 ms)
REACT_QUIET_S = 0.3  # the bot's reply has ended: played out and nothing more for this long (audio time)
SILENCE_FRAME = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of mu-law silence
CLOSE_AFTER_STOP_S = 0.5  # Twilio closes the socket once the call has ended; what the handler had in flight still arrives
VANISH_DRAIN_S = 10.0  # after a dropped line, how long the handler has to notice the end of the stream


_FRAMES: "OrderedDict[int, tuple[np.ndarray, list[str]]]" = OrderedDict()


def caller_frames(fixture: CallFixture) -> list[str]:
    """The fixture's caller audio as Twilio's 20 ms mu-law media payloads (base64), made once per fixture
    (a load run plays the same few fixtures thousands of times)."""
    audio = fixture.script.audio
    cached = _FRAMES.get(id(audio))
    if cached is not None and cached[0] is audio:
        _FRAMES.move_to_end(id(audio))
        return cached[1]
    ulaw = pcm16_to_ulaw(audio)
    frames = [base64.b64encode(ulaw[i : i + 160]).decode() for i in range(0, len(ulaw), 160)]
    _FRAMES[id(audio)] = (audio, frames)
    while len(_FRAMES) > 32:
        _FRAMES.popitem(last=False)
    return frames


def _hold_point(reaction: Reaction, utterances) -> tuple[int, int, Reaction]:
    """Where the fixture's audio is held for a reacting utterance (``LEAD_MS`` before its first word), and the
    earliest frame from which the pause before it may be cut short (``MIN_GAP_MS`` after the previous one)."""
    said, before = utterances[reaction.utterance], utterances[reaction.utterance - 1]
    hold = max(0, int((said.start_ms - LEAD_MS) // FRAME_MS))
    earliest = min(hold, int(np.ceil((before.end_ms + MIN_GAP_MS) / FRAME_MS)))
    return hold, earliest, reaction


def answer_after_ms(end_point_ms: float) -> float:
    """How long after an utterance's last word a fast caller has sent enough audio for the recognizer to end it:
    its end point and 200 ms, ``ANSWER_POINT_MS`` at least."""
    return max(ANSWER_POINT_MS, end_point_ms + 200)


def _answer_after_ms(fixture: CallFixture) -> float:
    """``answer_after_ms`` for the fixture's end point (its ``epd_time``, or RTZR's default)."""
    return answer_after_ms(fixture.script.recognizer.end_point_ms)


def new_call_sid() -> str:
    """A Twilio-shaped call SID (``CA`` + 32 hex digits), fresh for every replay."""
    return "CA" + uuid.uuid4().hex


class TwilioPlayer:
    """Plays one fixture's caller over a ``TwilioLine``: its audio at ``pace``, its DTMF and hang-up."""

    def __init__(self, session: aiohttp.ClientSession, url: str, fixture: CallFixture, *, pace: float | None = 1.0,
                 call_sid: str | None = None, stream_sid: str | None = None,
                 headers: dict[str, str] | None = None, replying: Callable[[], bool] = lambda: False,
                 start: CallStart | None = None) -> None:
        self.fixture, self.pace, self.start = fixture, pace, start
        self.replying = replying  # the handler still has work in flight with the LLM or TTS (a reply is being made)
        self.call_sid = call_sid or new_call_sid()
        self.line = TwilioLine(session, url, call_sid=self.call_sid, stream_sid=stream_sid or "MZ" + self.call_sid[2:],
                               headers=headers, pace=pace)
        if isinstance(start, PlaceStart):  # a number of the call's own: calls placed at once are told apart by it
            self.line.caller = outbound_number(self.call_sid)
        self.line.on_media = self._heard_media
        self.record = self.line.record
        self._answered = 0
        self._awaiting_answer = False
        self._answer = asyncio.Event()
        self._leaving = False
        self._t0 = time.monotonic()
        self._sent = 0  # caller audio frames sent, the held silences included
        self._turns_said = 0  # utterances whose last frame has been sent
        self._bot_starts: dict[int, float] = {}  # turn -> caller audio ms when the bot's audio for it began
        self._bot_ends: dict[int, float] = {}  # turn -> caller audio ms when it had finished playing
        self._hold_began: tuple[Patience, int] | None = None  # a caller's wait for the bot: since when (frames)
        self._redirected = False  # the handler gave the call new TwiML: its stream stops for it
        self.twilio_call = None if start is None else TwilioCall(start, session, self.call_sid, self.line.caller, pace)

    @property
    def stream_sid(self) -> str:
        return self.line.stream_sid

    def hang_up_now(self) -> None:
        """End the call early, as a caller who hangs up: no more audio, then ``stop`` (a load run's end)."""
        self._leaving = True

    def _heard_media(self) -> None:
        turn = self._turns_said
        if turn and turn not in self._bot_starts:  # the bot's first audio since the caller's turn ended
            self._bot_starts[turn] = self._audio_ms(time.monotonic())
        if self._awaiting_answer:
            self._awaiting_answer = False
            self._answered += 1
            self._answer.set()

    async def run(self) -> PlayerRecord:
        twilio_call = self.twilio_call
        try:
            if twilio_call is not None:
                await self._connect(twilio_call)
            record = await self._run()
            if twilio_call is not None and record.hung_up_how == "redirect":
                record.redirect = await twilio_call.follow_redirect(record.stop_at or time.monotonic())
            return record
        finally:
            if twilio_call is not None:
                twilio_call.close()

    async def _connect(self, twilio_call: TwilioCall) -> None:
        """The call's TwiML followed to its stream: the line opens there with its parameters, and what the handler
        asks of the call through the REST API (an end, new TwiML) stops the caller."""
        dialled = await twilio_call.connect()
        core, line = twilio_call.twilio.core, self.line
        assert dialled.stream_url is not None
        line.url, line.custom_parameters, line.account_sid = dialled.stream_url, dialled.parameters, core.account_sid
        # Twilio signs the stream's handshake too, with the URL as the TwiML gave it (no form: an empty one)
        line.headers[SIGNATURE_HEADER] = signature(dialled.twiml_url or dialled.stream_url, {}, core.auth_token)

        def stop_the_caller() -> None:
            self.hang_up_now()
            self._answer.set()  # a fast-paced caller waiting for an answer stops waiting
            line.wake()  # ... and so does one listening to the end of the bot's reply

        def ended() -> None:
            self.record.ended_by_api = True
            stop_the_caller()

        def redirected() -> None:
            self._redirected = True
            stop_the_caller()

        twilio_call.watch(ended, redirected)

    async def _run(self) -> PlayerRecord:
        line = await self._open()
        try:
            await self._play()
            caller = self.fixture.caller
            if caller.hangup_ms is None and not caller.hangup_after_turns and not self._leaving:
                await self._listen_to_the_end()
            elif caller.hangup_after_turns and not self._leaving:
                await self._wait_for_turns(caller.hangup_after_turns)
            await self._hang_up()
            self.record.closed_by_handler = self.record.stop_at is None
            await self._end(line.reader)
            self.record.close_code = line.ws.close_code
        finally:
            line.cancel_pending_marks()
            if not line.reader.done():
                line.reader.cancel()
            if not line.ws.closed:
                await line.ws.close()
        refusal_expected = bool(self.fixture.expect.get("call_refused") or self.fixture.handler_without)
        if self.record.hung_up_how == "handler closed first" and not self.record.received and not refusal_expected:
            # after the call, off its clock; a call the handler is to refuse is not probed (its close is the point)
            why = await why_closed_at_once(line.session, line.url, line.headers)
            if why:
                raise HarnessError(why)
        return self.record

    async def _open(self) -> TwilioLine:
        """The line opened; a refused upgrade is said with its likely cause first (a wrong path, a signature check)."""
        try:
            return await self.line.open()
        except HarnessError as exc:
            refused = exc.__context__  # the line raises its message from None: the handshake error is its context
            if not isinstance(refused, aiohttp.WSServerHandshakeError):
                raise
            line = self.line
            raise HarnessError(await why_refused(line.session, line.url, refused.status, str(exc), line.headers)) from None

    async def _play(self) -> None:
        fixture, caller, line = self.fixture, self.fixture.caller, self.line
        frames = caller_frames(fixture)
        n = len(frames)
        self.record.frame_sent = np.full(n, np.nan)
        utterances = fixture.script.utterances
        end_frames = {int(np.ceil(u.end_ms / FRAME_MS)): i for i, u in enumerate(utterances)}
        answer_points = _answer_points(fixture) if self.pace is None else set()
        hangup_frame = n if caller.hangup_ms is None else min(n, int(caller.hangup_ms / FRAME_MS))
        dtmf = {int(at / FRAME_MS): digit for at, digit in caller.dtmf}
        holds = sorted(_hold_point(r, utterances) for r in caller.reacts)  # (hold frame, earliest frame, reaction)
        self._t0 = time.monotonic()
        k = 0
        while k < hangup_frame:
            if line.ws.closed or self.record.closed_at is not None or self._leaving:
                return
            if holds and holds[0][1] <= k <= holds[0][0]:
                hold, earliest, reaction = holds[0]
                due = self._reaction_due(reaction)  # the caller audio frame its words start on, once known
                if k < hold and due is not None and self._sent >= due:
                    self.record.skipped_ms += (hold - k) * FRAME_MS
                    k = hold  # the bot answered sooner than the fixture's pause: the caller speaks sooner
                if k == hold:
                    if (due is None or self._sent < due) and not self._waited_out(reaction):
                        await self._hold_one_frame(reaction, owed=self._end_point_owed(reaction, hold))
                        continue
                    holds.pop(0)
                    self._note_reaction(reaction, due)
            if self.pace:
                delay = self._t0 + self._sent * FRAME_MS / 1000 / self.pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the simulated phone line's pace
            self.record.frame_sent[k] = time.monotonic()
            self._sent += 1
            await line.send_media(frames[k])
            if k in dtmf:
                await line.dtmf(dtmf[k])
            if k + 1 in end_frames:
                self._turns_said = end_frames[k + 1] + 1
                self._awaiting_answer, self._answer = True, asyncio.Event()
            if caller.hangup_after_turns and self._answered >= caller.hangup_after_turns:
                return
            if self._awaiting_answer and k + 1 in answer_points:
                await self._wait_for_the_reply()
            k += 1

    # ------------------------------------------------------- a caller who reacts
    def _audio_ms(self, wall: float | None = None) -> float:
        """Where the caller's audio stands (ms sent, silences held included) at ``wall``: paced audio runs on
        the clock; at fast pace it stands where the last frame left it."""
        if self.pace and wall is not None:
            return max(0.0, (wall - self._t0) * self.pace * 1000)
        return self._sent * FRAME_MS

    def _reaction_due(self, reaction: Reaction) -> int | None:
        """The frame count (caller audio, holds included) at which the reacting words start, less ``LEAD_MS``,
        or None while the bot has not done what the caller waits for."""
        start = self._bot_starts.get(reaction.turn)
        if start is None:
            return None
        at = start
        if reaction.after == "bot_ends":
            at = self._bot_ends.get(reaction.turn)
            if at is None:
                at = self._bot_ended(reaction.turn)
                if at is None:
                    return None
        return int(np.ceil((at + reaction.ms - LEAD_MS) / FRAME_MS))

    def _bot_ended(self, turn: int) -> float | None:
        """The caller audio position at which the bot's reply to ``turn`` finished playing, once it has: nothing
        left to play, no LLM or TTS work in flight, no bot message for ``REACT_QUIET_S``."""
        now, line = time.monotonic(), self.line
        last = line.last_media_at
        quiet = now - max(last, line.playing_until) >= REACT_QUIET_S / (self.pace or 4)
        if line.playing_until > now or self.replying() or not quiet:
            return None
        at = self._audio_ms(max(last, line.playing_until)) if self.pace else self._audio_ms()
        self._bot_ends[turn] = at
        return at

    @property
    def answer_wait_s(self) -> float:
        """How long a caller at fast pace waits for a turn's answer: ``FAST_ANSWER_WAIT_S``, or 1 s past the
        fixture's latency budget if that is longer (a slow answer then fails by its latency, not by the wait)."""
        budget = self.fixture.expect.get("max_turn_ms")
        return max(FAST_ANSWER_WAIT_S, budget / 1000 + 1.0) if budget else FAST_ANSWER_WAIT_S

    def _waited_out(self, reaction: Reaction) -> bool:
        """The caller has waited ``wait_ms`` of audio (at fast pace ``FAST_ANSWER_WAIT_S``) and speaks anyway."""
        if self._hold_began is None:
            self._hold_began = (Patience(min(self.answer_wait_s, reaction.wait_ms / 1000)), self._sent)
        patience, began_frames = self._hold_began
        if self.pace:
            return (self._sent - began_frames) * FRAME_MS >= reaction.wait_ms
        return patience.spent()

    def _end_point_owed(self, reaction: Reaction, hold: int) -> bool:
        """At a hold, the recognizer has not yet had the audio to end the utterance before it (its end point lies
        past the hold point, ``LEAD_MS`` before the reacting words): the line, which carries audio all the time,
        owes it that much silence before the caller can wait on the bot."""
        before = self.fixture.script.utterances[reaction.utterance - 1]
        needed = int(np.ceil((before.end_ms + _answer_after_ms(self.fixture)) / FRAME_MS)) - hold  # frames past the hold
        began = self._hold_began[1] if self._hold_began is not None else self._sent
        return self._sent - began < needed

    async def _hold_one_frame(self, reaction: Reaction, owed: bool = False) -> None:
        """One frame of the caller's silence while they wait for the bot: paced, it is sent (the line carries
        audio all the time); at fast pace nothing is sent, the caller just waits for the bot's next message,
        once the recognizer has had the silence it needs to end the utterance before (``owed``)."""
        if not self.pace and self._reaction_due(reaction) is None and not owed:
            await self.line.wait_for_activity(FAST_DONE_QUIET_S)
            return
        delay = self._t0 + self._sent * FRAME_MS / 1000 / self.pace - time.monotonic() if self.pace else 0
        if delay > 0:
            await asyncio.sleep(delay)
        self._sent += 1
        self.record.silence_ms += FRAME_MS
        await self.line.send_media(SILENCE_FRAME)

    def _note_reaction(self, reaction: Reaction, due: int | None) -> None:
        start = self.fixture.script.utterances[reaction.utterance].start_ms
        self.record.reactions.append({
            "utterance": reaction.utterance + 1, "after": reaction.after, "turn": reaction.turn, "ms": reaction.ms,
            "bot_ms": (self._bot_ends if reaction.after == "bot_ends" else self._bot_starts).get(reaction.turn),
            "spoke_at_ms": self._sent * FRAME_MS + LEAD_MS, "fixture_ms": start,
            "waited_out": due is None or self._sent < due})
        self._hold_began = None

    async def _wait_for_the_reply(self) -> None:  # fast pace, at each of ``_answer_points``
        """Fast pacing still lets each turn be answered, and the answer finish, before the caller talks on
        (bot audio takes no time to play, so a caller who talked on at its first frame would talk over it)."""
        patience = Patience(self.answer_wait_s)  # counted while the harness ran on time: a loaded machine is no slow handler
        if not await patience.wait(self._answer):
            return
        while not patience.spent() and not self.line.ws.closed and not self._leaving:
            if not await self.line.wait_for_activity(FAST_DONE_QUIET_S) and not self.replying():
                return

    async def _wait_for_turns(self, turns: int) -> None:
        """A caller who hangs up once the bot has started answering ``turns`` turns, and has said everything
        before it did, waits for it (``LISTEN_LIMIT_S`` at most): a slow handler is hung up on as a quick one is."""
        if self._answered >= turns or self.line.ws.closed or self.record.closed_at is not None:
            return
        try:
            await self.line.wait_for(lambda line: self._answered >= turns or line.ws.closed or self._leaving,
                                     LISTEN_LIMIT_S)  # ``_leaving``: the handler ended or redirected the call
        except asyncio.TimeoutError:
            pass

    async def _listen_to_the_end(self) -> None:
        """Like a caller who has said everything: wait until the bot stops talking (or ends the call). A caller
        whose call the fixture expects the handler to refuse waits for the line to go dead (``LISTEN_LIMIT_S`` at
        most): told the service is unavailable, they hold on until the call ends, so whether the handler ends
        it a moment after its apology or a moment later is no matter of the verdict."""
        deadline = time.monotonic() + LISTEN_LIMIT_S
        line = self.line
        refused = bool(self.fixture.expect.get("call_refused"))
        while not line.ws.closed and self.record.closed_at is None and time.monotonic() < deadline and not self._leaving:
            if not await line.wait_for_activity(QUIET_S) and not line.marks_pending and not refused:
                return

    async def _hang_up(self) -> None:
        if self.line.ws.closed or self.record.closed_at is not None:
            # the caller never hung up; a handler that redirected the call may close its end before ``stop`` goes out
            self.record.hung_up_how = "redirect" if self._redirected else "handler closed first"
            return
        if self.fixture.caller.vanish and not (self.record.ended_by_api or self._redirected):
            self.record.stop_at = time.monotonic()
            self.record.hung_up_how = "vanished"
            self.line.vanished = True
            if self.twilio_call is not None:
                self.twilio_call.caller_hung_up()
            return
        how = "api" if self.record.ended_by_api else "redirect" if self._redirected else "stop"
        self.record.hung_up_how = how  # Twilio's ``stop`` whichever it is
        await self.line.stop()
        if how == "stop" and self.twilio_call is not None:
            self.twilio_call.caller_hung_up()

    async def _end(self, reader: asyncio.Task[None]) -> None:
        """The end of the call on Twilio's side: the socket closes, whatever the handler does."""
        ws = self.line.ws
        if self.record.hung_up_how == "handler closed first":
            await asyncio.wait_for(reader, CLOSE_AFTER_STOP_S + 10)
            self.record.closed_how = "handler"
            return
        if self.record.hung_up_how == "vanished":
            self.line.cancel_pending_marks()  # nobody is left to echo them
            connection = ws._response.connection
            transport = connection.transport if connection else None
            if transport is not None and transport.can_write_eof():
                transport.write_eof()  # FIN after everything queued: no close frame, no audio lost
                try:
                    await asyncio.wait_for(asyncio.shield(reader), VANISH_DRAIN_S)
                except asyncio.TimeoutError:
                    pass
            if transport is not None:
                transport.abort()
            self.record.closed_how = "line dropped"
            if self.record.closed_at is None:
                self.record.closed_at = time.monotonic()
            return
        try:  # messages the handler had in flight when it got ``stop`` still arrive
            await asyncio.wait_for(asyncio.shield(reader), CLOSE_AFTER_STOP_S)
            self.record.closed_how = "handler"
            return
        except asyncio.TimeoutError:
            pass
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass
        self.record.closed_how = "twilio after stop"
        await ws.close(code=1000)  # the handler's answer to the close frame is awaited (aiohttp's timeout)
        self.record.closed_at = time.monotonic()


def _answer_points(fixture: CallFixture) -> set[int]:
    """The frame counts (frames sent) after which a fast-paced caller waits for each turn's answer: once the
    recognizer has had the audio of the utterance's end point (its ``epd_time``, the fixture's or RTZR's
    default) to finalise it, ``ANSWER_POINT_MS`` at least; none for an utterance whose next one starts sooner."""
    after_ms = _answer_after_ms(fixture)
    utterances = fixture.script.utterances
    points = set()
    for i, u in enumerate(utterances):
        point = int(np.ceil(u.end_ms / FRAME_MS)) + int(np.ceil(after_ms / FRAME_MS))
        following = utterances[i + 1].start_ms if i + 1 < len(utterances) else float("inf")
        if point * FRAME_MS <= following or after_ms == ANSWER_POINT_MS:  # RTZR's default end point: always
            points.add(point)
    return points
