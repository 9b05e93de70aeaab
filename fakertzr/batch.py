"""RTZR's batch (file) STT, without I/O: the upload's ``config``, the jobs, and what a poll answers.

``POST /v1/transcribe`` (multipart ``file`` + ``config`` JSON) starts a job and answers ``{"id"}``;
``GET /v1/transcribe/{id}`` answers ``{"id", "status": "transcribing"}`` until the job is done, then
``{"id", "status": "completed", "results": {"utterances": [{start_at, duration, msg, spk, lang}]}}``
(``words: [{start_at, duration, text}]`` in each with ``use_word_timestamp``), or ``"failed"``. The
utterances come from the backend's scripts (or auto mode), heard in the audio actually uploaded.

The ``config`` part is required and checked as RTZR's docs (developers.rtzr.ai, stt-file) describe it and
as the live service answered a third-party client's recorded configs: ``language`` is whisper's
(``detect``, ``multi`` and ``language_candidates`` are refused for sommers, and whisper needs a language:
400 "unsupported language"), ``diarization`` without ``use_diarization: true`` is refused, and keywords
are taken as the live service took them (an empty word, a word over 20 characters, a list over 100).
Limits and refusals carry RTZR's documented codes; docs/rtzr-apis.md says which are documented and which
the fake guesses (each a setting).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from .actions import Refusal

MODELS = ("sommers", "sommers_ko", "whisper")  # "sommers" in the file API's docs; sommers_ko as streaming names it
DOMAINS = ("GENERAL", "CALL")
WHISPER_ONLY_LANGUAGES = ("detect", "multi")  # the docs: language is whisper's (ko, detect, multi)
UNSUPPORTED_LANGUAGE = "unsupported language"  # the live service's message (as a third-party client recorded it)


class BatchRefusal(Exception):
    """An upload or poll RTZR would refuse: the HTTP status and RTZR's error body."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(f"{status} {code}: {msg}")
        self.refusal = Refusal(status, code, msg)


def bad_config(msg: str) -> BatchRefusal:
    return BatchRefusal(400, "H0001", msg)


@dataclass(frozen=True)
class BatchParams:
    """One upload's validated ``config``: RTZR's defaults where it sends none."""

    model_name: str = "sommers"
    language: str = "ko"
    use_diarization: bool = False
    spk_count: int | None = None
    use_itn: bool = True
    use_disfluency_filter: bool = True
    use_profanity_filter: bool = False
    use_paragraph_splitter: bool = True  # the docs' default
    paragraph_max: int | None = None  # the docs' default is 50
    domain: str = "GENERAL"
    use_word_timestamp: bool = False
    keywords: tuple[str, ...] = ()
    language_candidates: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        """The model family whose concurrency limit the job counts against: ``whisper`` or ``sommers``."""
        return "whisper" if self.model_name == "whisper" else "sommers"

    def as_query(self) -> dict[str, str]:
        """For the journal, in the streaming record's shape."""
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in vars(self).items()
                 if v is not None and k not in ("keywords", "language_candidates", "unknown")}
        if self.keywords:
            query["keywords"] = ",".join(self.keywords)
        if self.language_candidates:
            query["language_candidates"] = ",".join(self.language_candidates)
        return query


def _flag(doc: dict[str, Any], name: str, default: bool) -> bool:
    value = doc.get(name, default)
    if not isinstance(value, bool):
        raise bad_config(f"config.{name} must be true or false, got {value!r}")
    return value


def _count(section: Any, name: str, where: str, low: int) -> int | None:
    if section is None:
        return None
    if not isinstance(section, dict):
        raise bad_config(f"config.{where} must be an object")
    value = section.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise bad_config(f"config.{where}.{name} must be an integer of at least {low}, got {value!r}")
    return value


def parse_batch_config(raw: str | None) -> BatchParams:
    """The multipart ``config`` field (JSON; required, as the docs mark it: ``{}`` takes every default). Raises
    ``BatchRefusal`` (400 H0001)."""
    if raw is None or not raw.strip():
        raise bad_config("config is required (a JSON object; {} for every default)")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_config("config is not valid JSON") from None
    if not isinstance(doc, dict):
        raise bad_config("config must be a JSON object")
    model = doc.get("model_name", "sommers")
    if model not in MODELS:
        raise bad_config(f"config.model_name must be one of {', '.join(MODELS)}, got {model!r}")
    domain = str(doc.get("domain", "GENERAL")).upper()
    if domain not in DOMAINS:
        raise bad_config(f"config.domain must be GENERAL or CALL, got {doc.get('domain')!r}")
    language = doc.get("language", None if model == "whisper" else "ko")
    if language is None:
        raise bad_config(f"{UNSUPPORTED_LANGUAGE}: whisper needs config.language (a language code, detect or multi)")
    if not isinstance(language, str) or not language:
        raise bad_config(f"config.language must be a language code, got {language!r}")
    candidates = doc.get("language_candidates")
    if candidates is not None and (not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates)):
        raise bad_config("config.language_candidates must be a list of language codes")
    if model != "whisper" and (language in WHISPER_ONLY_LANGUAGES or candidates is not None):
        what = "language_candidates" if candidates is not None else f"language {language!r}"
        raise bad_config(f"{UNSUPPORTED_LANGUAGE}: {what} is whisper's (model_name {model!r})")
    keywords = doc.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise bad_config("config.keywords must be a list of words")
    use_diarization = _flag(doc, "use_diarization", False)
    if "diarization" in doc and not use_diarization:
        raise bad_config("config.diarization needs use_diarization: true")
    known = {"model_name", "language", "language_candidates", "use_diarization", "diarization", "use_itn",
             "use_disfluency_filter", "use_profanity_filter", "use_paragraph_splitter", "paragraph_splitter", "domain",
             "use_word_timestamp", "keywords"}
    return BatchParams(
        model_name=model, language=language, domain=domain,
        use_diarization=use_diarization,
        spk_count=_count(doc.get("diarization"), "spk_count", "diarization", 0),
        use_itn=_flag(doc, "use_itn", True),
        use_disfluency_filter=_flag(doc, "use_disfluency_filter", True),
        use_profanity_filter=_flag(doc, "use_profanity_filter", False),
        use_paragraph_splitter=_flag(doc, "use_paragraph_splitter", True),
        paragraph_max=_count(doc.get("paragraph_splitter"), "max", "paragraph_splitter", 1),
        use_word_timestamp=_flag(doc, "use_word_timestamp", False),
        keywords=tuple(keywords),
        language_candidates=tuple(candidates or ()),
        unknown=tuple(sorted(set(doc) - known)),
    )


