"""Synthetic caller audio for drawn calls (``harness.fuzz.strategies``) and property tests: noise-burst "speech"
over a phone-line noise floor.

Any audio that does not repeat itself aligns (fakertzr finds where a stream lies in the call by its
audio); these calls are cheap to make by the thousand and their word timing is exact by construction.
The n-th word of a call is the text ``w{n}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fakertzr.fixture import CallScript, script_from_dict

RATE = 8000


@dataclass(frozen=True)
class SynthUtterance:
    pause_before_ms: int
    word_ms: tuple[int, ...]


def synth_call(seed: int, utterances: list[SynthUtterance], tail_ms: int = 1500,
               partial_every_ms: int | None = None, prefix: str = "w") -> CallScript:
    """A call whose n-th word is the text ``w{n}`` (``{prefix}{n}``), spoken as loud noise over its exact span.

    ``partial_every_ms`` scripts a partial at that cadence (the words begun so far) instead of
    the recognizer's default of one partial per word; ``prefix`` tells calls played at once apart by
    their words (``l2w0``: call 2's first word)."""
    rng = np.random.default_rng(seed)
    pieces, doc_utts, cursor, n = [], [], 0, 0
    for utt in utterances:
        pieces.append(rng.normal(0, 33, utt.pause_before_ms * RATE // 1000))
        cursor += utt.pause_before_ms
        words, start = [], cursor
        for ms in utt.word_ms:
            envelope = np.hanning(ms * RATE // 1000) * 0.5 + 0.5
            pieces.append(rng.normal(0, 4000, ms * RATE // 1000) * envelope)
            words.append({"text": f"{prefix}{n}", "start_ms": cursor, "end_ms": cursor + ms})
            cursor += ms
            n += 1
        utt_doc = {"text": " ".join(w["text"] for w in words), "start_ms": start, "end_ms": cursor, "words": words}
        if partial_every_ms:
            utt_doc["partials"] = [{"at_ms": at, "text": " ".join(w["text"] for w in words if w["start_ms"] <= at)}
                                   for at in range(start + partial_every_ms, cursor, partial_every_ms)]
        doc_utts.append(utt_doc)
    pieces.append(rng.normal(0, 33, tail_ms * RATE // 1000))
    audio = np.clip(np.round(np.concatenate(pieces)), -32768, 32767).astype(np.int16)
    doc = {"version": 1, "name": f"synth-{seed}", "audio": {"file": "caller.wav"}, "utterances": doc_utts}
    return script_from_dict(doc, audio)
