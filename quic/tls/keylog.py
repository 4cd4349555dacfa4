"""NSS key log format for TLS 1.3 secrets (what Wireshark reads to decrypt QUIC).

Each line is ``LABEL <client_random hex> <secret hex>\\n``; the labels are those of the
NSS key log format for TLS 1.3. The handshake engine calls a :data:`KeyLogCallback`
with one complete line per secret; :class:`KeyLogFile` is such a callback that appends
to a file and flushes after every line, so a capture tool sees keys immediately.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import IO

__all__ = ["KeyLogCallback", "KeyLogFile", "KeyLogLabel", "format_keylog_line"]

#: Receives one full key log line (newline included).
KeyLogCallback = Callable[[str], None]


class KeyLogLabel(StrEnum):
    """TLS 1.3 labels of the NSS key log format."""

    CLIENT_EARLY_TRAFFIC_SECRET = "CLIENT_EARLY_TRAFFIC_SECRET"
    CLIENT_HANDSHAKE_TRAFFIC_SECRET = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
    SERVER_HANDSHAKE_TRAFFIC_SECRET = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
    CLIENT_TRAFFIC_SECRET_0 = "CLIENT_TRAFFIC_SECRET_0"
    SERVER_TRAFFIC_SECRET_0 = "SERVER_TRAFFIC_SECRET_0"
    EXPORTER_SECRET = "EXPORTER_SECRET"
    EARLY_EXPORTER_SECRET = "EARLY_EXPORTER_SECRET"


def format_keylog_line(label: KeyLogLabel | str, client_random: bytes, secret: bytes) -> str:
    """One key log line: ``LABEL <client_random hex> <secret hex>\\n``."""
    name = label.value if isinstance(label, KeyLogLabel) else label
    return f"{name} {client_random.hex()} {secret.hex()}\n"


class KeyLogFile:
    """A :data:`KeyLogCallback` appending lines to ``path`` (opened lazily, flushed)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def __call__(self, line: str) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="ascii")  # noqa: SIM115
        self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> KeyLogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
