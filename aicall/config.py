"""Settings from the environment (and ``.env``), validated before anything listens.

Failure mode 1 of the report was credentials that never reached the process and failed mid-call;
here a missing or malformed value stops start-up with one line naming the variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .errors import ConfigError

DEFAULT_SYSTEM_PROMPT = (
    "당신은 전화로 응대하는 친절한 한국어 상담원입니다. 짧고 자연스러운 구어체 문장으로 답하세요."
)
TTS_ENGINES = ("openai", "espeak")


@dataclass(frozen=True)
class Settings:
    rtzr_client_id: str
    rtzr_client_secret: str
    rtzr_api_base: str
    rtzr_epd_time: float
    rtzr_encoding: str
    rtzr_use_itn: bool
    rtzr_use_disfluency_filter: bool
    rtzr_keywords: str
    openai_base_url: str
    openai_api_key: str
    llm_model: str
    llm_system_prompt: str
    tts_engine: str
    tts_base_url: str
    tts_api_key: str
    tts_model: str
    tts_voice: str
    tts_sample_rate: int
    espeak_voice: str
    twilio_auth_token: str | None
    public_url: str | None
    db_path: str
    barge_in: bool
    twilio_start_timeout_s: float = 5.0  # a socket that sends no valid ``start`` this long is closed
    twilio_silence_s: float = 30.0  # Twilio sends media every 20 ms, silence included: this long with nothing ends the call
    shutdown_drain_s: float = 5.0  # at SIGTERM: calls closed with 1001 get this long to be stored as ended

    @property
    def rtzr_ws_base(self) -> str:
        return self.rtzr_api_base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)

    def redacted(self) -> dict[str, object]:
        """For logs and ``aicall check``: every setting, secrets shown only as set or not."""
        secret = {"rtzr_client_secret", "openai_api_key", "tts_api_key", "twilio_auth_token"}
        return {k: ("<set>" if v else "<not set>") if k in secret else v for k, v in self.__dict__.items()}


def _url(env: Mapping[str, str], name: str, default: str | None = None, *, ws: bool = False) -> str | None:
    raw = env.get(name, "").strip() or default
    if raw is None:
        return None
    parts = urlsplit(raw)
    schemes = ("http", "https", "ws", "wss") if ws else ("http", "https")
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"{name} must be an {' or '.join(schemes)} URL, got {raw!r}")
    return raw.rstrip("/")


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set ({what})")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {env[name]!r}")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


def load_settings(environ: Mapping[str, str], env_file: str | Path | None = ".env") -> Settings:
    """Settings from ``environ`` over ``env_file`` (when it exists); raises :class:`ConfigError`."""
    env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(environ)

    required = {"RTZR_CLIENT_ID": "the client id from the RTZR developer console",
                "RTZR_CLIENT_SECRET": "the client secret from the RTZR developer console",
                "OPENAI_API_KEY": "the LLM endpoint's API key"}
    missing = [name for name in required if not env.get(name, "").strip()]
    if len(missing) > 1:  # every missing one at once, not one per attempt
        raise ConfigError("not set: " + "; ".join(f"{name} ({required[name]})" for name in missing))
    rtzr_id = _required(env, "RTZR_CLIENT_ID", required["RTZR_CLIENT_ID"])
    rtzr_secret = _required(env, "RTZR_CLIENT_SECRET", required["RTZR_CLIENT_SECRET"])
    openai_base = _url(env, "OPENAI_BASE_URL", "https://api.openai.com/v1")
    openai_key = _required(env, "OPENAI_API_KEY", required["OPENAI_API_KEY"])
    tts_engine = env.get("TTS_ENGINE", "openai").strip().lower() or "openai"
    if tts_engine not in TTS_ENGINES:
        raise ConfigError(f"TTS_ENGINE must be one of {', '.join(TTS_ENGINES)}, got {env['TTS_ENGINE']!r}")
    encoding = env.get("RTZR_ENCODING", "LINEAR16").strip().upper() or "LINEAR16"
    if encoding not in ("LINEAR16", "MULAW"):
        raise ConfigError(f"RTZR_ENCODING must be LINEAR16 or MULAW, got {env['RTZR_ENCODING']!r}")
    twilio_token = env.get("TWILIO_AUTH_TOKEN", "").strip() or None
    public_url = _url(env, "PUBLIC_URL", None)
    if twilio_token and not public_url:
        raise ConfigError("PUBLIC_URL is not set (needed to check X-Twilio-Signature when TWILIO_AUTH_TOKEN is set)")
    if public_url and urlsplit(public_url).query:
        raise ConfigError(f"PUBLIC_URL must not carry a query string, got {public_url!r}")
    keywords = env.get("RTZR_KEYWORDS", "").strip()
    return Settings(
        rtzr_client_id=rtzr_id,
        rtzr_client_secret=rtzr_secret,
        rtzr_api_base=_url(env, "RTZR_API_BASE", "https://openapi.vito.ai") or "",
        rtzr_epd_time=_number(env, "RTZR_EPD_TIME", 0.5, 0.1, 10.0),
        rtzr_encoding=encoding,
        rtzr_use_itn=_bool(env, "RTZR_USE_ITN", True),
        rtzr_use_disfluency_filter=_bool(env, "RTZR_USE_DISFLUENCY_FILTER", True),
        rtzr_keywords=keywords,
        openai_base_url=openai_base or "",
        openai_api_key=openai_key,
        llm_model=env.get("LLM_MODEL", "").strip() or "gpt-4o-mini",
        llm_system_prompt=env.get("LLM_SYSTEM_PROMPT", "").strip() or DEFAULT_SYSTEM_PROMPT,
        tts_engine=tts_engine,
        tts_base_url=_url(env, "TTS_BASE_URL", openai_base) or "",
        tts_api_key=env.get("TTS_API_KEY", "").strip() or openai_key,
        tts_model=env.get("TTS_MODEL", "").strip() or "tts-1",
        tts_voice=env.get("TTS_VOICE", "").strip() or "alloy",
        tts_sample_rate=int(_number(env, "TTS_SAMPLE_RATE", 24000, 8000, 48000)),
        espeak_voice=env.get("ESPEAK_VOICE", "").strip() or "ko",
        twilio_auth_token=twilio_token,
        public_url=public_url,
        db_path=env.get("AICALL_DB", "").strip() or "aicall.db",
        barge_in=_bool(env, "BARGE_IN", True),
        twilio_start_timeout_s=_number(env, "AICALL_START_TIMEOUT_S", 5.0, 0.1, 600.0),
        twilio_silence_s=_number(env, "AICALL_TWILIO_SILENCE_S", 30.0, 1.0, 3600.0),
        shutdown_drain_s=_number(env, "AICALL_SHUTDOWN_DRAIN_S", 5.0, 0.0, 600.0),
    )
