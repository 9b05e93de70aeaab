"""Hypothesis strategies for whole phone calls: everything a fixture can say, drawn, so that a failing call
shrinks to a small ordinary fixture that ``harness run`` replays.

A call varies what a phone call's timing depends on: the number, length and spacing of the caller's
utterances (synthetic audio, :mod:`harness.synthetic`); the recognizer's partial cadence, end-point
detection and processing delay; the LLM's time to first token, pace, length and failures; the TTS's
delay and pace; up to two RTZR faults at any point (a close with any code, a drop, a stall, delayed
finals, expired tokens, refused handshakes, a failing token endpoint, revoked credentials); the
caller's hang-up (or a dropped line) at any point; DTMF; and barge-in (long spoken replies the caller's next utterance may
come over: judged by the ``barge_in`` check at a pace where audio plays in time). Each part is a strategy
of its own. In your own suite::

    from hypothesis import HealthCheck, given, settings
    from harness.strategies import calls

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(call=calls(max_faults=1))
    async def test_my_bot(replay, call):
        run = await replay(call, "ws://127.0.0.1:8080/media")
        assert run.ok, run.failures()

(``replay`` starts from clean fakes on every call, so one fixture instance serves every example.)
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

from .fixture import CallFixture, load_call, save_call
from .synthetic import SynthUtterance, synth_call

FAULT_KINDS = ("close", "drop", "stall", "malformed", "delay_finals", "expire_tokens", "reject_handshake",
               "auth_failure", "revoked_credentials")
FOREVER = 100  # times a "revoked_credentials" refusal fires: every attempt a call can make
TAIL_MS = 1500  # audio after the last word: the recognizer's end-point detection and the bot's answer


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
        return len(self.doc["utterances"]), len(drawn) - revoked  # revoked credentials: one fault, two parts

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
        found = [f"RTZR fault: {f['type']}" for f in s["faults"]]
        hangup = self.doc.get("caller", {})
        found.append("the caller's line drops" if hangup.get("vanish") else "the caller hangs up early"
                     if "hangup_ms" in hangup or "hangup_after_turns" in hangup else "the caller says everything")
        found += ["barge-in"] * s["barge_in"] + ["DTMF"] * bool(s["dtmf"]) + ["LLM fails"] * bool(s["llm"].get("fail_requests"))
        if self.doc.get("expect", {}).get("call_refused"):
            found.append("recognition refused: the call must be refused")
        found.append(f"{len(s['utterances'])} utterance(s)")
        return found


def utterances(*, max_utterances: int = 4) -> st.SearchStrategy[list[SynthUtterance]]:
    """The caller's utterances: 1-4 words of 150-600 ms each, each after a pause of 0.4-2.6 s."""
    return st.lists(st.builds(SynthUtterance, pause_before_ms=st.integers(400, 2600),
                              word_ms=st.lists(st.integers(150, 600), min_size=1, max_size=4).map(tuple)),
                    min_size=1, max_size=max_utterances)


def recognizer() -> st.SearchStrategy[dict[str, Any]]:
    """RTZR's behaviour: end-point detection, processing delay, partials."""
    return st.fixed_dictionaries({}, optional={
        "epd_time": st.sampled_from([0.3, 0.5, 0.8, 1.2]),
        "processing_delay_ms": st.integers(0, 800),
        "partial_delay_ms": st.integers(0, 300),
        "partials": st.booleans(),
    })


