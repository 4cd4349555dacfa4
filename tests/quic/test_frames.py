"""Frame codec (RFC 9000 §12.4, §19; RFC 9221 §4) and the RFC 9000 A.1 varint examples."""

from __future__ import annotations

import pytest

from quic.buffer import VARINT_MAX, decode_varint, encode_varint, encode_varint_size
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import (
    FRAME_INFO,
    HANDSHAKE_DONE_FRAME,
    MAX_STREAMS_LIMIT,
    ONE_RTT_TAKES_ALL,
    PING_FRAME,
    AckFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    Frame,
    FrameType,
    HandshakeDoneFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    check_frame_allowed,
    crypto_frame_header_size,
    datagram_frame_header_size,
    decode_ack,
    decode_datagram_frame,
    decode_frame,
    decode_frames,
    encode_ack_frame,
    encode_application_close_frame,
    encode_connection_close_frame,
    encode_crypto_frame_header,
    encode_data_blocked_frame,
    encode_datagram_frame_header,
    encode_frame,
    encode_max_data_frame,
    encode_max_stream_data_frame,
    encode_max_streams_frame,
    encode_new_connection_id_frame,
    encode_new_token_frame,
    encode_path_challenge_frame,
    encode_path_response_frame,
    encode_reset_stream_frame,
    encode_retire_connection_id_frame,
    encode_stop_sending_frame,
    encode_stream_data_blocked_frame,
    encode_stream_frame_header,
    encode_streams_blocked_frame,
    is_ack_eliciting,
    is_probing_only,
    stream_frame_header_size,
)
from quic.packet import PacketType

FEE = TransportErrorCode.FRAME_ENCODING_ERROR
PV = TransportErrorCode.PROTOCOL_VIOLATION
TOKEN = bytes(range(16))

# -- RFC 9000 Appendix A.1 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexdata", "value", "minimal"),
    [
        ("c2197c5eff14e88c", 151288809941952652, True),
        ("9d7f3e7d", 494878333, True),
        ("7bbd", 15293, True),
        ("25", 37, True),
        ("4025", 37, False),
    ],
)
def test_rfc9000_a1_varints(hexdata: str, value: int, minimal: bool) -> None:
    data = bytes.fromhex(hexdata)
    assert decode_varint(data, 0) == (value, len(data))
    assert encode_varint_size(value, len(data)) == data
    assert (encode_varint(value) == data) is minimal


# -- explicit bytes (hand-computed from the RFC 9000 §19 layouts) ---------------------------

EXPLICIT: list[tuple[Frame, str]] = [
    (PaddingFrame(3), "000000"),
    (PingFrame(), "01"),
    # largest 12, delay 7, 2 more ranges, first range 2; gap 10-5-2=3 len 2; gap 3-0-2=1 len 0
    (AckFrame(((10, 12), (3, 5), (0, 0)), 7), "020c07020203020100"),
    (AckFrame(((0, 0),), 0, (1, 2, 300)), "03000000000102412c"),
    (ResetStreamFrame(4, 0x100, 1000), "0404410043e8"),
    (StopSendingFrame(3, 0), "050300"),
    (CryptoFrame(0, b"abc"), "060003616263"),
    (NewTokenFrame(b"tk"), "0702746b"),
    (StreamFrame(4, 0, b"hi", True), "0b04026869"),
    (StreamFrame(4, 64, b"", False), "0e04404000"),
    (MaxDataFrame(16384), "1080004000"),
    (MaxStreamDataFrame(1, 2), "110102"),
    (MaxStreamsFrame(5, True), "1205"),
    (MaxStreamsFrame(5, False), "1305"),
    (DataBlockedFrame(63), "143f"),
    (StreamDataBlockedFrame(8, 64), "15084040"),
    (StreamsBlockedFrame(1, True), "1601"),
    (StreamsBlockedFrame(1, False), "1701"),
    (NewConnectionIdFrame(2, 1, b"\x11" * 4, TOKEN), "1802010411111111" + TOKEN.hex()),
    (RetireConnectionIdFrame(9), "1909"),
    (PathChallengeFrame(b"12345678"), "1a" + b"12345678".hex()),
    (PathResponseFrame(b"abcdefgh"), "1b" + b"abcdefgh".hex()),
    (ConnectionCloseFrame(0x0A, 0x08, b"x"), "1c0a080178"),
    (ApplicationCloseFrame(0x100, b""), "1d410000"),
    (HandshakeDoneFrame(), "1e"),
    (DatagramFrame(b"dg"), "31026467"),
]


