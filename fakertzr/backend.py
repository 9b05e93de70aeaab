"""The fake's whole state in one object (after moto's backends).

Credentials, loaded scripts, faults, the journal and limits live here. The pytest fixture
hands this object to tests; ``fakertzr serve`` exposes it through the control API. The I/O
shell asks it to authenticate and to open streams; ``reset()`` restores the start state.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .actions import Refusal, SendResult
from .batch import BatchJob, BatchJobs, BatchParams, BatchRefusal, parse_batch_config
from .align import AudioLocator
from .errors import FakeRtzrError
from .faults import Fault, fault_from_spec
from .fixture import CallScript, load_fixture
from .journal import AuthRecord, ConnectionRecord, Journal, SentMessage, clip, clip_fields, redact_headers
from .params import ParamError, StreamParams, parse_stream_params
from .recognizer_auto import AutoRecognizer
from .recognizer_script import ScriptRecognizer
from .results import ResultBuilder
from .session import StreamSession
from .tokens import DEFAULT_TOKEN_TTL_S, TokenIssuer, bearer_token
from .validation import check
from .waiting import ChangeNotifier

BEFORE_AUDIO = ("reject_handshake", "auth_failure", "expire_tokens")  # fault kinds no call's audio can scope
DEFAULT_CLIENT_ID = "fakertzr-client"
DEFAULT_CLIENT_SECRET = "fakertzr-secret"


@dataclass
class FakeRtzrConfig:
    """Settings of one fake; every field can be changed at run time through the control API."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    token_ttl_s: float = DEFAULT_TOKEN_TTL_S
    max_streams: int = 20  # per client id: RTZR's Basic plan (the free plan allows 5)
    time_scale: float = 1.0  # multiplies every scripted wall-clock delay; 0 = none
    idle_timeout_s: float = 60.0  # no audio for this long closes the stream [seen ~60 s]
    idle_close_code: int = 1000  # [guess]: 1000 or 1001; 1000 is the one clients mishandle
    max_frame_bytes: int = 1 << 20
    epd_time: float | None = None  # default for connections that send no epd_time
    max_utter_duration: float | None = None  # default (s) for connections that send none (None: RTZR's 12 s)
    auto_texts: list[str] | None = None
    auto_word_ms: float = 350.0
    auto_threshold_dbfs: float = -40.0
    fixtures: list[str] = field(default_factory=list)
    journal_limit: int = 2000  # connection records kept whole; older closed ones are counted, then dropped
    # the file API (POST/GET /v1/transcribe): the docs' limits (developers.rtzr.ai stt-file, rate_limit)
    batch_max_bytes: int = 2_000_000_000  # [doc] "Max file size: 2GB"; a bigger upload: 413 H0005 (held in memory)
    batch_max_duration_s: float = 4 * 3600.0  # [doc] "Max duration: 4 hours"; longer audio: 413 H0006
    batch_max_jobs: int = 20  # [doc] sommers jobs at once per organisation, Basic plan (free: 10); one more: 429 A0002
    batch_max_whisper_jobs: int = 5  # [doc] whisper jobs at once per organisation, Basic plan (free: 2)
    batch_min_poll_interval_s: float = 5.0  # [seen] polls closer together: 429 A0003 (0: no limit)
    batch_ttl_s: float = 3 * 86400.0  # [guess: cited as RTZR's] results kept 3 days after a job is done, then 410 H0007
    batch_s_per_audio_s: float = 0.05  # "transcribing" this long per second of audio (times time_scale)

    UPDATABLE = ("token_ttl_s", "max_streams", "time_scale", "idle_timeout_s", "idle_close_code",
                 "max_frame_bytes", "epd_time", "max_utter_duration", "auto_word_ms", "auto_threshold_dbfs",
                 "journal_limit", "batch_max_bytes", "batch_max_duration_s", "batch_max_jobs", "batch_max_whisper_jobs",
                 "batch_min_poll_interval_s", "batch_ttl_s", "batch_s_per_audio_s")


@dataclass
class OpenedStream:
    session: StreamSession
    record: ConnectionRecord


