"""Streaming query parameters: real defaults, ranges, and refusals (400 H0001)."""

from __future__ import annotations

import pytest

from fakertzr.params import DEFAULT_EPD_TIME, DEFAULT_MAX_UTTER_DURATION, Keyword, ParamError, parse_stream_params

BASE = {"sample_rate": "8000", "encoding": "LINEAR16"}


def test_defaults_are_the_real_services():
    p = parse_stream_params(BASE)
    assert (p.model_name, p.language, p.domain) == ("sommers_ko", "ko", "CALL")
    assert (p.use_itn, p.use_disfluency_filter, p.use_profanity_filter, p.use_punctuation) == (True, False, False, False)
    assert p.epd_time == DEFAULT_EPD_TIME == 0.5 and p.keywords == ()
    assert p.max_utter_duration == DEFAULT_MAX_UTTER_DURATION == 12.0  # RTZR's proto, RuntimeStreamConfig


def test_everything_documented_is_accepted():
    p = parse_stream_params({
        **BASE, "sample_rate": "16000", "model_name": "whisper", "language": "en", "domain": "MEETING",
        "use_itn": "false", "use_disfluency_filter": "true", "use_profanity_filter": "true",
        "use_punctuation": "true", "epd_time": "0.3", "noise_threshold": "0.60", "active_threshold": "0.80",
        "max_utter_duration": "20",
    })
    assert (p.sample_rate, p.language, p.domain, p.use_itn, p.epd_time) == (16000, "en", "MEETING", False, 0.3)
    assert p.max_utter_duration == 20.0 and p.unknown == ()
    assert [parse_stream_params({**BASE, "epd_time": v}).epd_time for v in ("0.3", "0.5", "1.0", "1.5")] == [0.3, 0.5, 1.0, 1.5]
    k = parse_stream_params({**BASE, "keywords": "리턴제로:3.5,보이스봇"}).keywords
    assert k == (Keyword("리턴제로", 3.5), Keyword("보이스봇", 2.0))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"sample_rate": None}, "sample_rate is required"),
        ({"sample_rate": "7999"}, "8000-48000"),
        ({"sample_rate": "48001"}, "8000-48000"),
        ({"sample_rate": "8k"}, "must be an integer"),
        ({"encoding": None}, "encoding is required"),
        ({"encoding": "MP3"}, "encoding must be one of"),
        ({"encoding": "OGG_OPUS"}, "fakertzr decodes only"),
        ({"model_name": "sommers_zh"}, "model_name must be one of"),
        ({"model_name": "sommers_ja", "language": "ko"}, "language for sommers_ja"),
        ({"domain": "RADIO"}, "domain must be CALL or MEETING"),
        ({"use_itn": "yes"}, "use_itn must be true or false"),
        ({"epd_time": "0"}, "epd_time must be between"),
        ({"max_utter_duration": "0"}, "max_utter_duration must be between"),
        ({"max_utter_duration": "twelve"}, "max_utter_duration must be a number"),
        ({"noise_threshold": "1.5"}, "noise_threshold must be between"),
        ({"keywords": "a:9"}, "boost must be between"),
        ({"keywords": "가" * 21}, "1-20 characters"),
        ({"keywords": ",".join(f"k{i}" for i in range(101))}, "at most 100 words"),
        ({"keywords": "word", "model_name": "whisper"}, "only with model_name=sommers_ko"),
    ],
)
def test_bad_values_are_refused_with_a_reason(change, message):
    query = {**BASE, **change}
    query = {k: v for k, v in query.items() if v is not None}
    with pytest.raises(ParamError, match=message):
        parse_stream_params(query)


def test_unknown_parameters_are_kept_for_the_journal():
    assert parse_stream_params({**BASE, "colour": "blue"}).unknown == ("colour",)
