"""HTTP/3 field section validation: requests, responses, trailers (RFC 9114 §4.2, §4.3).

Theory of operation
-------------------
A decoded field section (a list of ``(name, value)`` byte pairs, as QPACK yields it) is
checked in one pass over its lines and split into the control data carried by
pseudo-header fields and the regular fields. Anything RFC 9114 §4.1.2 calls
*malformed* raises :class:`H3StreamError` with H3_MESSAGE_ERROR, a stream error:

- field names: RFC 9110 §5.1 tokens, lowercase only (§4.2); values: no NUL, CR or LF
  and no leading or trailing whitespace (the rules of RFC 9113 §8.2.1, which RFC 9114
  §4.2 inherits "like HTTP/2");
- connection-specific fields (Connection, Keep-Alive, Proxy-Connection,
  Transfer-Encoding, Upgrade) anywhere; TE anywhere but in a request header section,
  and there only with the value "trailers" (§4.2);
- pseudo-header fields after a regular field, unknown or repeated ones, response ones
  in a request and the other way round, any in trailers (§4.3);
- requests without :method, :scheme or :path (CONNECT excepted), with an empty or
  non-absolute :path for "http"/"https", with neither :authority nor Host (or with
  differing or empty ones) for "http"/"https" (§4.3.1); CONNECT requests with :scheme
  or :path, or without :authority (§4.4); extended CONNECT (RFC 9220, which applies
  RFC 8441 §4 to HTTP/3): :protocol only with CONNECT, only when we enabled it with
  SETTINGS_ENABLE_CONNECT_PROTOCOL, and then :scheme, :path and :authority required;
- responses without a three-digit :status in 100-599 (101 is not used by HTTP/3,
  §4.5).

The result is a small frozen dataclass (:class:`RequestHead`, :class:`ResponseHead`)
holding the control data and the regular fields in their original order, plus the
parsed Content-Length for the stream logic, which checks it against the DATA it
receives with :func:`check_content_length` (§4.1.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from h3.errors import H3ErrorCode, H3StreamError

__all__ = [
    "CONNECTION_SPECIFIC_FIELDS",
    "Headers",
    "RequestHead",
    "ResponseHead",
    "check_content_length",
    "parse_content_length",
    "validate_request_headers",
    "validate_response_headers",
    "validate_trailers",
]

Headers: TypeAlias = list[tuple[bytes, bytes]]

_MESSAGE_ERROR = H3ErrorCode.H3_MESSAGE_ERROR

# RFC 9114 §4.2; RFC 9110 §7.6.1.
CONNECTION_SPECIFIC_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)

# RFC 9114 §4.3.1 (+ :protocol, RFC 9220 / RFC 8441 §4) and §4.3.2.
_METHOD = b":method"
_SCHEME = b":scheme"
_AUTHORITY = b":authority"
_PATH = b":path"
_PROTOCOL = b":protocol"
_STATUS = b":status"
_REQUEST_PSEUDO = frozenset({_METHOD, _SCHEME, _AUTHORITY, _PATH, _PROTOCOL})
_REQUEST_PSEUDO_NO_PROTOCOL = _REQUEST_PSEUDO - {_PROTOCOL}
_RESPONSE_PSEUDO = frozenset({_STATUS})
_NO_PSEUDO: frozenset[bytes] = frozenset()

# RFC 9110 §5.6.2: tchar, restricted to lowercase letters (RFC 9114 §4.2).
_TCHAR_LOWER = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TCHAR = _TCHAR_LOWER + _UPPER
# RFC 9113 §8.2.1: no NUL, CR, LF; no leading or trailing SP / HTAB.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z").search
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
_SCHEME_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*\Z").match
_HTTP_SCHEMES = frozenset({b"http", b"https"})
_CONNECT = b"CONNECT"
_OPTIONS = b"OPTIONS"


def _malformed(reason: str) -> H3StreamError:
    return H3StreamError(_MESSAGE_ERROR, reason)


def _show(data: bytes) -> str:
    """A short printable rendering of untrusted bytes for error reasons."""
    return repr(data[:40]) + ("..." if len(data) > 40 else "")


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A validated request header section (RFC 9114 §4.3.1, RFC 9220)."""

    method: bytes
    scheme: bytes | None
    authority: bytes | None
    path: bytes | None
    protocol: bytes | None
    headers: Headers
    content_length: int | None = None

    @property
    def is_connect(self) -> bool:
        """True for CONNECT, plain or extended."""
        return self.method == _CONNECT

    @property
    def is_extended_connect(self) -> bool:
        """True for an extended CONNECT (``:protocol`` present, RFC 9220)."""
        return self.protocol is not None


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A validated response header section (RFC 9114 §4.3.2)."""

    status: int
    headers: Headers
    content_length: int | None = None

    @property
    def is_interim(self) -> bool:
        """True for an informational (1xx) response, which a final one follows (§4.1)."""
        return self.status < 200


def _check_name(name: bytes) -> None:
    # RFC 9114 §4.2: lowercase tokens only.
    if not name:
        raise _malformed("empty field name")
    if name.translate(None, _TCHAR_LOWER):
        if name.translate(None, _UPPER) != name:
            raise _malformed(f"uppercase character in field name {_show(name)}")
        raise _malformed(f"invalid character in field name {_show(name)}")


def _split(
    headers: Headers, allowed_pseudo: frozenset[bytes], *, allow_te: bool
) -> tuple[dict[bytes, bytes], Headers]:
    """One pass over the lines: returns (pseudo-header fields, regular fields)."""
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    append = regular.append
    bad_value = _BAD_VALUE
    for name, value in headers:
        if bad_value(value) is not None:
            raise _malformed(f"invalid field value for {_show(name)}")
        if name[:1] == b":":
            # RFC 9114 §4.3: pseudo-header fields first, each known, once, in context.
            if regular:
                raise _malformed(f"pseudo-header field {_show(name)} after a regular field")
            if name not in allowed_pseudo:
                raise _malformed(f"pseudo-header field {_show(name)} not allowed here")
            if name in pseudo:
                raise _malformed(f"duplicate pseudo-header field {_show(name)}")
            pseudo[name] = value
            continue
        _check_name(name)
        if name in CONNECTION_SPECIFIC_FIELDS:
            raise _malformed(f"connection-specific field {_show(name)}")  # RFC 9114 §4.2
        if name == b"te" and (not allow_te or value.lower() != b"trailers"):
            # RFC 9114 §4.2: TE only in a request header section, only "trailers".
            raise _malformed(f"TE field {_show(value)} not allowed here")
        append((name, value))
    return pseudo, regular


def parse_content_length(headers: Headers) -> int | None:
    """The Content-Length of regular ``headers`` (RFC 9110 §8.6), None when absent.

    Repeated or list-form values must all be the same decimal number (RFC 9110 §8.6
    lets a recipient accept that); anything else is malformed (RFC 9114 §4.1.2).
    """
    length: int | None = None
    for name, value in headers:
        if name != b"content-length":
            continue
        for item in value.split(b","):
            item = item.strip(b" \t")
            if not item.isdigit():
                raise _malformed(f"invalid content-length {_show(value)}")
            number = int(item)
            if length is not None and number != length:
                raise _malformed("conflicting content-length values")
            length = number
    return length


def check_content_length(declared: int | None, received: int, *, end_stream: bool) -> None:
    """Check the DATA received so far against a declared Content-Length (RFC 9114 §4.1.2).

    ``received`` is the sum of DATA frame payload lengths so far; ``end_stream`` is true
    once the message is complete. Pass ``declared=None`` when the message cannot have
    content (responses to HEAD, 204, 304) or has no Content-Length.
    """
    if declared is None:
        return
    if received > declared or (end_stream and received != declared):
        raise _malformed(f"content-length {declared} but {received} bytes of content")


def _check_authority(scheme: bytes | None, authority: bytes | None, headers: Headers) -> None:
    """RFC 9114 §4.3.1: :authority / Host rules for schemes with a mandatory authority."""
    if scheme is None or scheme.lower() not in _HTTP_SCHEMES:
        return
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1:
        raise _malformed("more than one Host field")  # RFC 9110 §7.2
    host = hosts[0] if hosts else None
    if authority is None and host is None:
        raise _malformed("request without :authority or Host")
    if authority == b"" or host == b"":
        raise _malformed("empty :authority or Host")
    if authority is not None and host is not None and authority != host:
        raise _malformed(":authority and Host differ")
    if authority is not None and b"@" in authority:
        raise _malformed(":authority with userinfo")


def _check_request_control(pseudo: dict[bytes, bytes]) -> None:
    """The CONNECT / extended CONNECT / ordinary request shapes (§4.3.1, §4.4, RFC 9220)."""
    method = pseudo.get(_METHOD)
    if method is None:
        raise _malformed("request without :method")
    if not method or method.translate(None, _TCHAR):
        raise _malformed(f"invalid :method {_show(method)}")  # RFC 9110 §9.1: token
    scheme = pseudo.get(_SCHEME)
    if scheme is not None and _SCHEME_RE(scheme) is None:
        raise _malformed(f"invalid :scheme {_show(scheme)}")
    if method == _CONNECT:
        if _PROTOCOL in pseudo:
            # RFC 8441 §4 via RFC 9220.
            missing = {_SCHEME, _PATH, _AUTHORITY} - pseudo.keys()
            if missing:
                names = ", ".join(sorted(name.decode() for name in missing))
                raise _malformed(f"extended CONNECT without {names}")
            if not pseudo[_PROTOCOL]:
                raise _malformed("empty :protocol")
        else:
            # RFC 9114 §4.4: only :method and :authority.
            if scheme is not None or _PATH in pseudo:
                raise _malformed("CONNECT with :scheme or :path")
            if not pseudo.get(_AUTHORITY):
                raise _malformed("CONNECT without :authority")
            return
    else:
        if _PROTOCOL in pseudo:
            raise _malformed(":protocol in a request other than CONNECT")  # RFC 8441 §4
        if scheme is None or _PATH not in pseudo:
            raise _malformed("request without :scheme or :path")
    path = pseudo[_PATH]
    if scheme is not None and scheme.lower() in _HTTP_SCHEMES:
        # §4.3.1: non-empty; path-absolute [ "?" query ], or "*" for OPTIONS.
        if not path:
            raise _malformed("empty :path")
        if path[:1] != b"/" and not (path == b"*" and method == _OPTIONS):
            raise _malformed(f"invalid :path {_show(path)}")


def validate_request_headers(
    headers: Headers, *, enable_connect_protocol: bool = True
) -> RequestHead:
    """Validate a request header section; raise H3StreamError(H3_MESSAGE_ERROR) if malformed.

    ``enable_connect_protocol`` says whether we sent SETTINGS_ENABLE_CONNECT_PROTOCOL=1
    (RFC 9220); without it ``:protocol`` is an unknown pseudo-header field.
    """
    allowed = _REQUEST_PSEUDO if enable_connect_protocol else _REQUEST_PSEUDO_NO_PROTOCOL
    pseudo, regular = _split(headers, allowed, allow_te=True)
    _check_request_control(pseudo)
    scheme = pseudo.get(_SCHEME)
    authority = pseudo.get(_AUTHORITY)
    _check_authority(scheme, authority, regular)
    return RequestHead(
        method=pseudo[_METHOD],
        scheme=scheme,
        authority=authority,
        path=pseudo.get(_PATH),
        protocol=pseudo.get(_PROTOCOL),
        headers=regular,
        content_length=parse_content_length(regular),
    )


def validate_response_headers(headers: Headers) -> ResponseHead:
    """Validate a response header section; raise H3StreamError(H3_MESSAGE_ERROR) if malformed."""
    pseudo, regular = _split(headers, _RESPONSE_PSEUDO, allow_te=False)
    value = pseudo.get(_STATUS)
    if value is None:
        raise _malformed("response without :status")  # RFC 9114 §4.3.2
    # RFC 9110 §15: three digits, 100-599; RFC 9114 §4.5: no 101 in HTTP/3.
    if len(value) != 3 or not value.isdigit():
        raise _malformed(f"invalid :status {_show(value)}")
    status = int(value)
    if not 100 <= status <= 599 or status == 101:
        raise _malformed(f"invalid :status {status}")
    return ResponseHead(
        status=status, headers=regular, content_length=parse_content_length(regular)
    )


def validate_trailers(headers: Headers) -> Headers:
    """Validate a trailer section (no pseudo-header fields, §4.3); return its fields."""
    return _split(headers, _NO_PSEUDO, allow_te=False)[1]
