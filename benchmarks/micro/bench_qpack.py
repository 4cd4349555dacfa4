"""QPACK (RFC 9204) through our h3.qpack wrappers: encode and decode a request section."""

from __future__ import annotations

from typing import Any

from h3.qpack import QpackDecoder, QpackEncoder

REQUEST = [
    (b":method", b"CONNECT"),
    (b":protocol", b"webtransport"),
    (b":scheme", b"https"),
    (b":authority", b"example.com:4433"),
    (b":path", b"/echo?room=42"),
    (b"origin", b"https://example.com"),
    (b"user-agent", b"pywebtransport-bench/1.0"),
    (b"sec-webtransport-http3-draft02", b"1"),
]


def _encoder(dynamic: bool) -> QpackEncoder:
    encoder = QpackEncoder()
    encoder.apply_settings(4096 if dynamic else 0, 16 if dynamic else 0)
    return encoder


def test_encode_static_only(benchmark: Any) -> None:
    encoder = _encoder(False)
    counter = iter(range(0, 1 << 40, 4))
    block = benchmark(lambda: encoder.encode(next(counter), REQUEST))
    assert block


def test_encode_dynamic_table(benchmark: Any) -> None:
    encoder = _encoder(True)
    counter = iter(range(0, 1 << 40, 4))
    block = benchmark(lambda: encoder.encode(next(counter), REQUEST))
    assert block


def test_decode_static_only(benchmark: Any) -> None:
    block = _encoder(False).encode(0, REQUEST)
    decoder = QpackDecoder(max_table_capacity=0, blocked_streams=0)
    counter = iter(range(0, 1 << 40, 4))
    headers = benchmark(lambda: decoder.feed_header(next(counter), block))
    assert headers == REQUEST
