"""Hypothesis strategies for whole phone calls: everything a fixture can say, drawn, so that a failing call
shrinks to a small ordinary fixture that ``harness run`` replays.

A call varies what a phone call's timing depends on: the number, length and spacing of the caller's
utterances (synthetic audio, :mod:`harness.fuzz.synthetic`); the recognizer's partial cadence, end-point
detection and processing delay; the LLM's time to first token, pace, length and failures; the TTS's
delay and pace; up to two RTZR faults at any point (a close with any code, a drop, a stall, delayed
finals, expired tokens, refused handshakes, a failing token endpoint, revoked credentials), or the
handler started without its RTZR credentials at all (the report's failure 1); an utterance long
enough for RTZR to cut it at ``max_utter_duration`` while the caller talks on; an LLM that stalls;
the caller's hang-up (or a dropped line) at any point; DTMF; barge-in (long spoken replies the caller's next utterance
comes over for at least 2.5 s, once the reply has started, however slow the handler: judged by the ``barge_in`` check
at a pace where audio plays in time); and callers who time their words on the bot (``caller.reacts``: talking over a reply, or waiting
for it to end). Each part is a strategy
of its own. In your own suite::

    from hypothesis import HealthCheck, given, settings
    from harness.strategies import calls

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(call=calls(max_faults=1))
    async def test_my_bot(replay, call):
        run = await replay(call, "ws://127.0.0.1:8080/media")
        assert run.ok, run.failures()

(``replay`` starts from clean fakes on every call, so one fixture instance serves every example. A handler
already running cannot be started without its credentials: a ``no_credentials`` call comes back with that
check skipped; leave it out with ``fault_kinds=tuple(k for k in FAULT_KINDS if k != "no_credentials")``.)
``harness fuzz`` draws from ``calls()`` against any handler, shrinks the first failure and writes it as
a fixture.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from hypothesis import assume
from hypothesis import strategies as st

from callaudio.g711 import pcm16_to_ulaw
from fakertzr.params import DEFAULT_EPD_TIME, DEFAULT_MAX_UTTER_DURATION
from harness.fakes.twilio_player import answer_after_ms
from harness.fixture import CallFixture, load_call, save_call
from harness.judge.checks import BARGE_IN_MAX_S
from harness.fuzz.scenario import (
    CREDENTIALS,
    FAULT_KINDS,
    AuthFailure,
    Close,
    DelayFinals,
    Drop,
    DrawnFault,
    ExpireTokens,
    Hangup,
    KeyPress,
    Llm,
    Malformed,
    NoCredentials,
    Reaction,
    Recognizer,
    RejectHandshake,
    RevokedCredentials,
    Scenario,
    Stall,
    Tts,
)
from harness.fuzz.synthetic import SynthUtterance, synth_call

__all__ = [
    "CLOSE_CODES", "CREDENTIALS", "CUT_MS", "DrawnCall", "FAULT_KINDS", "HANDSHAKE_STATUS", "Scenario", "TAIL_MS",
    "TOKEN_STATUS", "as_call", "calls", "dtmf", "fault", "faults", "hangup", "llm", "long_utterance",
    "reaction", "reactions", "recognizer", "refused", "reply_text", "scenarios", "tts", "turn_budget_ms", "utterances",
    "without_credentials",
]

TAIL_MS = 1500  # audio after the last word: the recognizer's end-point detection and the bot's answer
REACT_WAIT_MS = 4000  # a drawn caller who times their words on the bot waits this long for it (audio), then speaks
CUT_MS = int(DEFAULT_MAX_UTTER_DURATION * 1000)  # RTZR cuts unbroken speech here (a stream asking no other length)


@dataclass(frozen=True)
class DrawnCall:
    """A drawn call: what was drawn (``scenario``), and the fixture it is (``doc``: call.json, ``ulaw``: its audio)."""

    scenario: Scenario
    doc: dict[str, Any]
    ulaw: bytes = field(repr=False)

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying call: the fixture, not the audio
        return f"DrawnCall {self.describe()}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's pretty-printer would list every field
        printer.text(repr(self))

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def key(self) -> str:
        """The same call drawn twice has the same key (shrinking tries calls again)."""
        return hashlib.sha256(json.dumps(self.scenario.as_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def size(self) -> tuple[int, int]:
        """(utterances, faults): how big a call is, for saying how far a failure shrank (revoked credentials are
        one fault; missing credentials count once however often drawn)."""
        rtzr = sum(not isinstance(f, NoCredentials) for f in self.scenario.faults)
        return len(self.doc["utterances"]), rtzr + self.scenario.without_credentials

    @property
    def audio_ms(self) -> int:
        return len(self.ulaw) // 8  # 8 kHz mu-law: a byte a sample

    def describe(self) -> str:
        """The call as the fixture it is, in words: its name, what it is made of, what it expects."""
        return (f"{self.name}\n{self.scenario.describe(TAIL_MS)}\n"
                f"expect: {json.dumps(self.doc.get('expect', {}), ensure_ascii=False)}")

    def save(self, directory: str | Path) -> Path:
        """Write it as a fixture (``call.json`` and ``caller.wav``) that ``harness run --fixtures`` replays."""
        return save_call(self.doc, self.ulaw, directory)

    def fixture(self, directory: str | Path) -> CallFixture:
        return load_call(self.save(directory))

    def features(self) -> list[str]:
        """What the call goes through, for statistics: its faults, hang-up, barge-in, DTMF."""
        s = self.scenario
        found = s.features
        hangup = self.doc.get("caller", {})
        found.append("the caller's line drops" if hangup.get("vanish") else "the caller hangs up early"
                     if "hangup_ms" in hangup or "hangup_after_turns" in hangup else "the caller says everything")
        found += ["barge-in"] * s.barge_in + ["DTMF"] * bool(s.dtmf) + ["LLM fails"] * bool(s.llm.fail_requests)
        found += ["LLM stalls"] * bool(s.llm.stall_requests)
        found += ["the caller reacts to the bot"] * any(s.reacts)
        found += [f"an utterance over {CUT_MS // 1000} s (cut by RTZR)"] * any(sum(u.word_ms) > CUT_MS for u in s.utterances)
        if self.doc.get("expect", {}).get("call_refused"):
            found.append("recognition refused: the call must be refused")
        found.append(f"{len(s.utterances)} utterance(s)")
        return found


def long_utterance() -> st.SearchStrategy[SynthUtterance]:
    """13-21 s without a pause (26-32 words of 500-650 ms): RTZR cuts it at ``max_utter_duration`` (12 s
    unless the stream asks otherwise) while the caller talks on."""
    return st.builds(SynthUtterance, pause_before_ms=st.integers(400, 2600),
                     word_ms=st.lists(st.integers(500, 650), min_size=26, max_size=32).map(tuple))


TALK_OVER_MS = int(BARGE_IN_MAX_S * 1000) + 1000  # of speech, at least, in the utterance of a barge-in call


def talking_over(u: SynthUtterance) -> SynthUtterance:
    """The utterance of a barge-in call that talks over the reply: ``u`` with its own words said again until it
    lasts ``TALK_OVER_MS``. Talk shorter than ``barge_in``'s limit cannot fail a handler that never clears
    playback, and most drawn utterances are (1-4 words of 0.15-0.6 s); words of their drawn length keep the
    recognizer's partials, which a handler clears on, as often as before."""
    words = list(u.word_ms)
    while sum(words) < TALK_OVER_MS:
        words.append(u.word_ms[len(words) % len(u.word_ms)])
    return replace(u, word_ms=tuple(words))


