#!/bin/sh
# Regenerate vito_stt_client_pb2.py(i) and vito_stt_client_pb2_grpc.py from vito_stt_client.proto.
# The generated modules are committed: running the fake needs grpcio and protobuf, never protoc.
# Use the oldest generator the [grpc] extra allows, so every protobuf runtime from 5.27.2 on loads the
# modules (a runtime older than the generator refuses them), in a venv of its own (grpcio-tools pins
# protobuf): python -m venv /tmp/gen && /tmp/gen/bin/pip install grpcio-tools==1.66.2 && PATH=/tmp/gen/bin:$PATH sh generate.sh
set -e
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. vito_stt_client.proto
# protoc writes a top-level import; inside the package it must be relative
sed -i 's/^import vito_stt_client_pb2 as/from . import vito_stt_client_pb2 as/' vito_stt_client_pb2_grpc.py