def fault(max_audio_ms: int, kinds: tuple[str, ...] = FAULT_KINDS) -> st.SearchStrategy[dict[str, Any]]:
    """One RTZR fault, at an audio position or after some finals."""
    at = st.integers(0, max_audio_ms)
    trigger = st.one_of(at.map(lambda v: {"at_ms": v}), st.integers(1, 3).map(lambda n: {"after_finals": n}))
    code = st.sampled_from([1000, 1001, 1011, 1013, 4000, 4401])  # 1006 is a drop: see "drop"
    every = {
        "close": st.builds(lambda c, t: {"type": "close", "code": c, **t}, code, trigger),
        "drop": st.builds(lambda t: {"type": "drop", **t}, trigger),
        "stall": st.builds(lambda t: {"type": "stall", **t}, trigger),
        "malformed": st.builds(lambda t: {"type": "malformed", **t}, trigger),
        "delay_finals": st.builds(lambda d, n: {"type": "delay_finals", "delay_ms": d, **({"times": n} if n else {})},
                                  st.integers(0, 3000), st.none() | st.integers(1, 2)),
        "expire_tokens": st.builds(lambda t: {"type": "expire_tokens", **t}, trigger),
        # one stale token (a fresh one is let in), or the service busy for a try or two
        "reject_handshake": st.builds(lambda s, c, n: {"type": "reject_handshake", "status": s,
                                                       "times": 1 if s == 401 else n,
                                                       **({} if c is None else {"connection": c})},
                                      st.sampled_from([401, 429, 500, 503]), st.none() | st.integers(0, 2),
                                      st.integers(1, 2)),
        # the token endpoint down for a try or two (a 401 there alone is no fault: a handler holding a token
        # it was issued earlier never asks, as with the real service)
        "auth_failure": st.builds(lambda s, n: {"type": "auth_failure", "status": s, "times": n},
                                  st.sampled_from([500, 503]), st.integers(1, 2)),
        # the credentials revoked: every handshake and every token request refused, however often retried
        "revoked_credentials": st.just([{"type": "auth_failure", "status": 401, "times": FOREVER},
                                        {"type": "reject_handshake", "status": 401, "times": FOREVER}]),
    }
    unknown = set(kinds) - set(every)
    if unknown:
        raise ValueError(f"unknown fault kind(s) {sorted(unknown)}: known are {', '.join(FAULT_KINDS)}")
    return st.one_of(*(every[k] for k in kinds))


def faults(max_audio_ms: int, *, kinds: tuple[str, ...] = FAULT_KINDS, max_faults: int = 2) -> st.SearchStrategy[list[dict]]:
    """Up to ``max_faults`` faults (``revoked_credentials`` counts as one: it is two fixture faults)."""
    if not kinds or not max_faults:
        return st.just([])
    return st.lists(fault(max_audio_ms, kinds), max_size=max_faults).map(
        lambda drawn: [one for f in drawn for one in (f if isinstance(f, list) else [f])])


def hangup(audio_ms: int) -> st.SearchStrategy[dict[str, Any] | None]:
    """The caller hangs up at some point of the audio, after some turns, or not at all."""
    return st.one_of(st.none(), st.floats(0.0, 1.0).map(lambda f: {"hangup_ms": round(f * audio_ms)}),
                     st.integers(1, 3).map(lambda n: {"hangup_after_turns": n}))