@st.composite
def utterances(draw: st.DrawFn, *, max_utterances: int = 4, long: bool = True) -> list[SynthUtterance]:
    """The caller's utterances: 1-4 words of 150-600 ms each, each after a pause of 0.4-2.6 s; in about one
    call of three (``long``), one of them is a ``long_utterance`` instead (it shrinks back to a short one)."""
    said = draw(st.lists(st.builds(SynthUtterance, pause_before_ms=st.integers(400, 2600),
                                   word_ms=st.lists(st.integers(150, 600), min_size=1, max_size=4).map(tuple)),
                         min_size=1, max_size=max_utterances))
    if long and draw(st.sampled_from((False, False, True))):
        at = draw(st.integers(0, len(said) - 1))
        said[at] = draw(long_utterance())
    return said


# The parts a scenario is drawn from are drawn as plain data (``_..._data``) and made dataclasses by ``scenarios``
# after drawing, not by ``.map`` in the draw: hypothesis's mutator copies spans of one label into each other, and
# every ``.map`` span has the same label, so a map more would draw other calls from the same seed than the search
# always has (its failures found before, its matrix). The public strategies of the parts map.


def _recognizer_data() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "epd_time": st.sampled_from([0.3, 0.5, 0.8, 1.2]),
        "processing_delay_ms": st.integers(0, 800),
        "partial_delay_ms": st.integers(0, 300),
    })


