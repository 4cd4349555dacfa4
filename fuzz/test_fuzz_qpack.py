"""Property tests for QPACK and field validation: arbitrary bytes fed to the decoder
(header blocks, encoder stream) or the encoder (decoder stream) either work or raise
the typed H3 errors; encode -> decode is the identity, in any delivery order."""

from __future__ import annotations

import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from h3.errors import H3ConnectionError, H3Error, H3StreamError
from h3.headers import (
    RequestHead,
    ResponseHead,
    validate_request_headers,
    validate_response_headers,
    validate_trailers,
)
from h3.qpack import FieldSectionTooLarge, Headers, QpackDecoder, QpackEncoder

stream_ids = st.integers(0, 2**62 - 1)
names = st.one_of(
    st.sampled_from(
        [b":method", b":path", b":status", b":authority", b"content-type", b"cookie", b"x-a"]
    ),
    st.binary(min_size=1, max_size=20),
)
values = st.one_of(
    st.sampled_from([b"", b"GET", b"/", b"200", b"text/html"]), st.binary(max_size=60)
)
header_lists = st.lists(st.tuples(names, values), max_size=12)


@given(stream_ids, st.binary(max_size=200), st.integers(0, 64), st.sampled_from([None, 0, 100]))
def test_decoder_header_block(
    stream_id: int, block: bytes, blocked: int, limit: int | None
) -> None:
    decoder = QpackDecoder(4096, blocked, limit)
    try:
        result = decoder.feed_header(stream_id, block)
    except H3ConnectionError:
        return
    except FieldSectionTooLarge as exc:
        assert exc.stream_id == stream_id
        return
    if result is None:
        assert decoder.is_blocked(stream_id)
        decoder.cancel_stream(stream_id)
        assert not decoder.is_blocked(stream_id)
    else:
        assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in result)
    assert isinstance(decoder.pending_decoder_stream_data(), bytes)


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_decoder_encoder_stream(chunks: list[bytes]) -> None:
    decoder = QpackDecoder(4096, 16)
    try:
        for chunk in chunks:
            assert decoder.feed_encoder_stream(chunk) == []  # nothing was blocked
    except H3ConnectionError:
        pass


operations = st.lists(
    st.one_of(
        st.tuples(st.just("header"), st.integers(0, 5), st.binary(max_size=30)),
        st.tuples(st.just("encoder"), st.just(0), st.binary(max_size=30)),
        st.tuples(st.just("cancel"), st.integers(0, 5), st.just(b"")),
    ),
    max_size=15,
)


@given(operations)
def test_decoder_interleaved(ops: list[tuple[str, int, bytes]]) -> None:
    decoder = QpackDecoder(256, 3, 300)
    try:
        for kind, stream_id, data in ops:
            if kind == "header":
                decoder.feed_header(4 * stream_id, data)
            elif kind == "encoder":
                for sid, result in decoder.feed_encoder_stream(data):
                    assert isinstance(result, list | FieldSectionTooLarge)
                    assert sid % 4 == 0
            else:
                decoder.cancel_stream(4 * stream_id)
            assert decoder.blocked_stream_count <= 3
    except H3Error as exc:
        assert isinstance(exc, H3ConnectionError | FieldSectionTooLarge)


@given(st.lists(st.binary(max_size=30), max_size=8))
def test_encoder_decoder_stream(chunks: list[bytes]) -> None:
    encoder = QpackEncoder()
    encoder.apply_settings(4096, 16)
    encoder.encode(0, [(b"x-a", b"b")])
    encoder.encode(4, [(b"x-a", b"b")])
    try:
        for chunk in chunks:
            encoder.feed_decoder_stream(chunk)
    except H3ConnectionError:
        pass


@settings(max_examples=examples(150))
@given(
    st.lists(header_lists, min_size=1, max_size=8),
    st.integers(0, 4096),
    st.integers(0, 16),
    st.randoms(use_true_random=False),
)
def test_round_trip_any_order(
    sections: list[Headers], capacity: int, blocked: int, rng: random.Random
) -> None:
    decoder = QpackDecoder(capacity, blocked, None)
    encoder = QpackEncoder()
    encoder.apply_settings(capacity, blocked)
    blocks = []
    encoder_data = bytearray()
    for index, headers in enumerate(sections * 2):
        blocks.append((4 * index, encoder.encode(4 * index, headers), headers))
        encoder_data += encoder.pending_encoder_stream_data()
    # Deliver the header blocks first (shuffled), the encoder stream afterwards in
    # random pieces: every section comes out exactly once and intact.
    rng.shuffle(blocks)
    decoded: dict[int, Headers | FieldSectionTooLarge] = {}
    for stream_id, block, _ in blocks:
        result = decoder.feed_header(stream_id, block)
        if result is not None:
            decoded[stream_id] = result
    assert decoder.blocked_stream_count <= blocked
    pos = 0
    while pos < len(encoder_data):
        step = rng.randint(1, 16)
        decoded.update(decoder.feed_encoder_stream(bytes(encoder_data[pos : pos + step])))
        pos += step
    assert decoder.blocked_stream_count == 0
    assert decoded == {stream_id: headers for stream_id, _, headers in blocks}
    encoder.feed_decoder_stream(decoder.pending_decoder_stream_data())


@given(header_lists, st.booleans())
def test_validate_request_only_typed_errors(headers: Headers, enable: bool) -> None:
    try:
        head = validate_request_headers(headers, enable_connect_protocol=enable)
    except H3StreamError:
        return
    assert isinstance(head, RequestHead)
    assert head.method


@given(header_lists)
def test_validate_response_and_trailers_only_typed_errors(headers: Headers) -> None:
    try:
        head = validate_response_headers(headers)
        assert isinstance(head, ResponseHead) and 100 <= head.status <= 599
    except H3StreamError:
        pass
    with contextlib.suppress(H3StreamError):
        assert validate_trailers(headers) == headers
