"""The streaming endpoint's query parameters: parsed, defaulted and validated as RTZR does.

Invalid values become a :class:`ParamError`, which the server answers with 400 ``H0001``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

ENCODINGS = ("LINEAR16", "FLAC", "MULAW", "ALAW", "AMR", "AMR_WB", "OGG_OPUS")
DECODABLE_ENCODINGS = ("LINEAR16", "MULAW", "ALAW")
MODELS = ("sommers_ko", "sommers_ja", "whisper")
MODEL_LANGUAGES = {"sommers_ko": ("ko",), "sommers_ja": ("ja",), "whisper": ("ko", "ja", "en")}
DOMAINS = ("CALL", "MEETING")
DEFAULT_EPD_TIME = 0.5  # [doc] in RTZR's gRPC proto (RuntimeStreamConfig); 0.5-1.0 recommended for voice bots
EPD_TIME_RANGE = (0.1, 10.0)  # [guess] RTZR states no limits; clients send 0.3-1.5
DEFAULT_MAX_UTTER_DURATION = 12.0  # [doc] seconds, the proto's RuntimeStreamConfig; as a WebSocket query: [guess]
MAX_UTTER_DURATION_RANGE = (1.0, 60.0)  # [guess] RTZR states no limits
MAX_KEYWORDS = 100
MAX_KEYWORD_CHARS = 20


class ParamError(ValueError):
    """A query parameter the real service would refuse (400 H0001)."""


@dataclass(frozen=True)
class Keyword:
    word: str
    boost: float = 2.0


@dataclass(frozen=True)
class StreamParams:
    """One streaming connection's validated configuration."""

    sample_rate: int
    encoding: str
    model_name: str = "sommers_ko"
    language: str = "ko"
    domain: str = "CALL"
    use_itn: bool = True
    use_disfluency_filter: bool = False
    use_profanity_filter: bool = False
    use_punctuation: bool = False
    keywords: tuple[Keyword, ...] = ()
    epd_time: float = DEFAULT_EPD_TIME
    max_utter_duration: float = DEFAULT_MAX_UTTER_DURATION
    noise_threshold: float | None = None
    active_threshold: float | None = None
    unknown: tuple[str, ...] = field(default=())

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "LINEAR16" else 1


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ParamError(f"{name} must be true or false, got {raw!r}")


def _float(name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ParamError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ParamError(f"{name} must be between {low} and {high}, got {raw!r}")
    return value


def _keywords(raw: str, model_name: str) -> tuple[Keyword, ...]:
    if not raw.strip():
        return ()
    if model_name != "sommers_ko":
        raise ParamError("keywords are supported only with model_name=sommers_ko")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if len(items) > MAX_KEYWORDS:
        raise ParamError(f"keywords: at most {MAX_KEYWORDS} words, got {len(items)}")
    result = []
    for item in items:
        word, sep, boost_raw = item.rpartition(":") if ":" in item else (item, "", "")
        if len(word) > MAX_KEYWORD_CHARS or not word:
            raise ParamError(f"keywords: {word!r} must be 1-{MAX_KEYWORD_CHARS} characters")
        boost = _float("keywords boost", boost_raw, -5.0, 5.0) if sep else 2.0
        result.append(Keyword(word, boost))
    return tuple(result)


def parse_stream_params(query: Mapping[str, str]) -> StreamParams:
    """Validate a decoded query mapping; raise :class:`ParamError` with the first problem."""
    raw_rate = query.get("sample_rate")
    if raw_rate is None:
        raise ParamError("sample_rate is required")
    try:
        sample_rate = int(raw_rate)
    except ValueError:
        raise ParamError(f"sample_rate must be an integer, got {raw_rate!r}") from None
    if not 8000 <= sample_rate <= 48000:
        raise ParamError(f"sample_rate must be 8000-48000, got {sample_rate}")

    encoding = query.get("encoding")
    if encoding is None:
        raise ParamError("encoding is required")
    if encoding not in ENCODINGS:
        raise ParamError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if encoding not in DECODABLE_ENCODINGS:
        raise ParamError(
            f"encoding {encoding} is valid for RTZR but fakertzr decodes only "
            f"{', '.join(DECODABLE_ENCODINGS)}"
        )

    model_name = query.get("model_name", "sommers_ko")
    if model_name not in MODELS:
        raise ParamError(f"model_name must be one of {', '.join(MODELS)}, got {model_name!r}")
    language = query.get("language", MODEL_LANGUAGES[model_name][0])
    if language not in MODEL_LANGUAGES[model_name]:
        allowed = ", ".join(MODEL_LANGUAGES[model_name])
        raise ParamError(f"language for {model_name} must be one of {allowed}, got {language!r}")
    domain = query.get("domain", "CALL").upper()
    if domain not in DOMAINS:
        raise ParamError(f"domain must be CALL or MEETING, got {query.get('domain')!r}")

    def flag(name: str, default: bool) -> bool:
        return _bool(name, query[name]) if name in query else default

    def opt_float(name: str, low: float, high: float) -> float | None:
        return _float(name, query[name], low, high) if name in query else None

    epd_time = opt_float("epd_time", *EPD_TIME_RANGE)
    max_utter = opt_float("max_utter_duration", *MAX_UTTER_DURATION_RANGE)
    known = {
        "sample_rate", "encoding", "model_name", "language", "domain", "use_itn",
        "use_disfluency_filter", "use_profanity_filter", "use_punctuation", "keywords",
        "epd_time", "max_utter_duration", "noise_threshold", "active_threshold",
    }
    return StreamParams(
        sample_rate=sample_rate,
        encoding=encoding,
        model_name=model_name,
        language=language,
        domain=domain,
        use_itn=flag("use_itn", True),
        use_disfluency_filter=flag("use_disfluency_filter", False),
        use_profanity_filter=flag("use_profanity_filter", False),
        use_punctuation=flag("use_punctuation", False),
        keywords=_keywords(query.get("keywords", ""), model_name),
        epd_time=DEFAULT_EPD_TIME if epd_time is None else epd_time,
        max_utter_duration=DEFAULT_MAX_UTTER_DURATION if max_utter is None else max_utter,
        noise_threshold=opt_float("noise_threshold", 0.0, 1.0),
        active_threshold=opt_float("active_threshold", 0.0, 1.0),
        unknown=tuple(sorted(set(query) - known)),
    )
