"""The timeline's events, one frozen dataclass a kind: what the caller said and heard, what RTZR, the LLM and TTS
were asked and answered, how each stream ended. Checks match on these types (``timeline.of(Final)``,
``isinstance(e, Stop)``), so a misspelled kind or field is a type error, and an ``AttributeError`` at run time,
never a check quietly judging nothing (after websockets' ``Event`` union).

Each class keeps its kind's name as ``kind`` (the word reports and the JSON timeline print); ``fields()`` gives
the rest as plain data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from fakertzr.journal import SERVER_ENDS, StreamEnd

_OPTIONAL = {"optional": True}  # a field printed only when it says something (not None, not False)


def _optional(default: Any = None) -> Any:
    return field(default=default, metadata=_OPTIONAL)


@dataclass(frozen=True)
class EventBase:
    """When (monotonic seconds, the one clock of a replay) and, per class, which kind."""

    wall: float
    kind: ClassVar[str] = ""

    def fields(self, known: bool = True) -> dict[str, Any]:
        """The event's data but ``wall``, as plain values; ``known``: an optional field only when it is set."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "wall":
                continue
            value = getattr(self, f.name)
            if known and f.metadata.get("optional") and (value is None or value is False):
                continue
            data[f.name] = str(value) if isinstance(value, StreamEnd) else list(value) if isinstance(value, tuple) else value
        return data


# the caller


@dataclass(frozen=True)
class CallStart(EventBase):
    """The caller's first audio frame went out."""

    kind: ClassVar[str] = "call_start"


@dataclass(frozen=True)
class SpeechStart(EventBase):
    """The frame that begins an utterance of the fixture went out."""

    utterance: int = 0
    text: str = ""
    audio_ms: float = 0.0
    kind: ClassVar[str] = "speech_start"


@dataclass(frozen=True)
class SpeechEnd(EventBase):
    """The frame that ends an utterance went out; ``end_point_sent``: when the audio RTZR's end-point detection
    needs after it had gone too (None: it never did)."""

    utterance: int = 0
    text: str = ""
    audio_ms: float = 0.0
    end_point_sent: float | None = None
    kind: ClassVar[str] = "speech_end"


@dataclass(frozen=True)
class Stop(EventBase):
    """The caller hung up (``how``: "stop"), the line dropped ("vanished"), or the handler ended the call through
    Twilio's REST API ("api") or gave it new TwiML there ("redirect"): ``stop`` sent all the same, after
    ``audio_ms`` of audio."""

    how: str = "stop"
    audio_ms: float | None = _optional()
    kind: ClassVar[str] = "stop"

    @property
    def vanished(self) -> bool:
        return self.how == "vanished"

    @property
    def by_handler(self) -> bool:
        """The handler asked Twilio for it (an end or a redirect through the REST API), not the caller."""
        return self.how in ("api", "redirect")


@dataclass(frozen=True)
class Redirected(EventBase):
    """The handler gave the live call new TwiML through Twilio's REST API (``by`` "twiml" or "url"): its stream
    stopped, and the new TwiML was followed to ``outcome`` ("hangup", "end of TwiML", "ended", or "stream": a new
    Media Stream the fake Twilio does not open); ``said``: its ``<Say>`` texts, which the caller heard."""

    by: str = "twiml"
    outcome: str = ""
    said: tuple[str, ...] = ()
    url: str | None = _optional()
    kind: ClassVar[str] = "redirected"


@dataclass(frozen=True)
class Closed(EventBase):
    """The Twilio socket is gone; ``by_handler``: the handler closed it."""

    by_handler: bool = False
    kind: ClassVar[str] = "closed"


# RTZR


@dataclass(frozen=True)
class _Result(EventBase):
    """A message RTZR sent on a stream: its text, the stream's audio position, and where that lies in the call's."""

    connection: int = 0
    text: str = ""
    audio_ms: float | None = None
    call_ms: float | None = _optional()


@dataclass(frozen=True)
class Partial(_Result):
    kind: ClassVar[str] = "partial"


@dataclass(frozen=True)
class Final(_Result):
    """``after_eos``: sent after the client's EOS on its stream (the handler had ended the stream: the final
    answers it)."""

    after_eos: bool = _optional(False)
    kind: ClassVar[str] = "final"


@dataclass(frozen=True)
class RtzrRaw(_Result):
    """A scripted raw message (not a result)."""

    kind: ClassVar[str] = "rtzr_raw"


@dataclass(frozen=True)
class RtzrEnd(EventBase):
    """How a stream ended (fakertzr's journal): ``how`` (a ``StreamEnd``), the close code and reason, how much
    audio it had, when it was opened, and the call position its audio reached."""

    connection: int = 0
    how: StreamEnd | str = StreamEnd.CLIENT_CLOSED
    code: int | None = None
    reason: str = ""
    audio_ms: float | None = None
    opened: float | None = None
    call_ms: float | None = _optional()
    kind: ClassVar[str] = "rtzr_end"

    @property
    def by_server(self) -> bool:
        """RTZR ended it, not in answer to the client's EOS: a fault the handler must get over."""
        return self.how in SERVER_ENDS and self.reason != "EOS"


@dataclass(frozen=True)
class RtzrClosed(EventBase):
    """The stream's socket is gone (``open``: still open when the call was judged; a stall keeps it)."""

    connection: int
    open: bool = False
    kind: ClassVar[str] = "rtzr_closed"


