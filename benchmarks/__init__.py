"""Benchmarks: pytest-benchmark micro benchmarks and the end-to-end loopback harness.

This package module holds the small wire contract shared by every stack adapter
(``benchmarks/<stack>_side.py``) of :mod:`benchmarks.harness`, so the adapters agree on
the application protocol without importing each other (see ``benchmarks/README.md``):

* ALPN :data:`BENCH_ALPN`;
* bulk requests on a client-initiated bidirectional stream, one ASCII request line
  ``UPLOAD <n>\\n`` (then ``n`` bytes and FIN; the server answers ``OK <n>\\n`` + FIN) or
  ``DOWNLOAD <n>\\n`` + FIN (the server answers with ``n`` bytes and FIN);
* the server echoes every DATAGRAM frame;
* adapters print ``LISTENING <port>`` (server) and ``RESULT <json>`` (client) lines.
"""

from __future__ import annotations

import json
import re
from typing import Any

BENCH_ALPN = "pwt-bench"
PING_SIZE = 64  # bytes per ping-pong datagram
CHUNK_SIZE = 1 << 16  # bulk data is written in chunks of this size
REQUEST_LINE_LIMIT = 64
# "resume": sequential handshakes, each resuming the session of the one before it with
# that connection's session ticket (the server runs with ``--tickets``)
WORKLOADS = ("upload", "download", "handshake", "resume", "pingpong")

_REQUEST = re.compile(rb"(UPLOAD|DOWNLOAD) (\d{1,15})")


def parse_request(line: bytes) -> tuple[str, int] | None:
    """``b"UPLOAD 5"`` → ``("UPLOAD", 5)``; ``None`` for anything else (no newline)."""
    match = _REQUEST.fullmatch(line)
    if match is None:
        return None
    return match.group(1).decode("ascii"), int(match.group(2))


def request_line(kind: str, size: int) -> bytes:
    return f"{kind} {size}\n".encode("ascii")


def result_line(workload: str, value: float, unit: str, **details: Any) -> str:
    """The client's single output line: ``RESULT {"workload":..,"value":..,"unit":..}``."""
    payload = {"workload": workload, "value": value, "unit": unit, **details}
    return "RESULT " + json.dumps(payload, sort_keys=True)


def parse_result_line(line: str) -> dict[str, Any] | None:
    if not line.startswith("RESULT "):
        return None
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result
