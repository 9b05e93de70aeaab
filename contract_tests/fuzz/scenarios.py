"""Hypothesis strategies for whole calls, and how a drawn scenario becomes a fixture.

A scenario varies everything a phone call's timing depends on: the number, length and spacing of
the caller's utterances; the recognizer's partial cadence, end-point detection and processing
delay; the LLM's time to first token, pace, length and failures; the TTS's delay and pace; up to
two faults at any point (a close with any code, a drop, a stall, delayed finals, revoked tokens,
refused handshakes, a refused or failing token endpoint); the caller's hang-up (or a dropped line)
at any point; DTMF; and barge-in (long spoken replies with the caller talking over them).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from callaudio.g711 import pcm16_to_ulaw
from tests.support.synth import SynthUtterance, synth_call


@dataclass(frozen=True)
class Outcome:
    """What a correct handler must do with a scenario, beyond the general checks."""

    refused: bool  # recognition cannot be had: apologise and end the call


def fault_strategy(max_audio_ms: int) -> st.SearchStrategy[dict]:
    at = st.integers(0, max_audio_ms)
    after = st.integers(1, 3)
    trigger = st.one_of(at.map(lambda v: {"at_ms": v}), after.map(lambda n: {"after_finals": n}))
    code = st.sampled_from([1000, 1001, 1011, 1013, 4000, 4401])  # 1006 is a drop: see "drop"
    return st.one_of(
        st.builds(lambda c, t: {"type": "close", "code": c, **t}, code, trigger),
        st.builds(lambda t: {"type": "drop", **t}, trigger),
        st.builds(lambda t: {"type": "stall", **t}, trigger),
        st.builds(lambda t: {"type": "malformed", **t}, trigger),
        st.builds(lambda d, n: {"type": "delay_finals", "delay_ms": d, **({"times": n} if n else {})},
                  st.integers(0, 3000), st.none() | st.integers(1, 2)),
        st.builds(lambda t: {"type": "expire_tokens", **t}, trigger),
        st.builds(lambda s, c, n: {"type": "reject_handshake", "status": s, "times": n,
                                   **({} if c is None else {"connection": c})},
                  st.sampled_from([401, 429, 500, 503]), st.none() | st.integers(0, 2), st.integers(1, 2)),
        st.builds(lambda s: {"type": "auth_failure", "status": s}, st.sampled_from([401, 500, 503])),
    )


@st.composite
def scenarios(draw) -> dict:
    barge_in = draw(st.booleans())
    pause = st.integers(1500, 2600) if barge_in else st.integers(400, 2500)
    utterances = draw(st.lists(
        st.builds(SynthUtterance, pause_before_ms=pause,
                  word_ms=st.lists(st.integers(150, 600), min_size=1, max_size=4).map(tuple)),
        min_size=2 if barge_in else 1, max_size=4))
    audio_ms = sum(u.pause_before_ms + sum(u.word_ms) for u in utterances) + 1500
    sentences = st.integers(4, 8) if barge_in else st.integers(1, 3)
    return {
        "seed": draw(st.integers(0, 2**31)),
        "utterances": utterances,
        "recognizer": draw(st.fixed_dictionaries({}, optional={
            "epd_time": st.sampled_from([0.3, 0.5, 0.8, 1.2]),
            "processing_delay_ms": st.integers(0, 800),
            "partial_delay_ms": st.integers(0, 300),
            "partials": st.booleans(),
        })),
        "partial_every_ms": draw(st.none() | st.integers(80, 700)),
        "faults": draw(st.lists(fault_strategy(audio_ms), max_size=2)),
        "hangup": draw(st.one_of(st.none(), st.floats(0.0, 1.0).map(lambda f: {"hangup_ms": round(f * audio_ms)}),
                                 st.integers(1, 3).map(lambda n: {"hangup_after_turns": n}))),
        "vanish": draw(st.booleans()),
        "dtmf": draw(st.lists(st.builds(lambda at, d: {"at_ms": at, "digit": d}, st.integers(0, audio_ms),
                                        st.sampled_from("0123456789*#")), max_size=2)),
        "barge_in": barge_in,
        "llm": draw(st.fixed_dictionaries({
            "first_token_ms": st.integers(0, 1500), "token_ms": st.integers(0, 60),
            "sentences": sentences,
        }, optional={"fail_requests": st.dictionaries(st.sampled_from(["0", "1"]), st.sampled_from([429, 500]),
                                                      min_size=1, max_size=1)})),
        "tts": draw(st.fixed_dictionaries({
            "realtime": st.just(True) if barge_in else st.booleans(),
            "ms_per_char": st.integers(20, 120), "first_chunk_ms": st.integers(0, 800),
        })),
    }


def outcome(s: dict) -> Outcome:
    """Recognition is refused for sure when the credentials are refused (401 from the token
    endpoint) or the first two handshakes are refused with 401 (the second with a fresh token).
    A fault bound to one connection index refuses that attempt only: the retry is the next index."""
    refused = any(f["type"] == "auth_failure" and f["status"] == 401
                  or f["type"] == "reject_handshake" and f["status"] == 401 and "connection" not in f and f["times"] == 2
                  for f in s["faults"])
    return Outcome(refused)  # the errors a provoked failure brings are expected without naming them


def reply_text(sentences: int) -> str:
    return " ".join(f"{'{user}' if k == 0 else '네'} 답변 {k + 1}번 문장입니다." for k in range(sentences))


def scenario_fixture(s: dict) -> tuple[dict, bytes]:
    """The scenario as a fixture (call.json document and mu-law audio) the harness replays."""
    script = synth_call(s["seed"], s["utterances"], partial_every_ms=s["partial_every_ms"])
    llm = {k: v for k, v in s["llm"].items() if k != "sentences"}
    llm["replies"] = [reply_text(s["llm"]["sentences"])]
    result = outcome(s)
    hangup = None if result.refused else s["hangup"]  # a refused call is ended by the handler: the caller waits for it
    caller = {**(hangup or {}), **({"vanish": True} if s["vanish"] and hangup else {}),
              **({"dtmf": s["dtmf"]} if s["dtmf"] else {})}
    expect: dict = {}
    if result.refused:
        expect["call_refused"] = True
    doc = {**script.raw, "name": f"fuzz-{s['seed']}", "description": f"found by contract_tests/fuzz: {s}",
           "faults": s["faults"], "llm": llm, "tts": s["tts"], "caller": caller, "expect": expect}
    if s["recognizer"]:
        doc["recognizer"] = s["recognizer"]
    return doc, pcm16_to_ulaw(script.audio)