@dataclass
class BatchJob:
    id: str
    client_id: str
    ready_at: float  # monotonic: "transcribing" until then
    utterances: list[dict[str, Any]]
    error: dict[str, str] | None = None  # a failed job's
    last_poll: float | None = None
    model: str = "sommers"  # the limit it counts against: sommers or whisper (``BatchParams.model``)

    def status(self, now: float) -> str:
        if now < self.ready_at:
            return "transcribing"
        return "failed" if self.error else "completed"


JOB_ID = re.compile(r"[A-Za-z0-9_-]{16}w(\d{1,4})")  # what ``BatchJobs.new_id`` makes, and nothing else


@dataclass
class BatchJobs:
    """The jobs of one fake (one worker), and the answers to polls."""

    worker: tuple[int, int] = (0, 1)
    jobs: dict[str, BatchJob] = field(default_factory=dict)
    decoding: dict[str, int] = field(default_factory=dict)  # model -> uploads accepted, not yet jobs

    def new_id(self) -> str:
        """Random, and naming the worker that holds the job (``fakertzr serve --workers`` routes polls by it)."""
        return f"{secrets.token_urlsafe(12)}w{self.worker[0]}"

    @staticmethod
    def worker_of(job_id: str) -> int | None:
        """The worker an id ``new_id`` made names; None for anything else (a poll forwards nothing but these)."""
        whole = JOB_ID.fullmatch(job_id)
        return int(whole.group(1)) if whole else None

    def transcribing(self, model: str, now: float) -> int:
        """Jobs of this model transcribing now, and uploads for it accepted and still being decoded. RTZR counts
        per organisation and per model (developers.rtzr.ai, rate_limit); the fake is one organisation: every
        client it accepts belongs to it."""
        return self.decoding.get(model, 0) + sum(
            1 for j in self.jobs.values() if j.model == model and j.status(now) == "transcribing")

    def reserve(self, model: str) -> None:
        """An upload accepted: it counts against the limit from now, while its audio is decoded off the loop
        (checked and counted in one step: 50 uploads at once were all let in past a limit of 10)."""
        self.decoding[model] = self.decoding.get(model, 0) + 1

    def release(self, model: str) -> None:
        left = self.decoding.get(model, 0) - 1
        if left > 0:
            self.decoding[model] = left
        else:
            self.decoding.pop(model, None)

    def add(self, job: BatchJob) -> None:
        self.jobs[job.id] = job

    def poll(self, job_id: str, client_id: str, now: float, *, min_poll_interval_s: float, ttl_s: float) -> dict[str, Any]:
        """The poll's answer; ``BatchRefusal`` for an unknown (404 H0004), another client's (403 H0003), expired
        (410 H0007: done ``ttl_s`` ago) job, or one polled sooner than ``min_poll_interval_s`` (0: no limit)
        after the last poll (429 A0003)."""
        self.expire(now, ttl_s)
        job = self.jobs.get(job_id)
        if job is None:
            raise BatchRefusal(404, "H0004", f"no transcription with id {job_id!r}")
        if job.client_id != client_id:
            raise BatchRefusal(403, "H0003", "this transcription belongs to another client")
        if now >= job.ready_at + ttl_s:
            raise BatchRefusal(410, "H0007", "the transcription's results have expired")
        too_soon = job.last_poll is not None and now - job.last_poll < min_poll_interval_s
        job.last_poll = now
        if too_soon:
            raise BatchRefusal(429, "A0003", f"polled again within {min_poll_interval_s:g} s")
        status = job.status(now)
        body: dict[str, Any] = {"id": job.id, "status": status}
        if status == "completed":
            body["results"] = {"utterances": [dict(u) for u in job.utterances]}
        elif status == "failed":
            body["error"] = dict(job.error or {})
        return body

    def expire(self, now: float, ttl_s: float) -> None:
        """Forget jobs long past their expiry (an expired job still answers 410 for a while, then 404)."""
        gone = [i for i, j in self.jobs.items() if now >= j.ready_at + ttl_s * 2 + 60]
        for job_id in gone:
            del self.jobs[job_id]