def recognizer() -> st.SearchStrategy[Recognizer]:
    """RTZR's behaviour: end-point detection, processing delay, how late partials come. Partials are always
    sent (RTZR streams ``final: false`` results as it hears; a recognizer without them, a fixture's
    ``partials: false``, is not drawn: a handler that stops its reply on the caller's first partial, as
    barge-in is done, would be failed for a service that does not exist)."""
    return _recognizer_data().map(lambda drawn: Recognizer(**drawn))


CLOSE_CODES = st.sampled_from([1000, 1001, 1011, 1013, 4000, 4401])  # 1006 is a drop: see "drop"
HANDSHAKE_STATUS = st.sampled_from([401, 429, 500, 503])
TOKEN_STATUS = st.sampled_from([500, 503])


def fault(max_audio_ms: int, kinds: Sequence[str] = FAULT_KINDS) -> st.SearchStrategy[DrawnFault]:
    """One fault: of RTZR, at an audio position or after some finals; or the handler's missing credentials
    (``revoked_credentials`` is one fault here, two in the fixture)."""
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown fault kind(s) {sorted(unknown)}: known are {', '.join(FAULT_KINDS)}")
    return _fault(max_audio_ms, tuple(kinds))


TRIGGERED: dict[str, type[Drop | Stall | Malformed | ExpireTokens]] = {
    "drop": Drop, "stall": Stall, "malformed": Malformed, "expire_tokens": ExpireTokens}


@st.composite
def _fault(draw: st.DrawFn, max_audio_ms: int, kinds: tuple[str, ...]) -> DrawnFault:
    kind = draw(st.sampled_from(kinds))  # one_of would all but never draw a constant kind twice

    def trigger() -> dict[str, int]:
        if not draw(st.booleans()):
            return {"at_ms": draw(st.integers(0, max_audio_ms))}
        return {"after_finals": draw(st.integers(1, 3))}

    if kind == "close":
        return Close(code=draw(CLOSE_CODES), **trigger())
    if kind in TRIGGERED:
        return TRIGGERED[kind](**trigger())
    if kind == "delay_finals":
        delay, times = draw(st.integers(0, 3000)), draw(st.none() | st.integers(1, 2))
        return DelayFinals(delay, times or None)
    if kind == "reject_handshake":  # one stale token (a fresh one is let in), or the service busy for a try or two
        status, connection, times = draw(HANDSHAKE_STATUS), draw(st.none() | st.integers(0, 2)), draw(st.integers(1, 2))
        return RejectHandshake(status, 1 if status == 401 else times, connection)
    if kind == "auth_failure":  # the token endpoint down for a try or two (a 401 there alone is no fault: a
        # handler holding a token it was issued earlier never asks, as with the real service)
        return AuthFailure(draw(TOKEN_STATUS), draw(st.integers(1, 2)))
    if kind == "revoked_credentials":  # every handshake and every token request refused, however often retried
        return RevokedCredentials()
    # no_credentials: the handler started without its RTZR credentials (the report's failure 1)
    return NoCredentials()


def faults(max_audio_ms: int, *, kinds: Sequence[str] = FAULT_KINDS, max_faults: int = 2,
           min_faults: int = 0) -> st.SearchStrategy[tuple[DrawnFault, ...]]:
    """Up to ``max_faults`` faults (with ``no_credentials`` the handler never reaches RTZR, and RTZR's faults
    drawn beside it change nothing)."""
    if not kinds or not max_faults:
        return st.just(())
    return st.lists(fault(max_audio_ms, kinds), min_size=min(min_faults, max_faults), max_size=max_faults).map(tuple)


def hangup(audio_ms: int) -> st.SearchStrategy[Hangup | None]:
    """The caller hangs up at some point of the audio, after some turns, or not at all."""
    return st.one_of(st.none(), st.floats(0.0, 1.0).map(lambda f: Hangup(at_ms=round(f * audio_ms))),
                     st.integers(1, 3).map(lambda n: Hangup(after_turns=n)))


def _dtmf_data(audio_ms: int) -> st.SearchStrategy[list[KeyPress]]:
    return st.lists(st.builds(KeyPress, st.integers(0, audio_ms), st.sampled_from("0123456789*#")), max_size=2)


