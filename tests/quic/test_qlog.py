"""qlog tracing (quic.qlog): qvis-loadable JSON-SEQ files, every event checked against
the schema of tests/support/qlog_schema.py, loss and key events, stateless packets,
bounded memory, and zero cost when off."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quic.qlog as qlog_module
import quic.qlog_frames as qlog_frames
from quic.connection import ConnectionState
from quic.events import PingAcknowledged
from quic.frames import AckFrame, ConnectionCloseFrame, CryptoFrame, PingFrame, StreamFrame
from quic.packet import encode_retry, encode_version_negotiation, retry_pseudo_packet
from quic.protection import retry_integrity_tag
from quic.qlog import (
    QLOG_VERSION,
    QlogFileSink,
    QlogMemorySink,
    QuicLogger,
    decode_frames_for_log,
    frame_to_qlog,
    parse_json_seq,
)
from quic.qlog_endpoint import EndpointLogger
from quic.versions import QuicVersion
from tests.support.qlog_schema import check_events, check_trace
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, client_config, make_pair

SINKS = dict[str, QlogMemorySink]


def _factory(sinks: SINKS, role: str) -> Any:
    def make(is_client: bool, odcid: bytes) -> QlogMemorySink:
        assert is_client == (role == "client")
        sink = QlogMemorySink()
        sinks[role if odcid else f"{role}-endpoint"] = sink
        return sink

    return make


def _memory_pair(**link: Any) -> tuple[Pair, SINKS]:
    sinks: SINKS = {}
    pair = make_pair(
        client_kwargs={"qlog_factory": _factory(sinks, "client")},
        server_kwargs={"qlog_factory": _factory(sinks, "server")},
        **link,
    )
    return pair, sinks


def _exchange_and_close(pair: Pair, size: int = 5000) -> None:
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"x" * size, end_stream=True)
    pair.client.send_datagram(b"datagram")
    pair.run(lambda: pair.stream_done(sid), max_time=120)
    pair.server.send_stream_data(sid, b"ok", end_stream=True)  # the answer ends the stream
    pair.run(lambda: pair.stream_done(sid, "client"), max_time=120)
    pair.net.settle(0.5)  # the last ACKs: the stream leaves both sides' tables
    pair.client.close(7, "bye")
    pair.run(max_time=5)
    assert pair.client.state is ConnectionState.TERMINATED
    assert pair.server.state is ConnectionState.TERMINATED


def _names(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["name"] for e in events)


def _frame_types(events: list[dict[str, Any]], name: str) -> set[str]:
    return {f["frame_type"] for e in events if e["name"] == name for f in e["data"]["frames"]}


def _packets(events: list[dict[str, Any]], name: str) -> list[tuple[str, int]]:
    return [
        (e["data"]["header"]["packet_type"], e["data"]["header"]["packet_number"])
        for e in events
        if e["name"] == name
    ]


def _data(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["name"] == name]


# -- a whole connection, traced on both sides to JSON-SEQ files ----------------------------


def test_json_seq_files_of_a_pair(tmp_path: Path) -> None:
    cdir, sdir = tmp_path / "client", tmp_path / "server"
    pair = make_pair(client_kwargs={"qlog_dir": str(cdir)}, server_kwargs={"qlog_dir": str(sdir)})
    _exchange_and_close(pair)
    odcid = pair.client.original_dcid.hex()
    assert pair.server.original_dcid.hex() == odcid
    traces: dict[str, list[dict[str, Any]]] = {}
    for role, directory in (("client", cdir), ("server", sdir)):
        path = directory / f"{odcid}_{role}.sqlog"
        assert path.exists()
        raw = path.read_bytes()
        assert b": " not in raw and b", " not in raw  # compact separators
        events = check_trace(raw, role)  # what qvis needs, and every event's schema
        header = parse_json_seq(raw)[0]
        assert header["qlog_version"] == QLOG_VERSION
        assert header["trace"]["common_fields"]["ODCID"] == odcid
        assert header["trace"]["common_fields"]["group_id"] == odcid
        assert events[0]["time"] == 0.0
        traces[role] = events
    # the server endpoint's own trace (stateless packets) exists, with a header only
    (endpoint_trace,) = sdir.glob("endpoint-*.sqlog")
    assert len(parse_json_seq(endpoint_trace.read_bytes())) == 1
    client, server = traces["client"], traces["server"]
    # packets: what one side sent is what the other received (lossless link), and the
    # counts agree with the connections' packet number counters
    c_sent, s_recv = (
        _packets(client, "transport:packet_sent"),
        _packets(server, "transport:packet_received"),
    )
    s_sent, c_recv = (
        _packets(server, "transport:packet_sent"),
        _packets(client, "transport:packet_received"),
    )
    assert sorted(c_sent) == sorted(s_recv)
    assert sorted(s_sent) == sorted(c_recv)
    assert len(c_sent) == sum(space.next_pn for space in pair.client.spaces)
    assert len(s_sent) == sum(space.next_pn for space in pair.server.spaces)
    assert {t for t, _ in c_sent} == {"initial", "handshake", "1RTT"}
    for role, events in traces.items():
        names = _names(events)
        for name in (
            "connectivity:connection_started",
            "transport:version_information",
            "transport:alpn_information",
            "connectivity:connection_closed",
        ):
            assert names[name] == 1, (role, name)
        assert names["transport:parameters_set"] == 2
        assert events[-1]["name"] == "connectivity:connection_closed"
        assert names["transport:packet_dropped"] == 0
        assert names["transport:datagrams_sent"] > 0 and names["transport:datagrams_received"] > 0
        assert names["recovery:metrics_updated"] > 0
        assert _data(events, "recovery:congestion_state_updated")[0] == {"new": "slow_start"}
        for name in ("transport:packet_sent", "transport:packet_received"):
            assert {"crypto", "ack"} <= _frame_types(events, name)
        # RFC 9001 §4.9: Initial and Handshake keys are discarded, both directions
        discarded = {d["key_type"] for d in _data(events, "security:key_discarded")}
        assert discarded == {
            f"{side}_{level}_secret"
            for side in ("client", "server")
            for level in ("initial", "handshake")
        }
        versions = _data(events, "transport:version_information")[0]
        assert versions[f"{role}_versions"] == ["00000001", "6b3343cf"]
        assert versions["chosen_version"] == "00000001"
    # every packet the server received and acknowledged is acknowledged once, by number
    acked = [
        (d["packet_number_space"], n)
        for d in _data(client, "transport:packets_acked")
        for n in d["packet_numbers"]
    ]
    assert len(acked) == len(set(acked))
    space_of = {"initial": "initial", "handshake": "handshake", "1RTT": "application_data"}
    assert set(acked) <= {(space_of[t], n) for t, n in c_sent}
    assert ("application_data", 0) in acked
    # the datagrams' sizes add up to the packets' sizes
    sent_bytes = sum(
        e["data"]["raw"]["length"] for e in client if e["name"] == "transport:packet_sent"
    )
    dgram_bytes = sum(
        r["length"] for d in _data(client, "transport:datagrams_sent") for r in d["raw"]
    )
    assert sent_bytes == dgram_bytes
    assert {"stream", "datagram", "padding", "connection_close"} <= _frame_types(
        client, "transport:packet_sent"
    )
    assert "handshake_done" in _frame_types(server, "transport:packet_sent")
    assert {"stream", "datagram", "connection_close"} <= _frame_types(
        server, "transport:packet_received"
    )


def test_events_in_memory_pair() -> None:
    pair, sinks = _memory_pair()
    _exchange_and_close(pair)
    client, server = sinks["client"].events, sinks["server"].events
    assert not check_events(client) and not check_events(server)
    assert sinks["client"].closed and sinks["server"].closed  # the trace ended
    # connection_started, then the versions and the local transport parameters
    assert client[0]["name"] == "connectivity:connection_started"
    started = client[0]["data"]
    assert (started["dst_ip"], started["dst_port"]) == SERVER_ADDR
    assert started["src_cid"] == pair.client.host_cid.hex()
    assert started["dst_cid"] == pair.client.original_dcid.hex()
    assert (server[0]["data"]["dst_ip"], server[0]["data"]["dst_port"]) == CLIENT_ADDR
    assert client[1]["name"] == "transport:version_information"
    for events, role in ((client, "client"), (server, "server")):
        params = _data(events, "transport:parameters_set")
        assert [p["owner"] for p in params] == ["local", "remote"]
        assert params[0]["initial_max_data"] == 4 * 1024 * 1024
        assert params[0]["max_datagram_frame_size"] == 65536
        keys = {d["key_type"] for d in _data(events, "security:key_updated")}
        assert keys == {
            f"{side}_{level}_secret"
            for side in ("client", "server")
            for level in ("initial", "handshake", "1rtt")
        }
        alpn = _data(events, "transport:alpn_information")[0]
        assert alpn == {f"{role}_alpns": ["test"], "chosen_alpn": "test"}
        # received packets name the connection IDs they carry
        header = _data(events, "transport:packet_received")[-1]["header"]
        own = pair.client.host_cid if role == "client" else pair.server.host_cid
        assert header["dcid"] == own.hex()

    # stream 0 is opened (by the client, implicitly on the server), each side goes
    # through its RFC 9000 §3.1 / §3.2 states and, once both sides are done with it, it
    # leaves every table ("destroyed")
    def states(events: list[dict[str, Any]]) -> list[tuple[int, str, str | None, str]]:
        return [
            (d["stream_id"], d["stream_side"], d.get("old"), d["new"])
            for d in _data(events, "transport:stream_state_updated")
        ]

    opened = [(0, "sending", None, "ready"), (0, "receiving", None, "receive")]
    read = [
        (0, "receiving", "receive", "size_known"),
        (0, "receiving", "size_known", "data_received"),
        (0, "receiving", "data_received", "data_read"),
    ]
    destroyed = [(0, "sending", None, "destroyed"), (0, "receiving", None, "destroyed")]
    assert states(client) == [
        *opened,
        (0, "sending", "ready", "send"),
        (0, "sending", "send", "data_sent"),
        (0, "sending", "data_sent", "data_received"),
        *read,
        *destroyed,
    ]
    assert states(server) == [  # the answer and its FIN are written at once
        *opened,
        *read,
        (0, "sending", "ready", "data_sent"),
        (0, "sending", "data_sent", "data_received"),
        *destroyed,
    ]
    assert _data(client, "transport:stream_state_updated")[0]["stream_type"] == "bidirectional"
    # the server's parameters, as the client logs them, carry the ODCID
    remote = _data(client, "transport:parameters_set")[1]
    assert remote["original_destination_connection_id"] == pair.client.original_dcid.hex()
    # the closing side logs its close after sending it, the peer after receiving it
    closed_c, closed_s = client[-1]["data"], server[-1]["data"]
    assert closed_c == {
        "owner": "local",
        "reason": "bye",
        "trigger": "application",
        "application_code": 7,
    }
    assert closed_s["owner"] == "remote" and closed_s["application_code"] == 7
    last_sent = _data(client, "transport:packet_sent")[-1]
    assert last_sent["frames"][0] == {
        "frame_type": "connection_close",
        "error_space": "application",
        "error_code": 7,
        "reason": "bye",
    }
    # recovery metrics: only changes, at most one event per datagram handled
    metrics = _data(client, "recovery:metrics_updated")
    packets = [e for e in client if e["name"].startswith("transport:packet_")]
    assert 0 < len(metrics) <= len(packets)
    assert "congestion_window" in metrics[0] and "bytes_in_flight" in metrics[0]
    srtt = [m["smoothed_rtt"] for m in metrics if "smoothed_rtt" in m]
    assert srtt[0] == pytest.approx(20.0, abs=2.0)  # 10 ms one-way link delay
    stream = next(
        f
        for d in _data(client, "transport:packet_sent")
        for f in d["frames"]
        if f["frame_type"] == "stream"
    )
    assert stream["stream_id"] == 0 and stream["offset"] == 0 and stream["length"] > 0


def test_packet_lost_on_a_lossy_link() -> None:
    pair, sinks = _memory_pair(loss=0.1, seed=3)
    _exchange_and_close(pair, size=300_000)
    for role in ("client", "server"):
        events = sinks[role].events
        assert not check_events(events), role
    client = sinks["client"].events
    lost = _data(client, "recovery:packet_lost")
    assert len(lost) >= 5
    sent = set(_packets(client, "transport:packet_sent"))
    acked_later = set(_packets(sinks["server"].events, "transport:packet_received"))
    for item in lost:
        key = (item["header"]["packet_type"], item["header"]["packet_number"])
        assert key in sent  # a packet we sent
    # most declared-lost packets really were lost on the link (a few may be spurious)
    really = sum(
        (d["header"]["packet_type"], d["header"]["packet_number"]) not in acked_later for d in lost
    )
    assert really >= len(lost) // 2
    states = [d["new"] for d in _data(client, "recovery:congestion_state_updated")]
    assert states[0] == "slow_start" and "recovery" in states
    assert "congestion_avoidance" in states  # a loss sets ssthresh: CA after recovery
    # a packet is acknowledged once, never after it was declared lost (RFC 9002 §6.1:
    # a late ACK of it is spurious and reported by neither event)
    acked = [
        ("1RTT" if d["packet_number_space"] == "application_data" else d["packet_number_space"], n)
        for d in _data(client, "transport:packets_acked")
        for n in d["packet_numbers"]
    ]
    lost_keys = {(d["header"]["packet_type"], d["header"]["packet_number"]) for d in lost}
    assert len(acked) == len(set(acked)) and not lost_keys & set(acked)
    assert len(acked) + len(lost_keys) > len(sent) // 2
    assert any("ssthresh" in m for m in _data(client, "recovery:metrics_updated"))
    assert any(m.get("pto_count", 0) > 0 for m in _data(client, "recovery:metrics_updated"))


def test_transport_error_close_and_key_update() -> None:
    pair, sinks = _memory_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed and pair.server.handshake_confirmed)
    pair.client.request_key_update()
    pair.client.send_ping(1)
    pair.run(lambda: bool(pair.events_of(PingAcknowledged, "client")), max_time=1)
    answered = {"key_type": "server_1rtt_secret", "trigger": "local_update"}
    pair.run(lambda: any(e["data"] == answered for e in sinks["client"].events), max_time=1)
    c_keys = _data(sinks["client"].events, "security:key_updated")
    s_keys = _data(sinks["server"].events, "security:key_updated")
    assert c_keys[-2:] == [
        {"key_type": "client_1rtt_secret", "trigger": "local_update"},
        {"key_type": "server_1rtt_secret", "trigger": "local_update"},
    ]
    assert {"key_type": "client_1rtt_secret", "trigger": "remote_update"} in s_keys
    assert {"key_type": "server_1rtt_secret", "trigger": "remote_update"} in s_keys
    pair.client.close(0x0A, "broken", application=False)
    pair.run(max_time=5)
    closed = sinks["client"].events[-1]
    assert closed["name"] == "connectivity:connection_closed"
    assert closed["data"]["trigger"] == "error"
    assert closed["data"]["connection_code"] == "protocol_violation"
    peer = sinks["server"].events[-1]["data"]
    assert peer["owner"] == "remote" and peer["connection_code"] == "protocol_violation"
    assert not check_events(sinks["client"].events)


def test_idle_timeout_is_logged() -> None:
    pair, sinks = _memory_pair()
    pair.client.configuration.idle_timeout = 0.5
    pair.handshake()
    # (the connection read its 30 s idle timeout at creation: wait past it)
    pair.run(lambda: pair.client.is_closed, max_time=40)
    last = sinks["client"].events[-1]
    assert last["name"] == "connectivity:connection_closed"
    assert last["data"]["trigger"] == "idle_timeout"
    assert last["data"]["owner"] == "local"


def test_undecryptable_packet_is_logged_as_dropped() -> None:
    pair, sinks = _memory_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed)
    client = pair.client
    before = client.dropped_packets
    forged = bytes((0x41,)) + client.host_cid + bytes(range(48))
    client.receive_datagram(forged, SERVER_ADDR, pair.net.now)
    assert client.dropped_packets == before + 1
    drops = _data(sinks["client"].events, "transport:packet_dropped")
    assert drops == [{"trigger": "decryption_failure", "header": {"packet_type": "1RTT"}}]
    assert client.state is ConnectionState.CONNECTED


# -- Version Negotiation and Retry ----------------------------------------------------------


def test_endpoint_logs_the_version_negotiation_it_sends() -> None:
    pair, sinks = _memory_pair()
    server = pair.server_endpoint
    assert server.qlog is not None
    dcid, scid = bytes(range(8)), bytes(range(8, 16))
    unknown = 0x0A0A0A0A
    probe = bytes((0xC0,)) + unknown.to_bytes(4, "big") + b"\x08" + dcid + b"\x08" + scid
    server.receive_datagram(probe + bytes(1200), ("10.0.0.9", 5555), pair.net.now)
    (vn, _), *_ = server.datagrams_to_send(pair.net.now)
    events = sinks["server-endpoint"].events
    assert not check_events(events)
    (sent,) = _data(events, "transport:packet_sent")
    assert sent["header"] == {
        "packet_type": "version_negotiation",
        "dcid": scid.hex(),
        "scid": dcid.hex(),
    }
    assert sent["raw"] == {"length": len(vn)}
    assert sent["supported_versions"][:2] == ["00000001", "6b3343cf"]


def test_stateless_packets_are_logged_from_their_bytes() -> None:
    sink = QlogMemorySink()
    logger = EndpointLogger(sink, False, b"")
    version = QuicVersion.VERSION_1
    dcid, scid = bytes(range(8)), bytes(range(8, 16))
    bare = encode_retry(version, dcid, scid, b"token!")
    retry = bare + retry_integrity_tag(version, retry_pseudo_packet(bytes(8), bare))
    logger.stateless_packet_sent(1.0, retry)
    pair = make_pair()
    (initial, _), *_ = pair.client.datagrams_to_send(pair.net.now)
    logger.stateless_packet_sent(1.5, initial)  # an Initial: header only
    logger.stateless_packet_sent(2.0, b"\xc0garbage")  # unparsable: nothing logged
    sent = _data(sink.events, "transport:packet_sent")
    assert not check_events(sink.events) and len(sent) == 2
    assert sent[0]["header"] == {
        "packet_type": "retry",
        "dcid": dcid.hex(),
        "scid": scid.hex(),
        "token": {"raw": {"length": 6, "data": b"token!".hex()}},
    }
    assert sent[0]["raw"] == {"length": len(retry)}
    assert sent[1]["header"]["packet_type"] == "initial"
    assert sent[1]["header"]["dcid"] == pair.client.original_dcid.hex()
    assert "packet_number" not in sent[1]["header"] and "frames" not in sent[1]


def test_client_logs_version_negotiation_and_retry_received() -> None:
    sinks: SINKS = {}
    config = client_config(qlog_factory=_factory(sinks, "client"))
    # a Version Negotiation without a version we speak ends the attempt (RFC 9000 §6.2)
    pair = make_pair(client_kwargs={"qlog_factory": _factory(sinks, "client")})
    conn = pair.client
    vn = encode_version_negotiation(conn.host_cid, conn.original_dcid, [0x0A0A0A0A])
    conn.receive_datagram(vn, SERVER_ADDR, pair.net.now)
    events = sinks["client"].events
    assert not check_events(events)
    received = _data(events, "transport:packet_received")[-1]
    assert received["header"]["packet_type"] == "version_negotiation"
    assert received["supported_versions"] == ["0a0a0a0a"]
    assert _data(events, "transport:version_information")[-1]["server_versions"] == ["0a0a0a0a"]
    assert events[-1]["data"]["trigger"] == "version_mismatch"
    # a Retry (RFC 9000 §17.2.5) is logged with its token
    pair = make_pair(client_kwargs={"qlog_factory": _factory(sinks, "client")})
    conn = pair.client
    del config
    conn.datagrams_to_send(pair.net.now)
    new_scid = bytes(range(20, 28))
    version = QuicVersion.VERSION_1
    bare = encode_retry(version, conn.host_cid, new_scid, b"tok")
    tag = retry_integrity_tag(version, retry_pseudo_packet(conn.original_dcid, bare))
    conn.receive_datagram(bare + tag, SERVER_ADDR, pair.net.now)
    events = sinks["client"].events
    assert not check_events(events)
    retry = _data(events, "transport:packet_received")[-1]
    assert retry["header"]["packet_type"] == "retry"
    assert retry["header"]["scid"] == new_scid.hex()
    assert retry["header"]["token"]["raw"]["data"] == b"tok".hex()


def test_discarded_tentative_connection_ends_its_trace() -> None:
    pair, sinks = _memory_pair()
    server = pair.server_endpoint
    conn = pair.client
    initial, *_ = conn.datagrams_to_send(pair.net.now)
    damaged = bytearray(initial[0])
    damaged[-1] ^= 0xFF  # fails authentication: the endpoint keeps nothing
    before = server.dropped
    server.receive_datagram(bytes(damaged), CLIENT_ADDR, pair.net.now)
    assert server.dropped == before + 1 and not server.connections
    assert sinks["server"].closed
    assert _data(sinks["server"].events, "transport:packet_dropped")


def test_abandoned_half_open_connection_ends_its_trace() -> None:
    pair, sinks = _memory_pair()
    pair.net.link(SERVER_ADDR, CLIENT_ADDR).loss = 1.0  # the client never hears back
    pair.net.link(CLIENT_ADDR, SERVER_ADDR).loss = 0.0
    pair.net.settle(0.05)
    server = pair.server_endpoint
    assert server.half_open_connections == 1
    pair.net.link(CLIENT_ADDR, SERVER_ADDR).loss = 1.0
    pair.net.settle(server.server_configuration.handshake_timeout + 1)  # type: ignore[union-attr]
    assert server.expired == 1 and not server.connections
    events = sinks["server"].events
    assert sinks["server"].closed and not check_events(events)
    assert events[-1]["name"] == "connectivity:connection_closed"
    assert events[-1]["data"] == {
        "owner": "local",
        "reason": "handshake timeout",
        "trigger": "clean",
        "connection_code": "no_error",
    }


# -- bounded: the logger streams, it does not accumulate ------------------------------------


class _CountingSink:
    """Counts records and their JSON bytes without keeping them."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0
        self._encode = qlog_module.json.JSONEncoder(separators=(",", ":")).encode

    def write(self, event: dict[str, Any]) -> None:
        self.records += 1
        self.bytes += len(self._encode(event))