def dtmf(audio_ms: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(st.builds(lambda at, d: {"at_ms": at, "digit": d}, st.integers(0, audio_ms),
                              st.sampled_from("0123456789*#")), max_size=2)


def llm(*, long_replies: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """The LLM: time to first token, pace, how many sentences a reply has, one request failing."""
    return st.fixed_dictionaries({
        "first_token_ms": st.integers(0, 1500), "token_ms": st.integers(0, 60),
        "sentences": st.integers(4, 8) if long_replies else st.integers(1, 3),
    }, optional={"fail_requests": st.dictionaries(st.sampled_from(["0", "1"]), st.sampled_from([429, 500]),
                                                  min_size=1, max_size=1)})


def tts(*, realtime: bool | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """The TTS: paced at its playing speed or not, how long a character sounds, time to first audio."""
    return st.fixed_dictionaries({
        "realtime": st.booleans() if realtime is None else st.just(realtime),
        "ms_per_char": st.integers(20, 120), "first_chunk_ms": st.integers(0, 800),
    })


@st.composite
def scenarios(draw, *, max_utterances: int = 4, max_faults: int = 2, fault_kinds: tuple[str, ...] = FAULT_KINDS,
              barge_in: bool = True, hangups: bool = True, keypad: bool = True,
              max_duration_ms: int | None = None) -> dict[str, Any]:
    """What a call is made of, as plain data (``calls`` turns it into a fixture)."""
    said = draw(utterances(max_utterances=max_utterances))
    audio_ms = sum(u.pause_before_ms + sum(u.word_ms) for u in said) + TAIL_MS
    if max_duration_ms is not None:
        assume(audio_ms <= max_duration_ms)
    return {
        "seed": draw(st.integers(0, 2**31)),
        "utterances": said,
        "recognizer": draw(recognizer()),
        "partial_every_ms": draw(st.none() | st.integers(80, 700)),
        "faults": draw(faults(audio_ms, kinds=fault_kinds, max_faults=max_faults)),
        "hangup": draw(hangup(audio_ms)) if hangups else None,
        "vanish": draw(st.booleans()) if hangups else False,
        "dtmf": draw(dtmf(audio_ms)) if keypad else [],
        # long spoken replies the caller's next utterance may come over (drawn after what it changes nothing
        # of, so that it shrinks away on its own)
        "barge_in": (talks_over := draw(st.booleans()) if barge_in and len(said) > 1 else False),
        "llm": draw(llm(long_replies=talks_over)),
        "tts": draw(tts(realtime=True if talks_over else None)),
    }


def refused(s: dict[str, Any]) -> bool:
    """Recognition cannot be had: the credentials are revoked (every handshake refused with 401, however
    many fresh tokens the handler fetches). Nothing else drawn refuses for good: a stale token is let in
    again with a fresh one, a busy service answers a retry."""
    return any(f["type"] == "reject_handshake" and f["status"] == 401 and "connection" not in f
               and f["times"] >= FOREVER for f in s["faults"])


def reply_text(sentences: int) -> str:
    return " ".join(f"{'{user}' if k == 0 else '네'} 답변 {k + 1}번 문장입니다." for k in range(sentences))


def as_call(s: dict[str, Any]) -> DrawnCall:
    """A scenario as a fixture: the call.json document and the caller's mu-law audio."""
    script = synth_call(s["seed"], s["utterances"], tail_ms=TAIL_MS, partial_every_ms=s["partial_every_ms"])
    llm_spec = {k: v for k, v in s["llm"].items() if k != "sentences"}
    llm_spec["replies"] = [reply_text(s["llm"]["sentences"])]
    refusal = refused(s)
    caller_hangup = None if refusal else s["hangup"]  # a refused call is ended by the handler: the caller waits
    caller = {**(caller_hangup or {}), **({"vanish": True} if s["vanish"] and caller_hangup else {}),
              **({"dtmf": s["dtmf"]} if s["dtmf"] else {})}
    expect: dict[str, Any] = {"call_refused": True} if refusal else {"barge_in": True} if s["barge_in"] else {}
    name = "fuzz-" + hashlib.sha256(json.dumps(s, sort_keys=True, default=str).encode()).hexdigest()[:10]
    doc = {**script.raw, "name": name, "description": f"drawn by harness.strategies: {s}",
           "faults": s["faults"], "llm": llm_spec, "tts": s["tts"], "caller": caller, "expect": expect}
    if s["recognizer"]:
        doc["recognizer"] = s["recognizer"]
    return DrawnCall(s, doc, pcm16_to_ulaw(script.audio))


def calls(**options: Any) -> st.SearchStrategy[DrawnCall]:
    """Whole calls (see the module docstring); ``options`` are those of ``scenarios``: ``max_utterances``,
    ``max_faults``, ``fault_kinds``, ``barge_in``, ``hangups``, ``keypad``, ``max_duration_ms``."""
    return scenarios(**options).map(as_call)
