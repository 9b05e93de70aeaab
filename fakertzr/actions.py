"""What the sans-I/O core asks its I/O shell to do."""

from __future__ import annotations

from dataclasses import dataclass

from .results import Result


@dataclass(frozen=True)
class SendResult:
    result: Result


@dataclass(frozen=True)
class SendRaw:
    """A text frame that is not a well-formed result (the malformed-message fault)."""

    text: str
    audio_ms: float
    delay_ms: float = 0.0


@dataclass(frozen=True)
class Close:
    code: int
    reason: str = ""


@dataclass(frozen=True)
class Drop:
    """Abort the TCP connection with no close frame."""


@dataclass(frozen=True)
class Stall:
    """Keep the socket open and send nothing more."""


@dataclass(frozen=True)
class RevokeTokens:
    """Every token issued so far stops working (token expiry)."""


Action = SendResult | SendRaw | Close | Drop | Stall | RevokeTokens
TERMINAL = (Close, Drop, Stall)

ERROR_CODES = {400: "H0001", 401: "H0002", 429: "A0001", 500: "E500"}
ERROR_MESSAGES = {
    400: "bad parameters",
    401: "invalid credential",
    429: "usage exceeded or too many concurrent streams",
    500: "internal server error",
}


@dataclass(frozen=True)
class Refusal:
    """An HTTP refusal with RTZR's error body ``{"code", "msg"}``."""

    status: int
    code: str
    msg: str

    @classmethod
    def of(cls, status: int, msg: str | None = None, code: str | None = None) -> "Refusal":
        return cls(status, code or ERROR_CODES.get(status, "E500"), msg or ERROR_MESSAGES.get(status, "error"))

    def body(self) -> dict[str, str]:
        return {"code": self.code, "msg": self.msg}
