"""The dispatcher's STREAM case (quic.conn_dispatch): its inline reading of a
mid-stream frame (decode_stream_fields' bulk case) hands on_stream what the codec
decodes, for every size of each field, and a truncated frame is the codec's
FRAME_ENCODING_ERROR."""

from __future__ import annotations

from typing import Any

import pytest

from quic.conn_keys import APPLICATION
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import encode_stream_frame_header
from quic.frames_decode import decode_stream_fields
from quic.packet import PacketType
from tests.support.quicpair import make_pair


def _dispatched(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What on_stream gets for ``payload`` dispatched as a 1-RTT packet's frames."""
    pair = make_pair()
    pair.handshake()
    dispatcher = pair.server.dispatcher
    seen: list[tuple[Any, ...]] = []

    def on_stream(sid: int, offset: int, data: bytes, fin: bool, ftype: int, now: float) -> None:
        seen.append((sid, offset, data, fin))

    monkeypatch.setattr(dispatcher._streams, "on_stream", on_stream)
    monkeypatch.setattr(dispatcher._streams, "ends_our_exchange", lambda sid: False)
    assert dispatcher.dispatch(payload, APPLICATION, PacketType.ONE_RTT, b"", 0.0)
    return seen


def test_stream_frames_reach_on_stream_as_the_codec_decodes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames = []
    expected = []
    data = bytes(range(256)) * 6
    for sid in (0, 4, 0x3F, 0x40):
        for offset in (0, 0x3FFF, 0x4000, 0x3FFFFFFF, 0x40000000):
            for length in (0, 0x3F, 0x40, 1200):
                for fin in (False, True):
                    frame = encode_stream_frame_header(sid, offset, length, fin) + data[:length]
                    frames.append(frame)
                    sid_, offset_, data_, fin_, end = decode_stream_fields(frame, 0)
                    assert end == len(frame)
                    expected.append((sid_, offset_, data_, fin_))
    # non-minimal varints (RFC 9000 §16): a 4-byte offset and 2-byte length of small values
    frames.append(b"\x0e\x05\x80\x00\x00\x07\x40\x02ab")
    expected.append((5, 7, b"ab", False))
    for start in range(0, len(frames), 40):  # several frames per packet, in order
        got = _dispatched(b"".join(frames[start : start + 40]), monkeypatch)
        assert got == expected[start : start + 40]


def test_a_truncated_stream_frame_is_a_frame_encoding_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = encode_stream_frame_header(4, 0x10000, 1000, False) + bytes(1000)
    assert _dispatched(frame, monkeypatch) == [(4, 0x10000, bytes(1000), False)]
    for truncated in (frame[:-1], frame[:9], frame[:8]):
        with pytest.raises(QuicProtocolError) as info:
            _dispatched(truncated, monkeypatch)
        assert info.value.error_code == TransportErrorCode.FRAME_ENCODING_ERROR
