"""Several calls at once on one handler and one set of fakes: each call is a *lane*.

The fakes tell the calls apart only by what they already see, never by asking the handler which call
it is serving:

- an RTZR stream belongs to the call whose audio it carries (fakertzr follows the script whose audio it
  finds, each lane's script loaded under its own name, with its faults scoped to its own streams);
- an LLM request belongs to the call whose recognised words its last user message gives;
- a TTS request belongs to the call whose LLM reply holds its text (a greeting no reply holds: to the
  call on whose line its tone was heard).

Each lane's LLM and TTS requests are answered by its own fixture's script (replies, latencies, failures,
stalls counted by that call's own requests). What cannot be told apart is said: a stream that never
carried a call's audio belongs to no lane; a refused handshake or token belongs to every call in flight.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from fakertzr.journal import ConnectionRecord
from harness.fakes.llm import FakeLlmConfig, LlmRequest
from harness.fakes.services import FakeServices
from harness.fakes.tts import FakeTtsConfig, TtsRequest
from harness.fixture import CallFixture
from harness.judge.words import says, words

LATE_WORK_S = 10.0  # after a call is judged, its handler's late work (an apology, a summary) may still come this long


@dataclass
class Lane:
    """One call of several on the handler: its fixture, its script's name at the fakes, its scripts."""

    call_sid: str
    fixture: CallFixture
    script_name: str
    llm: FakeLlmConfig
    tts: FakeTtsConfig
    dial_s: float = 0.0  # dialled this long after its group began (``together.dial_ms``)
    llm_requests: int = 0  # requests routed here so far: its own request index
    opened: float = field(default_factory=time.monotonic)  # when the lane was opened (monotonic) ...
    opened_clock: float = field(default_factory=time.time)  # ... and by the wall clock (the token journal's)

    @property
    def name(self) -> str:
        return self.fixture.name


def lane_key(fixture: CallFixture, call_sid: str) -> str:
    """The name a lane's script goes by at the fake RTZR (``fixture@SID-tail``): unique per call."""
    return f"{fixture.name}@{call_sid[-8:].lower()}"