class FakeRtzrBackend:
    """See the module docstring."""

    def __init__(self, config: FakeRtzrConfig | None = None, *, token_key: bytes | None = None,
                 worker: tuple[int, int] = (0, 1)) -> None:
        """``token_key`` and ``worker`` (index, count) for one of ``fakertzr serve --workers``: tokens any worker
        accepts, and connection indices unique across workers (this worker's are index, index + count, ...)."""
        self.config = config or FakeRtzrConfig()
        check("config", {name: getattr(self.config, name) for name in FakeRtzrConfig.UPDATABLE}, "config")
        self._start_config = copy.deepcopy(self.config)
        self.worker = worker
        self.tokens = TokenIssuer(self.config.token_ttl_s, token_key)
        self.on_tokens_revoked: Callable[[], None] = lambda: None  # a worker tells the others
        self.journal = Journal(self.config.journal_limit)
        self._loaded: list[tuple[CallScript, AudioLocator]] = []
        self.faults: list[Fault] = []
        self.script_faults: dict[str, list[Fault]] = {}  # faults that act only on the streams of one script
        self._streams_of: dict[str, int] = {}  # streams that have named each script so far
        self._active: dict[str, int] = {}
        self.live_streams: set[Any] = set()  # the shells running a stream now (a shutdown closes each with a frame)
        self.shutting_down = False  # no new stream is accepted
        self.batch = BatchJobs(worker)
        self._changes = ChangeNotifier()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget connections, faults, runtime scripts and config changes; reload the configured fixtures."""
        self.config = copy.deepcopy(self._start_config)
        self.journal = Journal(self.config.journal_limit)
        self.faults.clear()  # in place: each open stream's session holds this list (faults added now reach it)
        self.script_faults = {}
        self._streams_of = {}
        self._loaded = []
        self._connection_count = self.worker[0]
        self.batch = BatchJobs(self.worker)
        self.tokens.ttl_s = self.config.token_ttl_s
        for directory in self.config.fixtures:
            self.load_script(load_fixture(directory))

    @property
    def scripts(self) -> list[CallScript]:
        """The loaded scripts, in the order they were loaded."""
        return [script for script, _ in self._loaded]

    @property
    def mode(self) -> str:
        return "script" if self.scripts else "auto"

    def load_fixture(self, directory: str | Path) -> CallScript:
        return self.load_script(load_fixture(directory))

    def load_script(self, script: CallScript, *, own_faults: bool = False) -> CallScript:
        """Make ``script`` answer the next connections whose audio it contains; add its faults.

        ``own_faults``: the script's faults act only on the streams whose audio is this script's, their
        ``connection`` counting those streams alone (0: the first stream that carried this call's audio).
        Several calls at once on one fake: one call's drop or stall never touches its neighbours'
        streams. Faults that act before any audio is heard (a refused handshake or authentication,
        revoked tokens) cannot be told to one call, and are refused here (``FakeRtzrError``)."""
        faults = [fault_from_spec(spec, f"{script.source}: faults[{i}]") for i, spec in enumerate(script.faults)]
        if own_faults:
            if any(s[0].name == script.name for s in self._loaded):
                raise FakeRtzrError(f"a script named {script.name!r} is loaded already: its streams could not be told apart")
            blind = [f.kind for f in faults if f.kind in BEFORE_AUDIO]
            if blind:
                raise FakeRtzrError(f"{script.source}: a {blind[0]} fault acts before any audio names the call: "
                                    "it cannot be given to one call of several")
            self.script_faults[script.name] = faults
        else:
            self.faults.extend(faults)
        self._loaded.append((script, AudioLocator(script.audio)))
        return script

    def unload_script(self, name: str) -> None:
        """Forget the script named ``name`` and its own faults (its call is over); streams already following it
        go on."""
        self._loaded = [(s, loc) for s, loc in self._loaded if s.name != name]
        self.script_faults.pop(name, None)

    def clear_scripts(self) -> None:
        self._loaded = []
        self.script_faults = {}

    def set_auto_texts(self, texts: Sequence[str] | None) -> None:
        """Auto mode: VAD-found utterances get these texts in order (scripts are cleared)."""
        self._loaded = []
        self.config.auto_texts = list(texts) if texts is not None else None

    def add_fault(self, fault: Fault | Mapping[str, Any]) -> Fault:
        """Add a fault object, or one described as data (validated as a fixture's faults are)."""
        if not isinstance(fault, Fault):
            fault = fault_from_spec(dict(fault))
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget the faults, in place: open streams share this list, and see the faults added after."""
        self.faults.clear()

    def update_config(self, changes: Mapping[str, Any]) -> None:
        """Change settings live; all or nothing: any bad name or value raises and changes none."""
        for name in changes:
            if name not in FakeRtzrConfig.UPDATABLE:
                raise FakeRtzrError(f"config: {name} cannot be changed (changeable: {', '.join(FakeRtzrConfig.UPDATABLE)})")
        check("config", dict(changes), "config")
        for name, value in changes.items():
            setattr(self.config, name, value)
        self.tokens.ttl_s = self.config.token_ttl_s
        self.journal.limit = self.config.journal_limit

    def active_streams(self) -> int:
        return sum(self._active.values())

    # ---------------------------------------------------------- authenticate
    def authenticate(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/authenticate``: (status, JSON body)."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id or not secret:
            refusal = Refusal.of(400, "client_id and client_secret are required")
        else:
            refusal = next((r for f in self.faults if (r := f.on_authenticate())), None)
            if refusal is None and (client_id != self.config.client_id or secret != self.config.client_secret):
                refusal = Refusal.of(401, "invalid credential")
        self.journal.add_auth(AuthRecord(clip(client_id or "", 128), refusal.status if refusal else 200))
        if refusal:
            return refusal.status, refusal.body()
        token = self.tokens.issue(client_id)
        return 200, {"access_token": token.access_token, "expire_at": token.expire_at}

    # ------------------------------------------------------------ streaming
    def open_stream(self, headers: Mapping[str, str], query: Mapping[str, str], *,
                    api: str = "websocket") -> OpenedStream | tuple[Refusal, ConnectionRecord]:
        """Decide a streaming handshake: an accepted session, or a refusal (both journaled). The gRPC API
        comes here too, its first request's config given as the WebSocket's query parameters."""
        record = self._new_record(api, clip_fields(query), headers)
        refusal = Refusal.of(503, "the server is shutting down") if self.shutting_down else self._scripted_refusal(record.index)
        client_id = None
        if refusal is None:
            client_id, why = self._client_of(headers)
            if client_id is None:
                refusal = Refusal.of(401, why)
        params = None
        if refusal is None:
            try:
                params = parse_stream_params(query)
            except ParamError as exc:
                refusal = Refusal.of(400, str(exc))
        if refusal is None and self._active.get(client_id or "", 0) >= self.config.max_streams:
            refusal = Refusal.of(429, f"too many concurrent streams (limit {self.config.max_streams})")
        record.client_id = client_id
        if refusal is not None or params is None or client_id is None:
            assert refusal is not None
            record.status, record.refusal = refusal.status, refusal.body()
            self.journal.closed(record)
            return refusal, record

        session = self._new_session(params, query, record)
        self._active[client_id] = self._active.get(client_id, 0) + 1
        return OpenedStream(session, record)

    def _new_record(self, api: str, query: dict[str, str], headers: Mapping[str, str]) -> ConnectionRecord:
        """The journal's record of a new connection (or file API job), with the next connection index."""
        record = ConnectionRecord(index=self._connection_count, api=api, query=query, headers=redact_headers(headers))
        self._connection_count += self.worker[1]
        self.journal.add(record)
        return record

    def _scripted_refusal(self, index: int) -> Refusal | None:
        return next((r for f in self.faults if (r := f.on_handshake(index))), None)

    def _client_of(self, headers: Mapping[str, str]) -> tuple[str | None, str]:
        """The client id a request's bearer token names, or None and why not."""
        token = bearer_token(headers.get("Authorization"))
        return self.tokens.verify(token) if token else (None, "missing bearer token")

    def _new_session(self, params: StreamParams, query: Mapping[str, str], record: ConnectionRecord,
                     faults: Sequence[Fault] | None = None) -> StreamSession:
        """A stream's recognizer (the scripts, or auto mode) and its sans-I/O session (the backend's faults,
        unless ``faults`` says otherwise)."""
        index = record.index
        epd_s = params.epd_time if "epd_time" in query or self.config.epd_time is None else self.config.epd_time
        max_utter_s = params.max_utter_duration if "max_utter_duration" in query or self.config.max_utter_duration is None \
            else self.config.max_utter_duration
        builder = ResultBuilder(epd_s * 1000.0, max_utter_ms=max_utter_s * 1000.0)
        recognizer: ScriptRecognizer | AutoRecognizer
        if self._loaded:
            record.mode = "script"

            def on_select(script: CallScript) -> None:
                behaviour = script.recognizer
                record.script = script.name
                if script.name in self.script_faults:  # from now on, the call's own faults, counted by its streams
                    session.connection_index = self._streams_of.get(script.name, 0)
                    session.faults = self.script_faults[script.name]
                self._streams_of[script.name] = self._streams_of.get(script.name, 0) + 1
                if behaviour.epd_time is not None:
                    builder.epd_ms = behaviour.epd_time * 1000.0
                if behaviour.max_utter_duration is not None:
                    builder.max_utter_ms = behaviour.max_utter_duration * 1000.0
                builder.partials = behaviour.partials
                builder.final_delay_ms = behaviour.processing_delay_ms
                builder.partial_delay_ms = behaviour.partial_delay_ms

            scripts, locators = zip(*self._loaded)
            recognizer = ScriptRecognizer(scripts, locators, on_select=on_select)
        else:
            record.mode = "auto"
            recognizer = AutoRecognizer(
                self.config.auto_texts or [],
                epd_ms=builder.epd_ms,
                threshold_dbfs=self.config.auto_threshold_dbfs,
                word_ms=self.config.auto_word_ms,
            )
        session = StreamSession(params, recognizer, builder, self.faults if faults is None else faults,
                                connection_index=index)
        record.alignment = getattr(recognizer, "alignment_log", [])  # live views for the journal
        record.faults_fired = session.fired
        return session

    def stream_closed(self, opened: OpenedStream) -> None:
        """The shell is done with a stream: its socket is gone; release its concurrency slot."""
        opened.record.closed_wall = time.monotonic()
        self.journal.closed(opened.record)  # measured now, once: it no longer grows
        client_id = opened.record.client_id or ""
        self._active[client_id] = max(0, self._active.get(client_id, 0) - 1)
        self.journal_changed()

    # ------------------------------------------------------------ file API
    def _batch_client(self, headers: Mapping[str, str]) -> str:
        client_id, why = self._client_of(headers)
        if client_id is None:
            raise BatchRefusal(401, "H0002", why or "invalid token")
        return client_id

    def accept_upload(self, headers: Mapping[str, str], config_raw: str | None, size: int) -> tuple[str, BatchParams]:
        """The checks before the audio is decoded, in order: token (401 H0002), config (400 H0001), jobs of its
        model in flight (429 A0002, the docs' "Too many concurrent requests"), size (413 H0005). Raises
        ``BatchRefusal``."""
        client_id = self._batch_client(headers)
        params = parse_batch_config(config_raw)
        limit = self.config.batch_max_whisper_jobs if params.model == "whisper" else self.config.batch_max_jobs
        if self.batch.transcribing(params.model, time.monotonic()) >= limit:
            raise BatchRefusal(429, "A0002", "Too many concurrent requests")
        if size > self.config.batch_max_bytes:
            raise BatchRefusal(413, "H0005", f"the file is over {self.config.batch_max_bytes} bytes")
        self.batch.reserve(params.model)  # with the check above, in one step of the event loop: the caller releases it
        return client_id, params

    def start_transcription(self, headers: Mapping[str, str], client_id: str, params: BatchParams, samples: Any,
                            *, filename: str = "", size: int = 0) -> BatchJob:
        """Transcribe 8 kHz int16 ``samples`` with the scripts (or auto mode) now; the job reads "transcribing"
        for ``batch_s_per_audio_s`` x ``time_scale`` per second of audio. Raises ``BatchRefusal`` (413 H0006,
        or a scripted refusal)."""
        duration_s = len(samples) / 8000.0
        if duration_s > self.config.batch_max_duration_s:
            raise BatchRefusal(413, "H0006", f"the audio is over {self.config.batch_max_duration_s:g} s")
        record = self._new_record("batch", {**params.as_query(), "file": clip(filename, 128), "bytes": str(size)}, headers)
        record.client_id = client_id
        index = record.index
        refusal = self._scripted_refusal(index)
        if refusal is not None:
            record.status, record.refusal = refusal.status, refusal.body()
            self.journal.closed(record)
            raise BatchRefusal(refusal.status, refusal.code, refusal.msg)
        stream_params = parse_stream_params({"sample_rate": "8000", "encoding": "LINEAR16"})
        session = self._new_session(stream_params, {}, record, faults=())  # streaming faults are the WebSocket's
        pcm = samples.astype("<i2").tobytes()
        now = time.monotonic()
        actions = [a for i in range(0, len(pcm), 16000) for a in session.receive_audio(pcm[i : i + 16000])]
        actions += session.receive_text("EOS")
        utterances = []
        for action in actions:
            if isinstance(action, SendResult) and action.result.final:
                payload = action.result.payload
                text = payload["alternatives"][0]["text"]
                record.messages.append(SentMessage("final", payload["seq"], text, round(action.result.audio_ms, 1), now,
                                                   now, 0.0, json.dumps(payload, ensure_ascii=False)))
                utterance = {"start_at": payload["start_at"], "duration": payload["duration"], "msg": text,
                             "spk": 0, "lang": params.language}
                if params.use_word_timestamp:  # [doc] stt-file/word_timestamp: words in the file's time, text as said
                    utterance["words"] = [{"start_at": payload["start_at"] + w["start_at"], "duration": w["duration"],
                                           "text": w["text"].lstrip("|")}
                                          for w in payload["alternatives"][0].get("words", ())]
                utterances.append(utterance)
        record.audio_bytes, record.audio_ms = session.audio_bytes, round(session.audio_ms, 1)
        error = next((e for f in self.faults if (e := f.on_transcription(index))), None)
        ready_at = now + duration_s * self.config.batch_s_per_audio_s * self.config.time_scale
        job = BatchJob(self.batch.new_id(), client_id, ready_at, [] if error else utterances, error, model=params.model)
        self.batch.add(job)
        record.end("failed" if error else "completed", None, f"job {job.id}")
        record.closed_wall = now
        self.journal.closed(record)
        self.journal_changed()
        return job

    def poll_transcription(self, headers: Mapping[str, str], job_id: str) -> dict[str, Any]:
        """``GET /v1/transcribe/{id}``'s body; raises ``BatchRefusal``."""
        return self.batch.poll(job_id, self._batch_client(headers), time.monotonic(),
                               min_poll_interval_s=self.config.batch_min_poll_interval_s, ttl_s=self.config.batch_ttl_s)

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (the ``expire_tokens`` fault), on every worker."""
        self.tokens.revoke_all()
        self.on_tokens_revoked()

    # --------------------------------------------------------------- waiting
    def journal_changed(self) -> None:
        """Wake whoever waits on the journal (audio in, a message sent, a stream ended)."""
        self._changes.notify()

    async def next_change(self) -> None:
        """Return at the journal's next change (audio in, a message sent, a stream opened or ended)."""
        await self._changes.next_change()

    async def wait_for(self, predicate: Callable[[Journal], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(journal)`` holds; raise TimeoutError after ``timeout`` seconds."""
        await self._changes.wait_until(lambda: predicate(self.journal), timeout)
