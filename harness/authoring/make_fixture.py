"""Authoring call fixtures: from a text script spoken by espeak-ng, or from any audio file plus its transcript.

Only authoring needs espeak-ng and sox (scripts) or, for audio libsndfile cannot read (m4a, ...),
ffmpeg and pydub; WAV, FLAC, Ogg and MP3 need no external program. The fixtures it writes are
committed and replayed without any of them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from callaudio import AudioFormatError, AudioTooLong
from callaudio.decode import quiet_stderr, read_channels, to_8k
from callaudio.g711 import pcm16_to_ulaw
from callaudio.wavfile import mulaw_wav_bytes, read_wav
from harness.errors import FixtureError
from fakertzr.fixture import load_fixture, validate_call_json
from fakertzr.validation import number_text

RATE = 8000
FRAME = RATE // 100  # 10 ms analysis frames

# What a --script spec may ask for: each is far beyond any real call, and keeps a hostile spec from
# allocating terabytes of silence or speaking for hours.
MAX_PAUSE_MS = 60_000  # lead_in_ms and each pause_after_ms
SPEED_RANGE = (80, 450)  # espeak-ng's words a minute
NOISE_RANGE = (-120, 0)  # dBFS
MAX_SEED = 2**32 - 1
MAX_UTTERANCES = 100
MAX_TEXT_CHARS = 500  # one utterance's
MAX_SPEC_CHARS = 10_000  # all utterances' (each word is also spoken alone, to time it)
MAX_CALL_MS = 30 * 60_000  # the whole spoken call; also the longest --audio / --twilio-recording
MAX_DECODED_SAMPLES = 1 << 26  # frames x channels decoded from --audio (512 MiB as float64): 30 min of 16 kHz stereo
VOICE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,39}(/[A-Za-z0-9][A-Za-z0-9_+-]{0,39})?")  # ko, en-us, en+f3, gmw/en
PASSED_ON = ("description", "recognizer", "faults", "caller", "llm", "tts", "expect", "together")  # into call.json


def speak(text: str, voice: str, speed: int, workdir: Path) -> np.ndarray:
    """Speak ``text`` with espeak-ng and return 8 kHz int16 samples. The text goes in on stdin, never in
    espeak-ng's arguments, where ``-f/etc/passwd`` would be an option (read that file aloud)."""
    raw, resampled = workdir / "raw.wav", workdir / "8k.wav"
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), "--stdin"], text.encode("utf-8"))
    # -D: no dither (sox dithers with random noise by default), so authoring is reproducible
    _run(["sox", "-D", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(resampled)])
    return np.frombuffer(read_wav(resampled).data, dtype="<i2").astype(np.int16)


def _run(argv: list[str], stdin: bytes | None = None) -> None:
    """Run an authoring tool; its failure is one line naming it (an unknown voice, say), not a traceback."""
    try:
        subprocess.run(argv, input=stdin, check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or exc.stdout or b"").decode("utf-8", "replace").strip().splitlines()
        raise FixtureError(f"{argv[0]} failed (exit {exc.returncode}): {said[-1][:200] if said else 'no message'}"
                            + (f" (voice {argv[2]!r})" if argv[0] == "espeak-ng" else "")) from None