def dtmf(audio_ms: int) -> st.SearchStrategy[tuple[KeyPress, ...]]:
    """Up to two key presses, each at a point of the audio."""
    return _dtmf_data(audio_ms).map(tuple)


def llm(*, long_replies: bool = False) -> st.SearchStrategy[Llm]:
    """The LLM: time to first token, pace, how many sentences a reply has, one request failing, one request
    stalling (it never answers: only the handler's cancel, at the caller's hang-up at the latest, ends it)."""
    return _llm_data(long_replies=long_replies).map(Llm.of)


def _llm_data(*, long_replies: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "first_token_ms": st.integers(0, 1500), "token_ms": st.integers(0, 60),
        "sentences": st.integers(4, 8) if long_replies else st.integers(1, 3),
    }, optional={"fail_requests": st.dictionaries(st.sampled_from(["0", "1"]), st.sampled_from([429, 500]),
                                                  min_size=1, max_size=1),
                 "stall_requests": st.sampled_from([[0], [1]])})


def tts(*, realtime: bool | None = None) -> st.SearchStrategy[Tts]:
    """The TTS: paced at its playing speed or not, how long a character sounds, time to first audio."""
    return _tts_data(realtime=realtime).map(lambda drawn: Tts(**drawn))


def _tts_data(*, realtime: bool | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "realtime": st.booleans() if realtime is None else st.just(realtime),
        "ms_per_char": st.integers(20, 120), "first_chunk_ms": st.integers(0, 800),
    })


@st.composite
def scenarios(draw: st.DrawFn, *, max_utterances: int = 4, max_faults: int = 2, min_faults: int = 0,
              fault_kinds: Sequence[str] = FAULT_KINDS,
              barge_in: bool = True, hangups: bool = True, keypad: bool = True, long_utterances: bool = True,
              reacts: bool = True, max_duration_ms: int | None = None) -> Scenario:
    """What a call is made of (``calls`` turns it into a fixture; its options are said there)."""
    # a long utterance only where it fits (it would rarely be drawn within a short max_duration_ms)
    long = long_utterances and (max_duration_ms is None or max_duration_ms >= 2 * CUT_MS)
    said = draw(utterances(max_utterances=max_utterances, long=long))
    audio_ms = sum(u.pause_before_ms + sum(u.word_ms) for u in said) + TAIL_MS
    if max_duration_ms is not None:
        assume(audio_ms <= max_duration_ms)
    # drawn in this order, as the search always has: the same seed draws the same calls
    seed = draw(st.integers(0, 2**31))
    rtzr = Recognizer(**draw(_recognizer_data()))
    partial_every_ms = draw(st.none() | st.integers(80, 700))
    drawn_faults = draw(faults(audio_ms, kinds=fault_kinds, max_faults=max_faults, min_faults=min_faults))
    caller_hangup = draw(hangup(audio_ms)) if hangups else None
    vanish = draw(st.booleans()) if hangups else False
    keys = tuple(draw(_dtmf_data(audio_ms))) if keypad else ()
    # long spoken replies the caller's next utterance may come over (drawn after what it changes nothing
    # of, so that it shrinks away on its own)
    talks_over = draw(st.booleans()) if barge_in and len(said) > 1 else False
    if talks_over:
        over = talking_over(said[1])
        longer = sum(over.word_ms) - sum(said[1].word_ms)
        if max_duration_ms is None or audio_ms + longer <= max_duration_ms:
            said[1] = over
        else:
            talks_over = False  # no room in the call for talk long enough to judge
    replies = Llm.of(draw(_llm_data(long_replies=talks_over)))
    speech = Tts(**draw(_tts_data(realtime=True if talks_over else None)))
    # drawn last, so that it shrinks away on its own: utterances timed on what the bot does
    timed = draw(reactions(len(said), barge_in=talks_over)) if reacts else ()
    return Scenario(seed=seed, utterances=tuple(said), recognizer=rtzr, partial_every_ms=partial_every_ms,
                    faults=drawn_faults, hangup=caller_hangup, vanish=vanish, dtmf=keys, barge_in=talks_over,
                    llm=replies, tts=speech, reacts=tuple(timed))


def reaction() -> st.SearchStrategy[Reaction | None]:
    """How one utterance is timed: on the audio's clock (None), or on the reply to the turn before it: talking
    over it 0.2-1.5 s after it starts, or 0-1.2 s after it has ended (a person who waits for the answer)."""
    return st.one_of(st.none(),
                     st.builds(lambda ms: Reaction("bot_starts", ms), st.integers(200, 1500)),
                     st.builds(lambda ms: Reaction("bot_ends", ms), st.integers(0, 1200)))


