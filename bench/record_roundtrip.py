"""Record every bundled call through both recorders, replay each recording, compare (a measurement, not a test).

    python bench/record_roundtrip.py [--pace 4] [--only NAME]

For each fixture: aicall answers it through ``harness record`` and ``fakertzr record`` (the original run);
the recording gets the fixture's own LLM, TTS and expectations (a recording of a real call replays with the
harness's default fakes instead) and is replayed against aicall. One row per fixture: same finals? same
verdicts? the largest difference in turn latency (speech end -> first bot audio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aicall.app import wait_for_calls_to_end  # noqa: E402
from bench.benchlib import report  # noqa: E402
from harness.fixture import discover, load_call  # noqa: E402
from harness.authoring.recorder import aicall_between_recorders  # noqa: E402
from harness.replay.runner import ErrorLog, replay  # noqa: E402


async def round_trip(directory: Path, pace: float) -> dict:
    fixture = load_call(directory)
    with tempfile.TemporaryDirectory() as tmp:
        async with aicall_between_recorders(Path(tmp), "rec") as (fakes, app, url, proxy):
            kwargs = dict(rtzr=fakes.rtzr, llm=fakes.llm, tts=fakes.tts, pace=pace, errors=ErrorLog(),
                          handler_done=lambda t: wait_for_calls_to_end(app.app, t))
            original = await replay(fixture, f"{proxy.ws_url}/twilio/media", **kwargs)
            try:  # written once the handler is done with RTZR too
                written = await asyncio.wait_for(proxy.recordings.get(), 30)
            except asyncio.TimeoutError:
                return {"fixture": fixture.name, "recorded": False}
            original_finals = fakes.rtzr.journal.finals()
            doc = json.loads((written / "call.json").read_text())
            for section in ("llm", "tts", "expect", "handler"):
                if section in fixture.script.raw:
                    doc[section] = fixture.script.raw[section]
            (written / "call.json").write_text(json.dumps(doc, ensure_ascii=False))
            again = await replay(load_call(written), url, **kwargs)
            replay_finals = fakes.rtzr.journal.finals()
    diffs = [abs(a.speech_end_to_first_audio_ms - b.speech_end_to_first_audio_ms)
             for a, b in zip(original.turns, again.turns)
             if a.speech_end_to_first_audio_ms is not None and b.speech_end_to_first_audio_ms is not None]
    differing = sorted(c.name for c, d in zip(original.checks, again.checks) if c.ok != d.ok)
    return {"fixture": fixture.name, "recorded": True, "rtzr_results": len(doc["recognizer"]["recorded"]),
            "faults": [f["type"] for f in doc["faults"]], "same_finals": original_finals == replay_finals,
            "same_verdicts": not differing, "differing_checks": differing,
            "original_ok": original.ok, "replay_ok": again.ok,
            "turns_compared": len(diffs), "max_latency_diff_ms": round(max(diffs), 1) if diffs else None}


async def main_async(pace: float, only: str | None) -> list[dict]:
    rows = []
    for directory in discover(ROOT / "fixtures" / "calls", only):
        if load_call(directory).handler_without:
            continue  # a handler started without credentials makes no call to record
        row = await round_trip(directory, pace)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace", type=float, default=4.0)
    parser.add_argument("--only", help="fixtures whose name contains this")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args.pace, args.only))
    report("record_roundtrip", {"pace": args.pace, "fixtures": len(rows),
                                "same_finals": sum(r.get("same_finals", False) for r in rows),
                                "same_verdicts": sum(r.get("same_verdicts", False) for r in rows), "rows": rows})


if __name__ == "__main__":
    main()
