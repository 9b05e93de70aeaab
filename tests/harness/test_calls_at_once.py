"""Calls at once on one handler: the fakes tell the calls apart by what they carry (fakertzr's scripts with
faults scoped to their own streams, LLM and TTS requests routed by their words), each call is judged by
every check as when alone, and the cross-call checks catch what only neighbours show. The cross-call checks
are judged here on timelines (the sans-I/O core), and end to end against aicall; the proving ground runs
their mutants in four handler styles."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from types import SimpleNamespace

import numpy as np
import pytest

from fakertzr import FakeRtzrBackend
from fakertzr.actions import Close, SendResult
from fakertzr.errors import FakeRtzrError
from harness.judge.events import CallStart, Final, LlmRequest, RtzrEnd, SpeechEnd, SpeechStart, Stop
from harness.fixture import bundled_calls, load_call
from harness.judge.bot_audio import HOP, BotAudio, Heard
from harness.judge.checks import CheckContext
from harness.judge.crosscall import (NEIGHBOUR_WAIT_S, Neighbours, OtherCall, Stall, replies_reach_own_caller,
                                     unaffected_by_neighbours)
from harness.judge.timeline import CallTimeline
from harness.replay.lanes import confusable, plays_alone
from harness.replay.together import CallsAtOnce, _Call, units
from harness.replay.runner import ErrorLog
from harness.replay.runs import run_target
from harness.replay.targets import AicallTarget

CALLS = bundled_calls()


def call(name: str):
    return load_call(CALLS / name)


# ---------------------------------------------------------------- the waves
def test_groups_start_together_and_what_cannot_share_a_handler_is_told_apart():
    fixtures = [call(n) for n in ("seed-three-turns", "rapid-back-to-back", "failure1-credentials-refused",
                                  "busy-hour-1", "barge-in", "busy-hour-2", "long-utterance", "llm-fails-once",
                                  "busy-hour-3")]
    planned = [[f.name for f in u] for u in units(fixtures, 3)]
    assert ["busy-hour-1", "busy-hour-2", "busy-hour-3"] in planned, planned
    assert sorted(n for u in planned for n in u) == sorted(f.name for f in fixtures)
    assert all(len(u) == 1 for u in units(fixtures, 1))
    assert plays_alone(call("failure1-credentials-refused")) and not plays_alone(call("seed-three-turns")), \
        "a refused handshake cannot be told to one of several calls"
    assert confusable(call("seed-three-turns"), call("llm-fails-once")), "the same words: their requests look alike"
    assert not confusable(call("busy-hour-1"), call("busy-hour-2"))


# ------------------------------------------------- fakertzr: faults of one call
def _stream(backend: FakeRtzrBackend):
    _, body = backend.authenticate({"client_id": backend.config.client_id, "client_secret": backend.config.client_secret})
    opened = backend.open_stream({"Authorization": f"Bearer {body['access_token']}"},
                                 {"sample_rate": "8000", "encoding": "LINEAR16"})
    return opened


def _feed(opened, audio: np.ndarray) -> list:
    pcm = audio.astype("<i2").tobytes()
    return [a for i in range(0, len(pcm), 320) for a in opened.session.receive_audio(pcm[i : i + 320])]


def test_a_scripts_own_faults_act_on_its_streams_only_counted_by_its_own_streams():
    closing = call("failure2-recognizer-closes-1000").script  # close(1000) after the first final of its stream 0
    other = call("rapid-back-to-back").script
    backend = FakeRtzrBackend()
    backend.load_script(dataclasses.replace(closing, name="a@1"), own_faults=True)
    backend.load_script(dataclasses.replace(other, name="b@2"), own_faults=True)
    b = _stream(backend)  # the other call's stream opens first: global connection 0
    a = _stream(backend)
    b_actions, a_actions = _feed(b, other.audio), _feed(a, closing.audio)
    assert (a.record.script, b.record.script) == ("a@1", "b@2")
    assert any(isinstance(x, Close) for x in a_actions), "a's first stream is its connection 0: its fault fired"
    assert not any(isinstance(x, Close) for x in b_actions), "b's stream is untouched by a's fault"
    assert sum(isinstance(x, SendResult) and x.result.final for x in b_actions) == len(other.utterances)
    again = _stream(backend)  # a's second stream: its connection 1, which the fault does not name
    assert not any(isinstance(x, Close) for x in _feed(again, closing.audio))


def test_a_fault_before_any_audio_cannot_be_given_to_one_call():
    backend = FakeRtzrBackend()
    with pytest.raises(FakeRtzrError, match="before any audio"):
        backend.load_script(call("failure1-credentials-refused").script, own_faults=True)


# ------------------------------------------------- the cross-call checks, sans-I/O
def judged(events: list[Event], neighbours: Neighbours, heard: list[Heard] = ()) -> CheckContext:
    bot = BotAudio(heard=list(heard)) if heard else None
    return CheckContext(CallTimeline(sorted(events, key=lambda e: e.wall), bot), {}, None, neighbours=neighbours)


def talks(asked_at: float) -> list[Event]:
    """A caller's one utterance (its last word out at 0.5 s, its end point's audio out, and so its words due at the
    LLM, at 1.0 s), its final at 1.0 s and its LLM request at ``asked_at``."""
    return [CallStart(0.0), SpeechStart(0.2, utterance=0, audio_ms=500.0),
            SpeechEnd(0.5, utterance=0, text="배송은 언제 오나요", audio_ms=1500.0, end_point_sent=1.0),
            Final(1.0, text="배송은 언제 오나요", call_ms=1500.0),
            LlmRequest(asked_at, user="배송은 언제 오나요", status=200, ended=asked_at + 0.1, reply=""),
            Stop(20.0, how="stop")]


def stalled(start: float = 0.5, end: float = 8.5) -> Neighbours:
    return Neighbours(others=[OtherCall("CA2", "stalled-neighbour-stalls", frozenset({"환불 규정이 궁금합니다"}))],
                      concurrent={"CA2"}, stalls=[Stall("CA2", "stalled-neighbour-stalls", "LLM request", start, end)],
                      user_texts=[], spoken=[])


def test_a_call_frozen_while_its_neighbour_stalled_fails_naming_the_neighbour_and_the_wait():
    result = unaffected_by_neighbours(judged(talks(asked_at=8.6), stalled()))
    assert not result.ok and "stalled-neighbour-stalls" in result.message and "7.6 s" in result.message
    never = unaffected_by_neighbours(judged(talks(asked_at=30.0), stalled()))  # a blocked handler forwards no audio
    assert not never.ok and "never did before the call ended" in never.message
    assert "froze" in result.message


def test_a_call_held_up_by_its_own_fault_is_not_blamed_on_its_neighbour():
    own = [RtzrEnd(0.6, how="stalled", reason="fakertzr fault: stall", connection=0)]
    assert unaffected_by_neighbours(judged(talks(asked_at=8.6) + own, stalled())).ok
    eos = [RtzrEnd(0.6, how="server_closed", reason="EOS", connection=0)]
    assert not unaffected_by_neighbours(judged(talks(asked_at=8.6) + eos, stalled())).ok, "EOS is asked for: no fault"


def test_a_call_answered_at_once_beside_a_stall_passes_and_a_slow_turn_with_no_stall_is_no_business_of_it():
    assert unaffected_by_neighbours(judged(talks(asked_at=1.05), stalled())).ok
    late = unaffected_by_neighbours(judged(talks(asked_at=8.6), stalled(start=9.0, end=12.0)))
    assert late.ok, "the wait was over before the neighbour stalled"
    assert NEIGHBOUR_WAIT_S < 7.6
    alone = unaffected_by_neighbours(judged(talks(1.05), dataclasses.replace(stalled(), stalls=[])))
    assert alone.skipped


def test_another_calls_words_in_this_calls_llm_request_fail_and_words_both_said_do_not():
    others = [OtherCall("CA2", "busy-hour-2", frozenset({"예약을 변경하고 싶습니다"}))]
    shared = Neighbours(others=others, concurrent={"CA2"}, stalls=[],
                        user_texts=[(0.5, "예약을 변경하고 싶습니다"), (1.1, "배송은 언제 오나요")], spoken=[])
    result = replies_reach_own_caller(judged(talks(1.1), shared))
    assert not result.ok and "'예약을 변경하고 싶습니다'" in result.message and "shared" in result.message
    both = [OtherCall("CA2", "busy-hour-2", frozenset({"배송은 언제 오나요"}))]
    own = Neighbours(others=both, concurrent={"CA2"}, stalls=[], user_texts=[(1.1, "배송은 언제 오나요")], spoken=[])
    assert replies_reach_own_caller(judged(talks(1.1), own)).ok


def windows(tone: float, seconds: float, start: int = 0) -> list[Heard]:
    return [Heard(start + i * HOP, tone, tone) for i in range(int(seconds * 8000 / HOP))]


def test_another_calls_reply_heard_on_this_line_fails_and_doubled_own_audio_does_not():
    me = Neighbours(others=[OtherCall("CA2", "busy-hour-2", frozenset(), spoken=((660.0, "'금요일 저녁으로요' 말고", 1.2),),
                                      heard_s={})],
                    concurrent={"CA2"}, stalls=[], user_texts=[], spoken=[(600.0, "내 답", 1.0)])
    result = replies_reach_own_caller(judged(talks(1.1), me, windows(600.0, 1.0) + windows(660.0, 1.2, 20000)))
    assert not result.ok and "busy-hour-2" in result.message and "another" in result.message
    heard_at_home = dataclasses.replace(me, others=[dataclasses.replace(me.others[0], heard_s={660.0: 1.2})])
    doubled = replies_reach_own_caller(judged(talks(1.1), heard_at_home, windows(600.0, 1.0) + windows(660.0, 1.2, 20000)))
    assert doubled.ok, "audio its own call heard in full is no other call's: doubled audio is judged elsewhere"


# ------------------------------------------------------------ end to end, aicall
async def _aicall(names: list[str], at_once: int, pace: float | None):
    with ErrorLog() as errors:
        return await run_target(AicallTarget(errors), [call(n) for n in names], pace=pace, calls_at_once=at_once)


GROUPS = ["stalled-neighbour-stalls", "stalled-neighbour-talks", "stalled-tts-neighbour-stalls", "stalled-tts-neighbour-talks",
          "busy-hour-1", "busy-hour-2", "busy-hour-3"]


def test_aicall_at_once_passes_every_check_and_each_verdict_is_what_it_is_alone():
    together = asyncio.run(_aicall(GROUPS, 3, 4.0))
    alone = asyncio.run(_aicall(GROUPS, 1, 4.0))
    for a, t in zip(alone, together):
        assert t.ok, f"{t.fixture.name}:\n{t.failures()}"
        single = {c.name: c.status for c in a.checks}
        assert {c.name: c.status for c in t.checks if c.name in single} == single, t.fixture.name
    judged_ = {c.name for t in together for c in t.checks if not c.skipped}
    assert {"unaffected_by_neighbours", "replies_reach_own_caller"} <= judged_
    for talks in ("stalled-neighbour-talks", "stalled-tts-neighbour-talks"):
        talks_run = next(t for t in together if t.fixture.name == talks)
        assert next(c for c in talks_run.checks if c.name == "unaffected_by_neighbours").status == "passed", talks
    assert len({t.call_sid for t in together}) == len(GROUPS)


def test_jobs_with_a_launched_handler_start_that_many_each_with_its_own_fakes_and_lose_no_call():
    import sys

    from harness.replay.targets import CommandTarget
    from proving_ground.mutants import HANDLERS_DIR

    target = CommandTarget(f"{sys.executable} {HANDLERS_DIR / 'websockets_handler.py'} --port {{port}}", path="/media")
    names = ["seed-three-turns", "rapid-back-to-back", "barge-in"]
    seen: list = []
    runs = asyncio.run(run_target(target, [call(n) for n in names], pace=None, handlers=2, on_fakes=seen.append))
    assert [r.fixture.name for r in runs] == names and all(r.ok for r in runs), [r.failures() for r in runs]
    assert target.started == 2 and len({id(f) for f in seen}) == 2, "two handler processes, two sets of fakes"


def test_words_are_due_only_once_the_caller_has_sent_their_end_point():
    """Found by fuzzing aicall eight at once at fast pace: a caller holding back the audio after the last word
    (waiting for an answer) holds back the recognizer's end point, and with it the words; that wait is the
    caller's, not a neighbour's doing."""
    def sent_at(events: list[Event], when: float | None) -> list[Event]:
        return [dataclasses.replace(e, end_point_sent=when) if isinstance(e, SpeechEnd) else e
                for e in events]

    assert unaffected_by_neighbours(judged(sent_at(talks(asked_at=8.6), 8.5), stalled())).ok
    assert unaffected_by_neighbours(judged(sent_at(talks(asked_at=30.0), None), stalled())).ok  # never sent: never due
    assert not unaffected_by_neighbours(judged(sent_at(talks(asked_at=8.6), 1.0), stalled())).ok


def test_a_fast_caller_waits_for_an_answer_once_the_recognizer_could_end_the_utterance():
    from harness.fakes.twilio_player import _answer_points

    seed = call("seed-three-turns")
    ends = [round(u.end_ms / 20) for u in seed.script.utterances]
    assert _answer_points(seed) == {e + 35 for e in ends}  # RTZR's default end point: 700 ms after the last word
    slow = dataclasses.replace(seed, script=dataclasses.replace(
        seed.script, recognizer=dataclasses.replace(seed.script.recognizer, epd_time=1.2)))
    points = _answer_points(slow)
    gaps = [b.start_ms - a.end_ms for a, b in zip(seed.script.utterances, seed.script.utterances[1:])]
    assert {e + 70 for e, gap in zip(ends, [*gaps, 1e9]) if gap >= 1400} == points  # 1.2 s and 200 ms


async def test_a_stalled_tts_request_sends_no_audio_until_let_go_and_the_next_one_is_answered():
    import aiohttp

    from harness.fakes.tts import FakeTts, FakeTtsConfig

    fake = FakeTts(FakeTtsConfig(stall_requests={0}))
    body = {"model": "tts-1", "voice": "alloy", "input": "네 알겠습니다", "response_format": "pcm"}
    async with fake.server() as server, aiohttp.ClientSession() as session:
        url = f"{server.base_url}/v1/audio/speech"
        async with session.post(url, json=body) as held:
            assert held.status == 200
            with pytest.raises(asyncio.TimeoutError):  # headers, then nothing: a TTS that hangs
                await asyncio.wait_for(held.content.read(1), 0.5)
        async with session.post(url, json=body) as answered:
            assert len(await answered.read()) == fake.samples_for(body["input"]) * 2
    assert fake.requests[0].stalled_until == float("inf") and fake.requests[1].stalled_until is None


def test_a_neighbour_s_stalled_tts_request_is_named_as_such():
    tts = Neighbours(others=[OtherCall("CA2", "stalled-tts-neighbour-stalls", frozenset())], concurrent={"CA2"},
                     stalls=[Stall("CA2", "stalled-tts-neighbour-stalls", "TTS request", 0.5, 8.5)], user_texts=[],
                     spoken=[])
    result = unaffected_by_neighbours(judged(talks(asked_at=8.6), tts))
    assert not result.ok and "'s TTS request stalled" in result.message and "stalled-tts-neighbour-stalls" in result.message


# ------------------------------------------------------- calls fed as drawn
class _Gated(CallsAtOnce):
    """The dispatcher alone: a call "plays" until the test lets it end (no handler, no fakes)."""

    def __init__(self, at_once: int) -> None:
        rtzr = SimpleNamespace(clear_scripts=lambda: None, clear_faults=lambda: None, update_config=lambda c: None)
        super().__init__(SimpleNamespace(fakes=SimpleNamespace(rtzr=rtzr)), SimpleNamespace(close=lambda lane: None),
                         at_once, None)
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.moved = asyncio.Event()  # a call started

    def _open(self, fixture, scale):
        lane = SimpleNamespace(fixture=fixture, call_sid=f"CA{len(self.started):032d}", name=fixture.name)
        self.calls.append(_Call(lane, started=time.monotonic()))
        self.started.append(fixture.name)
        self.moved.set()
        return self.calls[-1]

    async def _one(self, call) -> None:
        await self.gates.setdefault(call.lane.name, asyncio.Event()).wait()
        await self._done(call, SimpleNamespace(ok=True, name=call.lane.name))

    async def _alone(self, fixture):
        self.started.append(fixture.name)
        self.moved.set()
        return SimpleNamespace(ok=True, name=fixture.name)

    def end(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()


async def _until(wave: _Gated, predicate) -> None:
    """Until ``predicate()`` holds, re-checked as calls start (10 s at most)."""
    async def watch() -> None:
        while not predicate():
            wave.moved.clear()
            await wave.moved.wait()
    await asyncio.wait_for(watch(), timeout=10)


def test_a_call_fed_while_a_batch_plays_starts_when_one_call_is_judged_not_when_the_batch_ends():
    """``harness fuzz --calls-at-once``: each batch waited for its last call before the next was drawn (112 calls
    a minute with 16 at once on two workers, the CPU idle). Fed as drawn, a call starts as soon as there is room."""
    async def go() -> None:
        wave = _Gated(2)
        serving = asyncio.ensure_future(wave.serve())
        slow, quick = wave.feed([call("busy-hour-1"), call("busy-hour-2")])
        await _until(wave, lambda: len(wave.started) == 2)
        wave.end("busy-hour-2")
        await asyncio.wrap_future(quick)
        (later,) = wave.feed([call("busy-hour-3")])
        await _until(wave, lambda: "busy-hour-3" in wave.started)
        assert not slow.done(), "it started while the first batch's other call still played"
        wave.end("busy-hour-1"), wave.end("busy-hour-3")
        wave.close()
        await asyncio.wait_for(serving, 10)
        assert [v.result().name for v in (slow, quick, later)] == ["busy-hour-1", "busy-hour-2", "busy-hour-3"]

    asyncio.run(go())


def test_calls_fed_after_one_that_plays_alone_wait_for_it_and_its_own_batch_passes_it_by():
    async def go() -> None:
        wave = _Gated(3)
        serving = asyncio.ensure_future(wave.serve())
        wave.feed([call("busy-hour-1")])
        refused, beside = wave.feed([call("failure1-credentials-refused"), call("busy-hour-2")])
        (after,) = wave.feed([call("busy-hour-3")])
        await _until(wave, lambda: wave.started == ["busy-hour-1", "busy-hour-2"])  # its batch passed it by
        assert "busy-hour-3" not in wave.started and not refused.done()
        wave.end("busy-hour-1"), wave.end("busy-hour-2")
        await asyncio.wrap_future(refused)  # nothing in flight: it plays alone, then the later feed
        await _until(wave, lambda: "busy-hour-3" in wave.started)
        assert wave.started.index("failure1-credentials-refused") < wave.started.index("busy-hour-3")
        wave.end("busy-hour-3")
        wave.close()
        await asyncio.wait_for(serving, 10)

    asyncio.run(go())


def test_calls_not_yet_started_are_let_go_when_the_feed_closes_early():
    async def go() -> None:
        wave = _Gated(1)
        serving = asyncio.ensure_future(wave.serve())
        playing, waiting = wave.feed([call("busy-hour-1"), call("busy-hour-2")])
        await _until(wave, lambda: wave.started == ["busy-hour-1"])
        wave.close(drop_waiting=True)
        wave.end("busy-hour-1")
        await asyncio.wait_for(serving, 10)
        assert playing.result().ok and waiting.cancelled() and wave.started == ["busy-hour-1"]

    asyncio.run(go())


def test_a_request_nothing_ties_to_a_call_is_the_lone_calls_only_when_no_other_call_ended_lately():
    """``harness fuzz --calls-at-once 8`` failed a call of the websockets reference handler with an apology "asked
    1.97 s after the caller hung up" that no request of its own explained (it passed alone and afresh): a judged
    call's late work must not be the lone call's, nor (``give_unattributed``) a line's once it has closed."""
    from harness.fakes.llm import FakeLlmConfig
    from harness.fakes.tts import FakeTtsConfig, TtsRequest
    from harness.replay.lanes import Switchboard

    rtzr = SimpleNamespace(load_script=lambda script, own_faults: None, unload_script=lambda name: None,
                           journal=SimpleNamespace(connections=[]))
    fakes = SimpleNamespace(rtzr=rtzr, llm=SimpleNamespace(route=None, requests=[]),
                            tts=SimpleNamespace(route=None, requests=[]))
    board = Switchboard(fakes)
    first, second = FakeTtsConfig(), FakeTtsConfig()
    lone = board.open(call("busy-hour-1"), "CA" + "1" * 32, FakeLlmConfig(), first)
    greeting = TtsRequest("안녕하세요, 무엇을 도와드릴까요?")
    assert fakes.tts.route(greeting) is first and greeting.lane == lone.call_sid, "the only call there has been"
    board.close(board.open(call("busy-hour-2"), "CA" + "2" * 32, FakeLlmConfig(), second))
    apology = TtsRequest("죄송합니다. 다시 한 번 말씀해 주세요.")
    assert fakes.tts.route(apology) is None and apology.lane == "", "the judged call's handler may still be at work"