@st.composite
def reactions(draw: st.DrawFn, utterances: int, *, barge_in: bool = False) -> list[Reaction | None]:
    """For each utterance after the first, its ``reaction``; a barge-in call's second utterance talks over the
    first reply once it has started, so that however slow the handler, there is a reply to talk over."""
    drawn = [draw(reaction()) for _ in range(utterances - 1)]
    if barge_in and drawn:
        drawn[0] = Reaction("bot_starts", draw(st.integers(300, 1200)))
    return drawn


def refused(s: Scenario) -> bool:
    """Recognition cannot be had: the handler has no credentials, or they are revoked (every handshake
    refused with 401, however many fresh tokens the handler fetches). Nothing else drawn refuses for good:
    a stale token is let in again with a fresh one, a busy service answers a retry."""
    return s.refused


def without_credentials(s: Scenario) -> bool:
    return s.without_credentials


def reply_text(sentences: int) -> str:
    """Each sentence names the caller's words: a TTS request of any one of them can be told to its call."""
    return " ".join(f"{'{user}' if k == 0 else '네 {user}'} 답변 {k + 1}번 문장입니다." for k in range(sentences))


TURN_SLACK_MS = 1500  # a drawn call's latency budget beyond what its fakes take (the handler's own work, a busy machine)
REPLY_CHARS = 80  # at most this many characters a sentence of ``reply_text`` has, the caller's words in it


def turn_budget_ms(s: Scenario) -> int | None:
    """A drawn call's latency budget per turn (``expect.max_turn_ms``): what its fakes take to answer a turn at
    real time (RTZR's end point and processing delay, the whole reply's tokens, the TTS's first audio) and
    ``TURN_SLACK_MS``; at a faster pace the fakes take less and the budget holds all the more. None (no budget)
    where a correct handler's turn may take longer by design: a fault of the call (a reconnect, a refusal), an
    LLM failure or stall (retries), a TTS that streams in real time (a handler that speaks a reply in one request
    waits for all of its audio); nor where a pause between utterances is shorter than the fast caller's stop for an
    answer (``twilio_player.answer_after_ms``): that caller stops before RTZR could end the
    utterance, and waits its 3 s for an answer no handler can give yet."""
    llm, tts = s.llm, s.tts
    if s.faults or llm.fail_requests or llm.stall_requests or tts.realtime:
        return None
    rec = s.recognizer
    epd_ms = 1000 * (rec.epd_time if rec.epd_time is not None else DEFAULT_EPD_TIME)
    if any(u.pause_before_ms <= answer_after_ms(epd_ms) for u in s.utterances[1:]):
        return None
    reply_ms = llm.first_token_ms + llm.token_ms * REPLY_CHARS * llm.sentences
    return int(epd_ms + (rec.processing_delay_ms or 0) + reply_ms + tts.first_chunk_ms + TURN_SLACK_MS)


