"""WebTransport error codes: application-code mapping and the session-abort exception.

Theory of operation
-------------------
WebTransport applications reset streams with a 32-bit code. On the wire those codes
live inside the HTTP/3 error-code space, in the WT_APPLICATION_ERROR range
``0x52e4a40fa8db..0x52e5ac983162`` (draft-ietf-webtrans-http3-16 §4.4), skipping the
reserved HTTP/3 codepoints ``0x1f * N + 0x21`` (RFC 9114 §8.1). The range contains one
reserved codepoint every 0x1f values and the first value of the range sits right after
one, so application code ``n`` maps to ``first + n + n // 0x1e``.

Draft-02 §4.3 defines the same formula for 8-bit codes (``0x00..0xff`` onto
``0x52e4a40fa8db..0x52e4a40fa9e2``): its range is the prefix of draft-16's, so one
mapping serves every draft.

A received code outside the range (or a reserved one) is not an application code: the
stream is still reset, but the application gets no WebTransport code (§4.4).

:class:`SessionAbort` is raised by the session logic for errors that end one session
(flow-control violations, malformed capsules); the connection turns it into a reset of
the CONNECT stream in one place.
"""

from __future__ import annotations

from h3.errors import H3ErrorCode, is_reserved_codepoint

__all__ = [
    "WT_APPLICATION_ERROR_FIRST",
    "WT_APPLICATION_ERROR_LAST",
    "WT_MAX_APPLICATION_CODE",
    "SessionAbort",
    "WebTransportError",
    "http_code_to_webtransport_code",
    "is_webtransport_application_code",
    "webtransport_code_to_http_code",
]

#: First and last HTTP/3 code of the WT_APPLICATION_ERROR range (draft-16 §4.4).
WT_APPLICATION_ERROR_FIRST = 0x52E4A40FA8DB
WT_APPLICATION_ERROR_LAST = 0x52E5AC983162
#: Largest application error code (32 bits, draft-16 §4.4).
WT_MAX_APPLICATION_CODE = 0xFFFFFFFF

_STEP = 0x1E  # application codes between two reserved codepoints
_PERIOD = 0x1F  # spacing of the reserved codepoints


class WebTransportError(Exception):
    """A local misuse of the WebTransport API (unknown session, closed session, ...)."""


class SessionAbort(Exception):
    """A protocol error that terminates one session (draft-16 §5, §6).

    ``error_code`` is the HTTP/3 code used to reset the CONNECT stream (for instance
    WT_FLOW_CONTROL_ERROR or H3_MESSAGE_ERROR).
    """

    def __init__(self, error_code: int, reason: str = "") -> None:
        super().__init__(error_code, reason)
        self.error_code = error_code
        self.reason = reason

    def __str__(self) -> str:
        try:
            name = H3ErrorCode(self.error_code).name
        except ValueError:
            name = hex(self.error_code)
        return f"{name}: {self.reason}" if self.reason else name


def webtransport_code_to_http_code(code: int) -> int:
    """The HTTP/3 error code carrying WebTransport application code ``code`` (§4.4)."""
    if not 0 <= code <= WT_MAX_APPLICATION_CODE:
        raise ValueError(f"WebTransport application error code out of 32-bit range: {code}")
    return WT_APPLICATION_ERROR_FIRST + code + code // _STEP


def is_webtransport_application_code(http_code: int) -> bool:
    """True if ``http_code`` lies in WT_APPLICATION_ERROR and is not reserved (§4.4)."""
    return (
        WT_APPLICATION_ERROR_FIRST <= http_code <= WT_APPLICATION_ERROR_LAST
        and not is_reserved_codepoint(http_code)
    )


def http_code_to_webtransport_code(http_code: int) -> int | None:
    """The application code an HTTP/3 error code carries, or None if it carries none
    (outside WT_APPLICATION_ERROR or a reserved codepoint, draft-16 §4.4)."""
    if not is_webtransport_application_code(http_code):
        return None
    shifted = http_code - WT_APPLICATION_ERROR_FIRST
    return shifted - shifted // _PERIOD
