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
comes over, once the reply has started, however slow the handler: judged by the ``barge_in`` check at a pace where audio
plays in time); and callers who time their words on the bot (``caller.reacts``: talking over a reply, or waiting
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from callaudio.g711 import pcm16_to_ulaw
from fakertzr.params import DEFAULT_EPD_TIME, DEFAULT_MAX_UTTER_DURATION
from harness.fakes.twilio_player import answer_after_ms
from harness.fuzz.synthetic import SynthUtterance, synth_call
from harness.fixture import CallFixture, load_call, save_call

__all__ = [
    "CLOSE_CODES", "CREDENTIALS", "CUT_MS", "DrawnCall", "FAULT_KINDS", "HANDSHAKE_STATUS", "TAIL_MS",
    "TOKEN_STATUS", "as_call", "calls", "dtmf", "fault", "faults", "hangup", "llm", "long_utterance",
    "reaction", "reactions", "recognizer", "refused", "reply_text", "scenarios", "tts", "turn_budget_ms", "utterances",
    "without_credentials",
]

FAULT_KINDS = ("close", "drop", "stall", "malformed", "delay_finals", "expire_tokens", "reject_handshake",
               "auth_failure", "revoked_credentials", "no_credentials")
FOREVER = 100  # times a "revoked_credentials" refusal fires: every attempt a call can make
TAIL_MS = 1500  # audio after the last word: the recognizer's end-point detection and the bot's answer
REACT_WAIT_MS = 4000  # a drawn caller who times their words on the bot waits this long for it (audio), then speaks
CREDENTIALS = ("RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET")  # what "no_credentials" starts the handler without
CUT_MS = int(DEFAULT_MAX_UTTER_DURATION * 1000)  # RTZR cuts unbroken speech here (a stream asking no other length)


@dataclass(frozen=True)
class DrawnCall:
    """A drawn call: what was drawn (``scenario``), and the fixture it is (``doc``: call.json, ``ulaw``: its audio)."""

    scenario: dict[str, Any]
    doc: dict[str, Any]
    ulaw: bytes = field(repr=False)

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying call: what was drawn, not the audio
        return f"DrawnCall({self.name}: {self.scenario})"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # hypothesis's pretty-printer would list every field
        printer.text(repr(self))

    @property
    def name(self) -> str:
        return self.doc["name"]

    @property
    def key(self) -> str:
        """The same call drawn twice has the same key (shrinking tries calls again)."""
        return hashlib.sha256(json.dumps(self.scenario, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def size(self) -> tuple[int, int]:
        """(utterances, faults): how big a call is, for saying how far a failure shrank."""
        drawn = self.doc.get("faults", ())
        revoked = any(f["type"] == "auth_failure" and f.get("times") == FOREVER for f in drawn)
        without = bool(self.doc.get("handler", {}).get("without_env"))
        return len(self.doc["utterances"]), len(drawn) - revoked + without  # revoked credentials: one fault, two parts

    @property
    def audio_ms(self) -> int:
        return len(self.ulaw) // 8  # 8 kHz mu-law: a byte a sample

    def save(self, directory: str | Path) -> Path:
        """Write it as a fixture (``call.json`` and ``caller.wav``) that ``harness run --fixtures`` replays."""
        return save_call(self.doc, self.ulaw, directory)

    def fixture(self, directory: str | Path) -> CallFixture:
        return load_call(self.save(directory))

    def features(self) -> list[str]:
        """What the call goes through, for statistics: its faults, hang-up, barge-in, DTMF."""
        s = self.scenario
        found = ["the handler starts without RTZR credentials" if f["type"] == "no_credentials"
                 else "RTZR fault: revoked_credentials" if f["type"] == "auth_failure" and f["times"] == FOREVER
                 else f"RTZR fault: {f['type']}" for f in s["faults"]
                 if not (f["type"] == "reject_handshake" and f["times"] == FOREVER and f["status"] == 401)]
        hangup = self.doc.get("caller", {})
        found.append("the caller's line drops" if hangup.get("vanish") else "the caller hangs up early"
                     if "hangup_ms" in hangup or "hangup_after_turns" in hangup else "the caller says everything")
        found += ["barge-in"] * s["barge_in"] + ["DTMF"] * bool(s["dtmf"]) + ["LLM fails"] * bool(s["llm"].get("fail_requests"))
        found += ["LLM stalls"] * bool(s["llm"].get("stall_requests"))
        found += ["the caller reacts to the bot"] * any(s.get("reacts", ()))
        found += [f"an utterance over {CUT_MS // 1000} s (cut by RTZR)"] * any(
            sum(u.word_ms) > CUT_MS for u in s["utterances"])
        if self.doc.get("expect", {}).get("call_refused"):
            found.append("recognition refused: the call must be refused")
        found.append(f"{len(s['utterances'])} utterance(s)")
        return found


def long_utterance() -> st.SearchStrategy[SynthUtterance]:
    """13-21 s without a pause (26-32 words of 500-650 ms): RTZR cuts it at ``max_utter_duration`` (12 s
    unless the stream asks otherwise) while the caller talks on."""
    return st.builds(SynthUtterance, pause_before_ms=st.integers(400, 2600),
                     word_ms=st.lists(st.integers(500, 650), min_size=26, max_size=32).map(tuple))


@st.composite
def utterances(draw, *, max_utterances: int = 4, long: bool = True) -> list[SynthUtterance]:
    """The caller's utterances: 1-4 words of 150-600 ms each, each after a pause of 0.4-2.6 s; in about one
    call of three (``long``), one of them is a ``long_utterance`` instead (it shrinks back to a short one)."""
    said = draw(st.lists(st.builds(SynthUtterance, pause_before_ms=st.integers(400, 2600),
                                   word_ms=st.lists(st.integers(150, 600), min_size=1, max_size=4).map(tuple)),
                         min_size=1, max_size=max_utterances))
    if long and draw(st.sampled_from((False, False, True))):
        at = draw(st.integers(0, len(said) - 1))
        said[at] = draw(long_utterance())
    return said


def recognizer() -> st.SearchStrategy[dict[str, Any]]:
    """RTZR's behaviour: end-point detection, processing delay, how late partials come. Partials are always
    sent (RTZR streams ``final: false`` results as it hears; a recognizer without them, a fixture's
    ``partials: false``, is not drawn: a handler that stops its reply on the caller's first partial, as
    barge-in is done, would be failed for a service that does not exist)."""
    return st.fixed_dictionaries({}, optional={
        "epd_time": st.sampled_from([0.3, 0.5, 0.8, 1.2]),
        "processing_delay_ms": st.integers(0, 800),
        "partial_delay_ms": st.integers(0, 300),
    })


CLOSE_CODES = st.sampled_from([1000, 1001, 1011, 1013, 4000, 4401])  # 1006 is a drop: see "drop"
HANDSHAKE_STATUS = st.sampled_from([401, 429, 500, 503])
TOKEN_STATUS = st.sampled_from([500, 503])


def fault(max_audio_ms: int, kinds: tuple[str, ...] = FAULT_KINDS) -> st.SearchStrategy[dict[str, Any] | list[dict]]:
    """One fault: of RTZR, at an audio position or after some finals; or the handler's missing credentials
    (``revoked_credentials`` is two fixture faults, drawn as a list)."""
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown fault kind(s) {sorted(unknown)}: known are {', '.join(FAULT_KINDS)}")
    return _fault(max_audio_ms, tuple(kinds))


@st.composite
def _fault(draw, max_audio_ms: int, kinds: tuple[str, ...]) -> dict[str, Any] | list[dict]:
    kind = draw(st.sampled_from(kinds))  # one_of would all but never draw a constant kind twice

    def trigger() -> dict[str, int]:
        if not draw(st.booleans()):
            return {"at_ms": draw(st.integers(0, max_audio_ms))}
        return {"after_finals": draw(st.integers(1, 3))}

    if kind == "close":
        return {"type": "close", "code": draw(CLOSE_CODES), **trigger()}
    if kind in ("drop", "stall", "malformed", "expire_tokens"):
        return {"type": kind, **trigger()}
    if kind == "delay_finals":
        delay, times = draw(st.integers(0, 3000)), draw(st.none() | st.integers(1, 2))
        return {"type": "delay_finals", "delay_ms": delay, **({"times": times} if times else {})}
    if kind == "reject_handshake":  # one stale token (a fresh one is let in), or the service busy for a try or two
        status, connection, times = draw(HANDSHAKE_STATUS), draw(st.none() | st.integers(0, 2)), draw(st.integers(1, 2))
        return {"type": "reject_handshake", "status": status, "times": 1 if status == 401 else times,
                **({} if connection is None else {"connection": connection})}
    if kind == "auth_failure":  # the token endpoint down for a try or two (a 401 there alone is no fault: a
        # handler holding a token it was issued earlier never asks, as with the real service)
        return {"type": "auth_failure", "status": draw(TOKEN_STATUS), "times": draw(st.integers(1, 2))}
    if kind == "revoked_credentials":  # every handshake and every token request refused, however often retried
        return [{"type": "auth_failure", "status": 401, "times": FOREVER},
                {"type": "reject_handshake", "status": 401, "times": FOREVER}]
    # no_credentials: the handler started without its RTZR credentials (the report's failure 1)
    return {"type": "no_credentials"}


def faults(max_audio_ms: int, *, kinds: tuple[str, ...] = FAULT_KINDS, max_faults: int = 2,
           min_faults: int = 0) -> st.SearchStrategy[list[dict]]:
    """Up to ``max_faults`` faults (``revoked_credentials`` counts as one: it is two fixture faults; with
    ``no_credentials`` the handler never reaches RTZR, and RTZR's faults drawn beside it change nothing)."""
    if not kinds or not max_faults:
        return st.just([])
    return st.lists(fault(max_audio_ms, kinds), min_size=min(min_faults, max_faults), max_size=max_faults).map(
        lambda drawn: [one for f in drawn for one in (f if isinstance(f, list) else [f])])


def hangup(audio_ms: int) -> st.SearchStrategy[dict[str, Any] | None]:
    """The caller hangs up at some point of the audio, after some turns, or not at all."""
    return st.one_of(st.none(), st.floats(0.0, 1.0).map(lambda f: {"hangup_ms": round(f * audio_ms)}),
                     st.integers(1, 3).map(lambda n: {"hangup_after_turns": n}))


def dtmf(audio_ms: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(st.builds(lambda at, d: {"at_ms": at, "digit": d}, st.integers(0, audio_ms),
                              st.sampled_from("0123456789*#")), max_size=2)


def llm(*, long_replies: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """The LLM: time to first token, pace, how many sentences a reply has, one request failing, one request
    stalling (it never answers: only the handler's cancel, at the caller's hang-up at the latest, ends it)."""
    return st.fixed_dictionaries({
        "first_token_ms": st.integers(0, 1500), "token_ms": st.integers(0, 60),
        "sentences": st.integers(4, 8) if long_replies else st.integers(1, 3),
    }, optional={"fail_requests": st.dictionaries(st.sampled_from(["0", "1"]), st.sampled_from([429, 500]),
                                                  min_size=1, max_size=1),
                 "stall_requests": st.sampled_from([[0], [1]])})


def tts(*, realtime: bool | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """The TTS: paced at its playing speed or not, how long a character sounds, time to first audio."""
    return st.fixed_dictionaries({
        "realtime": st.booleans() if realtime is None else st.just(realtime),
        "ms_per_char": st.integers(20, 120), "first_chunk_ms": st.integers(0, 800),
    })


@st.composite
def scenarios(draw, *, max_utterances: int = 4, max_faults: int = 2, min_faults: int = 0,
              fault_kinds: tuple[str, ...] = FAULT_KINDS,
              barge_in: bool = True, hangups: bool = True, keypad: bool = True, long_utterances: bool = True,
              reacts: bool = True, max_duration_ms: int | None = None) -> dict[str, Any]:
    """What a call is made of, as plain data (``calls`` turns it into a fixture)."""
    # a long utterance only where it fits (it would rarely be drawn within a short max_duration_ms)
    long = long_utterances and (max_duration_ms is None or max_duration_ms >= 2 * CUT_MS)
    said = draw(utterances(max_utterances=max_utterances, long=long))
    audio_ms = sum(u.pause_before_ms + sum(u.word_ms) for u in said) + TAIL_MS
    if max_duration_ms is not None:
        assume(audio_ms <= max_duration_ms)
    return {
        "seed": draw(st.integers(0, 2**31)),
        "utterances": said,
        "recognizer": draw(recognizer()),
        "partial_every_ms": draw(st.none() | st.integers(80, 700)),
        "faults": draw(faults(audio_ms, kinds=fault_kinds, max_faults=max_faults, min_faults=min_faults)),
        "hangup": draw(hangup(audio_ms)) if hangups else None,
        "vanish": draw(st.booleans()) if hangups else False,
        "dtmf": draw(dtmf(audio_ms)) if keypad else [],
        # long spoken replies the caller's next utterance may come over (drawn after what it changes nothing
        # of, so that it shrinks away on its own)
        "barge_in": (talks_over := draw(st.booleans()) if barge_in and len(said) > 1 else False),
        "llm": draw(llm(long_replies=talks_over)),
        "tts": draw(tts(realtime=True if talks_over else None)),
        # drawn last, so that it shrinks away on its own: utterances timed on what the bot does
        "reacts": draw(reactions(len(said), barge_in=talks_over)) if reacts else [],
    }


def reaction() -> st.SearchStrategy[dict[str, Any] | None]:
    """How one utterance is timed: on the audio's clock (None), or on the reply to the turn before it: talking
    over it 0.2-1.5 s after it starts, or 0-1.2 s after it has ended (a person who waits for the answer)."""
    return st.one_of(st.none(),
                     st.builds(lambda ms: {"after": "bot_starts", "ms": ms}, st.integers(200, 1500)),
                     st.builds(lambda ms: {"after": "bot_ends", "ms": ms}, st.integers(0, 1200)))


@st.composite
def reactions(draw, utterances: int, *, barge_in: bool = False) -> list[dict[str, Any] | None]:
    """For each utterance after the first, its ``reaction``; a barge-in call's second utterance talks over the
    first reply once it has started, so that however slow the handler, there is a reply to talk over."""
    drawn = [draw(reaction()) for _ in range(utterances - 1)]
    if barge_in and drawn:
        drawn[0] = {"after": "bot_starts", "ms": draw(st.integers(300, 1200))}
    return drawn


def refused(s: dict[str, Any]) -> bool:
    """Recognition cannot be had: the handler has no credentials, or they are revoked (every handshake
    refused with 401, however many fresh tokens the handler fetches). Nothing else drawn refuses for good:
    a stale token is let in again with a fresh one, a busy service answers a retry."""
    return without_credentials(s) or any(f["type"] == "reject_handshake" and f["status"] == 401
                                         and "connection" not in f and f["times"] >= FOREVER for f in s["faults"])


def without_credentials(s: dict[str, Any]) -> bool:
    return any(f["type"] == "no_credentials" for f in s["faults"])


def reply_text(sentences: int) -> str:
    """Each sentence names the caller's words: a TTS request of any one of them can be told to its call."""
    return " ".join(f"{'{user}' if k == 0 else '네 {user}'} 답변 {k + 1}번 문장입니다." for k in range(sentences))


TURN_SLACK_MS = 1500  # a drawn call's latency budget beyond what its fakes take (the handler's own work, a busy machine)
REPLY_CHARS = 80  # at most this many characters a sentence of ``reply_text`` has, the caller's words in it


def turn_budget_ms(s: dict[str, Any]) -> int | None:
    """A drawn call's latency budget per turn (``expect.max_turn_ms``): what its fakes take to answer a turn at
    real time (RTZR's end point and processing delay, the whole reply's tokens, the TTS's first audio) and
    ``TURN_SLACK_MS``; at a faster pace the fakes take less and the budget holds all the more. None (no budget)
    where a correct handler's turn may take longer by design: a fault of the call (a reconnect, a refusal), an
    LLM failure or stall (retries), a TTS that streams in real time (a handler that speaks a reply in one request
    waits for all of its audio); nor where a pause between utterances is shorter than the fast caller's stop for an
    answer (``twilio_player.answer_after_ms``): that caller stops before RTZR could end the
    utterance, and waits its 3 s for an answer no handler can give yet."""
    llm, tts = s["llm"], s["tts"]
    if s["faults"] or llm.get("fail_requests") or llm.get("stall_requests") or tts["realtime"]:
        return None
    rec = s["recognizer"] or {}
    epd_ms = 1000 * rec.get("epd_time", DEFAULT_EPD_TIME)
    if any(u.pause_before_ms <= answer_after_ms(epd_ms) for u in s["utterances"][1:]):
        return None
    reply_ms = llm["first_token_ms"] + llm["token_ms"] * REPLY_CHARS * llm["sentences"]
    return int(epd_ms + rec.get("processing_delay_ms", 0) + reply_ms + tts["first_chunk_ms"] + TURN_SLACK_MS)


def as_call(s: dict[str, Any]) -> DrawnCall:
    """A scenario as a fixture: the call.json document and the caller's mu-law audio."""
    script = synth_call(s["seed"], s["utterances"], tail_ms=TAIL_MS, partial_every_ms=s["partial_every_ms"],
                        prefix=f"l{s['lane']}w" if s.get("lane") else "w")  # calls at once: words of their own
    llm_spec = {k: v for k, v in s["llm"].items() if k != "sentences"}
    llm_spec["replies"] = [reply_text(s["llm"]["sentences"])]
    refusal = refused(s)
    caller_hangup = None if refusal else s["hangup"]  # a refused call is ended by the handler: the caller waits
    reacts = [{"utterance": i + 2, "turn": i + 1, **r, "wait_ms": REACT_WAIT_MS}
              for i, r in enumerate(s.get("reacts", ())) if r and not refusal]
    caller = {**(caller_hangup or {}), **({"vanish": True} if s["vanish"] and caller_hangup else {}),
              **({"dtmf": s["dtmf"]} if s["dtmf"] else {}), **({"reacts": reacts} if reacts else {})}
    # a call refused with no drawn reason (a stale token, a retry given up too soon) fails: nothing drawn but a
    # refusal lets a handler end the call itself
    # and every utterance finished before the hang-up or a fault is recognised, asked and answered
    expect: dict[str, Any] = {"call_refused": True} if refusal else {"call_refused": False, "every_utterance": True}
    if s["barge_in"] and not refusal:
        expect["barge_in"] = True
    if not refusal and any(sum(u.word_ms) > CUT_MS for u in s["utterances"]):
        expect["no_reply_while_talking"] = True  # a final RTZR cut mid-utterance is not the caller's turn
    budget = turn_budget_ms(s)
    if budget is not None:
        expect["max_turn_ms"] = budget
    name = "fuzz-" + hashlib.sha256(json.dumps(s, sort_keys=True, default=str).encode()).hexdigest()[:10]
    doc = {**script.raw, "name": name, "description": f"drawn by harness.fuzz.strategies: {s}",
           "faults": [f for f in s["faults"] if f["type"] != "no_credentials"], "llm": llm_spec, "tts": s["tts"],
           "caller": caller, "expect": expect}
    if without_credentials(s):
        doc["handler"] = {"without_env": list(CREDENTIALS)}
    if s["recognizer"]:
        doc["recognizer"] = s["recognizer"]
    return DrawnCall(s, doc, pcm16_to_ulaw(script.audio))


ALONE_KINDS = ("expire_tokens", "reject_handshake", "auth_failure", "revoked_credentials", "no_credentials")
# faults that act before any audio says whose stream it is (or on every call's tokens): their calls play alone


def waves(size: int, *, covering: tuple[str, ...] = (), **options: Any) -> st.SearchStrategy[list[DrawnCall]]:
    """``size`` calls to play with several in flight into one handler (``harness fuzz --calls-at-once``): drawn
    as ``calls`` draws one, each speaking words of its own (call k's are ``l{k}w0``, ``l{k}w1``, ...; the
    first's are ``w0``, ``w1``, ..., as when drawn alone) on audio of its own, so that the fakes can tell
    their requests apart. Only the first may draw a fault of ``ALONE_KINDS`` (its call plays alone, the
    others wait for it), unless the options ask for nothing else. ``covering``: call k has exactly one fault,
    of kind ``covering[k % len(covering)]`` (the search's coverage part: every kind in one batch)."""
    kinds = tuple(options.get("fault_kinds", FAULT_KINDS))
    shared = tuple(k for k in kinds if k not in ALONE_KINDS)
    rest = {**options, "fault_kinds": shared} if shared else options
    if covering:
        drawn = [scenarios(**{**options, "fault_kinds": (covering[k % len(covering)],), "min_faults": 1, "max_faults": 1})
                 for k in range(size)]
    else:
        drawn = [scenarios(**options), *[scenarios(**rest)] * (size - 1)]
    return st.tuples(*drawn).map(
        lambda scenarios_: [as_call({**s, "lane": k, "seed": (s["seed"] + k * 1_000_003) % 2**31} if k else s)
                            for k, s in enumerate(scenarios_)])


def calls(**options: Any) -> st.SearchStrategy[DrawnCall]:
    """Whole calls (see the module docstring); ``options`` are those of ``scenarios``: ``max_utterances``,
    ``max_faults``, ``min_faults``, ``fault_kinds``, ``barge_in``, ``hangups``, ``keypad``, ``long_utterances``,
    ``reacts``, ``max_duration_ms``."""
    return scenarios(**options).map(as_call)
