#!/usr/bin/env bash
# One entry point for people and CI.
#   ./run.sh demo     install and run the WebTransport interop server demo
#   ./run.sh test     install test tools and run lint, types and the default test suite
#   ./run.sh slow     run the slow soak/benchmark tests as well
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

install() {
    "$PY" -m pip install -q -e ".[dev,interop]"
}

case "${1:-test}" in
    demo)
        install
        exec "$PY" -m quic demo "${@:2}"
        ;;
    test)
        install
        "$PY" -m ruff check quic h3 pywebtransport tests fuzz benchmarks docs/hooks
        "$PY" -m ruff format --check quic h3 pywebtransport tests fuzz benchmarks docs/hooks
        "$PY" -m mypy --strict quic h3 pywebtransport docs/hooks/apiref.py
        # the documentation site, offline; --strict fails on any warning (not with --quiet,
        # which hides the warnings from --strict too)
        site=$(mktemp -d)
        "$PY" -m mkdocs build --strict --site-dir "$site"
        rm -rf "$site"
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
