"""The file API's HTTP shell: ``POST /v1/transcribe`` (multipart ``file`` + ``config``) and
``GET /v1/transcribe/{id}``, on the backend's batch jobs (:mod:`fakertzr.batch`).

The upload is read part by part, so a file over ``batch_max_bytes`` is refused (413 H0005) without
holding it; its audio is decoded off the event loop (WAV, FLAC, Ogg, MP3; other formats with pydub
and ffmpeg, else 400 H0010). Under ``fakertzr serve --workers`` a poll that reaches a worker other
than the one holding the job (its id names it) is answered by that worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import aiohttp
import numpy as np
from aiohttp import web

from callaudio import AudioFormatError, AudioTooLong
from callaudio.decode import read_channels, to_8k

from .backend import FakeRtzrBackend
from .batch import BatchJobs, BatchRefusal
from .peers import WorkerUnreachable

log = logging.getLogger("fakertzr")
CHUNK = 1 << 16
MAX_CONFIG_BYTES = 1 << 20


def _refused(exc: BatchRefusal) -> web.Response:
    return web.json_response(exc.refusal.body(), status=exc.refusal.status)


def decode_upload(data: bytes, name: str, max_seconds: float) -> np.ndarray:
    """The uploaded file as 8 kHz int16 mono (channels mixed). ``BatchRefusal`` 413 H0006 if it is longer than
    ``max_seconds`` (told from its header before it is decoded), 400 H0010 if it is not audio the fake reads."""
    try:  # not quiet: fd 2 is the server's log too
        channels, rate = read_channels(data, name or "file", quiet=False, max_seconds=max_seconds)
    except AudioTooLong as exc:
        raise BatchRefusal(413, "H0006", f"the audio is over {max_seconds:g} s ({exc.seconds:.0f} s)") from None
    except AudioFormatError as exc:
        raise BatchRefusal(400, "H0010", f"unsupported file format: {exc}") from None
    if channels.size == 0:
        raise BatchRefusal(400, "H0010", "unsupported file format: no audio in the file")
    return to_8k(channels.mean(axis=1), rate)


async def _read_upload(request: web.Request, max_bytes: int) -> tuple[str | None, bytes | None, str, int]:
    """(config text, file bytes or None if over ``max_bytes``, file name, its size: ``max_bytes + 1`` if over)."""
    if not request.content_type.startswith("multipart/"):
        raise BatchRefusal(400, "H0001", "the upload must be multipart/form-data with a file and a config")
    config, data, name, size = None, None, "", 0
    try:
        async for part in await request.multipart():
            if part.name == "config":
                raw = await _read_part(part, MAX_CONFIG_BYTES)  # type: ignore[arg-type]
                if raw is None:
                    raise BatchRefusal(400, "H0001", f"config is over {MAX_CONFIG_BYTES} bytes")
                config = raw.decode("utf-8", "replace")
            elif part.name == "file":
                name = part.filename or ""  # type: ignore[union-attr]
                data = await _read_part(part, max_bytes)  # type: ignore[arg-type]
                size = max_bytes + 1 if data is None else len(data)
    except (ValueError, AssertionError, aiohttp.ClientPayloadError) as exc:  # not multipart as RFC 7578 has it
        raise BatchRefusal(400, "H0001", f"unreadable multipart body: {type(exc).__name__}") from None
    if data is None and size == 0:
        raise BatchRefusal(400, "H0001", "the upload has no file")
    return config, data, name, size


async def _read_part(part: aiohttp.BodyPartReader, limit: int) -> bytes | None:
    """A part's bytes; None past ``limit`` (the rest is not read: the reader skips it)."""
    chunks, size = [], 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def transcribe_handler(backend_of: Callable[[web.Request], FakeRtzrBackend]) -> Any:
    async def transcribe(request: web.Request) -> web.Response:
        backend = backend_of(request)
        try:
            config, data, name, size = await _read_upload(request, backend.config.batch_max_bytes)
            client_id, params = backend.accept_upload(request.headers, config, size)  # a job's place taken, or refused
            try:
                assert data is not None  # accept_upload refuses a file over the limit
                samples = await asyncio.to_thread(decode_upload, data, name, backend.config.batch_max_duration_s)
                job = backend.start_transcription(request.headers, client_id, params, samples, filename=name, size=size)
            finally:
                backend.batch.release(params.model)  # the job now counts itself, or there is none
        except BatchRefusal as exc:
            log.info("event=transcribe_refused status=%s code=%s", exc.refusal.status, exc.refusal.code)
            return _refused(exc)
        log.info("event=transcribe id=%s audio_s=%.1f utterances=%d", job.id, len(samples) / 8000, len(job.utterances))
        return web.json_response({"id": job.id})

    return transcribe


def poll_handler(backend_of: Callable[[web.Request], FakeRtzrBackend], peers_of: Callable[[web.Request], Any]) -> Any:
    async def poll(request: web.Request) -> web.Response:
        backend = backend_of(request)
        job_id = request.match_info["id"]
        owner = BatchJobs.worker_of(job_id)
        peers = peers_of(request)
        if peers is not None and owner is not None and owner != backend.worker[0] and owner in peers.urls:
            auth = request.headers.get("Authorization")
            try:
                # the path made again from an id of the form ``new_id`` makes: never the request's own path
                status, body = await peers.request_one(owner, "GET", f"/v1/transcribe/{job_id}",
                                                       {"Authorization": auth} if auth else {})
            except WorkerUnreachable as exc:
                status, body = 502, {"code": "E500", "msg": str(exc)}
            return web.json_response(body, status=status)
        try:
            return web.json_response(backend.poll_transcription(request.headers, job_id))
        except BatchRefusal as exc:
            return _refused(exc)

    return poll
