"""HTTP/3 field validation (h3/headers.py): RFC 9114 §4.1.2, §4.2, §4.3, §4.4; RFC 9220."""

from __future__ import annotations

import pytest

from h3.errors import H3ErrorCode, H3StreamError
from h3.headers import (
    RequestHead,
    ResponseHead,
    check_content_length,
    parse_content_length,
    validate_request_headers,
    validate_response_headers,
    validate_trailers,
)
from h3.qpack import Headers

GET: Headers = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/index.html?q=1"),
    (b"accept", b"*/*"),
    (b"te", b"trailers"),
]

WEBTRANSPORT: Headers = [
    (b":method", b"CONNECT"),
    (b":protocol", b"webtransport"),
    (b":scheme", b"https"),
    (b":authority", b"localhost:4433"),
    (b":path", b"/echo"),
    (b"origin", b"https://localhost:4433"),
    (b"sec-webtransport-http3-draft02", b"1"),
]


def _malformed_request(headers: Headers, **kwargs: bool) -> str:
    with pytest.raises(H3StreamError) as info:
        validate_request_headers(headers, **kwargs)
    assert info.value.error_code == H3ErrorCode.H3_MESSAGE_ERROR
    assert not info.value.closes_connection
    return info.value.reason


def _malformed_response(headers: Headers) -> str:
    with pytest.raises(H3StreamError) as info:
        validate_response_headers(headers)
    assert info.value.error_code == H3ErrorCode.H3_MESSAGE_ERROR
    return info.value.reason


def _replace(headers: Headers, name: bytes, value: bytes | None) -> Headers:
    """``headers`` with ``name`` set to ``value`` (removed when None)."""
    out = [(n, v) for n, v in headers if n != name]
    if value is not None:
        out.insert(0 if name.startswith(b":") else len(out), (name, value))
    return out


# -- valid sections ------------------------------------------------------------------


def test_valid_get() -> None:
    head = validate_request_headers(GET)
    assert head == RequestHead(
        method=b"GET",
        scheme=b"https",
        authority=b"example.com",
        path=b"/index.html?q=1",
        protocol=None,
        headers=[(b"accept", b"*/*"), (b"te", b"trailers")],
        content_length=None,
    )
    assert not head.is_connect
    assert not head.is_extended_connect


def test_valid_webtransport_extended_connect() -> None:
    head = validate_request_headers(WEBTRANSPORT)
    assert head.is_connect and head.is_extended_connect
    assert head.protocol == b"webtransport"
    assert (head.scheme, head.authority, head.path) == (b"https", b"localhost:4433", b"/echo")
    assert head.headers == WEBTRANSPORT[5:]


def test_valid_plain_connect() -> None:
    head = validate_request_headers([(b":method", b"CONNECT"), (b":authority", b"proxy:443")])
    assert head.is_connect and not head.is_extended_connect
    assert head.scheme is None and head.path is None
    assert head.authority == b"proxy:443"


def test_valid_options_asterisk_and_host_header() -> None:
    head = validate_request_headers(
        [
            (b":method", b"OPTIONS"),
            (b":scheme", b"http"),
            (b":path", b"*"),
            (b"host", b"example.com"),
        ]
    )
    assert head.path == b"*" and head.authority is None
    validate_request_headers([*GET, (b"host", b"example.com")])  # equal to :authority


def test_other_scheme_needs_no_authority_and_any_path() -> None:
    head = validate_request_headers(
        [(b":method", b"GET"), (b":scheme", b"urn"), (b":path", b"isbn:123")]
    )
    assert head.scheme == b"urn"


def test_valid_response_and_interim() -> None:
    head = validate_response_headers(
        [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"5")]
    )
    assert head == ResponseHead(
        status=200,
        headers=[(b"content-type", b"text/plain"), (b"content-length", b"5")],
        content_length=5,
    )
    assert not head.is_interim
    assert validate_response_headers([(b":status", b"103")]).is_interim


def test_values_may_contain_inner_whitespace_and_obs_text() -> None:
    head = validate_response_headers([(b":status", b"204"), (b"x-a", b"a b\tc \xff")])
    assert head.headers == [(b"x-a", b"a b\tc \xff")]
    validate_response_headers([(b":status", b"204"), (b"x-empty", b"")])


def test_valid_trailers() -> None:
    trailers: Headers = [(b"x-checksum", b"abc"), (b"grpc-status", b"0")]
    assert validate_trailers(trailers) == trailers
    assert validate_trailers([]) == []


