"""Settings are validated at start-up: one clear line naming the variable (report failure 1)."""

from __future__ import annotations

import pytest

from aicall.config import load_settings
from aicall.errors import ConfigError

GOOD = {"RTZR_CLIENT_ID": "id", "RTZR_CLIENT_SECRET": "s3cret", "OPENAI_API_KEY": "sk-test"}


def test_defaults_are_the_real_services():
    s = load_settings(GOOD, env_file=None)
    assert (s.rtzr_api_base, s.rtzr_ws_base) == ("https://openapi.vito.ai", "wss://openapi.vito.ai")
    assert (s.openai_base_url, s.llm_model, s.tts_engine, s.rtzr_epd_time) == (
        "https://api.openai.com/v1", "gpt-4o-mini", "openai", 0.5)
    assert s.tts_base_url == s.openai_base_url and s.tts_api_key == "sk-test"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"RTZR_CLIENT_ID": ""}, "RTZR_CLIENT_ID is not set"),
        ({"RTZR_CLIENT_SECRET": "  "}, "RTZR_CLIENT_SECRET is not set"),
        ({"OPENAI_API_KEY": ""}, "OPENAI_API_KEY is not set"),
        ({"RTZR_API_BASE": "openapi.vito.ai"}, "RTZR_API_BASE must be an http or https URL"),
        ({"RTZR_EPD_TIME": "fast"}, "RTZR_EPD_TIME must be a number"),
        ({"RTZR_EPD_TIME": "30"}, "RTZR_EPD_TIME must be between 0.1 and 10"),
        ({"TTS_ENGINE": "festival"}, "TTS_ENGINE must be one of openai, espeak"),
        ({"BARGE_IN": "sometimes"}, "BARGE_IN must be true or false"),
        ({"TWILIO_AUTH_TOKEN": "tok"}, "PUBLIC_URL is not set"),
        ({"PUBLIC_URL": "https://x.example/?a=1"}, "PUBLIC_URL must not carry a query string"),
    ],
)
def test_bad_settings_name_the_variable(change, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({**GOOD, **change}, env_file=None)


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("RTZR_CLIENT_ID=from-file\nRTZR_CLIENT_SECRET=file-secret\nOPENAI_API_KEY=k\nLLM_MODEL=file-model\n")
    s = load_settings({"LLM_MODEL": "env-model"}, env_file=env_file)
    assert (s.rtzr_client_id, s.llm_model) == ("from-file", "env-model")


def test_redacted_settings_show_no_secret():
    s = load_settings({**GOOD, "TWILIO_AUTH_TOKEN": "twtok", "PUBLIC_URL": "https://x.example"}, env_file=None)
    shown = repr(s.redacted())
    assert "s3cret" not in shown and "sk-test" not in shown and "twtok" not in shown
    assert s.redacted()["rtzr_client_secret"] == "<set>"
