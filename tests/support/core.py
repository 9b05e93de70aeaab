"""Drive the sans-I/O stream session directly, as the server would, and collect its actions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fakertzr.actions import Action, SendResult
from fakertzr.align import AudioLocator
from fakertzr.faults import Fault
from fakertzr.fixture import CallScript
from fakertzr.params import parse_stream_params
from fakertzr.recognizer_script import ScriptRecognizer
from fakertzr.results import ResultBuilder
from fakertzr.session import StreamSession

from .synth import encode


@dataclass
class CoreRun:
    actions: list[Action] = field(default_factory=list)

    @property
    def results(self) -> list[dict]:
        return [a.result.payload for a in self.actions if isinstance(a, SendResult)]

    @property
    def finals(self) -> list[dict]:
        return [r for r in self.results if r["final"]]

    @property
    def final_texts(self) -> list[str]:
        return [r["alternatives"][0]["text"] for r in self.finals]


def new_session(script: CallScript, encoding: str = "LINEAR16", epd_ms: float = 500.0,
                faults: list[Fault] | None = None, sample_rate: int = 8000) -> StreamSession:
    params = parse_stream_params({"sample_rate": str(sample_rate), "encoding": encoding})
    recognizer = ScriptRecognizer([script], [AudioLocator(script.audio)])
    return StreamSession(params, recognizer, ResultBuilder(epd_ms), faults or [])


def stream(session: StreamSession, samples: np.ndarray, encoding: str = "LINEAR16",
           chunk_bytes: int = 320, eos: bool = True, run: CoreRun | None = None) -> CoreRun:
    run = run or CoreRun()
    data = encode(samples, encoding)
    for i in range(0, len(data), chunk_bytes):
        run.actions += session.receive_audio(data[i : i + chunk_bytes])
    if eos:
        run.actions += session.receive_text("EOS")
    return run