def voiced_bounds(samples: np.ndarray, threshold_dbfs: float = -45.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames whose energy is above the threshold."""
    frames = samples[: len(samples) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    rms = np.sqrt(np.mean(frames**2, axis=1)) / 32768.0
    loud = np.nonzero(20 * np.log10(np.maximum(rms, 1e-9)) > threshold_dbfs)[0]
    if len(loud) == 0:
        raise FixtureError("no audible speech in the audio (above -45 dBFS)")
    return int(loud[0] * FRAME), int((loud[-1] + 1) * FRAME)


def load_spec(spec_path: Path) -> dict:
    """A source spec, checked before anything is spoken: errors name the file and what to fix, and every
    number has a type and a range (``MAX_*`` above)."""
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixtureError(f"{spec_path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise FixtureError(f"{spec_path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise FixtureError(f"{spec_path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise FixtureError(f"{spec_path}: not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise FixtureError(f"{spec_path}: must be a JSON object with 'name' and 'utterances'")
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise FixtureError(f"{spec_path}: 'name' is missing (the fixture's name, e.g. \"my-call\")")
    utterances = spec.get("utterances")
    if not isinstance(utterances, list) or not utterances:
        raise FixtureError(f"{spec_path}: 'utterances' must be a non-empty list of {{\"text\": ...}}")
    if len(utterances) > MAX_UTTERANCES:
        raise FixtureError(f"{spec_path}: 'utterances' has {len(utterances)} items; at most {MAX_UTTERANCES}")
    voice = spec.get("voice", "ko")
    if not isinstance(voice, str) or not VOICE.fullmatch(voice):
        raise FixtureError(f"{spec_path}: voice must be an espeak-ng voice name (letters, digits, '-', '+', '_', "
                            f"e.g. \"ko\" or \"en-us\"), got {_shown(voice)}")
    _in_range(spec_path, "lead_in_ms", spec.get("lead_in_ms", 500), (0, MAX_PAUSE_MS), "a number of milliseconds")
    _in_range(spec_path, "speed", spec.get("speed", 150), SPEED_RANGE, "a whole number of words a minute", whole=True)
    _in_range(spec_path, "noise_dbfs", spec.get("noise_dbfs", -60), NOISE_RANGE, "a number of dBFS")
    _in_range(spec_path, "seed", spec.get("seed", 1), (0, MAX_SEED), "a whole number", whole=True)
    total_ms = spec.get("lead_in_ms", 500)
    for i, item in enumerate(utterances):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise FixtureError(f"{spec_path}: utterances[{i}] needs a non-empty 'text'")
        if len(item["text"]) > MAX_TEXT_CHARS:
            raise FixtureError(f"{spec_path}: utterances[{i}].text has {len(item['text'])} characters; "
                                f"at most {MAX_TEXT_CHARS}")
        total_ms += _in_range(spec_path, f"utterances[{i}].pause_after_ms", item.get("pause_after_ms", 1500),
                              (0, MAX_PAUSE_MS), "a number of milliseconds")
    if (chars := sum(len(item["text"]) for item in utterances)) > MAX_SPEC_CHARS:
        raise FixtureError(f"{spec_path}: the utterances' texts add up to {chars} characters; "
                            f"at most {MAX_SPEC_CHARS}")
    if total_ms > MAX_CALL_MS:
        raise FixtureError(f"{spec_path}: the lead-in and the pauses add up to {total_ms:.0f} ms, over the "
                            f"{MAX_CALL_MS} ms (30 minutes) a call may last")
    # what goes into call.json as it is: the fixture schema's checks (and maxima) now, before anything is spoken
    validate_call_json({"version": 1, "name": spec["name"], "audio": {"file": "caller.wav"}, "utterances": [],
                        **{key: spec[key] for key in PASSED_ON if key in spec}}, str(spec_path))
    return spec


def _in_range(spec_path: Path, field: str, value: Any, bounds: tuple[int, int], what: str, *,
              whole: bool = False) -> float:
    """``value`` when it is a (whole) number within ``bounds``; else an error naming the field and the range."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (number and not (isinstance(value, float) and not math.isfinite(value)) and bounds[0] <= value <= bounds[1]
            and (not whole or isinstance(value, int) or value.is_integer())):
        return value
    raise FixtureError(f"{spec_path}: {field} must be {what} from {bounds[0]} to {bounds[1]}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A value as an error message shows it: ``1e+12``, ``'fast'``, never four hundred digits."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # as the spec wrote it
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return number_text(value)
    return repr(value)[:60]


def build(spec_path: Path, out_dir: Path | None = None) -> Path:
    """Speak a source spec with espeak-ng into ``out_dir`` (default: beside the spec)."""
    spec = load_spec(spec_path)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise FixtureError(f"{tool} is not installed (apt-get install espeak-ng sox); only authoring needs it")
    out_dir = out_dir or spec_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    voice, speed = spec.get("voice", "ko"), int(spec.get("speed", 150))
    rng = np.random.default_rng(int(spec.get("seed", 1)))
    noise_rms = 32768.0 * 10 ** (float(spec.get("noise_dbfs", -60)) / 20)

    pieces: list[np.ndarray] = [np.zeros(int(spec.get("lead_in_ms", 500)) * RATE // 1000, np.int16)]
    utterances = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for i, item in enumerate(spec["utterances"]):
            clip = speak(item["text"], voice, speed, workdir)
            first, last = voiced_bounds(clip)
            clip = clip[first:last]
            offset = sum(len(p) for p in pieces)
            pause = int(item.get("pause_after_ms", 1500)) * RATE // 1000
            if offset + len(clip) + pause > MAX_CALL_MS * RATE // 1000:  # speech's length is known once spoken
                raise FixtureError(f"{spec_path}: utterances[{i}]: the spoken call would be over the 30 minutes "
                                    f"a call may last ({(offset + len(clip) + pause) / RATE / 60:.1f} minutes so far)")
            words = item["text"].split()
            lengths = []
            for word in words:
                w = speak(word, voice, speed, workdir)
                a, b = voiced_bounds(w)
                lengths.append(b - a)
            scale = len(clip) / sum(lengths)
            spans, cursor = [], 0.0
            for word, length in zip(words, lengths):
                start, cursor = cursor, cursor + length * scale
                spans.append({
                    "text": word,
                    "start_ms": round((offset + start) * 1000 / RATE),
                    "end_ms": round((offset + cursor) * 1000 / RATE),
                })
            utterances.append({
                "text": item["text"],
                "start_ms": round(offset * 1000 / RATE),
                "end_ms": round((offset + len(clip)) * 1000 / RATE),
                "words": spans,
            })
            pieces.append(clip)
            pieces.append(np.zeros(pause, np.int16))

    audio = np.concatenate(pieces).astype(np.float64)
    audio += rng.normal(0.0, noise_rms, len(audio))
    samples = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
    (out_dir / "caller.wav").write_bytes(mulaw_wav_bytes(pcm16_to_ulaw(samples), RATE))

    call = {
        "version": 1,
        "name": spec["name"],
        "description": spec.get("description", ""),
        "audio": {
            "file": "caller.wav",
            "encoding": "MULAW",
            "sample_rate": RATE,
            "duration_ms": round(len(samples) * 1000 / RATE),
        },
        "utterances": utterances,
        "recognizer": spec.get("recognizer", {}),
        "faults": spec.get("faults", []),
        **{key: spec[key] for key in ("caller", "llm", "tts", "expect", "together") if key in spec},
        "authoring": {
            "tool": "fixtures/authoring/make_espeak_fixture.py",
            "source": spec_path.name,
            "voice": f"espeak-ng -v {voice} -s {speed}",
            "times": "utterance bounds measured from the audio (-45 dBFS, 10 ms frames); "
                     "word spans scaled from each word's own synthesis length",
        },
    }
    (out_dir / "call.json").write_text(json.dumps(call, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    load_fixture(out_dir)  # what we wrote must load
    return out_dir


def read_audio(path: Path, channel: int | None = None) -> tuple[np.ndarray, int]:
    """Mono samples on the int16 scale and the rate: WAV, FLAC, Ogg and MP3 through libsndfile (no
    external program); other formats (m4a, ...) through pydub, which needs ffmpeg. ``channel`` (from 1)
    takes one channel; otherwise the channels are mixed."""
    channels, rate = _read_channels(path)
    if channel is None:
        return channels.mean(axis=1), rate
    if not 1 <= channel <= channels.shape[1]:
        raise FixtureError(f"{path}: has {channels.shape[1]} channel(s), no channel {channel}")
    return channels[:, channel - 1], rate


def _read_channels(path: Path) -> tuple[np.ndarray, int]:
    """All channels, refusing (from the header, before decoding) audio over 30 minutes or with more samples than
    ``MAX_DECODED_SAMPLES``: a 1 MB FLAC of 10 h of silence would decode to gigabytes."""
    if not path.is_file():
        raise FixtureError(f"{path}: cannot read: no such file")
    rate, channels = _header(path) or (0, 0)
    max_seconds = MAX_CALL_MS / 1000
    if rate:
        max_seconds = min(max_seconds, MAX_DECODED_SAMPLES / (rate * channels))
    try:
        # libsndfile's formats are judged from the header; for the others (m4a, ...) pydub's ffmpeg decodes at
        # most max_seconds + 1 s, at whatever rate and channels the file has (it cannot tell us before decoding)
        return read_channels(path, str(path), max_seconds=max_seconds)
    except AudioTooLong as exc:
        if exc.seconds > MAX_CALL_MS / 1000:
            raise FixtureError(f"{path}: {exc.seconds / 60:.0f} minutes of audio; make-fixture takes at most "
                                f"{MAX_CALL_MS // 60_000} minutes (cut it first, e.g. sox IN OUT trim 0 30:00)"
                                ) from None
        raise FixtureError(f"{path}: {exc.seconds:.0f} s of {channels} channel(s) at {rate} Hz is more than "
                            f"make-fixture decodes ({MAX_DECODED_SAMPLES} samples); make it 8 kHz first "
                            "(e.g. sox IN -r 8000 OUT)") from None
    except AudioFormatError as exc:
        raise FixtureError(str(exc)) from None


def _header(path: Path) -> tuple[int, int] | None:
    """(sample rate, channels) from the header, when libsndfile reads the format; None otherwise."""
    import soundfile  # noqa: PLC0415 - libsndfile loads on first use

    try:
        with quiet_stderr():
            info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return None
    return (info.samplerate, info.channels) if info.samplerate > 0 and info.channels > 0 else None


def from_audio(audio_path: Path, transcript: list[str] | None, name: str, out_dir: Path, *, gap_ms: int = 300,
               caller_channel: int | None = None) -> Path:
    """A fixture from recorded audio (any format pydub reads) and one transcript line per utterance.

    The audio becomes mono 8 kHz mu-law; utterances are the stretches of speech an energy VAD
    finds (pauses shorter than ``gap_ms`` do not split one), matched to the lines in order. Without
    a transcript they are named 발화 1, 발화 2, ... (and nothing is expected of the finals).

    ``caller_channel``: a dual-channel call recording (Twilio's ``RecordingChannels=dual``); the caller is
    that channel, and the other channel's stretches of speech are kept as a reference of when the bot spoke.
    """
    mono, rate = read_audio(audio_path, caller_channel)
    samples = to_8k(mono, rate)
    spans = speech_spans(samples, gap_ms)
    lines = [line.strip() for line in transcript if line.strip()] if transcript is not None else None
    if lines is not None and len(spans) != len(lines):
        raise FixtureError(f"{audio_path}: found {len(spans)} stretch(es) of speech but {len(lines)} transcript line(s); "
                            f"try another --gap-ms (now {gap_ms})")
    texts = lines if lines is not None else [f"발화 {i + 1}" for i in range(len(spans))]
    bot_spans = None
    if caller_channel is not None:
        other = 2 if caller_channel == 1 else 1
        bot, bot_rate = read_audio(audio_path, other)
        bot_spans = [[round(a / 8), round(b / 8)] for a, b in speech_spans(to_8k(bot, bot_rate), gap_ms)]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "caller.wav").write_bytes(mulaw_wav_bytes(pcm16_to_ulaw(samples), RATE))
    call = {
        "version": 1, "name": name, "description": f"From {audio_path.name} and its transcript.",
        "audio": {"file": "caller.wav", "encoding": "MULAW", "sample_rate": RATE, "duration_ms": round(len(samples) / 8)},
        "utterances": [{"text": line, "start_ms": round(a / 8), "end_ms": round(b / 8)} for line, (a, b) in zip(texts, spans)],
        "expect": {"finals": lines} if lines is not None else {},
        "authoring": {"tool": "harness make-fixture " + ("--twilio-recording" if caller_channel else "--audio"),
                      "source": audio_path.name,
                      "times": f"utterance bounds from an energy VAD (-45 dBFS, pauses under {gap_ms} ms joined)",
                      **({"caller_channel": caller_channel, "bot_speech_ms": bot_spans} if bot_spans is not None else {})},
    }
    (out_dir / "call.json").write_text(json.dumps(call, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    load_fixture(out_dir)
    return out_dir


def speech_spans(samples: np.ndarray, gap_ms: int, threshold_dbfs: float = -45.0) -> list[tuple[int, int]]:
    """Sample ranges of speech: 10 ms frames above the threshold, with shorter pauses joined."""
    n = len(samples) // FRAME
    if n == 0:
        return []
    frames = samples[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    loud = 20 * np.log10(np.maximum(np.sqrt(np.mean(frames**2, axis=1)) / 32768.0, 1e-9)) > threshold_dbfs
    spans: list[list[int]] = []
    for i in np.nonzero(loud)[0]:
        if spans and i - spans[-1][1] <= gap_ms // 10:
            spans[-1][1] = i + 1
        else:
            spans.append([int(i), int(i) + 1])
    return [(a * FRAME, b * FRAME) for a, b in spans if (b - a) >= 5]  # at least 50 ms