def _traced_transfer(size: int) -> tuple[int, int, int]:
    """Records written, and bytes the qlog modules hold, for a ``size`` transfer."""
    sinks: dict[str, _CountingSink] = {}

    def factory(is_client: bool, odcid: bytes) -> _CountingSink:
        sink = sinks["client" if is_client else "server" if odcid else "endpoint"] = _CountingSink()
        return sink

    tracemalloc.start()
    try:
        pair = make_pair(
            client_kwargs={"qlog_factory": factory}, server_kwargs={"qlog_factory": factory}
        )
        pair.handshake()
        sid = pair.client.create_stream()
        pair.client.send_stream_data(sid, b"x" * size, end_stream=True)
        pair.run(lambda: pair.stream_done(sid), max_time=120)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(
        stat.size
        for stat in snapshot.statistics("filename")
        if stat.traceback[0].filename in (qlog_module.__file__, qlog_frames.__file__)
    )
    assert pair.client.qlog is not None
    return sinks["client"].records, sinks["client"].bytes, held


def test_logging_is_streamed_and_linear() -> None:
    n = 100_000
    records_n, bytes_n, held_n = _traced_transfer(n)
    records_4n, bytes_4n, held_4n = _traced_transfer(4 * n)
    # output grows linearly with the traffic...
    assert 2.0 < records_4n / records_n < 6.0
    assert 2.0 < bytes_4n / bytes_n < 6.0
    # ...while what the loggers hold does not grow with it (streamed, never kept)
    assert held_4n < held_n * 1.5 + 4096, (held_n, held_4n)
    assert held_4n < bytes_4n / 20


