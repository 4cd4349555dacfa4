"""Property tests for the HTTP/3 codecs: arbitrary bytes either parse or raise a typed
H3 error (never anything else); decode(encode(x)) == x; chunked feeding equals whole
feeding."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from h3.capsules import (
    FLOW_CONTROL_CAPSULES,
    CapsuleReader,
    CapsuleType,
    decode_close_webtransport_session,
    decode_varint_capsule,
    encode_capsule,
    encode_close_webtransport_session,
    encode_varint_capsule,
)
from h3.datagrams import (
    MAX_QUARTER_STREAM_ID,
    decode_h3_datagram,
    encode_h3_datagram,
)
from h3.errors import H3ConnectionError, H3Error, H3StreamError
from h3.frames import (
    FrameReader,
    FrameType,
    decode_goaway,
    decode_push_promise,
    encode_data_frame,
    encode_frame,
)
from h3.settings import HTTP2_RESERVED_SETTINGS, decode_settings, encode_settings
from h3.streams import UniStreamHeaderReader, encode_uni_stream_header
from quic.buffer import VARINT_MAX

varints = st.integers(0, VARINT_MAX)
blobs = st.binary(max_size=200)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for point in [*points, len(data)]:
        out.append(data[prev:point])
        prev = point
    return out


def run_frames(chunks: list[bytes], webtransport: bool) -> list[tuple[int, bytes]] | int:
    """Feed chunks; return the merged items, or the error code raised."""
    reader = FrameReader(max_frame_size=100, webtransport=webtransport)
    items: list[tuple[int, bytes]] = []
    try:
        for i, chunk in enumerate(chunks):
            items += reader.feed(chunk, fin=i == len(chunks) - 1)
    except H3ConnectionError as exc:
        return exc.error_code
    merged: list[tuple[int, bytes]] = []
    for frame_type, payload in items:
        streamed = frame_type in (FrameType.DATA, FrameType.WEBTRANSPORT_STREAM)
        if streamed and merged and merged[-1][0] == frame_type:
            merged[-1] = (frame_type, merged[-1][1] + payload)
        else:
            merged.append((frame_type, payload))
    return merged


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8), st.booleans())
def test_frame_reader_arbitrary_bytes(data: bytes, cuts: list[int], wt: bool) -> None:
    # parses or raises H3ConnectionError only (run_frames lets anything else escape),
    # and any chunking gives the same frames, or the same error, as feeding it whole
    assert run_frames(chunked(data, cuts), wt) == run_frames([data], wt)


@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1, 4, 5, 0x21, 0x40, 0x1234]), st.binary(max_size=80)),
        max_size=10,
    ),
    st.lists(st.integers(0, 2000), max_size=10),
)
def test_frame_round_trip(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    data = b"".join(encode_data_frame(p) if t == 0 else encode_frame(t, p) for t, p in frames)
    expected: list[tuple[int, bytes]] = []
    for frame_type, payload in frames:
        if frame_type not in (0, 1, 4, 5):
            payload = b""  # unknown types are reported without their payload
        if frame_type == 0 and expected and expected[-1][0] == 0:
            expected[-1] = (0, expected[-1][1] + payload)
        else:
            expected.append((frame_type, payload))
    assert run_frames(chunked(data, cuts), False) == expected


@given(st.binary(max_size=100))
def test_payload_decoders_arbitrary_bytes(data: bytes) -> None:
    for decode in (decode_goaway, decode_push_promise, decode_settings):
        with contextlib.suppress(H3ConnectionError):
            decode(data)


@given(st.dictionaries(varints.filter(lambda v: v not in HTTP2_RESERVED_SETTINGS), varints))
def test_settings_round_trip(values: dict[int, int]) -> None:
    from h3.settings import BOOLEAN_SETTINGS

    values = {k: (v & 1 if k in BOOLEAN_SETTINGS else v) for k, v in values.items()}
    assert decode_settings(encode_settings(values)) == values


def run_capsules(chunks: list[bytes]) -> list[tuple[int, bytes]] | int:
    reader = CapsuleReader(max_capsule_size=64)
    items: list[tuple[int, bytes]] = []
    try:
        for i, chunk in enumerate(chunks):
            items += reader.feed(chunk, fin=i == len(chunks) - 1)
    except H3StreamError as exc:
        return exc.error_code
    return items


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_capsule_reader_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    whole = run_capsules([data])
    assert run_capsules(chunked(data, cuts)) == whole
    if isinstance(whole, list):
        for capsule_type, value in whole:
            try:
                if capsule_type in FLOW_CONTROL_CAPSULES:
                    decode_varint_capsule(value)
                elif capsule_type == CapsuleType.CLOSE_WEBTRANSPORT_SESSION:
                    decode_close_webtransport_session(value)
            except H3StreamError:
                pass


@given(st.lists(st.tuples(varints, st.binary(max_size=60)), max_size=8))
def test_capsule_round_trip(capsules: list[tuple[int, bytes]]) -> None:
    bounded = {*FLOW_CONTROL_CAPSULES, 0x2843, 0x78AE}
    capsules = [(t, v) for t, v in capsules if t not in bounded]
    data = b"".join(encode_capsule(t, v) for t, v in capsules)
    assert CapsuleReader().feed(data, fin=True) == capsules


@given(st.sampled_from(sorted(FLOW_CONTROL_CAPSULES)), varints)
def test_flow_control_capsule_round_trip(capsule_type: int, value: int) -> None:
    ((t, v),) = CapsuleReader().feed(encode_varint_capsule(capsule_type, value), fin=True)
    assert t == capsule_type and decode_varint_capsule(v) == value


@given(st.integers(0, 0xFFFFFFFF), st.text(max_size=300))
@settings(max_examples=examples(200))
def test_close_session_round_trip(code: int, reason: str) -> None:
    ((_, value),) = CapsuleReader().feed(encode_close_webtransport_session(code, reason))
    got_code, got_reason = decode_close_webtransport_session(value)
    assert got_code == code and reason.startswith(got_reason)
    if len(reason.encode()) <= 1024:
        assert got_reason == reason


@given(st.binary(max_size=40))
def test_h3_datagram_arbitrary_bytes(data: bytes) -> None:
    try:
        stream_id, payload = decode_h3_datagram(data)
    except H3Error as exc:
        assert isinstance(exc, H3ConnectionError)
        return
    assert stream_id % 4 == 0 and data.endswith(payload)


@given(st.integers(0, MAX_QUARTER_STREAM_ID), st.binary(max_size=100))
def test_h3_datagram_round_trip(quarter: int, payload: bytes) -> None:
    assert decode_h3_datagram(encode_h3_datagram(4 * quarter, payload)) == (4 * quarter, payload)


@given(st.sampled_from([0, 1, 2, 3, 0x54, 0x21, 0x3FFF]), varints, st.binary(max_size=20))
def test_uni_stream_header_round_trip(stream_type: int, header_id: int, rest: bytes) -> None:
    with_id = stream_type in (1, 0x54)
    data = encode_uni_stream_header(stream_type, header_id if with_id else None) + rest
    reader = UniStreamHeaderReader()
    result = None
    for i in range(len(data)):
        result = reader.feed(data[i : i + 1])
        if result is not None:
            result = result._replace(rest=result.rest + data[i + 1 :])
            break
    assert result is not None
    assert result.stream_type == stream_type
    assert result.header_id == (header_id if with_id else None)
    assert result.rest == rest
