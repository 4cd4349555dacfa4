"""The wire format of quic-interop-runner's WebTransport test cases, and file naming.

Theory of operation
-------------------
The runner's WebTransport protocol (its ``webtransport.md``) is HTTP/0.9 extended with a
``PUSH`` method. Either side may request a file of the other once a session is up:

* unidirectional stream: the requester opens a stream, writes ``GET <name>`` and FIN;
  the responder opens a *new* unidirectional stream, writes ``PUSH <name>\\n``, the
  file's bytes and FIN;
* bidirectional stream: the requester opens a stream, writes ``GET <name>`` and FIN;
  the responder writes the file's bytes on the same stream and FIN;
* datagram: the requester sends one datagram ``GET <name>``; the responder sends one
  datagram ``PUSH <name>\\n`` followed by the file's bytes (the runner's datagram files
  fit one datagram).

The session's endpoint is the first segment of its path (``/webtransport1``); a file
``<name>`` of a session on ``/<endpoint>`` is served from ``<www>/<endpoint>/<name>`` and
saved to ``<downloads>/<endpoint>/<name>``.

This module is pure: encoders, bounded parsers (bad network input raises
:class:`RunnerWireError`, nothing else) and the file-name checks that keep every read
below ``<www>/<endpoint>`` and every write below ``<downloads>/<endpoint>`` (no ``..``,
no absolute names, no NUL, symlinks followed and checked). ``GET`` lines are accepted
with or without a trailing newline (the runner's browser endpoints send none; HTTP/0.9
habit would send CRLF).
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from quic.interop.hq import resolve_path

__all__ = [
    "MAX_NAME_SIZE",
    "RunnerErrorCode",
    "RunnerWireError",
    "check_endpoint",
    "check_name",
    "download_path",
    "encode_get",
    "encode_push",
    "endpoint_of",
    "parse_get",
    "parse_push_datagram",
    "parse_push_header",
    "resolve_file",
    "split_request",
]

#: longest file name (relative path below the endpoint directory) accepted, in bytes
MAX_NAME_SIZE = 1024

_GET = b"GET "
_PUSH = b"PUSH "


class RunnerErrorCode(IntEnum):
    """WebTransport application error codes this endpoint puts in RESET_STREAM /
    STOP_SENDING (the runner registers none; any value is allowed, draft-16 §4.4)."""

    NO_ERROR = 0x0
    BAD_REQUEST = 0x1
    NOT_FOUND = 0x2
    INTERNAL_ERROR = 0x3
    UNEXPECTED_PUSH = 0x4


class RunnerWireError(Exception):
    """A request or push this endpoint refuses; ``error_code`` goes into the reset."""

    def __init__(self, error_code: RunnerErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.reason = reason


def check_name(name: str) -> str:
    """``name`` if it is a usable relative file name (``a.txt``, ``dir/a.txt``).

    Raises :class:`RunnerWireError` (``BAD_REQUEST``) for an empty or over-long name,
    an absolute one, a ``.``/``..`` segment, a backslash, or a control character.
    """
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_SIZE:
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "empty or over-long file name")
    if any(c < " " or c == "\x7f" or c == "\\" for c in name):
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "control character in file name")
    if name.startswith("/"):
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "absolute file name")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "file name leaves its directory")
    return name


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is one path segment usable as a directory name."""
    if "/" in check_name(endpoint):
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "an endpoint is one path segment")
    return endpoint


def _decode_name(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "file name is not UTF-8") from None
    return check_name(text.strip(" \t\r\n"))


def encode_get(name: str) -> bytes:
    """``GET <name>`` (no newline, as the runner's endpoints send it)."""
    return _GET + check_name(name).encode("utf-8")


def parse_get(data: bytes) -> str:
    """The file name of a complete request (a stream's bytes up to FIN, or a datagram).

    At most ``len("GET ") + MAX_NAME_SIZE + 2`` bytes are looked at; longer input is
    refused, so a caller reading a stream needs to keep no more than that.
    """
    if len(data) > len(_GET) + MAX_NAME_SIZE + 2:
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "request too long")
    if not data.startswith(_GET):
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "not a GET request")
    return _decode_name(data[len(_GET) :])


def encode_push(name: str) -> bytes:
    """The ``PUSH <name>\\n`` header that precedes a pushed file's bytes."""
    return _PUSH + check_name(name).encode("utf-8") + b"\n"


def parse_push_header(line: bytes) -> str:
    """The file name of a ``PUSH <name>\\n`` line (the newline included or not)."""
    if len(line) > len(_PUSH) + MAX_NAME_SIZE + 2:
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "PUSH line too long")
    if not line.startswith(_PUSH):
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "not a PUSH")
    return _decode_name(line[len(_PUSH) :].removesuffix(b"\n"))


def parse_push_datagram(data: bytes) -> tuple[str, bytes]:
    """``(name, payload)`` of a ``PUSH <name>\\n<payload>`` datagram."""
    index = data.find(b"\n", 0, len(_PUSH) + MAX_NAME_SIZE + 2)
    if index < 0:
        raise RunnerWireError(RunnerErrorCode.BAD_REQUEST, "PUSH datagram without a header")
    return parse_push_header(data[:index]), data[index + 1 :]


def endpoint_of(path: str) -> str:
    """The endpoint of a session path: its first segment (``/wt1/x?q`` → ``wt1``)."""
    segment = urlsplit(path).path.lstrip("/").partition("/")[0]
    return check_endpoint(unquote(segment))


def split_request(request: str) -> tuple[str, str | None]:
    """``(endpoint, file name or None)`` of a runner request: a URL
    (``https://server:443/wt1/a.txt``) or a path (``wt1/a.txt``, ``/wt1/``).

    Raises :class:`RunnerWireError` when there is no endpoint or a name is unusable.
    """
    parts = urlsplit(request)
    path = parts.path if parts.scheme or parts.netloc else request
    path = unquote(path).lstrip("/")
    endpoint, _, rest = path.partition("/")
    check_endpoint(endpoint)
    name = rest.rstrip("/")
    return endpoint, (check_name(name) if name else None)


def resolve_file(www: Path, endpoint: str, name: str) -> Path | None:
    """The regular file ``<www>/<endpoint>/<name>``, or None if it is missing or any
    part of it (after ``..`` and symbolic links) lies outside ``<www>/<endpoint>``."""
    try:
        check_endpoint(endpoint)
        check_name(name)
        root = (www / endpoint).resolve()
        if not root.is_relative_to(www.resolve()) or not root.is_dir():
            return None
    except (RunnerWireError, OSError, RuntimeError, ValueError):
        return None
    return resolve_path(root, name)


def download_path(downloads: Path, endpoint: str, name: str) -> Path:
    """Where file ``name`` of ``endpoint`` is saved: ``<downloads>/<endpoint>/<name>``.

    The names are checked (:func:`check_name`); the result is below ``downloads`` by
    construction. Directories are not created here.
    """
    return downloads.joinpath(check_endpoint(endpoint), *PurePosixPath(check_name(name)).parts)
