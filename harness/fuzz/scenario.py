"""What a drawn call is made of, as small frozen dataclasses: the caller's utterances and how they are timed,
RTZR's timing and faults, the LLM's and the TTS's, the caller's hang-up and keypad. ``harness.fuzz.strategies``
draws them and makes a fixture of them; each part says what fixture data it stands for (``spec``) and reads as
that fixture in words (``describe``).

A fault here is what was drawn, one kind each (``FAULT_KINDS``): revoked credentials are one fault that is two
fakertzr faults refusing every attempt (``times: "unlimited"``), the missing credentials one that is no
fakertzr fault at all (the handler is started without them).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Union

from fakertzr.faults import UNLIMITED
from harness.fuzz.synthetic import SynthUtterance

__all__ = [
    "AuthFailure", "Close", "CREDENTIALS", "DelayFinals", "Drop", "DrawnFault", "ExpireTokens", "FAULT_KINDS",
    "Hangup", "KeyPress", "Llm", "Malformed", "NoCredentials", "Reaction", "Recognizer", "RejectHandshake",
    "RevokedCredentials", "Scenario", "Stall", "Tts", "fault_of",
]

FAULT_KINDS = ("close", "drop", "stall", "malformed", "delay_finals", "expire_tokens", "reject_handshake",
               "auth_failure", "revoked_credentials", "no_credentials")
CREDENTIALS = ("RTZR_CLIENT_ID", "RTZR_CLIENT_SECRET")  # what "no_credentials" starts the handler without


def _json(spec: Mapping[str, Any]) -> str:
    return json.dumps(spec, ensure_ascii=False)


# ------------------------------------------------------------------------------------------------ faults
@dataclass(frozen=True)
class _Fault:
    kind: ClassVar[str] = ""

    def specs(self) -> list[dict[str, Any]]:
        """The fakertzr faults (a fixture's ``faults`` entries) this fault is."""
        return []

    @property
    def feature(self) -> str:
        """What the call goes through, for the search's statistics."""
        return f"RTZR fault: {self.kind}"

    def describe(self) -> str:
        return ", ".join(_json(s) for s in self.specs())


@dataclass(frozen=True)
class _Triggered(_Fault):
    """Fires at a point of the stream's audio (``at_ms``) or after its ``after_finals``-th final."""

    at_ms: int | None = None
    after_finals: int | None = None

    def _trigger(self) -> dict[str, int]:
        if self.at_ms is not None:
            return {"at_ms": self.at_ms}
        return {} if self.after_finals is None else {"after_finals": self.after_finals}

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": self.kind, **self._trigger()}]


@dataclass(frozen=True)
class Close(_Triggered):
    kind: ClassVar[str] = "close"
    code: int = 1000

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "close", "code": self.code, **self._trigger()}]


@dataclass(frozen=True)
class Drop(_Triggered):
    kind: ClassVar[str] = "drop"


@dataclass(frozen=True)
class Stall(_Triggered):
    kind: ClassVar[str] = "stall"


@dataclass(frozen=True)
class Malformed(_Triggered):
    kind: ClassVar[str] = "malformed"


@dataclass(frozen=True)
class ExpireTokens(_Triggered):
    kind: ClassVar[str] = "expire_tokens"


@dataclass(frozen=True)
class DelayFinals(_Fault):
    """Finals come ``delay_ms`` late: the first ``times`` of them, or all (None)."""

    kind: ClassVar[str] = "delay_finals"
    delay_ms: int = 0
    times: int | None = None

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "delay_finals", "delay_ms": self.delay_ms, **({"times": self.times} if self.times else {})}]


@dataclass(frozen=True)
class RejectHandshake(_Fault):
    """Handshakes refused: a stale token once (401), or the service busy for a try or two."""

    kind: ClassVar[str] = "reject_handshake"
    status: int = 401
    times: int = 1
    connection: int | None = None

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "reject_handshake", "status": self.status, "times": self.times,
                 **({} if self.connection is None else {"connection": self.connection})}]


@dataclass(frozen=True)
class AuthFailure(_Fault):
    """The token endpoint down for a try or two."""

    kind: ClassVar[str] = "auth_failure"
    status: int = 500
    times: int = 1

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "auth_failure", "status": self.status, "times": self.times}]


