"""Digital silence held in the middle of a stream (a caller who waits for the bot, a muted line) has no place
in the call: fakertzr must not place it over audio it already heard and transcribe those words again, nor
let it weaken the match of the speech that follows (a fake Twilio that holds its caller found both)."""

from __future__ import annotations

import numpy as np
import pytest

from fakertzr.align import AudioLocator
from fakertzr.events import HeardWord
from fakertzr.recognizer_script import ScriptRecognizer
from harness.fixture import bundled_calls, load_call


def heard(parts: list[np.ndarray]) -> tuple[list[str], list[dict]]:
    script = load_call(bundled_calls() / "barge-in").script
    recognizer = ScriptRecognizer([script], [AudioLocator(script.audio)])
    words = []
    for part in parts:
        for i in range(0, len(part), 160):
            words += [e.text for e in recognizer.feed(part[i : i + 160]) if isinstance(e, HeardWord)]
    return words, recognizer.alignment_log


@pytest.mark.parametrize("held_ms", [300, 3000, 8000])
def test_silence_held_before_an_utterance_is_unheard_and_the_words_after_it_are_heard_once(held_ms):
    audio = load_call(bundled_calls() / "barge-in").script.audio
    hold = 4060 * 8  # in the pause before the second utterance (4160 ms)
    words, log = heard([audio[:hold], np.zeros(held_ms * 8, np.int16), audio[hold:]])
    assert words == ["요금제", "좀", "알려", "주세요", "아니요", "잠깐만요", "해지하고", "싶어요"]
    placed = [a for a in log if a["event"] == "aligned"]
    assert placed[-1]["call_ms"] == 4060 and placed[-1]["conn_ms"] == 4060 + held_ms and placed[-1]["exact"]
