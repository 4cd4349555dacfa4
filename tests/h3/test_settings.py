"""HTTP/3 SETTINGS codec (RFC 9114 §7.2.4, RFC 9204 §5, RFC 9220, RFC 9297 §2.1.1,
WebTransport draft-02 and draft-16)."""

from __future__ import annotations

import random

import pytest

from h3.errors import H3ConnectionError, H3ErrorCode
from h3.frames import FrameReader, FrameType
from h3.settings import (
    BOOLEAN_SETTINGS,
    HTTP2_RESERVED_SETTINGS,
    SETTING_DEFAULTS,
    SettingId,
    decode_settings,
    encode_settings,
    encode_settings_frame,
    grease_setting,
    is_reserved_setting,
)
from quic.buffer import VARINT_MAX, encode_varint


def raw(*pairs: int) -> bytes:
    return b"".join(encode_varint(v) for v in pairs)


def test_setting_ids() -> None:
    assert int(SettingId.QPACK_MAX_TABLE_CAPACITY) == 0x1
    assert int(SettingId.MAX_FIELD_SECTION_SIZE) == 0x6
    assert int(SettingId.QPACK_BLOCKED_STREAMS) == 0x7
    assert int(SettingId.ENABLE_CONNECT_PROTOCOL) == 0x8
    assert int(SettingId.H3_DATAGRAM) == 0x33
    assert int(SettingId.H3_DATAGRAM_DRAFT04) == 0xFFD277
    assert int(SettingId.ENABLE_WEBTRANSPORT_DRAFT02) == 0x2B603742
    assert int(SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07) == 0xC671706A
    # draft-ietf-webtrans-http3-16 §9.2
    assert int(SettingId.WT_ENABLED) == 0x2C7CF000
    assert int(SettingId.WT_INITIAL_MAX_STREAMS_UNI) == 0x2B64
    assert int(SettingId.WT_INITIAL_MAX_STREAMS_BIDI) == 0x2B65
    assert int(SettingId.WT_INITIAL_MAX_DATA) == 0x2B61
    assert set(SETTING_DEFAULTS) == set(SettingId)
    assert SETTING_DEFAULTS[SettingId.MAX_FIELD_SECTION_SIZE] is None
    assert sorted(HTTP2_RESERVED_SETTINGS) == [2, 3, 4, 5]


def test_explicit_bytes() -> None:
    settings = {SettingId.QPACK_MAX_TABLE_CAPACITY: 4096, SettingId.H3_DATAGRAM: 1}
    assert encode_settings(settings) == b"\x01\x50\x00\x33\x01"
    assert encode_settings({}) == b""
    assert encode_settings_frame({SettingId.ENABLE_CONNECT_PROTOCOL: 1}) == b"\x04\x02\x08\x01"
    assert decode_settings(b"\x01\x50\x00\x33\x01") == {1: 4096, 0x33: 1}
    assert decode_settings(b"") == {}


def test_round_trip_browser_like_settings() -> None:
    settings: dict[int, int] = {
        SettingId.QPACK_MAX_TABLE_CAPACITY: 65536,
        SettingId.QPACK_BLOCKED_STREAMS: 100,
        SettingId.MAX_FIELD_SECTION_SIZE: 2**40,
        SettingId.ENABLE_CONNECT_PROTOCOL: 1,
        SettingId.H3_DATAGRAM: 1,
        SettingId.H3_DATAGRAM_DRAFT04: 1,
        SettingId.ENABLE_WEBTRANSPORT_DRAFT02: 1,
        SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 16,
        SettingId.WT_ENABLED: 1,
        SettingId.WT_INITIAL_MAX_DATA: VARINT_MAX,
        SettingId.WT_INITIAL_MAX_STREAMS_UNI: 100,
        SettingId.WT_INITIAL_MAX_STREAMS_BIDI: 0,
    }
    grease_id, grease_value = grease_setting(random.Random(5))
    settings[grease_id] = grease_value
    decoded = decode_settings(encode_settings(settings))
    assert decoded == settings
    assert list(decoded) == list(settings)  # order preserved
    # through a FrameReader in one-byte chunks
    frame = encode_settings_frame(settings)
    reader = FrameReader()
    items = [item for i in range(len(frame)) for item in reader.feed(frame[i : i + 1])]
    assert items == [(FrameType.SETTINGS, encode_settings(settings))]


