"""A call fixture as the harness uses it: the recognizer script plus the caller, LLM, TTS and expectations."""

from __future__ import annotations

import dataclasses

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakertzr.errors import FakeRtzrError
from harness.errors import FixtureError
from fakertzr.fixture import CallScript, load_fixture


@dataclass(frozen=True)
class Reaction:
    """An utterance the caller times on the bot (``caller.reacts`` in call.json): it starts ``ms`` of caller
    audio after the bot's audio for turn ``turn`` begins (``bot_starts``) or has finished playing (``bot_ends``)."""

    utterance: int  # 0-based index into the script's utterances
    after: str  # "bot_starts" | "bot_ends"
    turn: int  # 1-based: the reply to the caller's turn ``turn`` (utterance ``turn - 1``)
    ms: float = 0.0
    wait_ms: float = 15000.0  # at most this much caller audio waited for the bot; then the caller speaks anyway


@dataclass(frozen=True)
class CallerBehaviour:
    hangup_ms: float | None = None
    hangup_after_turns: int | None = None
    vanish: bool = False
    dtmf: tuple[tuple[float, str], ...] = ()
    reacts: tuple[Reaction, ...] = ()  # utterances timed on the bot, not on the audio's clock


STARTS = ("stream", "webhook", "outbound")  # ``start`` in call.json: how the call starts at the fake Twilio


@dataclass(frozen=True)
class CallFixture:
    directory: Path
    script: CallScript
    caller: CallerBehaviour
    llm: dict[str, Any] = field(default_factory=dict)
    tts: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    handler_without: tuple[str, ...] = ()  # env variables the handler is started without (failure 1)
    start: str | None = None  # one of ``STARTS``; None: as the run's options say (--voice, --place, else the stream)

    @property
    def name(self) -> str:
        return self.script.name


def load_call(directory: str | Path) -> CallFixture:
    """Load and validate ``<directory>/call.json``; a ``FixtureError`` names the file and field."""
    try:
        script = load_fixture(directory)
    except FakeRtzrError as exc:  # fakertzr's part of the fixture (the RTZR script, the audio)
        raise FixtureError(str(exc)) from exc
    raw = script.raw
    caller = raw.get("caller", {})
    reacts = tuple(_reaction(r, i, len(script.utterances), Path(directory) / "call.json")
                   for i, r in enumerate(caller.get("reacts", ())))
    if len({r.utterance for r in reacts}) < len(reacts):
        raise FixtureError(f"{Path(directory) / 'call.json'}: caller.reacts: one utterance reacts twice")
    start = raw.get("start")
    if start is not None and start not in STARTS:  # the schema says so first; this holds for any loader
        raise FixtureError(f"{Path(directory) / 'call.json'}: start: {start!r} is not one of {', '.join(STARTS)}")
    return CallFixture(
        directory=Path(directory),
        script=script,
        caller=CallerBehaviour(
            hangup_ms=caller.get("hangup_ms"),
            hangup_after_turns=caller.get("hangup_after_turns"),
            vanish=caller.get("vanish", False),
            dtmf=tuple((d["at_ms"], d["digit"]) for d in caller.get("dtmf", ())),
            reacts=reacts,
        ),
        llm=raw.get("llm", {}),
        tts=raw.get("tts", {}),
        expect=raw.get("expect", {}),
        handler_without=tuple(raw.get("handler", {}).get("without_env", ())),
        start=start,
    )


def with_turn_budget(fixture: CallFixture, max_turn_ms: float | None) -> CallFixture:
    """The fixture with a latency budget per turn (``--max-turn-ms``: it overrides the fixture's own)."""
    if max_turn_ms is None:
        return fixture
    return dataclasses.replace(fixture, expect={**fixture.expect, "max_turn_ms": max_turn_ms})


def _reaction(spec: dict[str, Any], i: int, utterances: int, source: Path) -> Reaction:
    """One ``caller.reacts`` entry (the schema has checked its shape), checked against the utterances."""
    where = f"{source}: caller.reacts[{i}]"
    if spec["utterance"] > utterances:
        raise FixtureError(f"{where}.utterance: {spec['utterance']} but the call has {utterances} utterance(s)")
    if spec["turn"] >= spec["utterance"]:
        raise FixtureError(f"{where}.turn: {spec['turn']} must come before the utterance that reacts to its reply "
                            f"({spec['utterance']})")
    return Reaction(spec["utterance"] - 1, spec["after"], spec["turn"], float(spec.get("ms", 0.0)),
                    float(spec.get("wait_ms", 15000.0)))


def save_call(script_doc: dict[str, Any], audio_ulaw: bytes, directory: str | Path) -> Path:
    """Write a fixture (call.json + caller.wav) that ``load_call`` reads back: used to keep the
    scenario a fuzzer found, so it can be replayed and added to fixtures/calls/."""
    from callaudio.wavfile import mulaw_wav_bytes

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "caller.wav").write_bytes(mulaw_wav_bytes(audio_ulaw))
    doc = {**script_doc, "audio": {**script_doc.get("audio", {}), "file": "caller.wav"}}
    (out / "call.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    load_call(out)
    return out


def bundled_calls() -> Path:
    """The fixtures installed with the harness (``fixtures/calls`` of this project)."""
    from importlib.resources import files

    return Path(str(files("harness.bundled") / "calls"))


def default_fixtures_dir() -> Path:
    """``fixtures/calls`` of the current directory when it has one (a project's own), else the bundled calls."""
    local = Path("fixtures/calls")
    return local if any(local.glob("*/call.json")) else bundled_calls()


def resolve_fixture(name_or_path: str | Path) -> Path:
    """A fixture directory given as a path, or by the name of a bundled call (``failure2-recognizer-closes-1000``)."""
    path = Path(name_or_path)
    bundled = bundled_calls() / path.name
    if not (path / "call.json").exists() and len(path.parts) == 1 and (bundled / "call.json").exists():
        return bundled
    return path


def discover(root: str | Path, name_filter: str | list[str] | None = None) -> list[Path]:
    """Fixture directories under ``root`` (each holds a call.json), optionally those whose name holds any of
    ``name_filter``."""
    names = [name_filter] if isinstance(name_filter, str) else list(name_filter or ())
    found = sorted(p.parent for p in Path(root).glob("*/call.json"))
    return [p for p in found if not names or any(n in p.name for n in names)]
