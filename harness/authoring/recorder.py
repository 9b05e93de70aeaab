"""``harness record``: a Media Streams proxy between Twilio and your handler that writes each call as a fixture.

Every message passes both ways untouched. From Twilio's side it keeps the caller's audio (placed by each
frame's timestamp), DTMF, and how the call ended (``stop``, or a line that vanished) and when; from the
handler's side how much audio, how many marks and clears it sent, as a reference. The handler's RTZR
traffic goes through ``fakertzr record`` (the handler's ``RTZR_API_BASE`` points at it), so the fixture also
holds RTZR's own results, placed in the caller's audio where the handler's stream carried it. A fixture
never holds a callSid, an account SID, a token or a signature.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import numpy as np
from aiohttp import WSMsgType, web

from callaudio.g711 import ulaw_to_pcm16
from callaudio.wavfile import mulaw_wav_bytes
from fakertzr.align import AudioLocator
from fakertzr.appserver import AppServer, RelayServer
from fakertzr.fixture import FIXTURE_RATE, FIXTURE_VERSION
from fakertzr.record_proxy import RecordedStream, RecordingProxy
from fakertzr.recording import (
    REDACTIONS,
    StreamRecorder,
    fixture_directory,
    utterances_from_finals,
)
from harness.fakes.services import FakeServices, running_fakes

log = logging.getLogger("harness.record")
SILENCE = 0xFF  # mu-law silence, for audio Twilio never sent
MIN_MATCH = 0.8
MAX_GAP_BYTES = 60 * 8000  # a frame's timestamp may skip a minute of audio at most (Twilio's never skip) ...
AHEAD_MARGIN_BYTES = 8000  # ... nor run more than 1 s ahead of the time the stream has been open
STREAM_END_WAIT_S = 15.0
RECONNECT_GRACE_S = 2.0  # after a call's RTZR streams end, how long a reconnect may take to open


def mask_number(value: str) -> str:
    """``+821012345678`` -> ``+8210****5678``: enough to tell calls apart, not enough to call back."""
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    hide = set(digits[4:-4]) if len(digits) > 8 else set(digits)
    return "".join("*" if i in hide else c for i, c in enumerate(value))


@dataclass
class TwilioCallRecorder:
    """One Media Stream as it passed, without I/O: feed it each text frame, in order, from either side.

    Twilio sends media every 20 ms until the call ends, silence included; a caller side that went quiet
    before ``stop`` (the harness's fake Twilio listening to the bot's last words) is padded with silence
    up to the ``stop``, at the pace the media came, so a replay hangs up when this call did."""

    clock: Callable[[], float] = time.monotonic
    started: float = field(default_factory=time.monotonic)
    ulaw: bytearray = field(default_factory=bytearray)
    caller: str = ""
    dtmf: list[tuple[float, str]] = field(default_factory=list)
    stop_ms: float | None = None
    bot_audio_bytes: int = 0
    marks: int = 0
    clears: int = 0
    malformed: int = 0
    capped_timestamps: int = 0  # media whose timestamp ran ahead of the time the stream had been open
    vanished: bool = False
    handler_ended: bool = False  # the handler closed the stream first (it refused or ended the call)
    _first_media: tuple[float, float] | None = None  # (wall, audio ms)
    _last_media: tuple[float, float] | None = None

    @property
    def audio_ms(self) -> float:
        return len(self.ulaw) / 8.0

    def from_twilio(self, text: str) -> None:
        try:
            msg = json.loads(text)
            event = msg["event"]
            if event == "start":
                params = msg["start"].get("customParameters") or {}
                self.caller = str(params.get("caller", "")) if isinstance(params, dict) else ""
            elif event == "media":
                payload = base64.b64decode(msg["media"]["payload"], validate=True)
                at = int(msg["media"].get("timestamp", len(self.ulaw) // 8)) * 8
                if not 0 <= at <= len(self.ulaw) + MAX_GAP_BYTES:
                    raise ValueError(f"timestamp {at // 8} ms is not near the audio so far")
                if at > (limit := self._latest_possible()):  # Twilio stamps real time: no frame comes early
                    if not self.capped_timestamps:
                        log.warning("media timestamp %d ms runs %d ms ahead of the time the stream has been open: "
                                    "placed at %d ms (and so for every such frame of this call)", at // 8,
                                    (at - limit) // 8, limit // 8)
                    self.capped_timestamps += 1
                    at = limit
                if at > len(self.ulaw):
                    self.ulaw += bytes([SILENCE]) * (at - len(self.ulaw))  # frames Twilio never sent
                self.ulaw[at : at + len(payload)] = payload
                self._last_media = (self.clock(), self.audio_ms)
                self._first_media = self._first_media or self._last_media
            elif event == "dtmf":
                self.dtmf.append((round(self.audio_ms, 1), str(msg["dtmf"]["digit"])))
            elif event == "stop":
                self._pad_to_now()
                self.stop_ms = round(self.audio_ms, 1)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error):
            self.malformed += 1

    def _latest_possible(self) -> int:
        """The latest audio position (bytes) a frame may have now: right after the audio so far (frames sent
        faster than real time, as the harness's fake Twilio does at fast pace, are contiguous), or a gap as
        long as the time since the first frame allows, and a second."""
        if self._first_media is None:
            return len(self.ulaw) + AHEAD_MARGIN_BYTES
        wall0, ms0 = self._first_media
        return max(len(self.ulaw), int((ms0 + (self.clock() - wall0) * 1000.0) * 8) + AHEAD_MARGIN_BYTES)

    def line_ended(self) -> None:
        """Twilio's side of the socket closed; with no ``stop`` before it (and the handler still there), the
        line vanished."""
        if self.stop_ms is None and not self.vanished and not self.handler_ended:
            self._pad_to_now()
            self.vanished = True

    def handler_closed(self) -> None:
        """The handler's side closed; before any ``stop`` or drop, it was the handler that ended the call."""
        if self.stop_ms is None and not self.vanished:
            self.handler_ended = True

    def _pad_to_now(self) -> None:
        if self._first_media is None or self._last_media is None:
            return
        (wall0, ms0), (wall1, ms1) = self._first_media, self._last_media
        pace = (ms1 - ms0) / ((wall1 - wall0) * 1000.0) if wall1 - wall0 > 0.1 else 1.0  # audio ms per wall ms
        gap_ms = (self.clock() - wall1) * 1000.0 * pace - 20.0  # one frame interval is no gap
        if gap_ms >= 20.0:
            self.ulaw += bytes([SILENCE]) * int(gap_ms // 20 * 160)

    def from_handler(self, text: str) -> None:
        try:
            msg = json.loads(text)
            if msg["event"] == "media":
                self.bot_audio_bytes += len(base64.b64decode(msg["media"]["payload"]))
            elif msg["event"] == "mark":
                self.marks += 1
            elif msg["event"] == "clear":
                self.clears += 1
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error):
            self.malformed += 1

    def to_fixture(self, name: str, streams: list[RecordedStream], *, auth_failures: tuple[int, ...] = (),
                   mask_caller: bool = True, redact_kinds: tuple[str, ...] = ()) -> tuple[dict[str, Any], bytes]:
        """(``call.json``, caller audio): RTZR's results from ``streams`` (in the order they were opened) placed in
        this call's audio; how RTZR refused, closed or dropped them, and token requests it refused, as faults."""
        call_pcm = ulaw_to_pcm16(bytes(self.ulaw))
        duration_ms = len(self.ulaw) / 8.0
        recorded, placed = [], []
        redacted = dict.fromkeys(redact_kinds, 0)
        faults: list[dict[str, Any]] = [{"type": "auth_failure", "status": status, "times": 1} for status in auth_failures]
        for index, entry in enumerate(streams):
            if entry.recorder is None:  # its handshake was refused
                faults.append({"type": "reject_handshake", "status": entry.refused, "connection": index})
                continue
            stream = entry.recorder
            faults += stream.faults(connection=index)  # a recognizer that closed or dropped this stream
            offset_ms = locate_stream(call_pcm, stream)
            if offset_ms is None:  # its audio is not found in the caller's: its results cannot be placed
                placed.append({"offset_ms": None, "results": stream.results})
                continue
            placed.append({"offset_ms": round(offset_ms, 1), "results": stream.results})
            doc, _ = stream.to_fixture(name, redact_kinds=redact_kinds)
            for kind, n in doc["authoring"]["redacted"].items():
                redacted[kind] = redacted.get(kind, 0) + n
            for result in doc["recognizer"]["recorded"]:
                shifted = {**result, **{k: round(min(duration_ms, result[k] + offset_ms), 1)
                                        for k in ("call_ms", "start_ms", "end_ms")}}
                if "words" in result:
                    shifted["words"] = [{**w, "start_ms": round(w["start_ms"] + offset_ms, 1),
                                         "end_ms": round(w["end_ms"] + offset_ms, 1)} for w in result["words"]]
                recorded.append(shifted)
        recorded.sort(key=lambda r: r["call_ms"])  # streams in call order (a reconnect comes later)

        caller: dict[str, Any] = {}  # a call the handler ended: the caller stays on the line until it does
        if not self.handler_ended:
            caller["hangup_ms"] = round(duration_ms if self.stop_ms is None else self.stop_ms, 1)
        if self.vanished:
            caller["vanish"] = True
        if self.dtmf:  # a PIN or a card number typed on the keypad is personal data too: --redact dtmf
            hide = "dtmf" in redact_kinds
            caller["dtmf"] = [{"at_ms": at, "digit": "0" if hide and d.isdigit() else d}
                              for at, d in self.dtmf if re.fullmatch(r"[0-9*#]", d)]
            if hide:
                redacted["dtmf"] = sum(d.isdigit() for _, d in self.dtmf)
        doc = {
            "version": FIXTURE_VERSION,
            "name": name,
            "description": "Recorded by harness record.",
            "audio": {"file": "caller.wav", "encoding": "MULAW", "sample_rate": FIXTURE_RATE, "duration_ms": round(duration_ms)},
            "utterances": utterances_from_finals([r for r in recorded if r["final"] and r["text"].strip()], duration_ms),
            "recognizer": {"recorded": recorded},
            "faults": faults,
            "caller": caller,
            "authoring": {"tool": "harness record", "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "caller": mask_number(self.caller) if mask_caller else self.caller, "redacted": redacted,
                          **({"capped_timestamps": self.capped_timestamps} if self.capped_timestamps else {}),
                          "rtzr_streams": placed,
                          "handler_did": {"bot_audio_ms": round(self.bot_audio_bytes / 8.0), "marks": self.marks,
                                          "clears": self.clears}},
        }
        return doc, bytes(self.ulaw)


def locate_stream(call_pcm: np.ndarray, stream: StreamRecorder) -> float | None:
    """Where (call ms) the audio a handler streamed to RTZR starts in the caller's audio, or None."""
    audio = stream.pcm8k()
    if len(audio) == 0 or len(call_pcm) == 0:
        return None
    locator = AudioLocator(call_pcm)
    step = 4 * FIXTURE_RATE
    for start in range(0, max(1, len(audio) - FIXTURE_RATE // 10), step):
        probe = audio[start : start + step]
        match = locator.locate(probe)
        if match is not None and match.score >= MIN_MATCH:
            return (match.offset - (start + len(probe) - match.used)) * 1000.0 / FIXTURE_RATE
    return None


class TwilioRecordingProxy(RelayServer):
    """Listens where Twilio (or the harness's fake Twilio) connects; forwards each stream to ``target``."""

    def __init__(self, target: str, out_dir: str | Path, *, name: str = "call", rtzr: RecordingProxy | None = None,
                 mask_caller: bool = True, redact: tuple[str, ...] = (*REDACTIONS, "dtmf"), mode: str = "new_episodes",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.out_dir = Path(out_dir)
        self.name = name
        self.rtzr = rtzr  # the RecordingProxy in front of RTZR, whose streams this proxy's calls claim
        self.rtzr_streams = rtzr.streams if rtzr is not None else []
        self.rtzr_auth_failures = rtzr.auth_failures if rtzr is not None else []
        self.mask_caller = mask_caller
        self.redact = redact
        self.mode = mode
        self.written: list[Path] = []
        self.recordings: asyncio.Queue[Path] = asyncio.Queue()  # each fixture as it is written
        self._active: list[TwilioCallRecorder] = []
        app = web.Application()
        app.router.add_get("/{path:.*}", self._stream)
        super().__init__(app, host, port)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        forwarded = {k: v for k, v in request.headers.items() if k.lower() == "x-twilio-signature"}
        try:
            handler = await self.session.ws_connect(self.target, headers=forwarded, max_msg_size=0, autoclose=False)
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=502, text=f"harness record: cannot reach the handler at {self.target}: {exc}")
        twilio = web.WebSocketResponse(max_msg_size=0, autoclose=False)
        await twilio.prepare(request)
        call = TwilioCallRecorder()
        self._active.append(call)
        try:
            await self._relay(twilio, handler, call)
        finally:
            if call in self._active:  # not already written by ``write_in_flight``
                self._active.remove(call)
            self._forget_old_streams()
        return twilio

    async def _relay(self, twilio: web.WebSocketResponse, handler: aiohttp.ClientWebSocketResponse,
                     call: TwilioCallRecorder) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._pipe(twilio, handler, call.from_twilio, call.line_ended))
            group.create_task(self._pipe(handler, twilio, call.from_handler, call.handler_closed))
        if call.ulaw:
            await self._handler_done_with_rtzr(call)
            mine = [s for s in self.rtzr_streams if s.opened >= call.started - 1.0]  # opened during this call
            failures = tuple(f.status for f in self.rtzr_auth_failures if f.at >= call.started - 1.0)
            self._write(call, mine, failures)

    async def _handler_done_with_rtzr(self, call: TwilioCallRecorder) -> None:
        """The handler's last final comes after the hang-up (EOS), maybe on a stream it opens after it (a
        reconnect from a stall): wait until every stream of the call has ended and no new one opened for
        ``RECONNECT_GRACE_S`` (``STREAM_END_WAIT_S`` at most)."""
        if self.rtzr is None:
            return
        deadline = time.monotonic() + STREAM_END_WAIT_S

        def mine() -> list[RecordedStream]:
            return [s for s in self.rtzr_streams if s.opened >= call.started - 1.0]

        async with self.rtzr.changed:
            while True:
                seen = len(mine())
                try:
                    await asyncio.wait_for(self.rtzr.changed.wait_for(lambda: all(s.done.is_set() for s in mine())),
                                           max(0.0, deadline - time.monotonic()))
                    await asyncio.wait_for(self.rtzr.changed.wait_for(lambda: len(mine()) > seen),
                                           min(RECONNECT_GRACE_S, max(0.0, deadline - time.monotonic())))
                except asyncio.TimeoutError:
                    break
        if not all(s.done.is_set() for s in mine()):
            log.warning("event=rtzr_streams_still_open count=%d", sum(not s.done.is_set() for s in mine()))

    def _forget_old_streams(self) -> None:
        """RTZR streams no call in progress can claim are let go (each holds its audio)."""
        oldest = min((c.started for c in self._active), default=time.monotonic()) - 1.0
        self.rtzr_streams[:] = [s for s in self.rtzr_streams if not s.done.is_set() or s.opened >= oldest]
        self.rtzr_auth_failures[:] = [f for f in self.rtzr_auth_failures if f.at >= oldest]

    @staticmethod
    async def _pipe(source, sink, record: Callable[[str], None], ended: Callable[[], None] | None = None) -> None:
        async for msg in source:
            if msg.type == WSMsgType.TEXT:
                record(msg.data)
                if not sink.closed:
                    await sink.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY and not sink.closed:
                await sink.send_bytes(msg.data)
        if ended is not None:
            ended()
        if not sink.closed:
            await sink.close(code=source.close_code or 1000)

    def write_in_flight(self) -> list[tuple[TwilioCallRecorder, Path | None]]:
        """The recording is stopping (Ctrl-C, SIGTERM) with calls in flight: each is written as far as it got, its
        description saying it was cut short, rather than dropped (None: it had no caller audio yet, or the mode
        writes nothing)."""
        cut = []
        for call in list(self._active):
            self._active.remove(call)
            if not call.ulaw:
                cut.append((call, None))
                continue
            mine = [s for s in self.rtzr_streams if s.opened >= call.started - 1.0]
            failures = tuple(f.status for f in self.rtzr_auth_failures if f.at >= call.started - 1.0)
            cut.append((call, self._write(call, mine, failures, cut_short=True)))
        return cut

    def _write(self, call: TwilioCallRecorder, streams: list[RecordedStream], auth_failures: tuple[int, ...],
               cut_short: bool = False) -> Path | None:
        directory = fixture_directory(self.out_dir, self.name, self.mode)
        if directory is None:
            log.info("event=not_recorded mode=%s name=%s", self.mode, self.name)
            return None
        doc, ulaw = call.to_fixture(directory.name, streams, auth_failures=auth_failures, mask_caller=self.mask_caller,
                                    redact_kinds=self.redact)
        if cut_short:
            doc["description"] = ("Recorded by harness record, cut short when the recording was stopped: the caller "
                                  "had not hung up (the replay hangs up where the recording ends).")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "caller.wav").write_bytes(mulaw_wav_bytes(ulaw))
        (directory / "call.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        self.written.append(directory)
        self.recordings.put_nowait(directory)
        log.info("event=recorded fixture=%s audio_ms=%s rtzr_results=%d", directory, doc["audio"]["duration_ms"],
                 len(doc["recognizer"]["recorded"]))
        return directory


@asynccontextmanager
async def aicall_between_recorders(workdir: Path, name: str = "rec") -> AsyncIterator[tuple[FakeServices, AppServer, str, TwilioRecordingProxy]]:
    """aicall on the fakes with both recorders around it (``fakertzr record`` before the fake RTZR, ``harness
    record`` before aicall): what the round trip is proven with. Yields (fakes, aicall's server, aicall's media
    URL, the Twilio-side proxy whose ``written`` fixtures appear under ``workdir/recorded``)."""
    from aicall.app import create_app
    from aicall.config import load_settings
    from aicall.store import CallStore

    async with running_fakes() as fakes, RecordingProxy(fakes.rtzr_url, None) as rtzr_proxy:
        env = {**fakes.env(), "RTZR_API_BASE": rtzr_proxy.base_url}
        store = CallStore(workdir / "calls.db")
        try:
            async with AppServer(create_app(load_settings(env, env_file=None), store)) as app:
                url = f"{app.ws_url}/twilio/media"
                async with TwilioRecordingProxy(url, workdir / "recorded", name=name, rtzr=rtzr_proxy) as proxy:
                    yield fakes, app, url, proxy
        finally:
            store.close()
