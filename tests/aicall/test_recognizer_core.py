"""The RTZR stream's decisions (``aicall.recognizer_core``) as a state machine (hypothesis stateful testing).

Random interleavings of caller audio (speech, silence, a long stretch that overflows the resend buffer),
streams opening and ending (cleanly or not), frames going out, results coming back (partials, finals,
empty and malformed messages), time passing and the hang-up are fed to ``RecognizerCore``; after every step
its answers are checked against a model written the plain way: which frames are kept for resending, what is
resent, when a stream counts as stalled, when a keepalive or EOS is due, what backoff follows, and that
every result is handed on once, in order.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from aicall.recognizer_core import (BACKOFF_S, MAX_BUFFER_MS, STALL_MIN_SPEECH_MS, AbandonStalled, Delivery,
                                    RecognizerCore, SendEos, SendKeepalive, Timings, Wait, backoff_s, is_speech)

from ..support.budget import examples

TIMINGS = Timings(stall_wait_s=2.5, keepalive_after_s=5.0, eos_wait_s=5.0)
LOUD, QUIET = (6000).to_bytes(2, "little", signed=True), b"\x00\x00"


def frame(ms: int, loud: bool) -> bytes:
    """``ms`` of 8 kHz LINEAR16: speech (a constant at -15 dBFS) or digital silence."""
    return (LOUD if loud else QUIET) * (8 * ms)


class RecognizerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.core = RecognizerCore("LINEAR16", 8000, TIMINGS)
        self.now = 1000.0
        self.audio: list[bytes] = []  # every frame the core accepted, by index
        self.lost = 0  # frames dropped from the front by the buffer's overflow
        self.received: list[dict] = []  # results with alternatives, in arrival order
        self.delivered: list[Delivery] = []
        self.finished = False
        self.failures_in_a_row = 0
        self.streaming = False
        self.done = False  # stream_ended said the call's recognition is over

    def stream_fresh(self) -> None:
        self.sent: list[tuple[int, float, float, bool]] = []  # on this stream: (index, conn ms at end, when, speech)
        self.answered: set[int] = set()  # positions in self.sent that a later result reached
        self.last_result_at: float | None = None
        self.last_send = self.now
        self.abandoned = False
        self.eos_sent = False
        self.keepalives = 0  # since the last frame

    # ------------------------------------------------------------- the call
    @precondition(lambda self: not self.done)
    @rule(ms=st.sampled_from([20, 20, 10, 10_000]), loud=st.booleans())
    def audio_arrives(self, ms: int, loud: bool) -> None:
        data = frame(ms, loud)
        base, kept = self.core.base, len(self.core.frames)
        out = self.core.audio(data)
        self.take(out)
        if self.finished:
            assert out == [] and (self.core.base, len(self.core.frames)) == (base, kept), "audio after the hang-up"
            return
        self.audio.append(data)

    @precondition(lambda self: not self.finished and not self.done)
    @rule()
    def hang_up(self) -> None:
        out = self.core.finish(self.now)
        self.finished = True
        assert all(d.talks_on is False for d in out if d.final), "no audio will come to say the caller talks on"
        self.take(out)

    @rule(dt=st.sampled_from([0.0, 0.02, 0.25, 1.0, 2.6, 6.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    # ----------------------------------------------------------- a stream
    @precondition(lambda self: not self.streaming and not self.done)
    @rule()
    def stream_opens(self) -> None:
        self.core.stream_opened()
        self.core.sender_started(self.now)
        self.streaming = True
        self.stream_fresh()

    @precondition(lambda self: self.streaming and not self.eos_sent)
    @rule(upto=st.integers(1, 50))
    def frames_go_out(self, upto: int) -> None:
        for _ in range(upto):
            nxt = self.core.next_frame()
            if nxt is None:
                assert self.core.position >= self.core.base + len(self.core.frames)
                return
            index, data = nxt
            expected = max(self.sent[-1][0] + 1, self.core.base) if self.sent else self.core.base
            assert index == expected, "a stream starts at the first frame since the last final, then goes in order"
            assert data is self.audio[index]
            conn_ms = (self.sent[-1][1] if self.sent else 0.0) + len(data) / 16.0 + self.keepalive_ms()
            self.core.frame_sent(index, data, self.now)
            self.sent.append((index, conn_ms, self.now, is_speech(data, "LINEAR16")))
            self.keepalives = 0
            self.last_send = self.now
            assert self.core.conn_ms == pytest.approx(conn_ms)

    def keepalive_ms(self) -> float:
        return 20.0 * self.keepalives

    @precondition(lambda self: self.streaming and not self.eos_sent and not self.abandoned)
    @rule()
    def sender_has_sent_everything(self) -> None:
        if self.core.next_frame() is not None:
            return
        step = self.core.when_sent(self.now)
        if self.stalled():
            assert isinstance(step, AbandonStalled)
            self.core.abandon()
            self.abandoned = True
        elif self.finished:
            assert isinstance(step, SendEos)
            self.core.eos_sent(self.now)
            self.eos_sent, self.eos_at = True, self.now
        elif self.now - self.last_send >= TIMINGS.keepalive_after_s:
            assert isinstance(step, SendKeepalive) and step.frame == QUIET * 160
            self.core.keepalive_sent(self.now)
            self.keepalives += 1
            self.last_send = self.now
        else:
            assert isinstance(step, Wait)

    @precondition(lambda self: self.streaming and self.eos_sent)
    @rule()
    def waiting_for_the_last_final(self) -> None:
        assert self.core.awaiting_last_final(self.now) == (self.now < self.eos_at + TIMINGS.eos_wait_s)

    @precondition(lambda self: self.streaming)
    @rule(final=st.booleans(), start=st.integers(0, 3000), length=st.integers(0, 3000), words=st.booleans(),
          malformed=st.booleans())
    def result_arrives(self, final: bool, start: int, length: int, words: bool, malformed: bool) -> None:
        conn_ms = self.sent[-1][1] if self.sent else 0.0
        start_at = min(start, int(conn_ms))
        result = {"seq": len(self.received), "start_at": start_at, "duration": length if final else 0, "final": final,
                  "alternatives": [{"text": f"r{len(self.received)}"}] if words else []}
        message = "not json{" if malformed else json.dumps(result)
        base = self.core.base
        out = self.core.receive(message, self.now)
        if malformed:
            assert out is None
            return
        assert out is not None
        self.last_result_at = self.now
        reach = start_at + (result["duration"] if final else 0)
        self.answered |= {i for i, (_, end, _, _) in enumerate(self.sent) if end <= reach}
        if final:  # the audio it covers is transcribed: not resent
            covered = [index for index, end, _, _ in self.sent if end <= reach]
            expected_base = min(max(base, covered[-1] + 1), len(self.audio)) if covered else base
            assert self.core.base == expected_base
        else:
            assert self.core.base == base
        if words:
            self.received.append(json.loads(message))
        self.take(out)

    @precondition(lambda self: self.streaming)
    @rule(clean=st.booleans())
    def stream_ends(self, clean: bool) -> None:
        delay = self.core.stream_ended(clean)
        self.streaming = False
        if self.finished and not self.abandoned:
            assert delay is None, "the call is over and its stream did not stall: recognition is done"
            self.done = True
            return
        expected = 0.0 if clean else BACKOFF_S[min(self.failures_in_a_row, len(BACKOFF_S) - 1)]
        assert delay == expected
        self.failures_in_a_row = 0 if clean else self.failures_in_a_row + 1

    # ------------------------------------------------------------- the model
    def take(self, out: list[Delivery]) -> None:
        for d in out:
            assert (d.talks_on is not None) == d.final, "talks_on is said of finals, and only of them"
        self.delivered += out

    def stalled(self) -> bool:
        """Speech sent on this stream that no later result reached, waiting (since it went out, or since the
        last result) at least the stall wait: 100 ms of it is a stall."""
        waiting = 0.0
        for i, (index, _, sent_at, speech) in enumerate(self.sent):
            if speech and i not in self.answered:
                since = max(sent_at, self.last_result_at or sent_at)
                if since <= self.now - TIMINGS.stall_wait_s:
                    waiting += len(self.audio[index]) / 16.0
        return waiting >= STALL_MIN_SPEECH_MS

    @invariant()
    def results_are_handed_on_once_in_order(self) -> None:
        if not hasattr(self, "core"):
            return
        assert [d.result for d in self.delivered] == self.received[: len(self.delivered)]
        undelivered = self.received[len(self.delivered) :]
        if self.finished:
            assert not undelivered, "after the hang-up nothing waits for the caller's next words"
        elif undelivered:
            assert undelivered[0]["final"], "only a final (and what came after it) waits for the audio after it"

    @invariant()
    def the_buffer_is_the_audio_since_the_last_final(self) -> None:
        if not hasattr(self, "core"):
            return
        core = self.core
        assert list(core.frames) == self.audio[core.base :]
        buffered = sum(len(f) for f in core.frames) / 16.0
        assert core.buffered_ms == pytest.approx(buffered, abs=1e-6)
        assert buffered <= MAX_BUFFER_MS or len(core.frames) == 1

    @invariant()
    def a_stall_is_what_the_model_says(self) -> None:
        if hasattr(self, "core") and self.streaming and not self.abandoned:
            assert self.core.stalled(self.now) == self.stalled()


RecognizerMachine.TestCase.settings = examples(150)
test_recognizer_core_state_machine = pytest.mark.timeout(400)(RecognizerMachine.TestCase)


def test_backoff_grows_to_two_seconds():
    assert [backoff_s(n) for n in range(8)] == [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def held_final(core: RecognizerCore, now: float = 0.0) -> list[Delivery]:
    core.stream_opened()
    core.sender_started(now)
    for ms in (20,) * 10:
        out = core.audio(frame(ms, True))
        assert out == []
    while (nxt := core.next_frame()) is not None:
        core.frame_sent(*nxt, now)
    return core.receive(json.dumps({"final": True, "start_at": 0, "duration": 200,
                                    "alternatives": [{"text": "네"}]}), now) or []


def test_a_final_waits_for_300_ms_of_audio_after_it_and_speech_there_means_the_caller_talks_on():
    core = RecognizerCore()
    assert held_final(core) == [] and len(core.frames) == 0
    assert [core.audio(frame(20, True)) for _ in range(5)] == [[]] * 5  # 100 ms: the guard
    out = core.audio(frame(20, True))
    assert [(d.result["alternatives"][0]["text"], d.talks_on) for d in out] == [("네", True)]


def test_silence_after_a_final_means_the_turn_is_over():
    core = RecognizerCore()
    held_final(core)
    outs = [core.audio(frame(20, False)) for _ in range(15)]
    assert all(out == [] for out in outs[:14]) and [d.talks_on for d in outs[14]] == [False]


def test_after_eos_a_reconnect_is_tried_only_for_the_eos_wait():
    core = RecognizerCore(timings=TIMINGS)
    core.finish(100.0)
    assert not core.gave_up_finishing(104.9) and core.gave_up_finishing(105.0)


def test_another_final_says_the_caller_talked_on_after_the_held_one():
    core = RecognizerCore()
    held_final(core)
    out = core.receive(json.dumps({"final": True, "start_at": 200, "duration": 100, "alternatives": [{"text": "아니요"}]}), 0.0)
    assert out is not None and [d.talks_on for d in out] == [True]  # the second waits for the audio after it


def test_100_ms_of_speech_unanswered_for_the_stall_wait_is_a_stall_and_80_ms_is_not():
    for speech_ms, stalled in ((80, False), (100, True)):
        core = RecognizerCore(timings=TIMINGS)
        core.stream_opened()
        core.sender_started(0.0)
        for _ in range(speech_ms // 20):
            core.audio(frame(20, True))
        while (nxt := core.next_frame()) is not None:
            core.frame_sent(*nxt, 0.0)
        assert not core.stalled(TIMINGS.stall_wait_s - 0.01)
        assert core.stalled(TIMINGS.stall_wait_s) == stalled
        assert isinstance(core.when_sent(TIMINGS.stall_wait_s), AbandonStalled if stalled else Wait)


def test_a_sender_overtaken_by_the_buffers_overflow_goes_on_from_the_oldest_frame_kept():
    core = RecognizerCore()
    core.stream_opened()
    core.sender_started(0.0)
    core.audio(frame(20, True))
    core.frame_sent(*core.next_frame(), 0.0)
    for _ in range(7):  # 70 s more than the sender took: the oldest are dropped
        core.audio(frame(10_000, False))
    assert core.base == 2 and core.lost_ms == 10_020
    assert core.next_frame() == (2, core.frames[0])