@dataclass(frozen=True)
class RtzrRefused(EventBase):
    """RTZR refused a stream's handshake with ``status``."""

    connection: int
    status: int
    why: str = ""
    kind: ClassVar[str] = "rtzr_refused"


@dataclass(frozen=True)
class RtzrForeign(EventBase):
    """A stream that is another call's (it carried this call's words before this caller said them), set aside."""

    connection: int
    finals: tuple[str, ...] = ()
    why: str = ""
    kind: ClassVar[str] = "rtzr_foreign"


@dataclass(frozen=True)
class RtzrAuthFailed(EventBase):
    """The token endpoint refused with ``status``."""

    status: int
    kind: ClassVar[str] = "rtzr_auth_failed"


# the LLM and TTS


@dataclass(frozen=True)
class _LlmCall(EventBase):
    """A chat completion request: the user words it adds (``user``), what it was told, the reply, how it went."""

    index: int = 0
    user: str = ""
    last_user: str = ""
    reply: str = ""
    told: tuple[tuple[str, str], ...] = ()
    abandoned: bool = False
    status: int = 200
    stream: bool = False
    ended: float | None = None
    open: bool = False
    stalled: bool = _optional(False)

    def as_kind(self, cls: type[_L], **changes: Any) -> _L:
        """This request as another kind of LLM call (a post-call one), with ``changes``."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return cls(**{**values, **changes})


_L = TypeVar("_L", bound=_LlmCall)


@dataclass(frozen=True)
class LlmRequest(_LlmCall):
    """An LLM request made during the call: a turn."""

    kind: ClassVar[str] = "llm_request"


@dataclass(frozen=True)
class LlmPostcall(_LlmCall):
    """An LLM request begun after the hang-up (a summary, CRM notes); ``late_final``: the final it answers, which
    came after the hang-up (a reply to nobody)."""

    late_final: str | None = _optional()
    kind: ClassVar[str] = "llm_postcall"


@dataclass(frozen=True)
class LlmForeign(_LlmCall):
    """An LLM request made from another call's words."""

    kind: ClassVar[str] = "llm_foreign"


@dataclass(frozen=True)
class _TtsCall(EventBase):
    """A speech request: the text, the format asked, the tone the fake speaks it in, how it went."""

    index: int = 0
    text: str = ""
    format: str | None = None
    status: int = 200
    abandoned: bool = False
    tone_hz: float | None = None
    ended: float | None = None
    audio_s: float = 0.0
    open: bool = False
    stalled: bool = _optional(False)


@dataclass(frozen=True)
class TtsRequest(_TtsCall):
    kind: ClassVar[str] = "tts_request"


@dataclass(frozen=True)
class TtsForeign(_TtsCall):
    """A speech request for another call's reply."""

    kind: ClassVar[str] = "tts_foreign"


# what the handler sent Twilio, and what Twilio told it


@dataclass(frozen=True)
class Media(EventBase):
    """A media message: ``ms`` of audio, and which TTS request spoke it (None: not the fake TTS's tone)."""

    ms: float = 20.0  # one frame
    tts: int | None = _optional()
    kind: ClassVar[str] = "media"


@dataclass(frozen=True)
class Mark(EventBase):
    name: str
    kind: ClassVar[str] = "mark"


@dataclass(frozen=True)
class Clear(EventBase):
    kind: ClassVar[str] = "clear"


@dataclass(frozen=True)
class MarkPlayed(EventBase):
    """Twilio echoed a mark: the audio before it has been played."""

    name: str
    kind: ClassVar[str] = "mark_played"


@dataclass(frozen=True)
class HandlerInvalid(EventBase):
    """A message Twilio would not take (``code``: its warning) or plays wrongly (``dropped`` False)."""

    code: int
    why: str
    dropped: bool = True
    text: str = ""
    kind: ClassVar[str] = "handler_invalid"


@dataclass(frozen=True)
class HarnessNote(EventBase):
    """The harness says something of the call it does not judge (the fake Twilio stopped keeping a flood)."""

    note: str
    kind: ClassVar[str] = "harness_note"


Event = (CallStart | SpeechStart | SpeechEnd | Stop | Redirected | Closed | Partial | Final | RtzrRaw | RtzrEnd | RtzrClosed
         | RtzrRefused | RtzrForeign | RtzrAuthFailed | LlmRequest | LlmPostcall | LlmForeign | TtsRequest
         | TtsForeign | Media | Mark | Clear | MarkPlayed | HandlerInvalid | HarnessNote)
EVENT_TYPES: tuple[type[EventBase], ...] = (
    CallStart, SpeechStart, SpeechEnd, Stop, Redirected, Closed, Partial, Final, RtzrRaw, RtzrEnd, RtzrClosed, RtzrRefused,
    RtzrForeign, RtzrAuthFailed, LlmRequest, LlmPostcall, LlmForeign, TtsRequest, TtsForeign, Media, Mark, Clear,
    MarkPlayed, HandlerInvalid, HarnessNote)
KINDS: dict[str, type[EventBase]] = {cls.kind: cls for cls in EVENT_TYPES}
LlmCall = LlmRequest | LlmPostcall | LlmForeign
TtsCall = TtsRequest | TtsForeign
