"""RTZR's current gRPC proto (rtzr/rtzr-api ``rtzr-stt.proto``): a client compiled from it, in a process of its
own as RTZR's current samples run, gets the final of what it sent at once when it sends ``DECODER_CMD_FINALIZE``
mid-stream; ``domain`` and ``use_punctuation`` are read and checked as the WebSocket reads them; words carry a
confidence. The fake's messages are wire-identical to both RTZR protos. Against the real service with
``--rtzr-live``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .test_streaming import SEED_TEXTS, pcm

ROOT = Path(__file__).resolve().parents[2]


async def current_client(g, tmp_path: Path, audio: bytes, finalize_at_ms: int, *extra: str) -> tuple[list[dict], dict]:
    """The current-proto client against ``g``: (its results, its status line)."""
    (tmp_path / "audio.pcm").write_bytes(audio)
    args = ["--target", g.target, "--token", await g.rtzr.token(), "--audio", str(tmp_path / "audio.pcm"),
            "--finalize-at-ms", str(finalize_at_ms), *(["--secure"] if g.secure else []), *extra]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "contract_tests.rtzr.grpc_current_client", *args,
                                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    return lines[:-1], lines[-1]


async def test_finalize_mid_stream_gives_the_final_at_once(rtzr_grpc, seed, tmp_path):
    first = seed.utterances[0]
    at = int(first.end_ms) + 100  # the caller has stopped, but the recognizer's 0.5 s end-point detection has not passed
    results, status = await current_client(rtzr_grpc, tmp_path, pcm(seed), at)
    assert status["status"] == "OK", status
    finals = [r for r in results if r["final"] and r["text"]]
    assert finals, results
    final = finals[0]
    assert final["after_finalize"] and final["before_half_close"] and final["sent_ms"] == at, final
    if rtzr_grpc.rtzr.live:
        return
    assert final["text"] == SEED_TEXTS[0]
    assert final["words"] and all(w["confidence"] == final["confidence"] > 0 for w in final["words"]), final
    record = rtzr_grpc.rtzr.fake.journal.connections[-1]
    assert record.text_frames[0] == "(control DECODER_CMD_FINALIZE)" and record.api == "grpc"


async def test_finalize_before_a_word_is_heard_sends_no_final(rtzr_grpc, seed, tmp_path):
    """As the WebSocket's Finalize: nothing is sent for an empty utterance (the first word is not mostly
    received 60 ms into it); the stream stays open until the client half-closes."""
    first = seed.utterances[0]
    at = int(first.start_ms) + 60  # before any word is mostly received
    results, status = await current_client(rtzr_grpc, tmp_path, pcm(seed), at, "--wait-s", "1")
    assert status["status"] == "OK", status
    assert not [r for r in results if r["final"] and r["text"] and r["before_half_close"]], results


@pytest.mark.parametrize("domain", ["CALL", "MEETING"])
async def test_domain_and_use_punctuation_are_read_as_the_websocket_reads_them(rtzr_grpc, seed, tmp_path, domain):
    first = seed.utterances[0]
    _, status = await current_client(rtzr_grpc, tmp_path, pcm(seed), int(first.end_ms) + 100, "--domain", domain,
                                     "--use-punctuation")
    assert status["status"] == "OK", status
    if not rtzr_grpc.rtzr.live:
        query = rtzr_grpc.rtzr.fake.journal.connections[-1].query
        assert query["domain"] == domain and query["use_punctuation"] == "true", query


async def test_an_unknown_domain_is_refused_as_the_websocket_refuses_it(rtzr_grpc, seed, tmp_path):
    _, status = await current_client(rtzr_grpc, tmp_path, pcm(seed, 0, 1000), 500, "--domain", "NOT_A_DOMAIN")
    assert status["status"] == "INVALID_ARGUMENT", status
    if not rtzr_grpc.rtzr.live:
        assert status["details"].startswith("H0001:") and "domain" in status["details"], status


COMPARE = """
import json, sys
from fakertzr.grpc import decoder_pb2 as fake
client = __import__("contract_tests.rtzr.protos." + sys.argv[1], fromlist=["x"])
def shape(message):
    fields = {f.number: (f.name, f.type, f.label, f.message_type.name if f.message_type else None,
                         f.enum_type.name if f.enum_type else None) for f in message.fields}
    enums = {e.name: sorted((v.name, v.number) for v in e.values) for e in message.enum_types}
    return fields, enums
out = {}
for name, message in client.DESCRIPTOR.message_types_by_name.items():
    mine = fake.DESCRIPTOR.message_types_by_name[name]
    (cf, ce), (ff, fe) = shape(message), shape(mine)
    out[name] = {"missing": [n for n in cf if cf[n] != ff.get(n)],
                 "extra": [ff[n][0] for n in ff if n not in cf],
                 "enums": [e for e in ce if ce[e] != fe.get(e)]}
print(json.dumps(out))
"""


@pytest.mark.parametrize("proto,extra", [
    ("vito_stt_client_pb2", {"DecoderRequest": ["streaming_control"], "DecoderConfig": ["use_punctuation", "domain"]}),
    ("rtzr_stt_pb2", {}),
])
def test_the_fakes_messages_are_wire_identical_to_both_rtzr_protos(proto, extra):
    """Every field of every message of the client's proto has its number, type and label in the fake's; the
    fake's has more only where the current proto added them (the older proto's clients never send those)."""
    done = subprocess.run([sys.executable, "-c", COMPARE, proto], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shapes = json.loads(done.stdout)
    assert all(not s["missing"] and not s["enums"] for s in shapes.values()), shapes
    assert {name: s["extra"] for name, s in shapes.items() if s["extra"]} == extra
