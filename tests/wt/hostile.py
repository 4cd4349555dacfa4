"""A hostile client for in-memory WebTransport pairs: raw HTTP/3 and WebTransport bytes
written straight onto the client's QUIC connection, next to a normal WebTransport client.

The server under test is ``p.server`` of a :class:`tests.wt.wtpair.WtPair`. Header
sections are QPACK-encoded with a fresh encoder (static table and literals only), so
they never depend on the dynamic table the real client's encoder set up.
"""

from __future__ import annotations

from collections.abc import Iterable

from h3.capsules import encode_capsule
from h3.datagrams import encode_h3_datagram
from h3.frames import encode_data_frame, encode_headers_frame
from h3.qpack import QpackEncoder
from h3.streams import StreamType, encode_uni_stream_header, encode_webtransport_bidi_header
from pywebtransport.protocol import SessionClosed, SessionRequested
from tests.wt.wtpair import WtPair

__all__ = [
    "GET",
    "capsule",
    "connect_request",
    "headers_frame",
    "raw_bidi",
    "raw_datagram",
    "raw_uni",
    "raw_wt_bidi",
    "raw_wt_uni",
    "server_closed",
    "server_requested",
]

Headers = list[tuple[bytes, bytes]]

GET: Headers = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/plain"),
]


def connect_request(path: str = "/hostile", protocol: bytes = b"webtransport-h3") -> Headers:
    return [
        (b":method", b"CONNECT"),
        (b":protocol", protocol),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path.encode()),
    ]


def headers_frame(stream_id: int, headers: Headers) -> bytes:
    return encode_headers_frame(QpackEncoder().encode(stream_id, headers))


def capsule(capsule_type: int, value: bytes = b"") -> bytes:
    """One capsule inside one DATA frame (RFC 9297 §3.2)."""
    return encode_data_frame(encode_capsule(capsule_type, value))


def raw_bidi(p: WtPair, parts: Iterable[bytes], fin: bool = True) -> int:
    """Open a client bidirectional stream and write ``parts`` as ONE write (one STREAM
    frame when it fits a packet)."""
    quic = p.pair.client
    sid = quic.create_stream(bidirectional=True)
    quic.send_stream_data(sid, b"".join(parts), fin)
    return sid


def raw_uni(p: WtPair, data: bytes, fin: bool = True) -> int:
    quic = p.pair.client
    sid = quic.create_stream(bidirectional=False)
    quic.send_stream_data(sid, data, fin)
    return sid


def raw_wt_bidi(p: WtPair, session_id: int, body: bytes = b"", fin: bool = True) -> int:
    return raw_bidi(p, [encode_webtransport_bidi_header(session_id), body], fin)


def raw_wt_uni(p: WtPair, session_id: int, body: bytes = b"", fin: bool = True) -> int:
    return raw_uni(p, encode_uni_stream_header(StreamType.WEBTRANSPORT_UNI, session_id) + body, fin)


def raw_datagram(p: WtPair, session_id: int, payload: bytes) -> None:
    p.pair.client.send_datagram(encode_h3_datagram(session_id, payload))


def server_requested(p: WtPair) -> set[int]:
    return {e.session_id for e in p.of(SessionRequested)}


def server_closed(p: WtPair) -> list[SessionClosed]:
    return p.of(SessionClosed)
