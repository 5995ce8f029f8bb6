#!/bin/sh
# Build heartbeat.wasm, a WebAssembly component, from app.py against wit/
# (wit/deps/rewind-hooks is the repository's wit/). componentize-py comes
# from PyPI (tests/run installs it into target/test-venv). The output path
# is $1, default heartbeat.wasm here.
set -eu
out=$(realpath -m "${1:-heartbeat.wasm}")
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -q -d wit -w heartbeat componentize app -o "$out"