@dataclass(frozen=True)
class RevokedCredentials(_Fault):
    """Every token request and every handshake refused with 401, however often retried: the call is refused."""

    kind: ClassVar[str] = "revoked_credentials"

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "auth_failure", "status": 401, "times": UNLIMITED},
                {"type": "reject_handshake", "status": 401, "times": UNLIMITED}]


@dataclass(frozen=True)
class NoCredentials(_Fault):
    """The handler started without its RTZR credentials (the report's failure 1): no fakertzr fault."""

    kind: ClassVar[str] = "no_credentials"

    @property
    def feature(self) -> str:
        return "the handler starts without RTZR credentials"

    def describe(self) -> str:
        return f"the handler starts without {', '.join(CREDENTIALS)} (handler.without_env)"


DrawnFault = Union[Close, Drop, Stall, Malformed, ExpireTokens, DelayFinals, RejectHandshake, AuthFailure,
                   RevokedCredentials, NoCredentials]
_BY_KIND: dict[str, type[_Fault]] = {cls.kind: cls for cls in (Close, Drop, Stall, Malformed, ExpireTokens,
                                                              DelayFinals, RejectHandshake, AuthFailure,
                                                              RevokedCredentials, NoCredentials)}


def fault_of(spec: Mapping[str, Any]) -> DrawnFault:
    """A fault from its fixture data (one fakertzr fault, or ``{"type": "no_credentials"}``)."""
    fields = {k: v for k, v in spec.items() if k != "type"}
    cls = _BY_KIND.get(spec["type"])
    if cls is None or cls is RevokedCredentials:
        raise ValueError(f"not a drawn fault: {dict(spec)} (known: {', '.join(_BY_KIND)})")
    return cls(**fields)  # type: ignore[return-value]


def _faults_of(specs: list[Mapping[str, Any]]) -> tuple[DrawnFault, ...]:
    """Fixture faults as drawn faults: a token refusal and a handshake refusal that never run out (``times``
    ``"unlimited"``, or the 100 scenarios said before it) are revoked credentials."""
    out: list[DrawnFault] = []
    k = 0
    while k < len(specs):
        spec, after = specs[k], specs[k + 1] if k + 1 < len(specs) else {}
        if (spec["type"] == "auth_failure" and _endless(spec) and after.get("type") == "reject_handshake"
                and _endless(after)):
            out.append(RevokedCredentials())
            k += 2
            continue
        out.append(fault_of(spec))
        k += 1
    return tuple(out)


def _endless(spec: Mapping[str, Any]) -> bool:
    return spec.get("status") == 401 and spec.get("times") in (UNLIMITED, 100)


# ------------------------------------------------------------------------------------------- the rest
@dataclass(frozen=True)
class Recognizer:
    """RTZR's timing; None: the fixture does not say (fakertzr's default)."""

    epd_time: float | None = None
    processing_delay_ms: int | None = None
    partial_delay_ms: int | None = None

    def spec(self) -> dict[str, Any]:
        """call.json's ``recognizer``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Hangup:
    """The caller hangs up at a point of the audio (``at_ms``) or after some turns."""

    at_ms: int | None = None
    after_turns: int | None = None

    def spec(self) -> dict[str, int]:
        if self.at_ms is not None:
            return {"hangup_ms": self.at_ms}
        return {} if self.after_turns is None else {"hangup_after_turns": self.after_turns}

    def describe(self) -> str:
        return f"hangs up at {self.at_ms} ms" if self.at_ms is not None else f"hangs up after {self.after_turns} turn(s)"


@dataclass(frozen=True)
class KeyPress:
    at_ms: int
    digit: str

    def spec(self) -> dict[str, Any]:
        return {"at_ms": self.at_ms, "digit": self.digit}


@dataclass(frozen=True)
class Reaction:
    """An utterance timed on the reply to the turn before it: ``ms`` after it starts, or after it has ended."""

    after: Literal["bot_starts", "bot_ends"]
    ms: int

    def spec(self) -> dict[str, Any]:
        return {"after": self.after, "ms": self.ms}


@dataclass(frozen=True)
class Llm:
    """The fake LLM: time to first token, pace, sentences a reply; requests that fail (index, status) or stall."""

    first_token_ms: int = 0
    token_ms: int = 0
    sentences: int = 1
    fail_requests: tuple[tuple[int, int], ...] = ()
    stall_requests: tuple[int, ...] = ()

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> "Llm":
        return cls(spec["first_token_ms"], spec["token_ms"], spec["sentences"],
                   tuple((int(k), v) for k, v in spec.get("fail_requests", {}).items()),
                   tuple(spec.get("stall_requests", ())))

    def spec(self) -> dict[str, Any]:
        """call.json's ``llm`` but its ``replies`` (``strategies.reply_text`` makes them)."""
        return {"first_token_ms": self.first_token_ms, "token_ms": self.token_ms,
                **({"fail_requests": {str(k): v for k, v in self.fail_requests}} if self.fail_requests else {}),
                **({"stall_requests": list(self.stall_requests)} if self.stall_requests else {})}


