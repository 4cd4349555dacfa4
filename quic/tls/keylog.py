"""NSS key log format for TLS 1.3 secrets (what Wireshark reads to decrypt QUIC).

Each line is ``LABEL <client_random hex> <secret hex>\\n``; the labels are those of the
NSS key log format for TLS 1.3. The handshake engine calls a :data:`KeyLogCallback`
with one complete line per secret; :class:`KeyLogFile` is such a callback that appends
to a file and flushes after every line, so a capture tool sees keys immediately. Any
label is written as given (:func:`format_keylog_line` takes a :class:`KeyLogLabel` or
a string), so new secrets (0-RTT's ``CLIENT_EARLY_TRAFFIC_SECRET``...) need nothing here.

``SSLKEYLOGFILE``: the entry points (the asyncio ``connect``/``serve`` of
:mod:`quic.aio`, hence HTTP/3, WebTransport and the command lines above them; the
interop runner endpoints) honour this environment variable when their configuration
has no key log of its own: :func:`keylog_from_environment`. :func:`shared_keylog_file`
gives one :class:`KeyLogFile` per path in the process, so many connections append to
one open file instead of opening one each.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import IO

__all__ = [
    "SSLKEYLOGFILE",
    "KeyLogCallback",
    "KeyLogFile",
    "KeyLogLabel",
    "format_keylog_line",
    "keylog_from_environment",
    "shared_keylog_file",
]

#: The environment variable naming the key log file (the NSS / OpenSSL convention).
SSLKEYLOGFILE = "SSLKEYLOGFILE"

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


_SHARED: dict[str, KeyLogFile] = {}


def shared_keylog_file(path: str) -> KeyLogFile:
    """The process-wide :class:`KeyLogFile` appending to ``path`` (one per path)."""
    key = os.path.abspath(path)
    keylog = _SHARED.get(key)
    if keylog is None:
        keylog = _SHARED[key] = KeyLogFile(key)
    return keylog


def keylog_from_environment(environ: Mapping[str, str] | None = None) -> KeyLogFile | None:
    """The shared key log of ``$SSLKEYLOGFILE`` (None when unset or empty)."""
    path = (os.environ if environ is None else environ).get(SSLKEYLOGFILE)
    return shared_keylog_file(path) if path else None
