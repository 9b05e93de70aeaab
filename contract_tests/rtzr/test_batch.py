"""RTZR's file API (``POST /v1/transcribe``, ``GET /v1/transcribe/{id}``): a client written as RTZR's samples
are, utterances from the audio actually uploaded, the documented error codes, and the one journal and control
API. Against the real service with ``--rtzr-live`` (the tests that need the fake's control API are skipped)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest
import soundfile

from . import client
from .batch_client import FileSttClient
from .conftest import SEED_DIR
from .test_streaming import SEED_TEXTS, pcm

SEED_WAV = SEED_DIR / "caller.wav"  # the fixture's own file: mu-law WAV, 8 kHz


async def upload(rtzr, data: bytes, config: dict | str | None = None, *, token: str | None = "default",
                 name: str = "call.wav") -> tuple[int, dict]:
    if token == "default":
        token = await rtzr.token()
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    if config is not None:
        form.add_field("config", config if isinstance(config, str) else json.dumps(config))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with rtzr.session.post(f"{rtzr.base_url}/v1/transcribe", data=form, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def poll(rtzr, job_id: str, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token or await rtzr.token()}"}
    async with rtzr.session.get(f"{rtzr.base_url}/v1/transcribe/{job_id}", headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_client_written_as_rtzrs_samples_gets_the_seeds_utterances(rtzr, seed):
    """Upload the fixture's own WAV with a config, poll every few seconds (here at once: the fake's jobs take
    ``batch_s_per_audio_s`` x ``time_scale``, 0 in the suite) until completed."""
    stt = FileSttClient(rtzr.base_url, rtzr.client_id, rtzr.client_secret)
    config = {"model_name": "sommers", "use_diarization": True, "diarization": {"spk_count": 2}, "use_itn": True,
              "use_disfluency_filter": False, "use_profanity_filter": False, "use_paragraph_splitter": True,
              "paragraph_splitter": {"max": 50}, "keywords": ["리턴제로"]}
    job = await asyncio.to_thread(stt.transcribe_file, SEED_WAV, config)
    result = await asyncio.to_thread(stt.wait_for_result, job["id"], 5.0 if rtzr.live else 0.0, 600.0)
    assert result["id"] == job["id"] and result["status"] == "completed"
    utterances = result["results"]["utterances"]
    if rtzr.live:
        assert utterances and all({"start_at", "duration", "msg", "spk"} <= set(u) for u in utterances)
        return
    assert [u["msg"] for u in utterances] == SEED_TEXTS
    assert [(u["start_at"], u["start_at"] + u["duration"]) for u in utterances] == \
        [(round(u.start_ms), round(u.end_ms)) for u in seed.utterances]
    assert {(u["spk"], u["lang"]) for u in utterances} == {(0, "ko")}
    record = rtzr.fake.journal.connections[-1]
    assert record.api == "batch" and record.ended["how"] == "completed" and [m.text for m in record.finals] == SEED_TEXTS
    assert record.query["use_disfluency_filter"] == "false" and record.query["file"] == "caller.wav"


async def test_only_the_audio_uploaded_is_heard(rtzr, seed, tmp_path):
    """The first 5 s of the call, as FLAC: the first utterance only; the rest was never uploaded."""
    path = tmp_path / "first-5s.flac"
    soundfile.write(path, seed.audio[: 5 * 8000], 8000, format="FLAC", subtype="PCM_16")
    status, job = await upload(rtzr, path.read_bytes(), {}, name=path.name)
    assert status == 200, job
    status, result = await poll(rtzr, job["id"])
    if rtzr.live:
        return
    assert status == 200 and [u["msg"] for u in result["results"]["utterances"]] == SEED_TEXTS[:1]


async def test_a_missing_config_is_400_h0001_and_an_empty_one_takes_the_docs_defaults(rtzr, seed):
    """The docs mark ``config`` required; ``{}`` takes every default (stt-file's RequestConfig table)."""
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), None)
    assert (status, body["code"]) == (400, "H0001"), body
    status, job = await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert status == 200, job
    if not rtzr.live:
        query = rtzr.fake.journal.connections[-1].query
        assert (query["use_disfluency_filter"], query["use_itn"], query["model_name"], query["domain"],
                query["use_paragraph_splitter"]) == ("true", "true", "sommers", "GENERAL", "true")


