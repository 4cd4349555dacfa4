"""qlog tracing (quic.qlog): JSON-SEQ files, event contents, and zero cost when off."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quic.qlog as qlog_module
from quic.connection import ConnectionState
from quic.events import PingAcknowledged
from quic.frames import AckFrame, ConnectionCloseFrame, CryptoFrame, PingFrame, StreamFrame
from quic.qlog import (
    QLOG_FILE_SCHEMA,
    QlogFileSink,
    QlogMemorySink,
    QuicLogger,
    decode_frames_for_log,
    frame_to_qlog,
    parse_json_seq,
)
from tests.support.quicpair import Pair, make_pair

SINKS = dict[str, QlogMemorySink]


def _memory_pair(**link: Any) -> tuple[Pair, SINKS]:
    sinks: SINKS = {}

    def factory(role: str) -> Any:
        def make(is_client: bool, odcid: bytes) -> QlogMemorySink:
            assert is_client == (role == "client")
            sink = sinks[role] = QlogMemorySink()
            return sink

        return make

    pair = make_pair(
        client_kwargs={"qlog_factory": factory("client")},
        server_kwargs={"qlog_factory": factory("server")},
        **link,
    )
    return pair, sinks


def _exchange_and_close(pair: Pair) -> None:
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"x" * 5000, end_stream=True)
    pair.client.send_datagram(b"datagram")
    pair.run(lambda: pair.stream_done(sid))
    pair.net.settle(0.1)  # the last ACKs cross before the close (none meets a closing peer)
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


# -- a whole connection, traced on both sides to JSON-SEQ files ----------------------------


def test_json_seq_files_of_a_pair(tmp_path: Path) -> None:
    cdir, sdir = tmp_path / "client", tmp_path / "server"
    pair = make_pair(client_kwargs={"qlog_dir": str(cdir)}, server_kwargs={"qlog_dir": str(sdir)})
    _exchange_and_close(pair)
    odcid = pair.client.original_dcid.hex()
    assert pair.server.original_dcid.hex() == odcid
    traces: dict[str, list[dict[str, Any]]] = {}
    for role, directory in (("client", cdir), ("server", sdir)):
        path = directory / f"{odcid}.sqlog"
        assert [p.name for p in directory.iterdir()] == [path.name]
        raw = path.read_bytes()
        # RFC 7464: every record is RS + JSON text + LF
        assert raw.startswith(b"\x1e")
        chunks = raw.split(b"\x1e")[1:]
        assert chunks and all(c.endswith(b"\n") and b"\n" not in c[:-1] for c in chunks)
        assert b": " not in raw and b", " not in raw  # compact separators
        records = parse_json_seq(raw)
        header, events = records[0], records[1:]
        assert header["file_schema"] == QLOG_FILE_SCHEMA
        assert header["serialization_format"] == "application/qlog+json-seq"
        assert header["qlog_format"] == "JSON-SEQ"
        trace = header["trace"]
        assert trace["vantage_point"]["type"] == role
        assert trace["common_fields"]["ODCID"] == odcid
        assert trace["common_fields"]["time_format"] == "relative_to_epoch"
        assert trace["common_fields"]["reference_time"] == {
            "clock_type": "monotonic",
            "epoch": "unknown",
        }
        assert "urn:ietf:params:qlog:events:quic" in trace["event_schemas"]
        assert all(set(e) == {"time", "name", "data"} for e in events)
        times = [e["time"] for e in events]
        assert times[0] == 0.0 and times == sorted(times)
        traces[role] = events
    client, server = traces["client"], traces["server"]
    # packets: what one side sent is what the other received (lossless link), and the
    # counts agree with the connections' packet number counters
    c_sent, s_recv = _packets(client, "quic:packet_sent"), _packets(server, "quic:packet_received")
    s_sent, c_recv = _packets(server, "quic:packet_sent"), _packets(client, "quic:packet_received")
    assert sorted(c_sent) == sorted(s_recv)
    assert sorted(s_sent) == sorted(c_recv)
    assert len(c_sent) == sum(space.next_pn for space in pair.client.spaces)
    assert len(s_sent) == sum(space.next_pn for space in pair.server.spaces)
    assert {t for t, _ in c_sent} == {"initial", "handshake", "1RTT"}
    for events in (client, server):
        names = _names(events)
        assert names["quic:connection_started"] == 1
        assert names["quic:parameters_set"] == 2
        assert names["quic:connection_closed"] == 1
        assert events[-1]["name"] == "quic:connection_closed"
        assert names["quic:packet_dropped"] == 0
        for name in ("quic:packet_sent", "quic:packet_received"):
            assert {"crypto", "ack"} <= _frame_types(events, name)
    assert {"stream", "datagram", "padding", "connection_close"} <= _frame_types(
        client, "quic:packet_sent"
    )
    assert "handshake_done" in _frame_types(server, "quic:packet_sent")
    assert {"stream", "datagram", "connection_close"} <= _frame_types(
        server, "quic:packet_received"
    )


def test_events_in_memory_pair() -> None:
    pair, sinks = _memory_pair()
    _exchange_and_close(pair)
    client, server = sinks["client"].events, sinks["server"].events
    # connection_started, then the local transport parameters
    assert client[0]["name"] == "quic:connection_started"
    assert client[0]["data"]["remote"] == {"ip_v4": "127.0.0.1", "port_v4": 4433}
    assert server[0]["data"]["remote"] == {"ip_v4": "127.0.0.2", "port_v4": 50000}
    for events in (client, server):
        params = [e["data"] for e in events if e["name"] == "quic:parameters_set"]
        assert [p["initiator"] for p in params] == ["local", "remote"]
        assert params[0]["initial_max_data"] == 4 * 1024 * 1024
        assert params[0]["max_datagram_frame_size"] == 65536
        keys = {e["data"]["key_type"] for e in events if e["name"] == "security:key_updated"}
        assert keys == {
            f"{side}_{level}_secret"
            for side in ("client", "server")
            for level in ("initial", "handshake", "1rtt")
        }
    # the server's parameters, as the client logs them, carry the ODCID
    remote = [
        e["data"]
        for e in client
        if e["name"] == "quic:parameters_set" and e["data"]["initiator"] == "remote"
    ]
    assert remote[0]["original_destination_connection_id"] == pair.client.original_dcid.hex()
    # the closing side logs its close after sending it, the peer after receiving it
    closed_c, closed_s = client[-1]["data"], server[-1]["data"]
    assert closed_c == {
        "initiator": "local",
        "reason": "bye",
        "trigger": "application",
        "application_error": "unknown",
        "error_code": 7,
    }
    assert closed_s["initiator"] == "remote" and closed_s["error_code"] == 7
    last_sent = [e for e in client if e["name"] == "quic:packet_sent"][-1]
    assert last_sent["data"]["frames"][0] == {
        "frame_type": "connection_close",
        "error_space": "application",
        "error_code": 7,
        "reason": "bye",
    }
    # recovery metrics: only changes, at most one event per datagram handled
    metrics = [e for e in client if e["name"] == "recovery:metrics_updated"]
    packets = [e for e in client if e["name"] in ("quic:packet_sent", "quic:packet_received")]
    assert 0 < len(metrics) <= len(packets)
    assert "congestion_window" in metrics[0]["data"]
    assert "bytes_in_flight" in metrics[0]["data"]
    assert any("smoothed_rtt" in m["data"] for m in metrics)
    assert all(m["data"] for m in metrics)
    srtt = [m["data"]["smoothed_rtt"] for m in metrics if "smoothed_rtt" in m["data"]]
    assert srtt[0] == pytest.approx(20.0, abs=2.0)  # 10 ms one-way link delay
    # stream frames carry their key fields
    stream = next(
        f
        for e in client
        if e["name"] == "quic:packet_sent"
        for f in e["data"]["frames"]
        if f["frame_type"] == "stream"
    )
    assert stream["stream_id"] == 0 and stream["offset"] == 0 and stream["raw"]["length"] > 0


def test_transport_error_close_and_key_update() -> None:
    pair, sinks = _memory_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed and pair.server.handshake_confirmed)
    pair.client.request_key_update()
    pair.client.send_ping(1)
    pair.run(lambda: bool(pair.events_of(PingAcknowledged, "client")), max_time=1)
    answered = {"key_type": "server_1rtt_secret", "trigger": "local_update"}
    pair.run(lambda: any(e["data"] == answered for e in sinks["client"].events), max_time=1)
    c_keys = [e["data"] for e in sinks["client"].events if e["name"] == "security:key_updated"]
    s_keys = [e["data"] for e in sinks["server"].events if e["name"] == "security:key_updated"]
    assert c_keys[-2:] == [
        {"key_type": "client_1rtt_secret", "trigger": "local_update"},
        {"key_type": "server_1rtt_secret", "trigger": "local_update"},
    ]
    assert {"key_type": "client_1rtt_secret", "trigger": "remote_update"} in s_keys
    assert {"key_type": "server_1rtt_secret", "trigger": "remote_update"} in s_keys
    pair.client.close(0x0A, "broken", application=False)
    pair.run(max_time=5)
    closed = sinks["client"].events[-1]
    assert closed["name"] == "quic:connection_closed"
    assert closed["data"]["trigger"] == "error"
    assert closed["data"]["connection_error"] == "protocol_violation"
    assert closed["data"]["error_code"] == 0x0A
    peer = sinks["server"].events[-1]["data"]
    assert peer["initiator"] == "remote" and peer["connection_error"] == "protocol_violation"


def test_idle_timeout_is_logged() -> None:
    pair, sinks = _memory_pair()
    pair.client.configuration.idle_timeout = 0.5
    pair.handshake()
    # (the connection read its 30 s idle timeout at creation: wait past it)
    pair.run(lambda: pair.client.is_closed, max_time=40)
    last = sinks["client"].events[-1]
    assert last["name"] == "quic:connection_closed"
    assert last["data"]["trigger"] == "idle_timeout"
    assert last["data"]["initiator"] == "local"


def test_undecryptable_packet_is_logged_as_dropped() -> None:
    pair, sinks = _memory_pair()
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed)
    client = pair.client
    before = client.dropped_packets
    forged = bytes((0x41,)) + client.host_cid + bytes(range(48))
    client.receive_datagram(forged, ("127.0.0.1", 4433), pair.net.now)
    assert client.dropped_packets == before + 1
    drops = [e["data"] for e in sinks["client"].events if e["name"] == "quic:packet_dropped"]
    assert drops == [{"trigger": "decryption_failure", "header": {"packet_type": "1RTT"}}]
    assert client.state is ConnectionState.CONNECTED


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
    pair = make_pair()
    _exchange_and_close(pair)
    assert pair.client._qlog is None and pair.server._qlog is None
    assert calls == []
    assert pair.client.last_internal_error is None and pair.server.last_internal_error is None


def test_factory_may_decline() -> None:
    pair = make_pair(client_kwargs={"qlog_factory": lambda is_client, odcid: None})
    pair.handshake()
    assert pair.client._qlog is None


# -- sinks and frame conversion --------------------------------------------------------------


def test_file_sink_writes_json_seq(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlog"
    sink = QlogFileSink(str(path))
    logger = QuicLogger(sink, True, b"\x01\x02", wall_clock_time="2026-01-01T00:00:00Z")
    logger.log(10.0, "quic:x", {"a": 1})
    logger.log(10.0025, "quic:y", {})
    logger.connection_closed(11.0, trigger="idle_timeout", reason="idle", by_peer=False)
    sink.write({"ignored": True})  # closed: no effect
    raw = path.read_bytes()
    assert raw.count(b"\x1e") == 4
    records = parse_json_seq(raw)
    assert records[0]["trace"]["common_fields"]["ODCID"] == "0102"
    assert records[0]["trace"]["common_fields"]["reference_time"]["wall_clock_time"] == (
        "2026-01-01T00:00:00Z"
    )
    assert [(r["time"], r["name"]) for r in records[1:]] == [
        (0.0, "quic:x"),
        (2.5, "quic:y"),
        (1000.0, "quic:connection_closed"),
    ]
    assert records[1]["data"] == {"a": 1}


def test_frame_to_qlog() -> None:
    assert frame_to_qlog(StreamFrame(4, 100, b"abc", True)) == {
        "frame_type": "stream",
        "stream_id": 4,
        "offset": 100,
        "raw": {"length": 3},
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
        "raw": {"length": 2},
    }
    assert frame_to_qlog(PingFrame()) == {"frame_type": "ping"}
    close = frame_to_qlog(ConnectionCloseFrame(0x0A, 0x08, b"why"))
    assert close["error"] == "protocol_violation" and close["trigger_frame_type"] == 0x08
    assert close["reason"] == "why" and close["error_space"] == "transport"


def test_decode_frames_for_log_coalesces_padding_and_stops_on_garbage() -> None:
    payload = PingFrame().encode() + bytes(5) + CryptoFrame(0, b"hi").encode()
    assert decode_frames_for_log(payload) == [
        {"frame_type": "ping"},
        {"frame_type": "crypto", "offset": 0, "raw": {"length": 2}},
        {"frame_type": "padding", "raw": {"length": 5}},
    ]
    assert decode_frames_for_log(b"\x01\x02") == [
        {"frame_type": "ping"},
        {"frame_type": "unknown", "raw": {"length": 1}},
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_decode_frames_for_log_never_raises(data: bytes) -> None:
    frames = decode_frames_for_log(data)
    assert all(isinstance(f["frame_type"], str) for f in frames)