# -- field names and values (§4.2) -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (b"Accept", "uppercase"),
        (b"x-Foo", "uppercase"),
        (b"x foo", "invalid character"),
        (b"x\x00", "invalid character"),
        (b"x\r\n", "invalid character"),
        (b"x:y", "invalid character"),
        (b"x\xc3\xa9", "invalid character"),
        (b"x(y)", "invalid character"),
        (b"", "empty field name"),
    ],
)
def test_invalid_field_names(name: bytes, reason: str) -> None:
    assert reason in _malformed_request([*GET, (name, b"v")])
    assert reason in _malformed_response([(b":status", b"200"), (name, b"v")])
    with pytest.raises(H3StreamError):
        validate_trailers([(name, b"v")])


@pytest.mark.parametrize("value", [b"a\x00b", b"a\rb", b"a\nb", b" a", b"a ", b"\ta", b"a\t"])
def test_invalid_field_values(value: bytes) -> None:
    assert "invalid field value" in _malformed_request([*GET, (b"x-v", value)])
    assert "invalid field value" in _malformed_request(_replace(GET, b":path", value))
    assert "invalid field value" in _malformed_response([(b":status", b"200"), (b"x-v", value)])
    with pytest.raises(H3StreamError):
        validate_trailers([(b"x-v", value)])