@dataclass
class Switchboard:
    """The lanes of a run on one handler, and the routing of the fakes' requests to them."""

    fakes: FakeServices
    lanes: dict[str, Lane] = field(default_factory=dict)  # the calls in flight, by call SID
    said: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # every call of the run: SID -> (fixture, finals)
    last_closed: float = float("-inf")  # when a call was last judged (monotonic)

    def __post_init__(self) -> None:
        self.attach()

    def attach(self) -> None:
        """Route the fakes' LLM and TTS requests to this switchboard's calls."""
        self.fakes.llm.route = self._route_llm
        self.fakes.tts.route = self._route_tts

    def detach(self) -> None:
        self.fakes.llm.route = None
        self.fakes.tts.route = None

    # ------------------------------------------------------------------ lanes
    def open(self, fixture: CallFixture, call_sid: str, llm: FakeLlmConfig, tts: FakeTtsConfig,
             dial_s: float = 0.0) -> Lane:
        """A lane for ``fixture``: its script loaded under the lane's name, its faults its own."""
        name = lane_key(fixture, call_sid)
        self.fakes.rtzr.load_script(dataclasses.replace(fixture.script, name=name), own_faults=True)
        if not fixture.llm.get("replies"):  # every sentence of the reply names the caller's words: TTS is traceable
            llm = dataclasses.replace(llm, reply=own_reply)
        lane = Lane(call_sid, fixture, name, llm, tts, dial_s)
        self.lanes[call_sid] = lane
        return lane

    def close(self, lane: Lane) -> None:
        """The call is judged: its script unloaded; what it said remembered (a later call's LLM must never be
        given it)."""
        self.said[lane.call_sid] = (lane.name, set(self.finals(lane)))
        self.fakes.rtzr.unload_script(lane.script_name)
        self.lanes.pop(lane.call_sid, None)
        self.last_closed = time.monotonic()

    def connections(self, lane: Lane) -> list[ConnectionRecord]:
        return [c for c in self.fakes.rtzr.journal.connections if c.script == lane.script_name]

    def finals(self, lane: Lane) -> list[str]:
        return [m.text for c in self.connections(lane) for m in c.finals]

    # ---------------------------------------------------------------- routing
    def lane_of_words(self, user: str) -> Lane | None:
        """The lane whose latest recognised words ``user`` gives (None: no lane's)."""
        if not words(user):
            return None
        best: tuple[float, Lane] | None = None
        for lane in self.lanes.values():
            for conn in self.connections(lane):
                for m in conn.finals:
                    if says(user, m.text) and (best is None or m.sent_wall > best[0]):
                        best = (m.sent_wall, lane)
        return best[1] if best else None

    def _only_lane(self) -> Lane | None:
        """The one call in flight, if no other call ended lately: a request nothing in it ties to a call (a
        greeting, an apology) is then that call's. Soon after another call was judged it may be that call's
        handler still at work (its late apology must not fail the call left in flight): it is left to be given
        by the tone a line heard (``give_unattributed``)."""
        if len(self.lanes) != 1 or time.monotonic() - self.last_closed < LATE_WORK_S:
            return None
        return next(iter(self.lanes.values()))

    def _route_llm(self, entry: LlmRequest) -> tuple[FakeLlmConfig, int] | None:
        lane = self.lane_of_words(entry.last_user) or self._only_lane()
        if lane is None:
            return None
        entry.lane = lane.call_sid
        index, lane.llm_requests = lane.llm_requests, lane.llm_requests + 1
        return lane.llm, index

    def lane_of_reply_text(self, text: str) -> Lane | None:
        """The lane whose LLM reply holds ``text`` (a sentence of it, or all of it), the latest such reply."""
        if not words(text):
            return None
        for request in reversed(self.fakes.llm.requests):
            if request.lane in self.lanes and request.reply and says(request.reply, text):
                return self.lanes[request.lane]
        return None

    def _route_tts(self, entry: TtsRequest) -> FakeTtsConfig | None:
        lane = self.lane_of_reply_text(entry.text) or self._only_lane()
        if lane is None:
            return None
        entry.lane = lane.call_sid
        return lane.tts

    # ------------------------------------------------------------------ views
    def views(self, lane: Lane) -> tuple[Any, Any, Any]:
        """This lane's part of the fakes' journals, as ``build_timeline`` reads them: its streams (plus refused
        handshakes and tokens, which name no call), its LLM requests, its TTS requests."""
        journal = self.fakes.rtzr.journal
        conns = [c for c in journal.connections
                 if c.script == lane.script_name or not c.accepted and c.opened_wall >= lane.opened]
        llm = [r for r in self.fakes.llm.requests if r.lane == lane.call_sid]
        tts = [r for r in self.fakes.tts.requests if r.lane == lane.call_sid]
        auth = [a for a in journal.auth if a.at >= lane.opened_clock]
        return (SimpleNamespace(connections=conns, auth=auth, finals=lambda: self.finals(lane)),
                SimpleNamespace(requests=llm), SimpleNamespace(requests=tts))

    @staticmethod
    def give_unattributed(lane: Lane, residual: dict[float, float], start: float, end: float, tts) -> bool:
        """Give this lane each TTS request no reply holds (a greeting, an apology) asked while its line was open
        (``start``..``end``: one asked after its caller hung up was heard by nobody, though the fake's ten tones
        repeat and its tone may be one the line heard) whose tone its line heard
        beyond what its own requests explain (``residual``: tone -> seconds). True if any."""
        given = False
        for r in tts.requests:
            if r.lane or not r.tone_hz or not start <= r.at <= end or residual.get(r.tone_hz, 0.0) <= 0.1:
                continue
            r.lane, r.given, given = lane.call_sid, True, True
            residual[r.tone_hz] -= r.audio_s
        return given



def own_reply(request: LlmRequest) -> str:
    """The fake LLM's reply when calls go at once: like ``default_reply``, but each sentence holds the caller's
    words, so a TTS request of any one sentence can be told to its call."""
    said = request.last_user
    return f"네, 말씀하신 '{said}' 잘 들었습니다. '{said}' 말고 더 도와드릴까요?"


def plays_alone(fixture: CallFixture) -> bool:
    """A call no other may share the handler with: it needs a handler of its own (started without its
    credentials), or an RTZR fault of it acts before any audio could say whose stream it is."""
    from fakertzr.backend import BEFORE_AUDIO

    return bool(fixture.handler_without) or any(spec.get("type") in BEFORE_AUDIO for spec in fixture.script.faults)


def confusable(a: CallFixture, b: CallFixture) -> bool:
    """Could an LLM request of one be taken for the other's (one utterance holds another's words), or a stream
    of one for the other's (their audio begins alike), or are they one fixture?"""
    if a.name == b.name or a.script.audio[:16000].tobytes() == b.script.audio[:16000].tobytes():
        return True
    return any(says(x.text, y.text) or says(y.text, x.text)
               for x in a.script.utterances for y in b.script.utterances)


def together(fixture: CallFixture) -> str:
    """The group a fixture is played with when calls go at once (``together.group`` in call.json), or ""."""
    spec = fixture.script.raw.get("together") or {}
    return str(spec.get("group", ""))


def dial_delay_s(fixture: CallFixture, time_scale: float) -> float:
    """How long after its group began the call is dialled (``together.dial_ms``, in the call's audio time)."""
    spec = fixture.script.raw.get("together") or {}
    return float(spec.get("dial_ms", 0.0)) / 1000.0 * time_scale
