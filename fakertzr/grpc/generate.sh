#!/bin/sh
# From a checkout (the client protos live in contract_tests/, which the wheel lacks): regenerate the
# Python modules of the three protos (committed: running the fake needs grpcio and protobuf,
# never protoc):
#   fakertzr/grpc/decoder.proto                    the fake's own messages (decoder_pb2)
#   contract_tests/rtzr/protos/vito_stt_client.proto  a client of RTZR's older proto (+ its stub)
#   contract_tests/rtzr/protos/rtzr_stt.proto          a client of RTZR's current proto (+ its stub)
# Use the oldest generator the [grpc] extra allows, so every protobuf runtime from 5.27.2 on loads the
# modules (a runtime older than the generator refuses them), in a venv of its own (grpcio-tools pins
# protobuf): python -m venv /tmp/gen && /tmp/gen/bin/pip install grpcio-tools==1.66.2 && PATH=/tmp/gen/bin:$PATH sh generate.sh
set -e
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. decoder.proto
cd ../../contract_tests/rtzr/protos
for proto in vito_stt_client rtzr_stt; do
  python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. "$proto.proto"
  # protoc writes a top-level import; inside the package it must be relative
  sed -i "s/^import ${proto}_pb2 as/from . import ${proto}_pb2 as/" "${proto}_pb2_grpc.py"
done
