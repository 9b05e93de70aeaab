"""A gRPC client written the way RTZR's current samples are: compiled from RTZR's current proto
(``protos/rtzr_stt.proto``: rtzr/rtzr-api's ``rtzr-stt.proto``), synchronous, the config first, then audio,
and, as a voice agent does when its own VAD says the caller stopped, ``DECODER_CMD_FINALIZE`` mid-stream
instead of waiting for the recognizer's end-point detection. It runs in a process of its own, as a client
of the real service does (its modules define ``online_decoder``, as the older proto's do).

    python -m contract_tests.rtzr.grpc_current_client --target 127.0.0.1:PORT --token TOKEN --audio CALL.pcm \\
        --finalize-at-ms 3100 [--domain CALL] [--use-punctuation] [--secure]

It sends the 8 kHz 16-bit audio up to ``--finalize-at-ms``, then FINALIZE, then nothing more until a final
comes (or ``--wait-s`` passes), then half-closes. It prints one JSON line per result (``sent_ms``: the
audio sent when it came; ``after_finalize``; ``before_half_close``) and a last line with the call's status.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

import grpc

from contract_tests.rtzr.protos import rtzr_stt_pb2 as pb
from contract_tests.rtzr.protos import rtzr_stt_pb2_grpc as pb_grpc

FRAME = 320  # 20 ms of 8 kHz 16-bit mono
# Not grpc_client's helpers: that module loads the older proto, and protobuf refuses ``online_decoder``'s
# symbols defined twice in one process.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--audio", required=True, help="raw 8 kHz 16-bit little-endian mono")
    parser.add_argument("--finalize-at-ms", type=int, required=True)
    parser.add_argument("--wait-s", type=float, default=10.0)
    parser.add_argument("--domain")
    parser.add_argument("--use-punctuation", action="store_true")
    parser.add_argument("--secure", action="store_true")
    args = parser.parse_args(argv)
    audio = Path(args.audio).read_bytes()
    config = pb.DecoderConfig(sample_rate=8000, encoding=pb.DecoderConfig.AudioEncoding.LINEAR16, use_itn=True,
                              use_punctuation=args.use_punctuation)
    if args.domain:
        config.domain = args.domain
    final_came = threading.Event()
    state = {"sent_ms": 0, "finalized": False, "half_closed": False}

    def requests():
        yield pb.DecoderRequest(streaming_config=config)
        stop = min(len(audio), args.finalize_at_ms * 16)
        for start in range(0, stop, FRAME):
            yield pb.DecoderRequest(audio_content=audio[start:min(start + FRAME, stop)])
            state["sent_ms"] = min(start + FRAME, stop) // 16
        state["finalized"] = True
        yield pb.DecoderRequest(streaming_control=pb.DecoderControl(command=pb.DecoderControl.DECODER_CMD_FINALIZE))
        final_came.wait(args.wait_s)
        state["half_closed"] = True

    channel = (grpc.secure_channel(args.target, grpc.ssl_channel_credentials()) if args.secure
               else grpc.insecure_channel(args.target))
    code, details = "OK", ""
    with channel:
        stub = pb_grpc.OnlineDecoderStub(channel)
        if args.secure:
            responses = stub.Decode(requests(), credentials=grpc.access_token_call_credentials(args.token), timeout=60)
        else:
            responses = stub.Decode(requests(), metadata=(("authorization", f"Bearer {args.token}"),), timeout=60)
        try:
            for response in responses:
                for result in response.results:
                    best = result.alternatives[0] if result.alternatives else pb.SpeechRecognitionAlternative()
                    print(json.dumps({
                        "final": result.is_final, "text": best.text, "confidence": round(best.confidence, 4),
                        "start_at": result.start_at, "duration": result.duration,
                        "words": [{"text": w.text, "start_at": w.start_at, "duration": w.duration,
                                   "confidence": round(w.confidence, 4)} for w in best.words],
                        "sent_ms": state["sent_ms"], "after_finalize": state["finalized"],
                        "before_half_close": not state["half_closed"]}, ensure_ascii=False), flush=True)
                    if result.is_final and state["finalized"]:
                        final_came.set()
        except grpc.RpcError as exc:
            code, details = exc.code().name, exc.details()
        final_came.set()
    print(json.dumps({"status": code, "details": details}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
