"""The file API's sans-I/O core: config defaults and refusals, a job's life on an explicit clock."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakertzr.batch import BatchJob, BatchJobs, BatchParams, BatchRefusal, parse_batch_config

from .support.budget import examples

LIMITS = dict(min_poll_interval_s=5.0, ttl_s=100.0)
TTL_S = LIMITS["ttl_s"]
UTTERANCES = [{"start_at": 800, "duration": 2320, "msg": "안녕하세요", "spk": 0, "lang": "ko"}]


def test_defaults_are_the_docs_with_disfluency_filtering_and_the_paragraph_splitter_on():
    p = parse_batch_config("{}")
    assert p == BatchParams() and p.use_disfluency_filter and p.use_itn and not p.use_diarization
    assert p.use_paragraph_splitter and p.model == "sommers" and p.language == "ko"
    assert parse_batch_config('{"colour": "blue"}').unknown == ("colour",)


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_config_is_required_as_the_docs_mark_it(raw):
    with pytest.raises(BatchRefusal) as caught:
        parse_batch_config(raw)
    assert caught.value.refusal.code == "H0001" and "config is required" in caught.value.refusal.msg


@pytest.mark.parametrize("config,says", [
    ({"diarization": {"spk_count": 2}}, "use_diarization"),
    ({"use_diarization": False, "diarization": {"spk_count": 2}}, "use_diarization"),
    ({"model_name": "sommers", "language": "detect"}, "unsupported language"),
    ({"model_name": "sommers", "language_candidates": ["ko", "en"]}, "unsupported language"),
    ({"language": "multi"}, "unsupported language"),
    ({"model_name": "whisper"}, "unsupported language"),
])
def test_the_live_services_cross_field_rules_refuse(config, says):
    """The configs a third-party client's authors recorded a 400 for from the live service."""
    with pytest.raises(BatchRefusal) as caught:
        parse_batch_config(json.dumps(config))
    assert caught.value.refusal.code == "H0001" and says in caught.value.refusal.msg


@pytest.mark.parametrize("config", [
    {"keywords": [""]}, {"keywords": ["가" * 21]}, {"keywords": [f"단어{i}" for i in range(101)]},
    {"model_name": "whisper", "language": "detect", "language_candidates": ["ko", "en"]},
    {"model_name": "whisper", "language": "ko"}, {"use_diarization": True, "diarization": {"spk_count": 2}},
])
def test_what_the_live_service_takes_is_taken(config):
    params = parse_batch_config(json.dumps(config))
    assert params.model == ("whisper" if config.get("model_name") == "whisper" else "sommers")


def test_jobs_count_against_their_models_limit():
    jobs = BatchJobs()
    jobs.add(BatchJob(jobs.new_id(), "me", 10.0, [], model="whisper"))
    jobs.reserve("sommers")
    assert jobs.transcribing("whisper", 1.0) == 1 and jobs.transcribing("sommers", 1.0) == 1
    jobs.release("sommers")
    assert jobs.transcribing("sommers", 1.0) == 0 and jobs.transcribing("whisper", 11.0) == 0


def test_a_non_object_config_is_refused():
    with pytest.raises(BatchRefusal) as caught:
        parse_batch_config("[1, 2]")
    assert caught.value.refusal.code == "H0001" and caught.value.refusal.status == 400


def test_a_job_transcribes_then_completes_then_expires():
    jobs = BatchJobs(worker=(1, 2))
    job = BatchJob(jobs.new_id(), "me", ready_at=10.0, utterances=UTTERANCES)
    jobs.add(job)
    assert BatchJobs.worker_of(job.id) == 1
    assert jobs.poll(job.id, "me", 1.0, **LIMITS) == {"id": job.id, "status": "transcribing"}
    assert jobs.transcribing("sommers", 1.0) == 1 and jobs.transcribing("whisper", 1.0) == 0
    done = jobs.poll(job.id, "me", 11.0, **LIMITS)
    assert done["status"] == "completed" and done["results"]["utterances"] == UTTERANCES
    with pytest.raises(BatchRefusal) as too_soon:
        jobs.poll(job.id, "me", 12.0, **LIMITS)
    assert too_soon.value.refusal.code == "A0003"
    with pytest.raises(BatchRefusal) as expired:
        jobs.poll(job.id, "me", 10.0 + TTL_S, **LIMITS)
    assert (expired.value.refusal.status, expired.value.refusal.code) == (410, "H0007")
    jobs.expire(10.0 + TTL_S * 3 + 60, TTL_S)
    with pytest.raises(BatchRefusal) as gone:
        jobs.poll(job.id, "me", 10.0 + TTL_S * 3 + 60, **LIMITS)
    assert gone.value.refusal.code == "H0004", "long after expiry a job is forgotten"


def test_a_failed_job_says_why():
    jobs = BatchJobs()
    job = BatchJob(jobs.new_id(), "me", 0.0, [], error={"code": "E500", "message": "transcription failed"})
    jobs.add(job)
    assert jobs.poll(job.id, "me", 0.0, **LIMITS) == {"id": job.id, "status": "failed",
                                                      "error": {"code": "E500", "message": "transcription failed"}}


def test_worker_of_reads_only_ids_that_name_one():
    assert BatchJobs.worker_of("abcdefghijklmn_-w0") == 0 and BatchJobs.worker_of("w3") is None
    assert BatchJobs.worker_of("abc") is None and BatchJobs.worker_of("abcw0") is None
    assert BatchJobs.worker_of("../../_fake/journal?w1") is None and BatchJobs.worker_of("abcdefghijklmn/-w0") is None


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=25), inner, max_size=6),
                           max_leaves=20)
config_keys = st.sampled_from(["model_name", "language", "use_diarization", "diarization", "use_itn", "use_disfluency_filter",
                               "use_profanity_filter", "use_paragraph_splitter", "paragraph_splitter", "domain",
                               "use_word_timestamp", "keywords", "spk_count", "max"])


@examples(300)
@given(st.one_of(json_values, st.dictionaries(config_keys, json_values, max_size=8)) | st.text(max_size=60))
def test_any_config_is_accepted_or_refused_with_h0001(config):
    """Hostile input: whatever the config field holds, the answer is parameters or 400 H0001, never a crash."""
    raw = config if isinstance(config, str) else json.dumps(config)
    try:
        params = parse_batch_config(raw)
    except BatchRefusal as exc:
        assert (exc.refusal.status, exc.refusal.code) == (400, "H0001")
    else:
        assert isinstance(params, BatchParams) and isinstance(params.as_query(), dict)
