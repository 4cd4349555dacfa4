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

Saying why (connection failures): :class:`ConnectionFailed` carries ``host``, ``port``,
``draft`` (when one was negotiated) and ``alert`` (the TLS alert in words, e.g.
``"bad_certificate (42)"``: a QUIC CRYPTO_ERROR is 0x100 + the alert, RFC 9001 §4.8);
:class:`CertificateError` adds ``problem`` (hash mismatch, expired, name mismatch,
unknown issuer). :func:`error_code_text`, :func:`tls_alert_text` and
:func:`certificate_problem` build those words; the client composes its messages
with them.
"""

from __future__ import annotations

from h3.errors import H3ErrorCode
from quic.errors import TransportErrorCode
from quic.tls.alerts import AlertDescription

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
    "certificate_problem",
    "error_code_text",
    "tls_alert_text",
]

_CRYPTO_ERROR = 0x100  # RFC 9001 §4.8: CRYPTO_ERROR = 0x100 + the TLS alert


def tls_alert_text(code: int) -> str | None:
    """``"bad_certificate (42)"`` for the QUIC CRYPTO_ERROR ``code`` (0x100 + a TLS
    alert, RFC 9001 §4.8); None for any other code."""
    if not _CRYPTO_ERROR <= code <= _CRYPTO_ERROR + 0xFF:
        return None
    alert = code - _CRYPTO_ERROR
    try:
        return f"{AlertDescription(alert).name} ({alert})"
    except ValueError:
        return f"alert {alert}"


def error_code_text(code: int, application: bool = False) -> str:
    """A close code in words: an HTTP/3 (or WebTransport) code for an application close
    (RFC 9114 §8.1), else a QUIC transport code (RFC 9000 §20.1) or a TLS alert."""
    if application:
        try:
            return f"{H3ErrorCode(code).name} ({code:#x})"
        except ValueError:
            return f"application error {code:#x}"
    alert = tls_alert_text(code)
    if alert is not None:
        return f"TLS alert {alert}"
    try:
        return f"{TransportErrorCode(code).name} ({code:#x})"
    except ValueError:
        return f"transport error {code:#x}"


#: (words in the verifier's reason, the problem in plain words) — quic.tls.verify's
#: reasons and the certificate verifier's messages
_CERTIFICATE_PROBLEMS = (
    ("hash is not pinned", "hash mismatch: the server's certificate is not one of "
     "server_certificate_hashes"),
    ("not valid now", "expired (or not yet valid): the pinned certificate is outside "
     "its validity period"),
    ("not valid at validation time", "expired (or not yet valid): the certificate is "
     "outside its validity period"),
    ("subjectAltName", "name mismatch: the certificate does not name the server"),
    ("unusable server name", "name mismatch: the server name cannot be checked against "
     "a certificate"),
    ("exceeds 14 days", "a pinned certificate may be valid for 14 days at most"),
    ("must be ECDSA", "a pinned certificate needs an ECDSA key"),
    ("X.509v3", "a pinned certificate must be X.509 version 3"),
    ("candidates exhausted", "unknown issuer: no trusted CA signed it (pass ca_certs, "
     "or pin its hash with server_certificate_hashes)"),
    ("no trusted root", "no trusted CA certificates are available (pass ca_certs)"),
)  # fmt: skip


def certificate_problem(reason: str, code: int = 0) -> str:
    """Why a certificate was refused, in plain words, from the TLS layer's reason
    (and the alert ``code``, when the reason says nothing we know)."""
    for words, problem in _CERTIFICATE_PROBLEMS:
        if words in reason:
            return problem
    if code == _CRYPTO_ERROR + AlertDescription.certificate_expired:
        return "expired (or not yet valid)"
    if code == _CRYPTO_ERROR + AlertDescription.unknown_ca:
        return "unknown issuer: no trusted CA signed it"
    return reason or "refused"


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
    (or HTTP/3) error code and ``reason`` the peer's or our reason phrase. ``host``,
    ``port``, ``draft`` and ``alert`` (a TLS alert in words) are filled in where known
    ("" and 0 otherwise)."""

    def __init__(
        self,
        message: str = "connection failed",
        code: int = 0,
        reason: str = "",
        *,
        host: str = "",
        port: int = 0,
        draft: str = "",
        alert: str = "",
    ) -> None:
        super().__init__(message, code)
        self.reason = reason
        self.host = host
        self.port = port
        self.draft = draft
        self.alert = alert


class ConnectTimeout(ConnectionFailed, TimeoutError):
    """The handshake or the CONNECT exchange did not finish within the timeout."""

    def __init__(
        self, message: str = "connect timed out", code: int = 0, *, host: str = "", port: int = 0
    ) -> None:
        super().__init__(message, code, host=host, port=port)


class CertificateError(ConnectionFailed):
    """The server's certificate was refused (``code``: QUIC CRYPTO_ERROR 0x1XX);
    ``problem`` says why in plain words (see :func:`certificate_problem`)."""

    def __init__(
        self,
        message: str = "certificate refused",
        code: int = 0,
        reason: str = "",
        *,
        host: str = "",
        port: int = 0,
        draft: str = "",
        alert: str = "",
        problem: str = "",
    ) -> None:
        super().__init__(
            message, code, reason, host=host, port=port, draft=draft, alert=alert or
            (tls_alert_text(code) or ""),
        )  # fmt: skip
        self.problem = problem or certificate_problem(reason, code)


# -- session ------------------------------------------------------------------------------


class SessionRejected(WebTransportError):
    """The server refused the session; ``status_code`` is its HTTP status (0 when no
    response came: no common draft, the request was reset, or a session limit).
    ``url`` and ``draft`` are filled in by the client where known; ``message``
    replaces the default text."""

    def __init__(
        self,
        status_code: int = 0,
        reason: str = "",
        headers: dict[str, str] | None = None,
        *,
        url: str = "",
        draft: str = "",
        message: str = "",
    ) -> None:
        text = f"session rejected (status {status_code})"
        super().__init__(message or (f"{text}: {reason}" if reason else text), status_code)
        self.status_code = status_code
        self.reason = reason
        self.headers = headers or {}
        self.url = url
        self.draft = draft


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