# -- qlog off ------------------------------------------------------------------------------


def test_qlog_off_makes_no_logger_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def spy(name: str) -> Any:
        def record(self: Any, *args: Any, **kwargs: Any) -> None:
            calls.append(name)

        return record

    for name in dir(QuicLogger):
        if not name.startswith("__") and callable(getattr(QuicLogger, name)):
            monkeypatch.setattr(QuicLogger, name, spy(name))
    monkeypatch.setattr(QuicLogger, "__init__", spy("__init__"))
    monkeypatch.setattr(qlog_module, "decode_frames_for_log", spy("decode"))
    monkeypatch.setattr(qlog_module, "_packet_header", spy("header"))
    pair = make_pair(loss=0.05)
    _exchange_and_close(pair, size=50_000)
    assert pair.client.qlog is None and pair.server.qlog is None
    assert pair.server_endpoint.qlog is None
    assert calls == []
    assert pair.client.last_internal_error is None and pair.server.last_internal_error is None


def test_factory_may_decline() -> None:
    pair = make_pair(client_kwargs={"qlog_factory": lambda is_client, odcid: None})
    pair.handshake()
    assert pair.client.qlog is None


# -- sinks and frame conversion --------------------------------------------------------------


def test_file_sink_writes_json_seq(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlog"
    sink = QlogFileSink(str(path))
    logger = QuicLogger(sink, True, b"\x01\x02", reference_time=1_700_000_000_000.0)
    logger.log(10.0, "transport:x", {"a": 1})
    logger.log(10.0025, "transport:y", {})
    logger.log(9.0, "transport:z", {})  # an earlier time never goes back
    logger.connection_closed(11.0, trigger="idle_timeout", reason="idle", by_peer=False)
    sink.write({"ignored": True})  # closed: no effect
    logger.log(12.0, "transport:late", {})  # the trace ended: no effect
    raw = path.read_bytes()
    assert raw.count(b"\x1e") == 5
    records = parse_json_seq(raw)
    assert records[0]["trace"]["common_fields"]["ODCID"] == "0102"
    assert records[0]["trace"]["common_fields"]["reference_time"] == 1_700_000_000_000.0
    assert [(r["time"], r["name"]) for r in records[1:]] == [
        (0.0, "transport:x"),
        (2.5, "transport:y"),
        (2.5, "transport:z"),
        (1000.0, "connectivity:connection_closed"),
    ]
    assert records[1]["data"] == {"a": 1}


def test_frame_to_qlog() -> None:
    assert frame_to_qlog(StreamFrame(4, 100, b"abc", True)) == {
        "frame_type": "stream",
        "stream_id": 4,
        "offset": 100,
        "length": 3,
        "fin": True,
    }
    assert frame_to_qlog(AckFrame(((5, 9), (0, 2)), 1000), ack_delay_exponent=3) == {
        "frame_type": "ack",
        "ack_delay": 8.0,
        "acked_ranges": [[0, 2], [5, 9]],
    }
    assert frame_to_qlog(CryptoFrame(7, b"xy")) == {
        "frame_type": "crypto",
        "offset": 7,
        "length": 2,
    }
    assert frame_to_qlog(PingFrame()) == {"frame_type": "ping"}
    close = frame_to_qlog(ConnectionCloseFrame(0x0A, 0x08, b"why"))
    assert close["error"] == "protocol_violation" and close["trigger_frame_type"] == 0x08
    assert close["reason"] == "why" and close["error_space"] == "transport"


def test_decode_frames_for_log_coalesces_padding_and_stops_on_garbage() -> None:
    payload = PingFrame().encode() + bytes(5) + CryptoFrame(0, b"hi").encode()
    assert decode_frames_for_log(payload) == [
        {"frame_type": "ping"},
        {"frame_type": "crypto", "offset": 0, "length": 2},
        {"frame_type": "padding", "length": 5},
    ]
    assert decode_frames_for_log(b"\x01\x02") == [
        {"frame_type": "ping"},
        {"frame_type": "unknown", "length": 1},
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_decode_frames_for_log_never_raises(data: bytes) -> None:
    frames = decode_frames_for_log(data)
    assert all(isinstance(f["frame_type"], str) for f in frames)