@pytest.mark.parametrize(("frame", "hexdata"), EXPLICIT)
def test_explicit_bytes(frame: Frame, hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    assert frame.encode() == data
    assert encode_frame(frame) == data
    assert decode_frame(data, 0) == (frame, len(data))
    assert data[0] == frame.frame_type


# -- round trips, truncation, trailing data ---------------------------------------------------

SAMPLES: list[Frame] = [f for f, _ in EXPLICIT] + [
    AckFrame(((VARINT_MAX - 5, VARINT_MAX),), 1 << 40),
    AckFrame(((100, 100), (50, 98), (0, 10)), 0, (0, 0, 0)),
    ResetStreamFrame(VARINT_MAX, VARINT_MAX, VARINT_MAX),
    CryptoFrame(1 << 20, b"\x00" * 300),
    StreamFrame(VARINT_MAX, VARINT_MAX - 3, b"end", True),
    StreamFrame(0, 0, b"", True),
    MaxStreamsFrame(MAX_STREAMS_LIMIT, False),
    StreamsBlockedFrame(MAX_STREAMS_LIMIT, True),
    NewConnectionIdFrame(7, 7, b"\xff" * 20, TOKEN),
    ConnectionCloseFrame(0x1FF, 0x31, "é".encode() * 100),
    DatagramFrame(b""),
    DatagramFrame(b"z" * 1000),
]


@pytest.mark.parametrize("frame", SAMPLES)
def test_round_trip_truncation_and_trailing(frame: Frame) -> None:
    data = frame.encode()
    assert decode_frame(data, 0) == (frame, len(data))
    assert decode_frames(data) == [frame]
    # Trailing data: decoding stops exactly at the end of the frame.
    if not isinstance(frame, PaddingFrame):
        assert decode_frame(data + b"\x01\x01", 0) == (frame, len(data))
        assert decode_frame(b"\x01" + data, 1) == (frame, len(data) + 1)
    else:
        assert decode_frame(data + b"\x01", 0) == (frame, len(data))
    # Every truncation raises FRAME_ENCODING_ERROR (a shorter PADDING run is valid).
    for cut in range(len(data)):
        if isinstance(frame, PaddingFrame) and cut:
            assert decode_frame(data[:cut], 0) == (PaddingFrame(cut), cut)
            continue
        with pytest.raises(QuicProtocolError) as info:
            decode_frame(data[:cut], 0)
        assert info.value.error_code == FEE
        if cut:
            assert info.value.frame_type == data[0]


def test_decode_frames_sequence() -> None:
    payload = b"".join(f.encode() for f in SAMPLES)
    assert decode_frames(payload) == SAMPLES


def test_padding_run_is_one_frame() -> None:
    payload = bytes(1000) + b"\x01" + bytes(5)
    assert decode_frames(payload) == [PaddingFrame(1000), PingFrame(), PaddingFrame(5)]


def test_stream_without_length_runs_to_end() -> None:
    for frame_type, offset_field, offset in [(0x08, b"", 0), (0x0D, b"\x44\x00", 0x400)]:
        data = bytes((frame_type,)) + b"\x05" + offset_field + b"rest of packet"
        frame, end = decode_frame(data, 0)
        assert frame == StreamFrame(5, offset, b"rest of packet", bool(frame_type & 1))
        assert end == len(data)
        assert isinstance(frame, StreamFrame)
        assert type(frame.data) is bytes


def test_datagram_without_length_runs_to_end() -> None:
    assert decode_frame(b"\x30hello", 0) == (DatagramFrame(b"hello"), 6)
    assert decode_frame(b"\x30", 0) == (DatagramFrame(b""), 1)


def test_frame_type_attribute_matches_encoding() -> None:
    for frame in SAMPLES:
        assert frame.encode()[0] == frame.frame_type
        assert frame.frame_type in FRAME_INFO


# -- validation rules ---------------------------------------------------------------------------


def _decode_error(data: bytes) -> QuicProtocolError:
    with pytest.raises(QuicProtocolError) as info:
        decode_frames(data)
    return info.value


@pytest.mark.parametrize("frame_type", [0x20, 0x2E, 0x2F, 0x32, 0x3F])  # 0x1f: IMMEDIATE_ACK
def test_unknown_single_byte_type(frame_type: int) -> None:
    error = _decode_error(bytes((frame_type,)) + b"\x00" * 4)
    assert (error.error_code, error.frame_type) == (FEE, frame_type)


def test_multi_byte_frame_types() -> None:
    # 0x4001 is PING, not minimally encoded: PROTOCOL_VIOLATION (RFC 9000 §12.4).
    error = _decode_error(b"\x40\x01")
    assert (error.error_code, error.frame_type) == (PV, 1)
    error = _decode_error(b"\x80\x00\x00\x30")
    assert (error.error_code, error.frame_type) == (PV, 0x30)
    # 0x4040 is the minimal encoding of 64, an unknown type.
    error = _decode_error(b"\x40\x40")
    assert (error.error_code, error.frame_type) == (FEE, 0x40)
    error = _decode_error(b"\x80\x00\xab\xcd")  # minimal 4-byte encoding, unknown
    assert (error.error_code, error.frame_type) == (FEE, 0xABCD)
    error = _decode_error(b"\xc0\x00\x00\x00\x00\x00\xab\xcd")  # fits in 4 bytes
    assert (error.error_code, error.frame_type) == (PV, 0xABCD)
    assert _decode_error(b"\x40").error_code == FEE  # truncated type


def test_ack_underflow() -> None:
    # First range larger than largest acknowledged (RFC 9000 §19.3.1).
    assert _decode_error(bytes.fromhex("0205000006")).error_code == FEE
    # Gap drives the next largest below zero: largest 5, first 0, gap 5.
    assert _decode_error(bytes.fromhex("02050001000500")).error_code == FEE
    # Range length drives smallest below zero: largest 10, first 0, gap 0 -> 8, len 9.
    error = _decode_error(bytes.fromhex("020a0001000009"))
    assert (error.error_code, error.frame_type) == (FEE, 0x02)
    # Exactly reaching zero is fine.
    frame, _ = decode_frame(bytes.fromhex("020a0001000008"), 0)
    assert frame == AckFrame(((10, 10), (0, 8)), 0)


def test_ack_huge_range_count() -> None:
    error = _decode_error(bytes.fromhex("03050080ffffff00") + b"\x00" * 10)
    assert (error.error_code, error.frame_type) == (FEE, 0x03)


def test_decode_ack_fast_path() -> None:
    data = b"junk" + encode_ack_frame(((7, 9), (1, 3)), 25, (4, 5, 6)) + b"\x01"
    frame, end = decode_ack(data, 5, 0x03)
    assert frame == AckFrame(((7, 9), (1, 3)), 25, (4, 5, 6))
    assert frame.largest_acknowledged == 9
    assert end == len(data) - 1


def test_stream_offset_overflow() -> None:
    big = encode_varint(VARINT_MAX)
    error = _decode_error(b"\x0e\x00" + big + b"\x01x")
    assert (error.error_code, error.frame_type) == (FEE, 0x0E)
    assert _decode_error(b"\x0c\x00" + big + b"x").error_code == FEE
    frame, _ = decode_frame(b"\x0c\x00" + big, 0)  # zero-length at the limit is fine
    assert frame == StreamFrame(0, VARINT_MAX, b"")


def test_crypto_offset_overflow() -> None:
    error = _decode_error(b"\x06" + encode_varint(VARINT_MAX) + b"\x01x")
    assert (error.error_code, error.frame_type) == (FEE, 0x06)


@pytest.mark.parametrize("frame_type", [0x12, 0x13, 0x16, 0x17])
def test_stream_count_limit(frame_type: int) -> None:
    ok = bytes((frame_type,)) + encode_varint(MAX_STREAMS_LIMIT)
    assert decode_frame(ok, 0)[1] == len(ok)
    error = _decode_error(bytes((frame_type,)) + encode_varint(MAX_STREAMS_LIMIT + 1))
    assert (error.error_code, error.frame_type) == (FEE, frame_type)


@pytest.mark.parametrize("cid_len", [0, 21, 255])
def test_new_connection_id_bad_length(cid_len: int) -> None:
    data = b"\x18\x01\x00" + bytes((cid_len,)) + b"c" * cid_len + TOKEN
    error = _decode_error(data)
    assert (error.error_code, error.frame_type) == (FEE, 0x18)


def test_new_connection_id_retire_prior_to() -> None:
    error = _decode_error(b"\x18\x01\x02\x04" + b"cccc" + TOKEN)
    assert (error.error_code, error.frame_type) == (FEE, 0x18)


def test_new_token_empty() -> None:
    error = _decode_error(b"\x07\x00")
    assert (error.error_code, error.frame_type) == (FEE, 0x07)


def test_empty_payload() -> None:
    assert _decode_error(b"").error_code == PV


# -- Table 3 as data -------------------------------------------------------------------------

INI, HS, ZR, ONE = PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.ZERO_RTT, PacketType.ONE_RTT


@pytest.mark.parametrize(
    ("frame_type", "pkts", "ack_eliciting", "congestion_controlled", "probing", "flow"),
    [
        (0x00, {INI, HS, ZR, ONE}, False, True, True, False),
        (0x01, {INI, HS, ZR, ONE}, True, True, False, False),
        (0x02, {INI, HS, ONE}, False, False, False, False),
        (0x03, {INI, HS, ONE}, False, False, False, False),
        (0x04, {ZR, ONE}, True, True, False, False),
        (0x06, {INI, HS, ONE}, True, True, False, False),
        (0x07, {ONE}, True, True, False, False),
        (0x08, {ZR, ONE}, True, True, False, True),
        (0x0F, {ZR, ONE}, True, True, False, True),
        (0x13, {ZR, ONE}, True, True, False, False),
        (0x18, {ZR, ONE}, True, True, True, False),
        (0x19, {ZR, ONE}, True, True, False, False),
        (0x1A, {ZR, ONE}, True, True, True, False),
        (0x1B, {ONE}, True, True, True, False),
        (0x1C, {INI, HS, ZR, ONE}, False, True, False, False),
        (0x1D, {ZR, ONE}, False, True, False, False),
        (0x1E, {ONE}, True, True, False, False),
        (0x30, {ZR, ONE}, True, True, False, False),
        (0x31, {ZR, ONE}, True, True, False, False),
    ],
)
def test_frame_info_table(
    frame_type: int,
    pkts: set[PacketType],
    ack_eliciting: bool,
    congestion_controlled: bool,
    probing: bool,
    flow: bool,
) -> None:
    info = FRAME_INFO[frame_type]
    assert info.packet_types == frozenset(pkts)
    assert info.ack_eliciting is ack_eliciting
    assert info.congestion_controlled is congestion_controlled
    assert info.probing is probing
    assert info.flow_controlled is flow
    for packet_type in (INI, HS, ZR, ONE):
        assert info.allowed(packet_type) is (packet_type in pkts)


def test_frame_info_covers_every_frame_type() -> None:
    assert set(FRAME_INFO) == {int(t) for t in FrameType}


def test_check_frame_allowed() -> None:
    check_frame_allowed(FrameType.CRYPTO, INI)
    check_frame_allowed(FrameType.CONNECTION_CLOSE, HS)
    with pytest.raises(QuicProtocolError) as info:
        check_frame_allowed(FrameType.CONNECTION_CLOSE_APP, HS)
    assert (info.value.error_code, info.value.frame_type) == (PV, 0x1D)
    with pytest.raises(QuicProtocolError) as info:
        check_frame_allowed(FrameType.ACK, ZR)
    assert info.value.error_code == PV
    with pytest.raises(QuicProtocolError) as info:
        check_frame_allowed(0x21, ONE)
    assert info.value.error_code == FEE


def test_decode_datagram_frame_matches_decode_frame() -> None:
    for data in (b"", b"x", bytes(range(64)), bytes(300)):
        wire = b"\x00" + DatagramFrame(data).encode() + b"\x01"
        frame, end = decode_frame(wire, 1)
        assert decode_datagram_frame(wire, 1) == (frame.data, end)  # type: ignore[attr-defined]
        for cut in range(2, end):  # truncated: FRAME_ENCODING_ERROR, as decode_frame
            with pytest.raises(QuicProtocolError) as info:
                decode_datagram_frame(wire[:cut], 1)
            assert (info.value.error_code, info.value.frame_type) == (FEE, 0x31)


def test_one_rtt_takes_every_frame_type() -> None:
    # RFC 9000 §12.4 Table 3: the dispatcher skips the packet-type check for 1-RTT
    # packets only while this holds for every known frame type
    assert ONE_RTT_TAKES_ALL
    for frame_type in FRAME_INFO:
        check_frame_allowed(frame_type, ONE)


def test_decode_frames_checks_packet_type() -> None:
    stream = StreamFrame(0, 0, b"x").encode()
    assert decode_frames(stream, ONE) == [StreamFrame(0, 0, b"x")]
    with pytest.raises(QuicProtocolError) as info:
        decode_frames(PingFrame().encode() + stream, INI)
    assert (info.value.error_code, info.value.frame_type) == (PV, stream[0])
    with pytest.raises(QuicProtocolError) as info:
        decode_frames(HandshakeDoneFrame().encode(), ZR)
    assert info.value.error_code == PV
    ok = b"\x01" + encode_ack_frame(((0, 3),), 0) + ConnectionCloseFrame(1).encode()
    assert len(decode_frames(ok, HS)) == 3


def test_ack_eliciting_and_probing() -> None:
    assert not is_ack_eliciting([AckFrame(((0, 0),), 0), PaddingFrame(10)])
    assert not is_ack_eliciting([ConnectionCloseFrame(0)])
    assert is_ack_eliciting([AckFrame(((0, 0),), 0), PingFrame()])
    assert is_ack_eliciting([DatagramFrame(b"x")])
    assert is_probing_only([PathChallengeFrame(b"8 bytes!"), PaddingFrame(100)])
    assert is_probing_only([NewConnectionIdFrame(1, 0, b"c", TOKEN)])
    assert not is_probing_only([PathChallengeFrame(b"8 bytes!"), PingFrame()])


# -- send-path header helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream_id", "offset", "length", "fin"),
    [(0, 0, 0, True), (4, 0, 10, False), (1 << 20, 1 << 33, 1200, True), (3, 63, 64, False)],
)
def test_stream_frame_header(stream_id: int, offset: int, length: int, fin: bool) -> None:
    header = encode_stream_frame_header(stream_id, offset, length, fin)
    assert len(header) == stream_frame_header_size(stream_id, offset, length)
    assert header[0] & 0x02  # LEN always present
    assert bool(header[0] & 0x04) == bool(offset)
    payload = b"p" * length
    assert decode_frame(header + payload + b"\x01", 0) == (
        StreamFrame(stream_id, offset, payload, fin),
        len(header) + length,
    )


