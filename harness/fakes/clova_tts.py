"""Naver CLOVA Voice (Premium, through NCP's API gateway) as a second dialect of the fake TTS.

A handler that calls ``POST https://naveropenapi.apigw.ntruss.com/tts-premium/v1/tts`` gets the same fake as
one that calls OpenAI's speech endpoint (:class:`harness.fakes.tts.FakeTts`, which registers this route): the
same per-request tone, journal (``TtsRequest.dialect == "clova"``), scripts (stall, latency, pace) and routing
to several calls. What it answers, as NCP documents it:

- Credentials in ``X-NCP-APIGW-API-KEY-ID`` and ``X-NCP-APIGW-API-KEY``; the body form-encoded
  (``Content-Type: application/x-www-form-urlencoded``, "fixed"). The fake takes any non-empty pair; a missing
  or empty one gets the gateway's 401 ``{"error": {"errorCode": "200", "message": "Authentication Failed"}}``.
- Fields: ``speaker`` (required), ``text`` (required; at most 2,000 characters for Korean, Japanese and Chinese
  voices, 3,000 for English and Spanish ones), ``volume`` -5..5, ``speed`` -5..10, ``pitch`` -5..5, ``emotion``
  0..3, ``emotion-strength`` 0..2 (default 1), ``format`` ``mp3`` (default) or ``wav``, ``sampling-rate`` 8000,
  16000, 24000 (default) or 48000 (wav only), ``alpha`` -5..5; the integers default to 0.
- Refusals in the same ``{"error": {"errorCode", "message"}}`` envelope with Clova's codes: VS01 speaker
  missing, VS02 unsupported speaker, VS05 text missing, VS06 text too long, VS04/VS07/VS08/VS09 speed, volume,
  pitch, alpha out of range, all HTTP 400. (VS03 "Speed parameter is needed." is in the table too, but ``speed``
  is optional with a default of 0 now, so the fake never answers it.)

Sources (as stored in the search corpus; the pages carry 2026 dates):

- https://api.ncloud-docs.com/docs/ai-naver-clovavoice (and /docs/en/...): base URL, the two headers, the VS
  codes table (VS01-VS08 and "VS09 Unsupported alp..." as far as the stored copy goes), the 429 Quota note.
- https://api.ncloud-docs.com/docs/ai-naver-clovavoice-ttspremium (ko, updated 2026-04-23; also /docs/ko/ and
  https://api-gov.ncloud-docs.com/docs/ai-naver-clovavoice-ttspremium): ``POST /tts``, every body field, the
  ranges, defaults, emotion voices, sampling rates, the 2,000/3,000-character limits, speed -5..10.
- https://api.ncloud-docs.com/docs/en/ai-naver-clovavoice-ttspremium (an older English revision): the speaker
  list with languages (nara, nara_call, nminyoung, nyejin, mijin, jinho, clara, matt, shinji, meimei,
  liangliang, jose, carmen, nminsang, nsinu, nhajun, ndain, njiyun, nsujin, njinho, njihun, njooahn,
  nseonghoon, njihwan, nsiyoon, ngaram, ... the stored copy is cut there); speed -5..5 in that revision.
- https://api.ncloud-docs.com/docs/en/ai-naver-clovavoice (older revision) and
  https://api-fin.ncloud-docs.com/docs/ai-naver-clovavoice: the gateway's error body and common errors
  (400/100 Bad Request Exception, 401/200 Authentication Failed, 401/210 Permission Denied, 429/400 Quota
  Exceeded, 413/430 over 10 MB, ...).
- https://api.ncloud-docs.com/docs/en/ai-application-service-apigateway: the same gateway codes.

Where the documents are silent, the fake's choice is marked "undocumented" below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from aiohttp import web

CLOVA_PATH = "/tts-premium/v1/tts"  # NCP's base URL .../tts-premium/v1 plus the endpoint's URI /tts
KEY_ID_HEADER = "X-NCP-APIGW-API-KEY-ID"
KEY_HEADER = "X-NCP-APIGW-API-KEY"
FORM_TYPE = "application/x-www-form-urlencoded"

# The voices NCP's documents name, by language. The English list is cut in the stored copy, so there are more;
# add one here (``SPEAKERS["name"] = "ko"``) when a handler uses a real voice the fake refuses with VS02.
SPEAKERS: dict[str, str] = {
    **dict.fromkeys(("nara", "nara_call", "nminyoung", "nyejin", "mijin", "jinho", "nminsang", "nsinu", "nhajun",
                     "ndain", "njiyun", "nsujin", "njinho", "njihun", "njooahn", "nseonghoon", "njihwan",
                     "nsiyoon", "ngaram", "vara", "vmikyung", "vdain", "vyuna", "vgoeun", "vdaeseong"), "ko"),
    "clara": "en", "matt": "en", "shinji": "ja", "meimei": "zh", "liangliang": "zh", "jose": "es", "carmen": "es",
}
MAX_TEXT_CHARS = {"en": 3000, "es": 3000}  # English and Spanish voices; every other language 2,000
DEFAULT_MAX_TEXT_CHARS = 2000
JOURNAL_TEXT_CHARS = 3000  # the journal keeps this much of a refused over-long text
SAMPLING_RATES = (8000, 16000, 24000, 48000)  # wav only; 24000 by default
DEFAULT_RATE = 24000  # undocumented for mp3: the fake encodes mp3 at the wav default too
# Undocumented: the content types (mp3 as CLOVA's predecessor, Naver Developers' CSS API, answered it).
CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}
UNDOCUMENTED_CODE = "VSXX"  # the fake's code where NCP documents none for a field (format, emotion, ...)


@dataclass(frozen=True)
class IntField:
    """An integer body field: its documented range and default, and the code that refuses it."""

    name: str
    low: int
    high: int
    default: int = 0
    code: str = UNDOCUMENTED_CODE


INT_FIELDS = (
    IntField("volume", -5, 5, code="VS07"),
    IntField("speed", -5, 10, code="VS04"),  # -5..10 in the current revision (-5..5 in older ones)
    IntField("pitch", -5, 5, code="VS08"),
    IntField("emotion", 0, 3),  # voices without emotions: undocumented; the fake takes the value and ignores it
    IntField("emotion-strength", 0, 2, default=1),
    IntField("alpha", -5, 5, code="VS09"),
    IntField("end-pitch", -5, 5),  # its range is cut from the stored copy: the fake assumes pitch's
)
INTEGER = re.compile(r"-?[0-9]+")  # undocumented whether "+3" or " 3" pass: the fake takes plain integers only


@dataclass(frozen=True)
class ClovaRefusal:
    """A refusal in NCP's envelope ``{"error": {"errorCode", "message"[, "details"]}}``."""

    status: int
    code: str
    message: str
    details: str = ""  # not in the docs' example (errorCode and message only): the fake's note of what it saw

    def response(self) -> web.Response:
        error = {"errorCode": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return web.json_response({"error": error}, status=self.status)


@dataclass(frozen=True)
class ClovaAsk:
    """A request CLOVA would answer: what to say, in which voice, format and rate."""

    speaker: str
    text: str
    format: str
    sample_rate: int
    options: Mapping[str, int]  # the integer fields, defaults filled in


def gateway_refusal(headers: Mapping[str, str]) -> ClovaRefusal | None:
    """The gateway's 401 when either credential header is missing or empty (the fake takes any non-empty pair)."""
    if all(headers.get(name, "").strip() for name in (KEY_ID_HEADER, KEY_HEADER)):
        return None
    missing = ", ".join(name for name in (KEY_ID_HEADER, KEY_HEADER) if not headers.get(name, "").strip())
    return ClovaRefusal(401, "200", "Authentication Failed",
                        f"Invalid authentication information. (missing or empty: {missing})")


def _integers(fields: Mapping[str, str]) -> dict[str, int] | ClovaRefusal:
    """The integer fields, checked against their ranges; an empty one is taken as absent (undocumented)."""
    values: dict[str, int] = {}
    for spec in INT_FIELDS:
        raw = fields.get(spec.name, "")
        if raw == "":
            values[spec.name] = spec.default
        elif INTEGER.fullmatch(raw) and spec.low <= int(raw) <= spec.high:
            values[spec.name] = int(raw)
        else:
            return ClovaRefusal(400, spec.code, f"Unsupported {spec.name}.",
                                f"{spec.name} must be an integer {spec.low}..{spec.high}, got {raw[:40]!r}")
    return values


def _format_and_rate(fields: Mapping[str, str]) -> tuple[str, int] | ClovaRefusal:
    """``format`` and, for wav, ``sampling-rate`` (for mp3 the docs say it is not supported: the fake ignores it)."""
    fmt = fields.get("format", "") or "mp3"
    if fmt not in CONTENT_TYPES:
        return ClovaRefusal(400, UNDOCUMENTED_CODE, "Unsupported format.",
                            f"format must be mp3 or wav, got {fmt[:40]!r}")
    raw = fields.get("sampling-rate", "")
    if fmt != "wav" or raw == "":
        return fmt, DEFAULT_RATE
    if not INTEGER.fullmatch(raw) or int(raw) not in SAMPLING_RATES:
        return ClovaRefusal(400, UNDOCUMENTED_CODE, "Unsupported sampling-rate.",
                            f"sampling-rate must be one of {', '.join(map(str, SAMPLING_RATES))}, got {raw[:40]!r}")
    return fmt, int(raw)


def parse_ask(fields: Mapping[str, str], speakers: Mapping[str, str] = SPEAKERS) -> ClovaAsk | ClovaRefusal:
    """What a CLOVA request asks for, or CLOVA's refusal of it (no I/O: fed the form's fields)."""
    speaker, text = fields.get("speaker", ""), fields.get("text", "")
    if not speaker:
        return ClovaRefusal(400, "VS01", "speaker parameter is needed.")
    if speaker not in speakers:
        return ClovaRefusal(400, "VS02", "Unsupported speaker.",
                            f"{speaker[:40]!r} is not among the voices NCP documents "
                            "(harness.fakes.clova_tts.SPEAKERS)")
    if not text.strip():  # undocumented for blank text: the fake refuses it as missing (nothing to say)
        return ClovaRefusal(400, "VS05", "text parameter is needed.")
    limit = MAX_TEXT_CHARS.get(speakers[speaker], DEFAULT_MAX_TEXT_CHARS)
    if len(text) > limit:
        return ClovaRefusal(400, "VS06", "text parameter exceeds max length.",
                            f"{len(text)} characters; {speaker} takes at most {limit}")
    options = _integers(fields)
    if isinstance(options, ClovaRefusal):
        return options
    format_and_rate = _format_and_rate(fields)
    if isinstance(format_and_rate, ClovaRefusal):
        return format_and_rate
    return ClovaAsk(speaker, text, format_and_rate[0], format_and_rate[1], options)


async def form_fields(request: web.Request) -> dict[str, str] | ClovaRefusal:
    """The form's fields (the first of each name). A body that is not form-encoded has none (CLOVA's content
    type is "fixed"; what the real service does with another is undocumented); one that is not UTF-8 gets the
    gateway's 400/100, as its table says of encoding errors."""
    if request.content_type != FORM_TYPE:
        return {}
    try:
        form = await request.post()
    except ValueError:  # UnicodeDecodeError included
        return ClovaRefusal(400, "100", "Bad Request Exception", "the body is not UTF-8 form data")
    fields: dict[str, str] = {}
    for name, value in form.items():
        if isinstance(value, str):
            fields.setdefault(name, value)  # the first of a repeated name (undocumented which CLOVA takes)
    return fields


class SpeakingFake(Protocol):
    """What this dialect needs of the fake TTS (:class:`harness.fakes.tts.FakeTts`)."""

    def refused(self, entry: Any, refusal: web.Response) -> web.Response: ...

    async def speak(self, request: web.Request, entry: Any, *, sample_rate: int | None = None,
                    content_type: str | None = None) -> web.StreamResponse: ...


def _hint(request: web.Request, refusal: ClovaRefusal) -> ClovaRefusal:
    """A VS01 for a body that was not form-encoded says so in ``details`` (CLOVA's message stays as it is)."""
    if refusal.code == "VS01" and request.content_type != FORM_TYPE:
        return ClovaRefusal(refusal.status, refusal.code, refusal.message,
                            f"the body must be {FORM_TYPE}, got {request.content_type}")
    return refusal


def add_clova_routes(app: web.Application, tts: SpeakingFake, entry: Callable[..., Any],
                     speakers: Mapping[str, str] = SPEAKERS) -> None:
    """Serve ``POST /tts-premium/v1/tts`` from ``tts``, journaling each request as ``entry(text, format,
    dialect="clova")`` (:class:`harness.fakes.tts.TtsRequest`; passed in, as this module builds on nothing of it)."""

    async def clova_tts(request: web.Request) -> web.StreamResponse:
        fields = await form_fields(request)
        form = fields if isinstance(fields, dict) else {}
        text, fmt = form.get("text", ""), form.get("format", "") or "mp3"
        journaled = entry(text[:JOURNAL_TEXT_CHARS], fmt[:40], dialect="clova")
        refusal = gateway_refusal(request.headers)
        if refusal is None and isinstance(fields, ClovaRefusal):
            refusal = fields
        ask = parse_ask(form, speakers) if refusal is None else refusal
        if isinstance(ask, ClovaRefusal):
            return tts.refused(journaled, _hint(request, ask).response())
        return await tts.speak(request, journaled, sample_rate=ask.sample_rate,
                               content_type=CONTENT_TYPES[ask.format])

    app.router.add_post(CLOVA_PATH, clova_tts)
