#!/usr/bin/env bash
# One entry point for people and CI.
#   ./run.sh demo     install and run `python -m pywebtransport demo`: a WebTransport
#                     server, a page for the browser, and a client round trip against it
#   ./run.sh test     install test tools and run lint, types and the default test suite
#   ./run.sh slow     run the slow soak/benchmark tests as well
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# A Python whose packages the OS manages (PEP 668: Debian's and Ubuntu's python3) refuses
# `pip install`: use a virtual environment in .venv for it instead.
if [ -z "${PYTHON:-}" ] && "$PY" - <<'CHECK'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
CHECK
then
    if [ ! -x .venv/bin/python ]; then
        "$PY" -m venv .venv || {
            echo "run.sh: cannot create .venv (on Debian/Ubuntu: apt install python3-venv)" >&2
            exit 1
        }
    fi
    PY=.venv/bin/python
fi

install() {  # the package plus the test tools, the Python interop peers, and the
    # msgpack/protobuf extras (tests/pwt/test_structured*.py, test_serializers.py use them)
    "$PY" -m pip install -q -e ".[dev,interop,msgpack,protobuf]"
}

compile_sources() {  # with PYTHONDONTWRITEBYTECODE set (as on this project's machines) no
    # process caches its bytecode, and every process a test starts (servers, peers,
    # clients: well over a hundred) compiled the whole stack again, about a second each;
    # compiled once here, they read __pycache__ (the flag stops writing, not reading)
    "$PY" -m compileall -q quic h3 pywebtransport tests fuzz benchmarks > /dev/null
}

run_suite() {  # the default suite; with no arguments in two pytest processes at once,
    # one a core (the suite is one process's work otherwise: 17 minutes on 2 cores, one
    # of them idle), split by directory into halves of about equal time: the interop,
    # pywebtransport and benchmark tests, and the rest of pyproject.toml's testpaths (a
    # new directory under tests/ joins the second half; a new testpath goes in here).
    # Each half's output is printed whole when both are done. With arguments (a path,
    # -k, -x ...), or on one core, it is one pytest process (given them).
    if [ $# -gt 0 ] || [ "$(nproc 2> /dev/null || echo 1)" -lt 2 ]; then
        "$PY" -m pytest -p no:cacheprovider "$@"
        return
    fi
    local logs first second status=0
    logs=$(mktemp -d)
    first=(tests/interop tests/pwt benchmarks/tests benchmarks/micro)
    second=(tests fuzz --ignore=tests/interop --ignore=tests/pwt)
    "$PY" -m pytest -p no:cacheprovider "${first[@]}" > "$logs/1" 2>&1 &
    local one=$!
    "$PY" -m pytest -p no:cacheprovider "${second[@]}" > "$logs/2" 2>&1 &
    local two=$!
    trap 'kill "$one" "$two" 2> /dev/null' INT TERM
    wait "$one" || status=1
    wait "$two" || status=1
    trap - INT TERM
    echo "== pytest ${first[*]}"
    cat "$logs/1"
    echo "== pytest ${second[*]}"
    cat "$logs/2"
    rm -rf "$logs"
    return "$status"
}

install_runtime() {  # the package and its two runtime dependencies: all the demo needs
    "$PY" -m pip install -q -e .
}

case "${1:-test}" in
    demo)
        install_runtime
        exec "$PY" -m pywebtransport demo "${@:2}"
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
        compile_sources
        run_suite "${@:2}"
        ;;
    slow)
        install
        compile_sources
        "$PY" -m pytest -p no:cacheprovider -m slow "${@:2}"
        ;;
    *)
        echo "usage: $0 {demo|test|slow}" >&2
        exit 2
        ;;
esac