def test_stream_frame_header_explicit() -> None:
    assert encode_stream_frame_header(4, 0, 2, True) == bytes.fromhex("0b0402")
    assert encode_stream_frame_header(4, 64, 0, False) == bytes.fromhex("0e04404000")


def test_crypto_frame_header() -> None:
    header = encode_crypto_frame_header(1000, 500)
    assert header == bytes.fromhex("0643e841f4")
    assert len(header) == crypto_frame_header_size(1000, 500)
    data = b"c" * 500
    assert decode_frame(header + data, 0) == (CryptoFrame(1000, data), len(header) + 500)


def test_datagram_frame_header() -> None:
    assert encode_datagram_frame_header(300) == bytes.fromhex("31412c")
    assert datagram_frame_header_size(300) == 3
    assert encode_datagram_frame_header(300, with_length=False) == b"\x30"
    assert datagram_frame_header_size(300, with_length=False) == 1


# -- encoder validation (ValueError) --------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        PaddingFrame(0),
        NewTokenFrame(b""),
        NewConnectionIdFrame(1, 0, b"", TOKEN),
        NewConnectionIdFrame(1, 0, b"c" * 21, TOKEN),
        NewConnectionIdFrame(1, 0, b"c", TOKEN[:15]),
        NewConnectionIdFrame(1, 2, b"c", TOKEN),
        PathChallengeFrame(b"7 bytes"),
        PathResponseFrame(b"9 bytes!!"),
        MaxStreamsFrame(MAX_STREAMS_LIMIT + 1, True),
        StreamsBlockedFrame(MAX_STREAMS_LIMIT + 1, False),
        StreamFrame(0, VARINT_MAX, b"x"),
        CryptoFrame(VARINT_MAX, b"x"),
        AckFrame((), 0),
        AckFrame(((5, 4),), 0),
        AckFrame(((5, 6), (4, 4)), 0),  # adjacent ranges must be merged
        AckFrame(((5, 6), (1, 7)), 0),
        AckFrame(((5, 6), (2, 1)), 0),
        MaxDataFrame(VARINT_MAX + 1),
        ResetStreamFrame(-1, 0, 0),
    ],
)
def test_encoder_rejects(frame: Frame) -> None:
    with pytest.raises(ValueError):
        frame.encode()


