"""Reading an NSS key log file back (the format Wireshark reads) in keylog tests."""

from __future__ import annotations

import re
from pathlib import Path

LINE = re.compile(r"^([A-Z][A-Z0-9_]*) ([0-9a-f]{64}) ([0-9a-f]{64}|[0-9a-f]{96})$")
#: the TLS 1.3 secrets every full handshake writes
HANDSHAKE_LABELS = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
}


def keylog_entries(path: Path) -> dict[str, set[str]]:
    """``label -> {client_random hex}``; every line must be a well-formed NSS line."""
    entries: dict[str, set[str]] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        match = LINE.match(line)
        assert match is not None, f"not an NSS key log line: {line!r}"
        entries.setdefault(match.group(1), set()).add(match.group(2))
    return entries


def handshakes_logged(path: Path) -> set[str]:
    """Client randoms of the connections whose handshake secrets are all in ``path``."""
    entries = keylog_entries(path)
    assert set(entries) >= HANDSHAKE_LABELS, sorted(entries)
    return set.intersection(*(entries[label] for label in HANDSHAKE_LABELS))
