"""The qlog parsers of peer bytes never raise and always log schema-valid events: the
QPACK logger fed arbitrary encoder/decoder stream bytes and field sections
(h3.qlog_qpack), capsule logging of arbitrary CONNECT-stream bytes (h3.qlog), and the
endpoint's logging of datagrams it drops (quic.qlog)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from h3.qlog import H3Logger, capsule_to_qlog
from h3.qlog_qpack import QpackLogger
from h3.qpack import QpackDecoder, QpackEncoder
from quic.qlog import QlogMemorySink, QuicLogger
from quic.qlog_endpoint import EndpointLogger
from tests.support.qlog_schema import check_events


def _events() -> tuple[list[dict[str, Any]], Any]:
    events: list[dict[str, Any]] = []

    def log(now: float | None, name: str, data: dict[str, Any]) -> None:
        events.append({"time": 0.0, "name": name, "data": data})

    return events, log


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.binary(max_size=80)),
        max_size=12,
    ),
    st.sampled_from([0, 64, 4096]),
)
def test_qpack_logger_never_raises(inputs: list[tuple[int, bytes]], capacity: int) -> None:
    events, log = _events()
    logger = QpackLogger(log, capacity)
    logger.peer_settings(capacity)
    for kind, data in inputs:
        if kind == 0:
            logger.encoder_instructions_parsed(data)
        elif kind == 1:
            logger.decoder_instructions_parsed(data)
        elif kind == 2:
            logger.encoder_instructions_created(data)
        elif kind == 3:
            logger.headers_decoded(4, [(b"a", b"b")], data)
        else:
            logger.blocked(8, data)
            logger.unblocked(8, [])
    assert not check_events(events), check_events(events)[:3]
    for table in (logger.encoder_table, logger.decoder_table):
        assert table.size <= max(table.capacity, 0) or not table.entries


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2**62 - 1), st.binary(max_size=40))
def test_capsule_logging_never_raises(data: bytes, capsule_type: int, value: bytes) -> None:
    sink = QlogMemorySink()
    h3 = H3Logger(QuicLogger(sink, True, b"\x01" * 8))
    h3.capsules_created(0, data)
    h3.capsule_parsed(0, capsule_type, value)
    assert capsule_to_qlog(capsule_type, value)["raw"] == {"length": len(value)}
    assert not check_events(sink.events), check_events(sink.events)[:3]


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["invalid", "rejected", "connection_unknown"]))
def test_datagram_dropped_never_raises(datagram: bytes, trigger: str) -> None:
    sink = QlogMemorySink()
    logger = EndpointLogger(sink, False, b"")
    logger.datagram_dropped(1.0, trigger, datagram, "why")
    if len(datagram) >= 21:
        logger.stateless_reset_sent(1.0, datagram)
    assert not check_events(sink.events), check_events(sink.events)[:3]


_FIELD = st.tuples(
    st.sampled_from([b"x-a", b"x-b", b"content-type", b":path", b"user-agent"]),
    st.binary(max_size=40),
)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.lists(_FIELD, min_size=1, max_size=6), min_size=1, max_size=12))
def test_qpack_logger_follows_real_encoder(sections: list[list[tuple[bytes, bytes]]]) -> None:
    """Whatever pylsqpack writes, the logs of both ends agree: the decoder's mirror of
    the table is the encoder's, every section is logged with its fields."""
    enc_events, enc_log = _events()
    dec_events, dec_log = _events()
    encoder, decoder = QpackEncoder(), QpackDecoder(256, 16)
    encoder.trace, decoder.trace = QpackLogger(enc_log, 0), QpackLogger(dec_log, 256)
    encoder.apply_settings(256, 16)
    for index, fields in enumerate(sections):
        block = encoder.encode(index * 4, fields)
        decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
        assert decoder.feed_header(index * 4, block) == fields
        encoder.feed_decoder_stream(decoder.pending_decoder_stream_data())
    assert encoder.trace.encoder_table.entries == decoder.trace.decoder_table.entries
    written = {field for fields in sections for field in fields}
    table = encoder.trace.encoder_table
    # Huffman decoded right (ls-qpack may also insert a name alone, with no value)
    assert {(n, v) for _, n, v in table.entries} <= written | {(n, b"") for n, _ in written}
    assert table.size == sum(len(n) + len(v) + 32 for _, n, v in table.entries) <= 256
    encoded = [e["data"] for e in enc_events if e["name"] == "qpack:headers_encoded"]
    decoded = [e["data"] for e in dec_events if e["name"] == "qpack:headers_decoded"]
    assert encoded == decoded and len(encoded) == len(sections)
    assert not check_events(enc_events + dec_events)