# -- the encoder functions the send path calls, round-tripped through the decoder -----------

_VARINT_EDGES = (0, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, VARINT_MAX)


def _encoder_cases() -> list[tuple[bytes, Frame]]:
    cases: list[tuple[bytes, Frame]] = [
        (PING_FRAME, PingFrame()),
        (HANDSHAKE_DONE_FRAME, HandshakeDoneFrame()),
        (encode_new_token_frame(b"t" * 70), NewTokenFrame(b"t" * 70)),
        (encode_path_challenge_frame(b"abcdefgh"), PathChallengeFrame(b"abcdefgh")),
        (encode_path_response_frame(b"12345678"), PathResponseFrame(b"12345678")),
        (
            encode_new_connection_id_frame(7, 3, b"\x01" * 20, TOKEN),
            NewConnectionIdFrame(7, 3, b"\x01" * 20, TOKEN),
        ),
        (
            encode_connection_close_frame(0x0A, 0x18, b"why" * 100),
            ConnectionCloseFrame(0x0A, 0x18, b"why" * 100),
        ),
        (encode_application_close_frame(VARINT_MAX, b""), ApplicationCloseFrame(VARINT_MAX)),
    ]
    for v in _VARINT_EDGES:
        w = VARINT_MAX - v  # the other end of the range at the same time
        cases += [
            (encode_reset_stream_frame(v, w, v), ResetStreamFrame(v, w, v)),
            (encode_stop_sending_frame(w, v), StopSendingFrame(w, v)),
            (encode_max_data_frame(v), MaxDataFrame(v)),
            (encode_max_stream_data_frame(v, w), MaxStreamDataFrame(v, w)),
            (encode_data_blocked_frame(v), DataBlockedFrame(v)),
            (encode_stream_data_blocked_frame(w, v), StreamDataBlockedFrame(w, v)),
            (encode_retire_connection_id_frame(v), RetireConnectionIdFrame(v)),
            (
                encode_new_connection_id_frame(v, v, b"\xaa", TOKEN),
                NewConnectionIdFrame(v, v, b"\xaa", TOKEN),
            ),
            (encode_connection_close_frame(v, w, b"r"), ConnectionCloseFrame(v, w, b"r")),
            (encode_application_close_frame(w, b"r"), ApplicationCloseFrame(w, b"r")),
        ]
        if v <= MAX_STREAMS_LIMIT:
            for bidi in (True, False):
                cases += [
                    (encode_max_streams_frame(bidi, v), MaxStreamsFrame(v, bidi)),
                    (encode_streams_blocked_frame(bidi, v), StreamsBlockedFrame(v, bidi)),
                ]
    return cases


