"""qlog of QPACK (h3.qlog_qpack): instructions created and parsed on both encoder and
decoder streams, field sections with their prefix and representations, the dynamic
tables mirrored on both ends (the peer's mirror equals ours), blocked streams, partial
instructions, bounded state, and nothing built when tracing is off."""

from __future__ import annotations

from typing import Any

import pytest

import h3.qlog_qpack as qlog_qpack
from h3.events import H3Event, HeadersReceived
from h3.qlog_qpack import MAX_PARTIAL_INSTRUCTION, MAX_UNACKED_SECTIONS, QpackLogger
from h3.qpack import QpackDecoder, QpackEncoder
from quic.qlog import QlogMemorySink
from tests.h3.h3pair import REQUEST, H3LeanPair, lean_pair
from tests.support.qlog_schema import check_events

ENCODER_INSTRUCTIONS = {
    "set_dynamic_table_capacity",
    "insert_with_name_reference",
    "insert_without_name_reference",
    "duplicate",
}


def _traced_pair() -> tuple[H3LeanPair, dict[str, QlogMemorySink]]:
    sinks: dict[str, QlogMemorySink] = {}

    def factory(role: str) -> Any:
        def make(is_client: bool, odcid: bytes) -> QlogMemorySink | None:
            return sinks.setdefault(role, QlogMemorySink()) if odcid else None

        return make

    p = lean_pair(
        client_quic={"qlog_factory": factory("client")},
        server_quic={"qlog_factory": factory("server")},
    )
    return p, sinks


