"""Error-code mapping (draft-16 §4.4 / draft-02 §4.3), Structured Fields, draft profiles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h3.errors import H3ErrorCode, is_reserved_codepoint
from h3.settings import SettingId
from pywebtransport.protocol import Draft
from pywebtransport.protocol.drafts import draft_settings, select_draft, supported_by_peer
from pywebtransport.protocol.errors import (
    WT_APPLICATION_ERROR_FIRST,
    WT_APPLICATION_ERROR_LAST,
    http_code_to_webtransport_code,
    is_webtransport_application_code,
    webtransport_code_to_http_code,
)
from pywebtransport.protocol.sfv import (
    parse_string_item,
    parse_string_list,
    serialize_string,
    serialize_string_list,
)

# draft-02 §8.3: the reserved codepoints inside the 8-bit range
DRAFT02_EXCLUDED = [
    0x52E4A40FA8F9, 0x52E4A40FA918, 0x52E4A40FA937, 0x52E4A40FA956,
    0x52E4A40FA975, 0x52E4A40FA994, 0x52E4A40FA9B3, 0x52E4A40FA9D2,
]  # fmt: skip


def test_range_ends() -> None:
    assert webtransport_code_to_http_code(0) == WT_APPLICATION_ERROR_FIRST == 0x52E4A40FA8DB
    assert webtransport_code_to_http_code(0xFFFFFFFF) == WT_APPLICATION_ERROR_LAST
    assert webtransport_code_to_http_code(0xFF) == 0x52E4A40FA9E2  # draft-02's last
    with pytest.raises(ValueError):
        webtransport_code_to_http_code(1 << 32)
    with pytest.raises(ValueError):
        webtransport_code_to_http_code(-1)


def test_draft02_range_skips_the_listed_codepoints() -> None:
    mapped = {webtransport_code_to_http_code(n) for n in range(256)}
    span = set(range(0x52E4A40FA8DB, 0x52E4A40FA9E3))
    assert sorted(span - mapped) == DRAFT02_EXCLUDED
    assert all(is_reserved_codepoint(c) for c in DRAFT02_EXCLUDED)


def test_codes_outside_the_range_carry_no_application_code() -> None:
    assert http_code_to_webtransport_code(H3ErrorCode.H3_NO_ERROR) is None
    assert http_code_to_webtransport_code(WT_APPLICATION_ERROR_FIRST - 1) is None
    assert http_code_to_webtransport_code(WT_APPLICATION_ERROR_LAST + 1) is None
    assert http_code_to_webtransport_code(DRAFT02_EXCLUDED[0]) is None
    assert not is_webtransport_application_code(H3ErrorCode.WT_SESSION_GONE)


@given(st.integers(0, 0xFFFFFFFF))
def test_round_trip_never_hits_a_reserved_codepoint(code: int) -> None:
    http = webtransport_code_to_http_code(code)
    assert not is_reserved_codepoint(http)
    assert WT_APPLICATION_ERROR_FIRST <= http <= WT_APPLICATION_ERROR_LAST
    assert http_code_to_webtransport_code(http) == code


@given(st.integers(WT_APPLICATION_ERROR_FIRST, WT_APPLICATION_ERROR_LAST))
def test_every_unreserved_code_in_range_maps_back(http: int) -> None:
    code = http_code_to_webtransport_code(http)
    if is_reserved_codepoint(http):
        assert code is None
    else:
        assert code is not None and webtransport_code_to_http_code(code) == http


def test_adjacent_application_codes_around_a_reserved_codepoint() -> None:
    reserved = DRAFT02_EXCLUDED[0]
    below = http_code_to_webtransport_code(reserved - 1)
    above = http_code_to_webtransport_code(reserved + 1)
    assert below is not None and above == below + 1


# -- Structured Fields (RFC 9651) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'"a", "b"', ["a", "b"]),
        (b'"moq-00";q=0.5;x, "chat";y=?1', ["moq-00", "chat"]),  # parameters ignored
        (b'  "a"  ,"b\\"c"  ', ["a", 'b"c']),
        (b"", []),
        (b'"a", token', None),  # a Token member: the whole field is ignored
        (b'"a", 1', None),
        (b'("a" "b")', None),  # inner list
        (b'"a",', None),
        (b'"a" "b"', None),
        (b'"unterminated', None),
        (b'"bad\\escape"', None),
        (b'"a";=1', None),
        ("é".encode(), None),
    ],
)
def test_parse_string_list(raw: bytes, expected: list[str] | None) -> None:
    assert parse_string_list(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'"chat"', "chat"),
        (b'"chat";p=1', "chat"),
        (b"chat", None),
        (b'"a", "b"', None),
        (b"?1", None),
        (b":aGk=:", None),
        (b"@1700000000", None),
        (b'%"x"', None),
        (b"12.345", None),
        (b"1234567890123456", None),
    ],
)
def test_parse_string_item(raw: bytes, expected: str | None) -> None:
    assert parse_string_item(raw) == expected


@given(st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)), max_size=5))
def test_string_list_round_trip(values: list[str]) -> None:
    assert parse_string_list(serialize_string_list(values)) == values
    for value in values:
        assert parse_string_item(serialize_string(value)) == value


@given(st.binary(max_size=40))
def test_parsers_never_raise(raw: bytes) -> None:
    parse_string_list(raw)
    parse_string_item(raw)


def test_serialize_rejects_non_ascii() -> None:
    with pytest.raises(ValueError):
        serialize_string("é")


# -- draft profiles ---------------------------------------------------------------------------


def test_server_settings_announce_every_draft() -> None:
    # without draft-13 (whose server announces every window, tests/wt/test_drafts_*.py)
    settings = draft_settings([d for d in Draft if d is not Draft.DRAFT13], False, 4, 100, 10, 0)
    assert settings[SettingId.ENABLE_WEBTRANSPORT_DRAFT02] == 1
    assert settings[SettingId.H3_DATAGRAM_DRAFT04] == 1
    assert settings[SettingId.H3_DATAGRAM] == 1
    assert settings[SettingId.ENABLE_CONNECT_PROTOCOL] == 1
    assert settings[SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07] == 4
    assert settings[SettingId.WT_ENABLED] == 1
    assert settings[SettingId.WT_INITIAL_MAX_DATA] == 100
    assert settings[SettingId.WT_INITIAL_MAX_STREAMS_BIDI] == 10
    assert SettingId.WT_INITIAL_MAX_STREAMS_UNI not in settings
    client = draft_settings([Draft.DRAFT16], True, 4, 0, 0, 0)
    assert SettingId.ENABLE_CONNECT_PROTOCOL not in client


def test_chromium_draft02_settings_select_draft02() -> None:
    # PEERS.md: what Chromium 156 sends by default
    chromium = {0x1: 65536, 0x6: 16384, 0x7: 100, 0x33: 1, 0xFFD277: 1, 0x2B603742: 1}
    assert select_draft(list(Draft), chromium, peer_is_server=False) is Draft.DRAFT02
    with_07 = {**chromium, 0xC671706A: 1}
    assert select_draft(list(Draft), with_07, peer_is_server=False) is Draft.DRAFT07
    assert select_draft([Draft.DRAFT02], with_07, peer_is_server=False) is Draft.DRAFT02


def test_requirements() -> None:
    wt16 = {SettingId.WT_ENABLED: 1, SettingId.H3_DATAGRAM: 1}
    assert supported_by_peer(Draft.DRAFT16, wt16, peer_is_server=False)
    assert not supported_by_peer(Draft.DRAFT16, wt16, peer_is_server=True)  # needs CONNECT
    assert supported_by_peer(
        Draft.DRAFT16, {**wt16, SettingId.ENABLE_CONNECT_PROTOCOL: 1}, peer_is_server=True
    )
    assert not supported_by_peer(Draft.DRAFT16, {SettingId.WT_ENABLED: 1}, False)  # datagrams
    assert not supported_by_peer(
        Draft.DRAFT07, {SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 0, 0x33: 1}, True
    )
    assert not supported_by_peer(Draft.DRAFT02, {SettingId.ENABLE_WEBTRANSPORT_DRAFT02: 1}, True)
    assert select_draft(list(Draft), {}, peer_is_server=True) is None