@pytest.mark.parametrize(("data", "frame"), _encoder_cases())
def test_encoder_functions_round_trip(data: bytes, frame: Frame) -> None:
    # the function the send path calls, the dataclass, and the decoder all agree
    assert data == frame.encode()
    assert decode_frame(data, 0) == (frame, len(data))
    assert decode_frame(data + b"\x01", 0) == (frame, len(data))  # trailing PING untouched
    for cut in range(len(data)):  # every truncation is a typed error
        with pytest.raises(QuicProtocolError):
            decode_frame(data[:cut], 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_max_streams_frame(True, MAX_STREAMS_LIMIT + 1),
        lambda: encode_streams_blocked_frame(False, MAX_STREAMS_LIMIT + 1),
        lambda: encode_new_connection_id_frame(1, 2, b"\x01", TOKEN),
        lambda: encode_new_connection_id_frame(1, 0, b"", TOKEN),
        lambda: encode_new_connection_id_frame(1, 0, b"\x01" * 21, TOKEN),
        lambda: encode_new_connection_id_frame(1, 0, b"\x01", TOKEN[:15]),
        lambda: encode_path_challenge_frame(b"short"),
        lambda: encode_path_response_frame(b"toolong!!"),
        lambda: encode_new_token_frame(b""),
        lambda: encode_max_data_frame(VARINT_MAX + 1),
        lambda: encode_reset_stream_frame(0, 0, VARINT_MAX + 1),
    ],
)
def test_encoder_functions_reject_bad_values(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError):
        call()
