"""The file API's sans-I/O core: config defaults and refusals, a job's life on an explicit clock."""

from __future__ import annotations

import pytest

from fakertzr.batch import BatchJob, BatchJobs, BatchLimits, BatchParams, BatchRefusal, parse_batch_config

LIMITS = BatchLimits(max_bytes=1 << 20, max_duration_s=60.0, max_jobs=2, min_poll_interval_s=5.0, ttl_s=100.0)
UTTERANCES = [{"start_at": 800, "duration": 2320, "msg": "안녕하세요", "spk": 0, "lang": "ko"}]


def test_defaults_are_rtzrs_with_disfluency_filtering_on():
    p = parse_batch_config(None)
    assert p == BatchParams() and p.use_disfluency_filter and p.use_itn and not p.use_diarization
    assert parse_batch_config('{"colour": "blue"}').unknown == ("colour",)


def test_a_non_object_config_is_refused():
    with pytest.raises(BatchRefusal) as caught:
        parse_batch_config("[1, 2]")
    assert caught.value.refusal.code == "H0001" and caught.value.refusal.status == 400


def test_a_job_transcribes_then_completes_then_expires():
    jobs = BatchJobs(worker=(1, 2))
    job = BatchJob(jobs.new_id(), "me", created=0.0, ready_at=10.0, utterances=UTTERANCES)
    jobs.add(job)
    assert BatchJobs.worker_of(job.id) == 1
    assert jobs.poll(job.id, "me", 1.0, LIMITS) == {"id": job.id, "status": "transcribing"}
    assert jobs.transcribing("me", 1.0) == 1 and jobs.transcribing("you", 1.0) == 0
    done = jobs.poll(job.id, "me", 11.0, LIMITS)
    assert done["status"] == "completed" and done["results"]["utterances"] == UTTERANCES
    with pytest.raises(BatchRefusal) as too_soon:
        jobs.poll(job.id, "me", 12.0, LIMITS)
    assert too_soon.value.refusal.code == "A0003"
    with pytest.raises(BatchRefusal) as expired:
        jobs.poll(job.id, "me", 10.0 + LIMITS.ttl_s, LIMITS)
    assert (expired.value.refusal.status, expired.value.refusal.code) == (410, "H0007")
    jobs.expire(10.0 + LIMITS.ttl_s * 3 + 60, LIMITS)
    with pytest.raises(BatchRefusal) as gone:
        jobs.poll(job.id, "me", 10.0 + LIMITS.ttl_s * 3 + 60, LIMITS)
    assert gone.value.refusal.code == "H0004", "long after expiry a job is forgotten"


def test_a_failed_job_says_why():
    jobs = BatchJobs()
    job = BatchJob(jobs.new_id(), "me", 0.0, 0.0, [], error={"code": "E500", "message": "transcription failed"})
    jobs.add(job)
    assert jobs.poll(job.id, "me", 0.0, LIMITS) == {"id": job.id, "status": "failed",
                                                      "error": {"code": "E500", "message": "transcription failed"}}


def test_worker_of_reads_only_ids_that_name_one():
    assert BatchJobs.worker_of("abcw0") == 0 and BatchJobs.worker_of("w3") is None and BatchJobs.worker_of("abc") is None
