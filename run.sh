#!/usr/bin/env bash
# One entry point for people and CI.
#   ./run.sh demo     install and run the WebTransport interop server demo
#   ./run.sh test     install test tools and run lint, types and the default test suite
#   ./run.sh slow     run the slow soak/benchmark tests as well
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

install() {
    # the msgpack/protobuf extras: tests/pwt/test_structured*.py and test_serializers.py use them
    "$PY" -m pip install -q -e ".[dev,interop,msgpack,protobuf]"
}

case "${1:-test}" in
    demo)
        install
        exec "$PY" -m quic demo "${@:2}"
        ;;
    test)
        install
        "$PY" -m ruff check quic h3 pywebtransport tests fuzz benchmarks
        "$PY" -m ruff format --check quic h3 pywebtransport tests fuzz benchmarks
        "$PY" -m mypy --strict quic h3 pywebtransport
        "$PY" -m pytest -p no:cacheprovider "${@:2}"
        ;;
    slow)
        install
        "$PY" -m pytest -p no:cacheprovider -m slow "${@:2}"
        ;;
    *)
        echo "usage: $0 {demo|test|slow}" >&2
        exit 2
        ;;
esac