async def test_word_timestamps_when_asked(rtzr, seed):
    """``use_word_timestamp: true``: each utterance has ``words`` (start_at, duration, text), in the file's time;
    without it, none. Polled as RTZR's samples poll (every 5 s on the live service), so a live run says too."""
    stt = FileSttClient(rtzr.base_url, rtzr.client_id, rtzr.client_secret)
    interval = 5.0 if rtzr.live else 0.0

    async def utterances(config: dict) -> list[dict]:
        job = await asyncio.to_thread(stt.transcribe_file, SEED_WAV, config)
        result = await asyncio.to_thread(stt.wait_for_result, job["id"], interval, 600.0)
        assert result["status"] == "completed", result
        return result["results"]["utterances"]

    timed = await utterances({"use_word_timestamp": True})
    assert timed and all(u["words"] for u in timed), timed
    for u in timed:
        assert all({"start_at", "duration", "text"} <= set(w) for w in u["words"]), u
        assert u["words"][0]["start_at"] >= u["start_at"]
        last = u["words"][-1]
        assert last["start_at"] + last["duration"] <= u["start_at"] + u["duration"], u
    assert all("words" not in u for u in await utterances({}))
    if not rtzr.live:  # the fake's words: the script's, with exactly the keys the docs show
        assert [" ".join(w["text"] for w in u["words"]) for u in timed] == SEED_TEXTS
        assert all(set(w) == {"start_at", "duration", "text"} for u in timed for w in u["words"])


@pytest.mark.parametrize("config,message", [
    ("{not json", "not valid JSON"),
    ({"model_name": "sommers_zh"}, "config.model_name"),
    ({"use_itn": "yes"}, "config.use_itn must be true or false"),
    ({"use_diarization": True, "diarization": {"spk_count": -1}}, "config.diarization.spk_count"),
    # what the live service refused of a third-party client's recorded configs
    ({"diarization": {"spk_count": 2}}, "use_diarization"),
    ({"model_name": "sommers", "language": "detect"}, "unsupported language"),
    ({"model_name": "sommers", "language_candidates": ["ko", "en"]}, "unsupported language"),
    ({"model_name": "whisper"}, "unsupported language"),
])
async def test_a_bad_config_is_400_h0001(rtzr, config, message):
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), config)
    assert status == 400 and body["code"] == "H0001"
    if not rtzr.live:
        assert message in body["msg"]


@pytest.mark.parametrize("keywords", [[""], ["가" * 21], [f"단어{i}" for i in range(101)]],
                         ids=["empty word", "21 characters", "101 words"])
async def test_keywords_the_live_service_takes_are_taken(rtzr, keywords):
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), {"keywords": keywords})
    assert status == 200, body


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no token", "bad token"])
async def test_a_missing_or_bad_token_is_401_h0002(rtzr, token):
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), {}, token=token)
    assert status == 401 and body["code"] == "H0002"


async def test_a_file_that_is_not_audio_is_h0010(rtzr):
    status, body = await upload(rtzr, "이것은 오디오가 아닙니다\n".encode() * 100, {}, name="notes.txt")
    assert body["code"] == "H0010"
    if not rtzr.live:
        assert status == 400  # the code is RTZR's; the status the fake's guess


async def test_limits_size_h0005_and_duration_h0006(rtzr, seed):
    fake = rtzr.fake
    fake.update_config({"batch_max_bytes": 1000})
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert (status, body["code"]) == (413, "H0005")
    fake.update_config({"batch_max_bytes": 10 << 20, "batch_max_duration_s": 5.0})
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert (status, body["code"]) == (413, "H0006")


async def test_the_limits_are_the_docs(rtzr):
    """developers.rtzr.ai: stt-file (2GB, 4 hours) and rate_limit (Basic plan: 20 sommers, 5 whisper files at once,
    per organisation); polls 5 s apart as the live service holds them (recorded)."""
    if rtzr.live:
        pytest.skip("the fake's defaults")
    config = rtzr.fake.config
    assert (config.batch_max_bytes, config.batch_max_duration_s) == (2_000_000_000, 4 * 3600)
    assert (config.batch_max_jobs, config.batch_max_whisper_jobs, config.batch_min_poll_interval_s) == (20, 5, 5.0)


