"""Render the prompts shipped with aicall (espeak-ng, Korean voice) as raw 8 kHz mu-law.

    python -m aicall.prompts.make_prompts

Only authoring needs espeak-ng; the committed .ulaw files are what aicall plays.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aicall.tts import EspeakTts

PROMPTS = {
    "apology_ko.ulaw": "죄송합니다. 지금은 음성 인식에 연결할 수 없습니다. 잠시 후 다시 걸어 주세요.",
}


async def render() -> None:
    here = Path(__file__).parent
    for name, text in PROMPTS.items():
        audio = b"".join([chunk async for chunk in EspeakTts("ko", 150).synthesize(text)])
        (here / name).write_bytes(audio)
        print(f"wrote {here / name} ({len(audio) / 8000:.2f} s)")


if __name__ == "__main__":
    asyncio.run(render())