@pytest.mark.parametrize(
    "name", [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
def test_connection_specific_fields(name: bytes) -> None:
    assert "connection-specific" in _malformed_request([*GET, (name, b"x")])
    assert "connection-specific" in _malformed_response([(b":status", b"200"), (name, b"x")])
    with pytest.raises(H3StreamError):
        validate_trailers([(name, b"x")])


def test_te_only_trailers_only_in_requests() -> None:
    validate_request_headers(_replace(GET, b"te", b"Trailers"))  # case-insensitive token
    assert "TE" in _malformed_request(_replace(GET, b"te", b"gzip"))
    assert "TE" in _malformed_request(_replace(GET, b"te", b"trailers, gzip"))
    assert "TE" in _malformed_response([(b":status", b"200"), (b"te", b"trailers")])
    with pytest.raises(H3StreamError):
        validate_trailers([(b"te", b"trailers")])


# -- pseudo-header fields (§4.3) --------------------------------------------------------


def test_pseudo_header_after_regular_field() -> None:
    headers = [*GET[:3], (b"accept", b"*/*"), GET[3]]
    assert "after a regular field" in _malformed_request(headers)
    assert "after a regular field" in _malformed_response([(b"server", b"x"), (b":status", b"200")])


@pytest.mark.parametrize("name", [b":status", b":foo", b":", b":Method"])
def test_unknown_or_response_pseudo_in_request(name: bytes) -> None:
    assert "not allowed" in _malformed_request([(name, b"1"), *GET])


@pytest.mark.parametrize(
    "name", [b":method", b":scheme", b":authority", b":path", b":protocol", b":foo"]
)
def test_request_or_unknown_pseudo_in_response(name: bytes) -> None:
    assert "not allowed" in _malformed_response([(b":status", b"200"), (name, b"x")])


def test_pseudo_headers_in_trailers() -> None:
    for name in (b":status", b":path", b":foo"):
        with pytest.raises(H3StreamError) as info:
            validate_trailers([(name, b"x")])
        assert info.value.error_code == H3ErrorCode.H3_MESSAGE_ERROR


@pytest.mark.parametrize("name", [b":method", b":scheme", b":authority", b":path"])
def test_duplicate_request_pseudo(name: bytes) -> None:
    value = dict(GET)[name]
    assert "duplicate" in _malformed_request([(name, value), *GET])


def test_duplicate_status() -> None:
    assert "duplicate" in _malformed_response([(b":status", b"200"), (b":status", b"200")])


@pytest.mark.parametrize("name", [b":method", b":scheme", b":path"])
def test_missing_request_pseudo(name: bytes) -> None:
    _malformed_request(_replace(GET, name, None))


def test_invalid_method_and_scheme() -> None:
    assert ":method" in _malformed_request(_replace(GET, b":method", b""))
    assert ":method" in _malformed_request(_replace(GET, b":method", b"GE T"))
    assert ":scheme" in _malformed_request(_replace(GET, b":scheme", b""))
    assert ":scheme" in _malformed_request(_replace(GET, b":scheme", b"1http"))


def test_path_rules_for_http_schemes() -> None:
    assert "empty :path" in _malformed_request(_replace(GET, b":path", b""))
    assert ":path" in _malformed_request(_replace(GET, b":path", b"index.html"))
    assert ":path" in _malformed_request(_replace(GET, b":path", b"*"))  # only for OPTIONS
    # An empty path is fine for a scheme other than http(s).
    validate_request_headers([(b":method", b"GET"), (b":scheme", b"foo"), (b":path", b"")])


def test_authority_and_host_rules() -> None:
    no_authority = _replace(GET, b":authority", None)
    assert "without :authority or Host" in _malformed_request(no_authority)
    assert "empty" in _malformed_request(_replace(GET, b":authority", b""))
    assert "empty" in _malformed_request([*no_authority, (b"host", b"")])
    assert "differ" in _malformed_request([*GET, (b"host", b"other.example")])
    assert "more than one Host" in _malformed_request(
        [*no_authority, (b"host", b"a"), (b"host", b"a")]
    )
    assert "userinfo" in _malformed_request(_replace(GET, b":authority", b"user@example.com"))


def test_status_values() -> None:
    assert "without :status" in _malformed_response([(b"server", b"x")])
    assert "without :status" in _malformed_response([])
    for value in (b"", b"20", b"2000", b"abc", b"+20", b" 200", b"099", b"600", b"101"):
        assert ":status" in _malformed_response([(b":status", value)])
    assert validate_response_headers([(b":status", b"599")]).status == 599
    assert validate_response_headers([(b":status", b"100")]).status == 100


# -- CONNECT and extended CONNECT (§4.4, RFC 9220) ----------------------------------------


def test_connect_without_authority() -> None:
    assert "CONNECT without :authority" in _malformed_request([(b":method", b"CONNECT")])
    assert "CONNECT without :authority" in _malformed_request(
        [(b":method", b"CONNECT"), (b":authority", b"")]
    )


def test_plain_connect_with_scheme_or_path() -> None:
    base: Headers = [(b":method", b"CONNECT"), (b":authority", b"proxy:443")]
    assert "CONNECT with :scheme or :path" in _malformed_request([*base, (b":path", b"/")])
    assert "CONNECT with :scheme or :path" in _malformed_request([*base, (b":scheme", b"https")])


@pytest.mark.parametrize("name", [b":scheme", b":path", b":authority"])
def test_extended_connect_requires_scheme_path_authority(name: bytes) -> None:
    reason = _malformed_request(_replace(WEBTRANSPORT, name, None))
    assert "extended CONNECT without" in reason and name.decode() in reason


def test_extended_connect_other_checks() -> None:
    assert "empty :protocol" in _malformed_request(_replace(WEBTRANSPORT, b":protocol", b""))
    assert "empty :path" in _malformed_request(_replace(WEBTRANSPORT, b":path", b""))
    # :protocol only with CONNECT (RFC 8441 §4).
    assert "other than CONNECT" in _malformed_request([(b":protocol", b"websocket"), *GET])
    # Without SETTINGS_ENABLE_CONNECT_PROTOCOL it is an unknown pseudo-header field.
    assert "not allowed" in _malformed_request(WEBTRANSPORT, enable_connect_protocol=False)
    validate_request_headers(GET, enable_connect_protocol=False)


# -- Content-Length (§4.1.2) --------------------------------------------------------------


def test_parse_content_length() -> None:
    assert parse_content_length([]) is None
    assert parse_content_length([(b"content-length", b"0")]) == 0
    assert parse_content_length([(b"content-length", b"42")]) == 42
    assert parse_content_length([(b"content-length", b"42, 42")]) == 42
    assert parse_content_length([(b"content-length", b"7"), (b"content-length", b"7")]) == 7
    for bad in (b"", b"-1", b"+1", b"1.0", b"0x10", b"4 2", b"42,", b"\xd9\xa1"):
        with pytest.raises(H3StreamError) as info:
            parse_content_length([(b"content-length", bad)])
        assert info.value.error_code == H3ErrorCode.H3_MESSAGE_ERROR
    with pytest.raises(H3StreamError):
        parse_content_length([(b"content-length", b"1"), (b"content-length", b"2")])
    with pytest.raises(H3StreamError):
        parse_content_length([(b"content-length", b"1, 2")])


def test_content_length_in_heads() -> None:
    head = validate_request_headers([*GET, (b"content-length", b"10")])
    assert head.content_length == 10
    assert "content-length" in _malformed_request([*GET, (b"content-length", b"x")])
    assert "content-length" in _malformed_response(
        [(b":status", b"200"), (b"content-length", b"-5")]
    )


def test_check_content_length() -> None:
    check_content_length(None, 1000, end_stream=True)  # nothing declared
    check_content_length(10, 4, end_stream=False)
    check_content_length(10, 10, end_stream=False)
    check_content_length(10, 10, end_stream=True)
    check_content_length(0, 0, end_stream=True)
    for declared, received, end in ((10, 11, False), (10, 9, True), (0, 1, False)):
        with pytest.raises(H3StreamError) as info:
            check_content_length(declared, received, end_stream=end)
        assert info.value.error_code == H3ErrorCode.H3_MESSAGE_ERROR
