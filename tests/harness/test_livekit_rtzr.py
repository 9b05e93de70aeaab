"""LiveKit's RTZR plugin (``livekit-plugins-rtzr``), unchanged, against fakertzr through the steering mode.

The plugin hard-codes ``https://openapi.vito.ai`` and ``wss://openapi.vito.ai`` and opens its own
``aiohttp.ClientSession()``, which ignores the proxy variables: only the resolver hook
(``harness/fakes/steer_hooks/sitecustomize.py``) can bring it to the fakes. Its ``STT.stream()`` is fed a
bundled call's caller audio in its own process, given nothing but the fakes' environment, and must hear the
call's three utterances from the fake, with its own streaming parameters journaled there."""

from __future__ import annotations

import sys

import pytest

from harness.fakes.services import running_fakes
from harness.fixture import bundled_calls, load_call
from tests.support.client_probe import hard_coding_env, probe

pytest.importorskip("livekit.plugins.rtzr", reason="livekit-plugins-rtzr is in '.[dev]'")

CALL = "seed-three-turns"

LIVEKIT_STT = r'''
import asyncio, json, sys
import soundfile
from livekit import rtc
from livekit.agents import stt
from livekit.plugins.rtzr import STT

async def main(path):
    audio, rate = soundfile.read(path, dtype="int16")
    engine = STT(sample_rate=rate)
    stream = engine.stream()
    for i in range(0, len(audio), rate // 50):  # 20 ms frames, as a room's track delivers them
        chunk = audio[i:i + rate // 50]
        stream.push_frame(rtc.AudioFrame(chunk.tobytes(), rate, 1, len(chunk)))
    stream.end_input()
    finals = []
    async def read():
        async for event in stream:
            if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(event.alternatives[0].text)
    try:
        await asyncio.wait_for(read(), 30)
    except Exception as exc:
        finals.append(f"{type(exc).__name__}: {exc}"[:300])
    await stream.aclose()
    await engine.aclose()
    print(json.dumps({"finals": finals}, ensure_ascii=False))

asyncio.run(main(sys.argv[1]))
'''


@pytest.mark.timeout(120)
async def test_livekits_rtzr_plugin_reaches_fakertzr_through_the_steering_mode() -> None:
    fixture = load_call(bundled_calls() / CALL)
    async with running_fakes(steer=True) as fakes:
        assert fakes.proxy is not None
        fakes.rtzr.load_fixture(fixture.directory)
        env = hard_coding_env(fakes)
        env.update({"RTZR_CLIENT_ID": fakes.rtzr.config.client_id, "RTZR_CLIENT_SECRET": fakes.rtzr.config.client_secret})
        got = await probe(sys.executable, "-c", LIVEKIT_STT, str(fixture.directory / "caller.wav"), env=env)
        assert got["finals"] == [u.text for u in fixture.script.utterances], got
        assert [(s.host, s.via) for s in fakes.proxy.steered] == [("openapi.vito.ai", "resolver")]  # one session
        assert fakes.proxy.refused == []
        [stream] = fakes.rtzr.journal.accepted()
        assert (stream.query["encoding"], stream.query["sample_rate"], stream.query["model_name"]) \
            == ("LINEAR16", "8000", "sommers_ko")  # the plugin's own parameters, as it sent them