def _requests(p: H3LeanPair, count: int) -> None:
    """``count`` requests, one after the other; a custom field whose value changes
    every second request, so the encoders insert into their dynamic tables."""
    answered: set[int] = set()
    response = [(b":status", b"200"), (b"x-server-token", b"abcdef0123456789")]

    def handler(side: str, event: H3Event) -> None:
        if side == "server" and isinstance(event, HeadersReceived):
            p.server.send_headers(event.stream_id, response, end_stream=True)
        if side == "client" and isinstance(event, HeadersReceived):
            answered.add(event.stream_id)

    p.handler = handler
    for i in range(count):
        sid = p.client.get_next_available_stream_id()
        field = (b"x-custom-header", b"some value that is long enough %d" % (i // 2))
        p.client.send_headers(sid, [*REQUEST, field], end_stream=True)
        p.run(lambda: sid in answered)  # noqa: B023
    p.settle(0.2)


def _named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["name"] == name]


def _instructions(events: list[dict[str, Any]], name: str, encoder: bool) -> list[Any]:
    return [
        d["instruction"]
        for d in _named(events, name)
        if (d["instruction"]["instruction_type"] in ENCODER_INSTRUCTIONS) == encoder
    ]


def test_qpack_events_of_a_pair_match_end_to_end() -> None:
    p, sinks = _traced_pair()
    _requests(p, 4)
    client, server = sinks["client"].events, sinks["server"].events
    assert not check_events(client) and not check_events(server)
    for sender, receiver in ((client, server), (server, client)):
        # every instruction one end writes, the other parses: encoder and decoder streams
        for encoder in (True, False):
            created = _instructions(sender, "qpack:instruction_created", encoder)
            assert created
            assert created == _instructions(receiver, "qpack:instruction_parsed", encoder)
        # the receiver's mirror of the sender's table is the sender's own
        ours = [d for d in _named(sender, "qpack:dynamic_table_updated") if d["owner"] == "local"]
        mirrored = [
            d for d in _named(receiver, "qpack:dynamic_table_updated") if d["owner"] == "remote"
        ]
        assert [d["entries"] for d in ours] == [d["entries"] for d in mirrored] != []
        # each field section: encoded and decoded alike (prefix, field lines, fields)
        encoded = {d["stream_id"]: d for d in _named(sender, "qpack:headers_encoded")}
        decoded = {d["stream_id"]: d for d in _named(receiver, "qpack:headers_decoded")}
        assert encoded == decoded and len(encoded) == 4
    # the client's table: the capacity set, its entries with their decoded values
    # (Huffman-coded on the wire), Known Received Count up to date
    first = _instructions(client, "qpack:instruction_created", True)[0]
    assert first == {"instruction_type": "set_dynamic_table_capacity", "capacity": 4096}
    inserts = [i for i in _instructions(client, "qpack:instruction_created", True) if "value" in i]
    assert any(i["huffman_encoded_value"] for i in inserts)
    assert {"name": "x-custom-header", "value": "some value that is long enough 1"} in [
        {"name": i["name"], "value": i["value"]} for i in inserts
    ]
    entries = [
        e
        for d in _named(client, "qpack:dynamic_table_updated")
        if d["owner"] == "local" and d["update_type"] == "inserted"
        for e in d["entries"]
    ]
    assert [e["index"] for e in entries] == list(range(len(entries)))
    state = [d for d in _named(client, "qpack:state_updated") if d["owner"] == "local"][-1]
    assert state == {
        "owner": "local",
        "dynamic_table_capacity": 4096,
        "dynamic_table_size": sum(len(e["name"]) + len(e["value"]) + 32 for e in entries),
        "known_received_count": len(entries),  # every section was acknowledged
        "current_insert_count": len(entries),
    }
    # a section after the insertions refers to the dynamic table
    later = _named(client, "qpack:headers_encoded")[-1]
    assert later["block_prefix"]["required_insert_count"] == len(entries)
    assert any(line["table_type"] == "dynamic" for line in later["header_block"])
    assert len(later["header_block"]) == len(later["headers"])


def _logged() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    events: list[tuple[str, dict[str, Any]]] = []

    def log(now: float | None, name: str, data: dict[str, Any]) -> None:
        events.append((name, data))

    return events, log


def test_blocked_section_partial_instructions_and_evictions() -> None:
    capacity = 256
    enc_events, enc_log = _logged()
    dec_events, dec_log = _logged()
    encoder, decoder = QpackEncoder(), QpackDecoder(capacity, 16)
    encoder.trace = QpackLogger(enc_log, 0)
    decoder.trace = QpackLogger(dec_log, capacity)
    encoder.apply_settings(capacity, 16)
    decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
    headers = [(b":method", b"GET"), (b"x-a", b"value number one")]
    decoder.feed_header(0, encoder.encode(0, headers))
    block = encoder.encode(4, headers)  # refers to the entry inserted just now
    assert decoder.feed_header(4, block) is None  # the insertion has not arrived
    assert ("qpack:stream_state_updated", {"stream_id": 4, "state": "blocked"}) in dec_events
    for byte in encoder.pending_encoder_stream_data():  # one byte at a time
        decoder.feed_encoder_stream(bytes((byte,)))
    names = [n for n, _ in dec_events]
    unblocked = names.index(
        "qpack:stream_state_updated", names.index("qpack:stream_state_updated") + 1
    )
    assert dec_events[unblocked][1] == {"stream_id": 4, "state": "unblocked"}
    assert names[unblocked + 1] == "qpack:headers_decoded"
    assert dec_events[unblocked + 1][1]["block_prefix"]["required_insert_count"] >= 1
    # partial instructions were parsed once complete: same instructions both ends
    parsed = [d["instruction"] for n, d in dec_events if n == "qpack:instruction_parsed"]
    created = [d["instruction"] for n, d in enc_events if n == "qpack:instruction_created"]
    assert parsed == created and len(parsed) >= 2
    # many distinct values: the table fills and evicts (RFC 9204 §3.2.2)
    for i in range(40):
        fields = [(b":method", b"GET"), (b"x-b", b"distinct value %d" % i)]
        for sid in (8 + 8 * i, 12 + 8 * i):
            block = encoder.encode(sid, fields)
            decoder.feed_encoder_stream(encoder.pending_encoder_stream_data())
            assert decoder.feed_header(sid, block) == fields
            encoder.feed_decoder_stream(decoder.pending_decoder_stream_data())
    for events, owner in ((enc_events, "local"), (dec_events, "remote")):
        evicted = [
            e["index"]
            for n, d in events
            if n == "qpack:dynamic_table_updated" and d["update_type"] == "evicted"
            for e in d["entries"]
        ]
        assert evicted and evicted == sorted(evicted) and evicted[0] == 0
        states = [d for n, d in events if n == "qpack:state_updated" and d["owner"] == owner]
        assert all(s["dynamic_table_size"] <= s["dynamic_table_capacity"] for s in states)
    assert encoder.trace.encoder_table.entries == decoder.trace.decoder_table.entries
    assert not check_events([{"time": 0, "name": n, "data": d} for n, d in enc_events + dec_events])


def _unacked_held(sections: int) -> int:
    table = QpackLogger(lambda *_: None, 4096).encoder_table
    for sid in range(sections):
        table.section(sid * 4, 1)
    return sum(len(v) for v in table.unacked.values())


def test_state_is_bounded() -> None:
    # sections the peer never acknowledges: remembered up to a cap (N vs 4N)
    n = MAX_UNACKED_SECTIONS
    held_n, held_4n = _unacked_held(n), _unacked_held(4 * n)
    assert held_n == held_4n == MAX_UNACKED_SECTIONS
    # a partial instruction longer than any sane one: the stream is no longer parsed
    events, log = _logged()
    logger = QpackLogger(log, 4096)
    huge = bytes((0x40 | 0x1F,)) + b"\xff" * 4 + b"\x7f"  # Insert with Literal Name, long name
    logger.encoder_instructions_parsed(huge)
    logger.encoder_instructions_parsed(bytes(MAX_PARTIAL_INSTRUCTION))
    assert logger._encoder_in.partial == b"" and logger._encoder_in.broken
    logger.encoder_instructions_parsed(b"\x3f\xe1\x1f")  # nothing more is parsed
    assert not events


def test_tracing_off_builds_no_qpack_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append("QpackLogger")

    monkeypatch.setattr(qlog_qpack.QpackLogger, "__init__", spy)
    p = lean_pair()
    _requests(p, 3)
    assert p.client.encoder.trace is None and p.server.decoder.trace is None
    assert calls == []
