"""Faults as small stages, each consulted at one well-defined point (after toxiproxy's toxics).

A script lists faults as data (``{"type": "close", "code": 1000, "after_finals": 1}``); the
control API adds and removes them at run time. Each fault applies to one connection index
(counted since reset) or to any, and fires ``times`` times before it is spent (``UNLIMITED``: never spent).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .actions import Action, Close, Drop, Refusal, RevokeTokens, SendRaw, SendResult, Stall
from .errors import FakeRtzrError
from .validation import check

UNLIMITED: Literal["unlimited"] = "unlimited"  # a fault's ``times`` that never runs out: it fires on every attempt
Times = int | Literal["unlimited"]


@dataclass
class Fault:
    """Base: which connection, how many times, and the hook points (all no-ops here)."""

    kind: ClassVar[str] = ""
    default_times: ClassVar[Times | None] = 1
    connection: int | None = None
    times: Times | None = None
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.times is None:
            self.times = self.default_times

    @property
    def spent(self) -> bool:
        return isinstance(self.times, int) and self.fired >= self.times  # None (delay_finals) or UNLIMITED: never

    def applies_to(self, connection_index: int) -> bool:
        return not self.spent and (self.connection is None or self.connection == connection_index)

    def fire(self) -> None:
        self.fired += 1

    def describe(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return {"type": self.kind, **data}

    # hook points
    def on_authenticate(self) -> Refusal | None:
        return None

    def on_handshake(self, connection_index: int) -> Refusal | None:
        return None

    def on_transcription(self, connection_index: int) -> dict[str, str] | None:
        """The file API: an error that makes this job end ``failed``."""
        return None

    def transform(self, action: SendResult) -> SendResult:
        return action


@dataclass
class TriggeredFault(Fault):
    """Fires its effect at an audio point (ms of the connection's audio) or after the Nth final."""

    at_ms: float | None = None
    after_finals: int | None = None

    def effect(self, audio_ms: float) -> list[Action]:
        raise NotImplementedError

    def due_at_audio(self, audio_ms: float) -> bool:
        return self.at_ms is not None and audio_ms >= self.at_ms

    def due_after_final(self, finals_sent: int) -> bool:
        return self.after_finals is not None and finals_sent == self.after_finals


@dataclass
class CloseFault(TriggeredFault):
    kind: ClassVar[str] = "close"
    code: int = 1000
    reason: str = ""

    def effect(self, audio_ms: float) -> list[Action]:
        return [Close(self.code, self.reason or f"fakertzr fault: close {self.code}")]


@dataclass
class DropFault(TriggeredFault):
    kind: ClassVar[str] = "drop"

    def effect(self, audio_ms: float) -> list[Action]:
        return [Drop()]


@dataclass
class StallFault(TriggeredFault):
    kind: ClassVar[str] = "stall"

    def effect(self, audio_ms: float) -> list[Action]:
        return [Stall()]


@dataclass
class MalformedFault(TriggeredFault):
    kind: ClassVar[str] = "malformed"
    payload: str = '{"seq": 0, "start_at": 0, "final": tru'

    def effect(self, audio_ms: float) -> list[Action]:
        return [SendRaw(self.payload, audio_ms)]


@dataclass
class ExpireTokensFault(TriggeredFault):
    kind: ClassVar[str] = "expire_tokens"

    def effect(self, audio_ms: float) -> list[Action]:
        return [RevokeTokens()]


@dataclass
class DelayFinalsFault(Fault):
    """Every final (``times`` of them; all by default) is sent ``delay_ms`` later."""

    kind: ClassVar[str] = "delay_finals"
    default_times: ClassVar[Times | None] = None
    delay_ms: float = 0.0

    def transform(self, action: SendResult) -> SendResult:
        if not action.result.final:
            return action
        self.fire()
        delayed = dataclasses.replace(action.result, delay_ms=action.result.delay_ms + self.delay_ms)
        return SendResult(delayed)


@dataclass
class RejectHandshakeFault(Fault):
    kind: ClassVar[str] = "reject_handshake"
    status: int = 401
    code: str | None = None
    reason: str | None = None

    def on_handshake(self, connection_index: int) -> Refusal | None:
        if not self.applies_to(connection_index):
            return None
        self.fire()
        return Refusal.of(self.status, self.reason, self.code)


@dataclass
class AuthFailureFault(Fault):
    kind: ClassVar[str] = "auth_failure"
    status: int = 401
    reason: str | None = None

    def on_authenticate(self) -> Refusal | None:
        if self.spent:
            return None
        self.fire()
        return Refusal.of(self.status, self.reason)


@dataclass
class FailTranscriptionFault(Fault):
    """The file API: the next job (``times`` of them) ends ``failed`` instead of ``completed``."""

    kind: ClassVar[str] = "fail_transcription"
    reason: str | None = None

    def on_transcription(self, connection_index: int) -> dict[str, str] | None:
        if not self.applies_to(connection_index):
            return None
        self.fire()
        return {"code": "E500", "message": self.reason or "transcription failed"}


FAULT_TYPES: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (CloseFault, DropFault, StallFault, MalformedFault, ExpireTokensFault,
                DelayFinalsFault, RejectHandshakeFault, AuthFailureFault, FailTranscriptionFault)
}


def fault_from_spec(spec: dict[str, Any], where: str = "fault") -> Fault:
    """Build a fault from its data form, with errors that name the field."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise FakeRtzrError(f"{where}: a fault needs a 'type' ({', '.join(FAULT_TYPES)})")
    cls = FAULT_TYPES.get(spec["type"]) if isinstance(spec["type"], str) else None
    if cls is None:
        raise FakeRtzrError(f"{where}.type: unknown fault {str(spec['type'])[:40]!r}; known: {', '.join(FAULT_TYPES)}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(spec) - names - {"type"}
    if unknown:
        raise FakeRtzrError(f"{where}: {spec['type']} takes no {', '.join(sorted(unknown))} (takes {', '.join(sorted(names))})")
    check("fault", spec, where)  # the types and ranges, as the fixture schema has them
    fault = cls(**{k: v for k, v in spec.items() if k != "type"})
    if isinstance(fault, TriggeredFault) and fault.at_ms is None and fault.after_finals is None:
        if not isinstance(fault, ExpireTokensFault):
            raise FakeRtzrError(f"{where}: {fault.kind} needs at_ms or after_finals")
        fault.at_ms = 0.0
    return fault
