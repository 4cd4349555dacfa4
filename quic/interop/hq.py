"""HTTP/0.9 over QUIC, ALPN ``hq-interop``: the request codec and the file lookup.

Theory of operation
-------------------
``hq-interop`` is the application protocol of the QUIC interop runner: one request per
client-initiated bidirectional stream. The client writes the request line
``GET /path\\r\\n`` and finishes its sending side (FIN); the server answers with the raw
bytes of the file and FIN, with no status line and no headers. A request the server
cannot answer ends with RESET_STREAM (RFC 9000 §19.4) instead of a FIN.

hq-interop registers no error codes; :class:`HqErrorCode` holds this endpoint's own
application error codes for such resets (any value is allowed, RFC 9000 §20.2).

This module is pure: :func:`encode_request` / :func:`parse_request` build and check the
request line (bad network input raises :class:`HqRequestError`, nothing else), and
:func:`resolve_path` maps a request path to a regular file below the served directory,
refusing anything that would leave it (``..``, encoded ``%2e%2e``, symlinks outside).
:func:`parse_url` turns a command-line URL into a :class:`Download`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ALPN",
    "DEFAULT_PORT",
    "MAX_REQUEST_SIZE",
    "Download",
    "HqErrorCode",
    "HqRequestError",
    "encode_request",
    "parse_request",
    "parse_url",
    "resolve_path",
]

ALPN = "hq-interop"
DEFAULT_PORT = 443
MAX_REQUEST_SIZE = 8192  # longest request line accepted, CRLF included

_URL_SAFE = "/%:@!$&'()*+,;=-._~?"  # kept as is when a request target is percent-encoded


class HqErrorCode(IntEnum):
    """Application error codes this endpoint uses in RESET_STREAM / STOP_SENDING."""

    NO_ERROR = 0x0
    BAD_REQUEST = 0x1
    NOT_FOUND = 0x2
    INTERNAL_ERROR = 0x3


class HqRequestError(Exception):
    """A request the server cannot answer; ``error_code`` goes into RESET_STREAM."""

    def __init__(self, error_code: HqErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.reason = reason


def encode_request(target: str) -> bytes:
    """The request line for ``target`` (an origin-form path, ``/`` first)."""
    if not target.startswith("/"):
        target = "/" + target
    if not target.isascii() or any(c.isspace() or ord(c) < 0x20 for c in target):
        target = quote(target, safe=_URL_SAFE)
    return b"GET " + target.encode("ascii") + b"\r\n"


def parse_request(data: bytes) -> str:
    """The decoded path of a request line (query and fragment dropped).

    ``data`` is what the client sent, up to the first LF or its FIN. Raises
    :class:`HqRequestError` (``BAD_REQUEST``) for anything but ``GET /path``.
    """
    line, newline, _ = data.partition(b"\n")
    if not newline and len(data) >= MAX_REQUEST_SIZE:
        raise HqRequestError(HqErrorCode.BAD_REQUEST, "request line too long")
    line = line.removesuffix(b"\r")
    if not line.isascii():
        raise HqRequestError(HqErrorCode.BAD_REQUEST, "request line is not ASCII")
    method, space, target = line.decode("ascii").partition(" ")
    if method != "GET" or not space:
        raise HqRequestError(HqErrorCode.BAD_REQUEST, "only GET is supported")
    if not target.startswith("/") or any(c.isspace() or c < " " or c == "\x7f" for c in target):
        raise HqRequestError(HqErrorCode.BAD_REQUEST, "malformed request target")
    raw_path = target.partition("#")[0].partition("?")[0]
    try:
        path = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        raise HqRequestError(HqErrorCode.BAD_REQUEST, "path is not UTF-8") from None
    if "\x00" in path:
        raise HqRequestError(HqErrorCode.BAD_REQUEST, "NUL in path")
    return path


def resolve_path(root: Path, path: str) -> Path | None:
    """The regular file ``path`` names below ``root`` (already resolved), or None.

    None for a directory, a missing file, or any path that resolves outside ``root``
    (after following ``..`` and symbolic links).
    """
    relative = path.lstrip("/")
    if not relative:
        return None
    try:
        candidate = (root / relative).resolve()
        if candidate == root or not candidate.is_relative_to(root):
            return None
        return candidate if candidate.is_file() else None
    except (OSError, RuntimeError, ValueError):  # symlink loop, name too long, NUL
        return None


@dataclass(frozen=True, slots=True)
class Download:
    """One URL to fetch: where to connect, what to request, where to store it."""

    url: str
    host: str
    port: int
    target: str  # request target: path and query, as in the URL
    filename: str  # basename the body is written to

    @property
    def authority(self) -> tuple[str, int]:
        return self.host, self.port


def parse_url(url: str) -> Download:
    """Split a request URL (``https://server:443/file``); ValueError if unusable."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in URL {url!r}")
    port = parts.port or DEFAULT_PORT  # .port raises ValueError when out of range
    path = parts.path or "/"
    target = f"{path}?{parts.query}" if parts.query else path
    filename = PurePosixPath(unquote(parts.path)).name
    if filename in ("", ".", ".."):
        raise ValueError(f"URL {url!r} names no file")
    return Download(url=url, host=host, port=port, target=target, filename=filename)