def test_unknown_and_reserved_ids_are_kept() -> None:
    payload = raw(0x21, 7, 0x1F * 99 + 0x21, VARINT_MAX, 0x123456, 9, 0x00, 5)
    assert decode_settings(payload) == {
        0x21: 7,
        0x1F * 99 + 0x21: VARINT_MAX,
        0x123456: 9,
        0x00: 5,
    }


def test_grease_setting() -> None:
    rng = random.Random(9)
    for _ in range(100):
        setting_id, value = grease_setting(rng)
        assert is_reserved_setting(setting_id) and 0 <= value <= VARINT_MAX
    assert is_reserved_setting(grease_setting()[0])
    assert not is_reserved_setting(SettingId.H3_DATAGRAM)


def assert_settings_error(payload: bytes, code: int = H3ErrorCode.H3_SETTINGS_ERROR) -> None:
    with pytest.raises(H3ConnectionError) as info:
        decode_settings(payload)
    assert info.value.error_code == code


def test_duplicate_id_is_settings_error() -> None:
    assert_settings_error(raw(1, 0, 6, 100, 1, 0))
    assert_settings_error(raw(0x21, 1, 0x21, 1))


@pytest.mark.parametrize("setting_id", sorted(HTTP2_RESERVED_SETTINGS))
def test_http2_ids_are_settings_error(setting_id: int) -> None:
    assert_settings_error(raw(setting_id, 0))
    assert_settings_error(raw(1, 0, setting_id, 1))
    with pytest.raises(ValueError):
        encode_settings({setting_id: 0})


@pytest.mark.parametrize("setting_id", sorted(BOOLEAN_SETTINGS))
def test_boolean_settings_must_be_0_or_1(setting_id: int) -> None:
    assert decode_settings(raw(setting_id, 0)) == {setting_id: 0}
    assert decode_settings(raw(setting_id, 1)) == {setting_id: 1}
    for bad in (2, 64, VARINT_MAX):
        assert_settings_error(raw(setting_id, bad))
        with pytest.raises(ValueError):
            encode_settings({setting_id: bad})


def test_boolean_set() -> None:
    assert {
        SettingId.ENABLE_CONNECT_PROTOCOL,
        SettingId.H3_DATAGRAM,
        SettingId.ENABLE_WEBTRANSPORT_DRAFT02,
        SettingId.WT_ENABLED,
    } <= BOOLEAN_SETTINGS
    # counts and sizes are not booleans
    assert SettingId.WT_INITIAL_MAX_DATA not in BOOLEAN_SETTINGS
    assert decode_settings(raw(SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07, 100)) == {
        SettingId.WEBTRANSPORT_MAX_SESSIONS_DRAFT07: 100
    }


def test_truncation_at_every_byte_is_frame_error() -> None:
    pairs = [raw(0x01, 16384), raw(0x2C7CF000, 1), raw(0x21, 2**40)]
    payload = b"".join(pairs)
    ends = {sum(len(p) for p in pairs[:i]): i for i in range(len(pairs) + 1)}
    assert sorted(ends) == [0, 5, 10, 19]
    for cut in range(len(payload) + 1):
        if cut in ends:  # a cut between pairs is a shorter, valid payload
            assert len(decode_settings(payload[:cut])) == ends[cut]
        else:
            assert_settings_error(payload[:cut], H3ErrorCode.H3_FRAME_ERROR)


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_settings({1: VARINT_MAX + 1})
    with pytest.raises(ValueError):
        encode_settings({1: -1})
    with pytest.raises(ValueError):
        encode_settings({VARINT_MAX + 1: 0})


def test_grease_draws_from_one_generator_per_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """GREASE (RFC 9114 §7.2.4.1, §7.2.8; RFC 9297 §5.4) makes no ``random.Random`` per
    call (each seeds itself from os.urandom): one per connection was ~2 % of a handshake."""
    from h3.capsules import grease_capsule
    from h3.frames import grease_frame

    made: list[int] = []

    class Counting(random.Random):
        def __init__(self, x: int | None = None) -> None:
            made.append(1)
            super().__init__(x)

    monkeypatch.setattr(random, "Random", Counting)
    for _ in range(10):
        setting_id, _value = grease_setting()
        assert is_reserved_setting(setting_id)
        assert grease_frame() and grease_capsule()
    assert made == []
