"""Exceptions of the asyncio WebTransport API, each carrying a code.

Theory of operation
-------------------
Every exception derives from :class:`WebTransportError` and has a ``code`` (an int; 0
when nothing more specific applies):

* connection level — :class:`ConnectionFailed` (``code`` = the QUIC/HTTP/3 error code
  that closed the connection), :class:`ConnectTimeout`, :class:`CertificateError`
  (``code`` = the QUIC CRYPTO_ERROR code of the TLS alert);
* session level — :class:`SessionRejected` (``status_code``), :class:`SessionClosed`
  (the WebTransport close ``code`` and ``reason``; ``http_code`` when the session
  ended abruptly);
* stream level — :class:`StreamReset` (the peer reset the stream it sends us: readers
  get it), :class:`StopReceiving` (the peer stopped reading the stream we send:
  writers get it), :class:`StreamClosed` (writing after the end). ``code`` is the
  32-bit WebTransport application code, or None when the peer used an HTTP/3 code
  outside the application range (``http_code`` tells which);
* :class:`DatagramTooLarge`, :class:`FlowControlError`, :class:`ProtocolError`.
"""

from __future__ import annotations

__all__ = [
    "CertificateError",
    "ConnectTimeout",
    "ConnectionFailed",
    "DatagramTooLarge",
    "FlowControlError",
    "ProtocolError",
    "SessionClosed",
    "SessionRejected",
    "StopReceiving",
    "StreamClosed",
    "StreamError",
    "StreamReset",
    "WebTransportError",
]


class WebTransportError(Exception):
    """Base class of the API's exceptions; ``code`` is an error code (0: none)."""

    def __init__(self, message: str = "", code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


# -- connection ---------------------------------------------------------------------------


class ConnectionFailed(WebTransportError):
    """The QUIC connection could not be set up or was lost; ``code`` is the QUIC
    (or HTTP/3) error code and ``reason`` the peer's or our reason phrase."""

    def __init__(self, message: str = "connection failed", code: int = 0, reason: str = "") -> None:
        super().__init__(message, code)
        self.reason = reason


class ConnectTimeout(ConnectionFailed, TimeoutError):
    """The handshake or the CONNECT exchange did not finish within the timeout."""

    def __init__(self, message: str = "connect timed out", code: int = 0) -> None:
        super().__init__(message, code)


class CertificateError(ConnectionFailed):
    """The server's certificate was refused (``code``: QUIC CRYPTO_ERROR 0x1XX)."""


# -- session ------------------------------------------------------------------------------


class SessionRejected(WebTransportError):
    """The server refused the session; ``status_code`` is its HTTP status (0 when no
    response came: no common draft, the request was reset, or a session limit)."""

    def __init__(
        self,
        status_code: int = 0,
        reason: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        text = f"session rejected (status {status_code})"
        super().__init__(f"{text}: {reason}" if reason else text, status_code)
        self.status_code = status_code
        self.reason = reason
        self.headers = headers or {}


class SessionClosed(WebTransportError):
    """The session is closed: ``code``/``reason`` of WT_CLOSE_SESSION (0, "" for a
    plain end); ``http_code`` set when it ended abruptly (reset CONNECT stream,
    connection lost); ``by_peer`` tells who closed it."""

    def __init__(
        self,
        code: int = 0,
        reason: str = "",
        *,
        by_peer: bool = False,
        http_code: int | None = None,
    ) -> None:
        super().__init__(f"session closed (code {code}): {reason}" if reason else
                         f"session closed (code {code})", code)  # fmt: skip
        self.reason = reason
        self.by_peer = by_peer
        self.http_code = http_code


# -- streams ------------------------------------------------------------------------------


class StreamError(WebTransportError):
    """A stream-level error; ``stream_id`` names the QUIC stream."""

    def __init__(
        self, message: str, code: int | None = 0, stream_id: int = -1, http_code: int = 0
    ) -> None:
        super().__init__(message, code if code is not None else 0)
        self.code: int | None = code  # type: ignore[assignment]
        self.stream_id = stream_id
        self.http_code = http_code


class StreamReset(StreamError):
    """The peer reset the stream (RESET_STREAM): its data will not come. ``code`` is
    the WebTransport application code (None: the peer used a non-WT HTTP/3 code)."""

    def __init__(self, code: int | None = 0, stream_id: int = -1, http_code: int = 0) -> None:
        super().__init__(f"stream {stream_id} reset by peer (code {code})", code, stream_id,
                         http_code)  # fmt: skip


class StopReceiving(StreamError):
    """The peer no longer reads the stream (STOP_SENDING); writing is over. ``code``
    is the WebTransport application code (None: a non-WT HTTP/3 code)."""

    def __init__(self, code: int | None = 0, stream_id: int = -1, http_code: int = 0) -> None:
        super().__init__(f"stream {stream_id}: peer stopped receiving (code {code})", code,
                         stream_id, http_code)  # fmt: skip


class StreamClosed(StreamError):
    """The operation needs a half of the stream that is already finished or absent."""

    def __init__(self, message: str = "stream closed", stream_id: int = -1) -> None:
        super().__init__(message, 0, stream_id)


# -- misc ---------------------------------------------------------------------------------


class DatagramTooLarge(WebTransportError):
    """A datagram does not fit one QUIC packet; ``max_size`` is the current limit."""

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"datagram of {size} bytes exceeds the limit of {max_size}", 0)
        self.size = size
        self.max_size = max_size


class FlowControlError(WebTransportError):
    """A session's flow-control limit stops the operation."""


class ProtocolError(WebTransportError):
    """The peer violated the protocol (``code``: the HTTP/3 or QUIC error code)."""