@dataclass(frozen=True)
class Tts:
    realtime: bool = False
    ms_per_char: int = 20
    first_chunk_ms: int = 0

    def spec(self) -> dict[str, Any]:
        return {"realtime": self.realtime, "ms_per_char": self.ms_per_char, "first_chunk_ms": self.first_chunk_ms}


@dataclass(frozen=True)
class Scenario:
    """A drawn call: ``strategies.as_call`` makes it a fixture, ``describe`` says it as that fixture in words.
    ``lane``: its place among calls played at once (its words are ``l{lane}w0``, ...; the first's ``w0``)."""

    seed: int
    utterances: tuple[SynthUtterance, ...]
    recognizer: Recognizer = Recognizer()
    partial_every_ms: int | None = None
    faults: tuple[DrawnFault, ...] = ()
    hangup: Hangup | None = None
    vanish: bool = False  # the line drops at the hang-up (no stop message)
    dtmf: tuple[KeyPress, ...] = ()
    barge_in: bool = False
    llm: Llm = Llm()
    tts: Tts = Tts()
    reacts: tuple[Reaction | None, ...] = ()  # one per utterance after the first
    lane: int = 0

    @property
    def without_credentials(self) -> bool:
        return any(isinstance(f, NoCredentials) for f in self.faults)

    @property
    def refused(self) -> bool:
        """Recognition cannot be had: no credentials, or revoked ones (a stale token, a busy service are
        answered by a retry)."""
        return any(isinstance(f, (NoCredentials, RevokedCredentials)) for f in self.faults)

    @property
    def word_prefix(self) -> str:
        return f"l{self.lane}w" if self.lane else "w"

    def fault_specs(self) -> list[dict[str, Any]]:
        """The fixture's ``faults``: fakertzr's, revoked credentials ``times: "unlimited"``."""
        return [spec for f in self.faults for spec in f.specs()]

    def caller_spec(self, wait_ms: int) -> dict[str, Any]:
        """call.json's ``caller`` (a refused call is ended by the handler: the caller neither hangs up nor
        times words on the bot); ``wait_ms``: how long a reacting caller waits for the bot."""
        hangup = None if self.refused else self.hangup
        reacts = [{"utterance": i + 2, "turn": i + 1, **r.spec(), "wait_ms": wait_ms}
                  for i, r in enumerate(self.reacts) if r and not self.refused]
        return {**(hangup.spec() if hangup else {}), **({"vanish": True} if self.vanish and hangup else {}),
                **({"dtmf": [k.spec() for k in self.dtmf]} if self.dtmf else {}),
                **({"reacts": reacts} if reacts else {})}

    def as_dict(self) -> dict[str, Any]:
        """Plain data (utterances as they are): what a call's name and key are made of."""
        return {"seed": self.seed, "utterances": list(self.utterances), "recognizer": self.recognizer.spec(),
                "partial_every_ms": self.partial_every_ms,
                "faults": [spec for f in self.faults for spec in (f.specs() or [{"type": f.kind}])],
                "hangup": self.hangup.spec() if self.hangup else None, "vanish": self.vanish,
                "dtmf": [k.spec() for k in self.dtmf], "barge_in": self.barge_in,
                "llm": {**self.llm.spec(), "sentences": self.llm.sentences}, "tts": self.tts.spec(),
                "reacts": [r.spec() if r else None for r in self.reacts], **({"lane": self.lane} if self.lane else {})}

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> "Scenario":
        """From ``as_dict``'s plain data (as tests keep a call a search found); ``reacts`` and ``lane`` may be left out."""
        hangup = s.get("hangup")
        return cls(
            seed=s["seed"], utterances=tuple(s["utterances"]), recognizer=Recognizer(**(s.get("recognizer") or {})),
            partial_every_ms=s.get("partial_every_ms"), faults=_faults_of(list(s.get("faults", ()))),
            hangup=None if not hangup else Hangup(hangup.get("hangup_ms"), hangup.get("hangup_after_turns")),
            vanish=bool(s.get("vanish")), dtmf=tuple(KeyPress(d["at_ms"], d["digit"]) for d in s.get("dtmf", ())),
            barge_in=bool(s.get("barge_in")), llm=Llm.of(s["llm"]), tts=Tts(**s["tts"]),
            reacts=tuple(Reaction(r["after"], r["ms"]) if r else None for r in s.get("reacts", ())),
            lane=s.get("lane", 0))

    def describe(self, tail_ms: int = 0) -> str:
        """The call as its fixture says it, a line a part: the utterances (words, where they start and end in
        the caller's audio, how they are timed), RTZR's timing, each fault as its fixture lines, the LLM, the
        TTS, the caller. ``tail_ms``: the audio after the last word."""
        lines, cursor, n = [], 0, 0
        for i, u in enumerate(self.utterances):
            cursor += u.pause_before_ms
            words = " ".join(f"{self.word_prefix}{n + k}" for k in range(len(u.word_ms)))
            timed = self.reacts[i - 1] if 0 < i <= len(self.reacts) else None
            when = ""
            if timed and not self.refused:
                when = (f", spoken {timed.ms} ms after the bot starts reply {i}" if timed.after == "bot_starts"
                        else f", spoken {timed.ms} ms after reply {i} ends")
            lines.append(f"  {i + 1}. \"{words}\" {cursor}-{cursor + sum(u.word_ms)} ms "
                         f"(words of {', '.join(map(str, u.word_ms))} ms){when}")
            cursor += sum(u.word_ms)
            n += len(u.word_ms)
        head = f"utterances ({len(self.utterances)}, {cursor + tail_ms} ms of caller audio, seed {self.seed}):"
        rtzr = ", ".join(f"{k} {v}" for k, v in self.recognizer.spec().items()) or "defaults"
        partials = f"a partial every {self.partial_every_ms} ms" if self.partial_every_ms else "a partial a word"
        out = [head, *lines, f"recognizer: {rtzr}; {partials}"]
        out.append("faults: none" if not self.faults else "faults:")
        out += [f"  - {f.kind}: {f.describe()}" for f in self.faults]
        llm = self.llm
        out.append(f"llm: first token after {llm.first_token_ms} ms, {llm.token_ms} ms a token, {llm.sentences} "
                   "sentence(s) a reply" + "".join(f"; request {k} fails with {v}" for k, v in llm.fail_requests)
                   + "".join(f"; request {k} stalls" for k in llm.stall_requests))
        out.append(f"tts: {'in real time' if self.tts.realtime else 'faster than real time'}, "
                   f"{self.tts.ms_per_char} ms a character, first audio after {self.tts.first_chunk_ms} ms")
        caller = []
        if self.hangup and not self.refused:
            caller.append(self.hangup.describe() + (" (the line drops)" if self.vanish else ""))
        caller += [f"presses {k.digit} at {k.at_ms} ms" for k in self.dtmf]
        if self.barge_in and not self.refused:
            caller.append("talks over a long reply (barge-in)")
        out.append(f"caller: {'; '.join(caller) if caller else 'says everything'}")
        return "\n".join(out)

    @property
    def features(self) -> list[str]:
        """What the call goes through but its caller, for statistics (``DrawnCall.features`` has the rest)."""
        return [f.feature for f in self.faults]