async def test_jobs_in_flight_are_limited_a0002_per_model(rtzr):
    fake = rtzr.fake
    fake.update_config({"batch_max_jobs": 1, "batch_max_whisper_jobs": 1, "time_scale": 1.0,
                        "batch_s_per_audio_s": 100.0})  # "transcribing" for long
    first, job = await upload(rtzr, SEED_WAV.read_bytes(), {})
    status, result = await poll(rtzr, job["id"])
    assert first == 200 and result["status"] == "transcribing" and "results" not in result
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert (status, body) == (429, {"code": "A0002", "msg": "Too many concurrent requests"})
    whisper = {"model_name": "whisper", "language": "ko"}
    status, _ = await upload(rtzr, SEED_WAV.read_bytes(), whisper)
    assert status == 200, "whisper has its own limit"
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), whisper)
    assert (status, body["code"]) == (429, "A0002")


async def test_a_poll_within_5_s_of_the_last_is_429_a0003_by_default(rtzr):
    _, job = await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert (await poll(rtzr, job["id"]))[0] == 200
    status, body = await poll(rtzr, job["id"])
    assert (status, body["code"]) == (429, "A0003")
    if not rtzr.live:
        rtzr.fake.update_config({"batch_min_poll_interval_s": 0})  # the setting that turns it off
        assert (await poll(rtzr, job["id"]))[0] == 200


async def test_polls_unknown_foreign_expired_and_too_fast(rtzr):
    fake = rtzr.fake
    assert (await poll(rtzr, "no-such-job"))[1]["code"] == "H0004"
    _, job = await upload(rtzr, SEED_WAV.read_bytes(), {})
    other = fake.tokens.issue("another-client").access_token
    status, body = await poll(rtzr, job["id"], token=other)
    assert (status, body["code"]) == (403, "H0003")
    fake.update_config({"batch_min_poll_interval_s": 60.0})
    assert (await poll(rtzr, job["id"]))[0] == 200
    status, body = await poll(rtzr, job["id"])
    assert (status, body["code"]) == (429, "A0003")
    fake.batch.jobs[job["id"]].ready_at -= fake.config.batch_ttl_s  # done as long ago as results are kept
    status, body = await poll(rtzr, job["id"])
    assert (status, body["code"]) == (410, "H0007")
    status, _ = await poll(rtzr, "no-such-job")
    assert status == 404


async def test_a_failed_job_and_a_refused_upload_come_from_the_one_fault_list(rtzr):
    fake = rtzr.fake
    fake.add_fault({"type": "fail_transcription"})
    _, job = await upload(rtzr, SEED_WAV.read_bytes(), {})
    status, result = await poll(rtzr, job["id"])
    assert status == 200 and result["status"] == "failed" and result["error"]["code"] == "E500"
    fake.add_fault({"type": "reject_handshake", "status": 500})
    status, body = await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert (status, body["code"]) == (500, "E500")
    _, job = await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert (await poll(rtzr, job["id"]))[1]["status"] == "completed", "each fault fired once"
    assert [c.ended["how"] if c.ended else c.status for c in fake.journal.connections] == ["failed", 500, "completed"]


async def test_one_journal_for_websocket_and_file_api(rtzr, seed):
    fake = rtzr.fake
    await client.stream(await rtzr.connect(), pcm(seed))
    await upload(rtzr, SEED_WAV.read_bytes(), {})
    assert [(c.api, [m.text for m in c.finals]) for c in fake.journal.connections] == \
        [("websocket", SEED_TEXTS), ("batch", SEED_TEXTS)]
    async with rtzr.session.get(f"{rtzr.base_url}/_fake/state") as resp:
        state = await resp.json()
    assert state["batch_jobs"] == 1 and state["connections"] == 2


def test_stereo_and_other_rates_are_mixed_and_resampled(tmp_path, seed):
    from fakertzr.batch_routes import decode_upload

    stereo = np.stack([seed.audio, seed.audio], axis=1)
    path = tmp_path / "stereo-16k.wav"
    soundfile.write(path, np.repeat(stereo, 2, axis=0), 16000, subtype="PCM_16")
    samples = decode_upload(path.read_bytes(), path.name, 4 * 3600)
    assert len(samples) == len(seed.audio) and samples.dtype == np.int16


async def test_a_body_that_is_not_multipart_is_400_h0001(rtzr):
    headers = {"Authorization": f"Bearer {await rtzr.token()}"}
    for body, content_type in ((b"file=...", "application/x-www-form-urlencoded"),
                               (b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFF", "multipart/form-data; boundary=x")):
        async with rtzr.session.post(f"{rtzr.base_url}/v1/transcribe", data=body, headers={**headers, "Content-Type": content_type}) as resp:
            answer = await resp.json(content_type=None)
        assert (resp.status, answer["code"]) == (400, "H0001"), answer