def as_call(s: Scenario | Mapping[str, Any]) -> DrawnCall:
    """A scenario as a fixture: the call.json document and the caller's mu-law audio (a scenario given as
    plain data, ``Scenario.as_dict``'s, is read with ``Scenario.from_dict``)."""
    if not isinstance(s, Scenario):
        s = Scenario.from_dict(s)
    script = synth_call(s.seed, list(s.utterances), tail_ms=TAIL_MS, partial_every_ms=s.partial_every_ms,
                        prefix=s.word_prefix)  # calls at once: words of their own
    llm_spec = {**s.llm.spec(), "replies": [reply_text(s.llm.sentences)]}
    refusal = s.refused
    # a call refused with no drawn reason (a stale token, a retry given up too soon) fails: nothing drawn but a
    # refusal lets a handler end the call itself
    # and every utterance finished before the hang-up or a fault is recognised, asked and answered
    expect: dict[str, Any] = {"call_refused": True} if refusal else {"call_refused": False, "every_utterance": True}
    if s.barge_in and not refusal:
        expect["barge_in"] = True
    if not refusal and any(sum(u.word_ms) > CUT_MS for u in s.utterances):
        expect["no_reply_while_talking"] = True  # a final RTZR cut mid-utterance is not the caller's turn
    budget = turn_budget_ms(s)
    if budget is not None:
        expect["max_turn_ms"] = budget
    name = "fuzz-" + hashlib.sha256(json.dumps(s.as_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
    described = re.sub(r"\n\s+(?:- )?", ", ", re.sub(r":\n\s+(?:- )?", ": ", s.describe(TAIL_MS))).replace("\n", "; ")
    doc = {**script.raw, "name": name, "description": f"drawn by harness fuzz: {described}",
           "faults": s.fault_specs(), "llm": llm_spec, "tts": s.tts.spec(),
           "caller": s.caller_spec(REACT_WAIT_MS), "expect": expect}
    if s.without_credentials:
        doc["handler"] = {"without_env": list(CREDENTIALS)}
    if s.recognizer.spec():
        doc["recognizer"] = s.recognizer.spec()
    return DrawnCall(s, doc, pcm16_to_ulaw(script.audio))


ALONE_KINDS = ("expire_tokens", "reject_handshake", "auth_failure", "revoked_credentials", "no_credentials")
# faults that act before any audio says whose stream it is (or on every call's tokens): their calls play alone


def waves(size: int, *, covering: Sequence[str] = (), **options: Any) -> st.SearchStrategy[list[DrawnCall]]:
    """``size`` calls to play with several in flight into one handler (``harness fuzz --calls-at-once``): drawn
    as ``calls`` draws one (``options`` are its), each speaking words of its own (call k's are ``l{k}w0``,
    ``l{k}w1``, ...; the first's are ``w0``, ``w1``, ..., as when drawn alone) on audio of its own, so that the
    fakes can tell their requests apart. Only the first may draw a fault of ``ALONE_KINDS`` (its call plays
    alone, the others wait for it), unless the options ask for nothing else. ``covering``: call k has exactly
    one fault, of kind ``covering[k % len(covering)]`` (the search's coverage part: every kind in one batch)."""
    kinds = tuple(options.get("fault_kinds", FAULT_KINDS))
    shared = tuple(k for k in kinds if k not in ALONE_KINDS)
    rest = {**options, "fault_kinds": shared} if shared else options
    if covering:
        drawn = [scenarios(**{**options, "fault_kinds": (covering[k % len(covering)],), "min_faults": 1, "max_faults": 1})
                 for k in range(size)]
    else:
        drawn = [scenarios(**options), *[scenarios(**rest)] * (size - 1)]
    return st.tuples(*drawn).map(
        lambda scenarios_: [as_call(replace(s, lane=k, seed=(s.seed + k * 1_000_003) % 2**31) if k else s)
                            for k, s in enumerate(scenarios_)])


def calls(*, max_utterances: int = 4, max_faults: int = 2, min_faults: int = 0,
          fault_kinds: Sequence[str] = FAULT_KINDS, barge_in: bool = True, hangups: bool = True,
          keypad: bool = True, long_utterances: bool = True, reacts: bool = True,
          max_duration_ms: int | None = None) -> st.SearchStrategy[DrawnCall]:
    """Whole calls (see the module docstring), each a ``DrawnCall``: the scenario drawn and the fixture it is.

    - ``max_utterances``: the caller says 1 to this many utterances.
    - ``max_faults``, ``min_faults``: how many faults a call has (0 to 2 by default; revoked credentials
      count as one).
    - ``fault_kinds``: the kinds drawn, of ``FAULT_KINDS`` (RTZR's, ``revoked_credentials``, and
      ``no_credentials``: the handler started without them; leave that out for a handler already running).
    - ``barge_in``: long replies the caller's next utterance talks over (for at least ``TALK_OVER_MS``).
    - ``hangups``: the caller hangs up early (at a point of the audio or after some turns), the line dropped or not.
    - ``keypad``: up to two DTMF key presses.
    - ``long_utterances``: in about one call of three, an utterance long enough for RTZR to cut it at
      ``max_utter_duration`` while the caller talks on.
    - ``reacts``: utterances timed on the bot (``caller.reacts``: after its reply starts or ends).
    - ``max_duration_ms``: at most this much caller audio (None: as drawn, up to about 40 s).
    """
    return scenarios(max_utterances=max_utterances, max_faults=max_faults, min_faults=min_faults,
                     fault_kinds=fault_kinds, barge_in=barge_in, hangups=hangups, keypad=keypad,
                     long_utterances=long_utterances, reacts=reacts, max_duration_ms=max_duration_ms).map(as_call)
