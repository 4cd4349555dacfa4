"""HTTP/3 qlog events (h3.qlog) in the QUIC connection's trace: one qvis-loadable
JSON-SEQ file per connection with QUIC and HTTP/3 events, every event checked against
tests/support/qlog_schema.py; nothing is built when tracing is off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import h3.qlog as h3_qlog
from h3.connection import H3Configuration
from h3.events import DataReceived, H3Event, HeadersReceived
from h3.frames import FrameType
from h3.qlog import H3Logger, frame_type_name, stream_type_name
from h3.settings import SettingId
from quic.qlog import QlogMemorySink
from tests.h3.h3pair import REQUEST, H3LeanPair, lean_pair
from tests.support.qlog_schema import check_events, check_trace

RESPONSE = [(b":status", b"200"), (b"content-type", b"text/plain")]
BODY = b"hello qlog" * 100


def _serve_once(p: H3LeanPair) -> None:
    """The client GETs /, the server answers RESPONSE + BODY."""
    done: dict[str, bool] = {"response": False}

    def handler(side: str, event: H3Event) -> None:
        if side == "server" and isinstance(event, HeadersReceived):
            p.server.send_headers(event.stream_id, RESPONSE)
            p.server.send_data(event.stream_id, BODY, end_stream=True)
        if side == "client" and isinstance(event, DataReceived) and event.stream_ended:
            done["response"] = True

    p.handler = handler
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, REQUEST, end_stream=True)
    p.run(lambda: done["response"])


def _data(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["name"] == name]


def test_one_trace_per_connection_holds_quic_and_h3_events(tmp_path: Path) -> None:
    cdir, sdir = tmp_path / "c", tmp_path / "s"
    p = lean_pair(client_quic={"qlog_dir": str(cdir)}, server_quic={"qlog_dir": str(sdir)})
    _serve_once(p)
    p.client.close()
    p.run(lambda: p.pair.server.is_closed and p.pair.client.is_closed)
    odcid = p.pair.client.original_dcid.hex()
    traces = {
        role: check_trace((directory / f"{odcid}_{role}.sqlog").read_bytes(), role)
        for role, directory in (("client", cdir), ("server", sdir))
    }
    for role, events in traces.items():
        names = {e["name"] for e in events}
        assert {"transport:packet_sent", "http:frame_created", "http:frame_parsed"} <= names
        # SETTINGS both ways, with the parameters they carry
        params = _data(events, "http:parameters_set")
        assert sorted(d["owner"] for d in params) == ["local", "remote"]
        for d in params:
            assert d["max_table_capacity"] == 4096 and d["blocked_streams_count"] == 16
        # our three unidirectional streams and the peer's
        kinds = {(d["owner"], d["new"]) for d in _data(events, "http:stream_type_set")}
        assert kinds >= {
            (owner, kind)
            for owner in ("local", "remote")
            for kind in ("control", "qpack_encode", "qpack_decode")
        }, role
        # the request stream: h3-events §"stream_type_set", "request" on both sides
        owner = "local" if role == "client" else "remote"
        assert {"stream_id": 0, "owner": owner, "new": "request"} in (
            _data(events, "http:stream_type_set")
        ), role
        created = {d["frame"]["frame_type"] for d in _data(events, "http:frame_created")}
        parsed = {d["frame"]["frame_type"] for d in _data(events, "http:frame_parsed")}
        assert {"settings", "headers"} <= created and {"settings", "headers"} <= parsed
    client, server = traces["client"], traces["server"]
    # the request as the client wrote it is the request the server parsed
    (request_created,) = [
        d for d in _data(client, "http:frame_created") if d["frame"]["frame_type"] == "headers"
    ]
    (request_parsed,) = [
        d for d in _data(server, "http:frame_parsed") if d["frame"]["frame_type"] == "headers"
    ]
    assert request_created["stream_id"] == request_parsed["stream_id"] == 0
    expected = [{"name": k.decode(), "value": v.decode()} for k, v in REQUEST]
    assert request_created["frame"]["headers"] == request_parsed["frame"]["headers"] == expected
    # the response body: one DATA frame created, its bytes parsed by the client
    data_created = [
        d for d in _data(server, "http:frame_created") if d["frame"]["frame_type"] == "data"
    ]
    assert [d["length"] for d in data_created] == [len(BODY)]
    data_parsed = [
        d for d in _data(client, "http:frame_parsed") if d["frame"]["frame_type"] == "data"
    ]
    assert sum(d["length"] for d in data_parsed) == len(BODY)
    # HTTP/3 events sit among the QUIC events in time order
    first_h3 = next(i for i, e in enumerate(client) if e["name"].startswith("http:"))
    assert client[first_h3 - 1]["name"].startswith(("transport:", "security:", "recovery:"))


def test_goaway_and_unknown_stream_types_are_logged() -> None:
    sinks: dict[str, QlogMemorySink] = {}

    def factory(role: str) -> Any:
        def make(is_client: bool, odcid: bytes) -> QlogMemorySink | None:
            if not odcid:
                return None
            return sinks.setdefault(role, QlogMemorySink())

        return make

    p = lean_pair(
        H3Configuration(),
        H3Configuration(),
        client_quic={"qlog_factory": factory("client")},
        server_quic={"qlog_factory": factory("server")},
    )
    # a reserved unidirectional stream type (RFC 9114 §6.2.3) and a GOAWAY
    quic = p.pair.client
    sid = quic.create_stream(bidirectional=False)
    quic.send_stream_data(sid, bytes((0x21,)) + b"ignored")
    p.server.send_goaway()
    p.settle(0.2)
    server, client = sinks["server"].events, sinks["client"].events
    assert not check_events(server) and not check_events(client)
    assert {"stream_id": sid, "owner": "remote", "new": "reserved", "stream_type_value": 0x21} in (
        _data(server, "http:stream_type_set")
    )
    (goaway,) = [
        d for d in _data(server, "http:frame_created") if d["frame"]["frame_type"] == "goaway"
    ]
    assert goaway["frame"]["stream_id"] == 0
    assert any(d["frame"]["frame_type"] == "goaway" for d in _data(client, "http:frame_parsed"))


def test_names() -> None:
    assert frame_type_name(FrameType.HEADERS) == "headers"
    assert frame_type_name(0x21 + 0x1F * 3) == "reserved"
    assert frame_type_name(0x77) == "unknown"
    assert stream_type_name(0x02) == "qpack_encode"
    assert stream_type_name(0x54) == "webtransport"
    assert stream_type_name(0x21) == "reserved"
    assert stream_type_name(0x13) == "unknown"
    assert h3_qlog._settings_data({SettingId.H3_DATAGRAM: 1, 0x4242: 7}) == {
        "h3_datagram": 1,
        "unknown_settings": [{"name": 0x4242, "value": 7}],
    }


def test_tracing_off_builds_no_h3_event(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def spy(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            calls.append(name)

        return record

    for name in (
        "__init__",
        "initialized",
        "parameters_set",
        "stream_type_set",
        "_frame",
        "watch_qpack",
        "capsules_created",
        "capsule_parsed",
    ):
        monkeypatch.setattr(H3Logger, name, spy(name))
    monkeypatch.setattr(h3_qlog, "_settings_data", spy("settings"))
    p = lean_pair()
    _serve_once(p)
    p.server.send_goaway()
    p.settle(0.2)
    assert p.client._qlog is None and p.server._qlog is None
    assert calls == []


def test_http_datagrams_are_logged_both_ways() -> None:
    """h3-events §"datagram_created", §"datagram_parsed": Quarter Stream ID and size."""
    sinks: dict[str, QlogMemorySink] = {}

    def factory(role: str) -> Any:
        def make(is_client: bool, odcid: bytes) -> QlogMemorySink | None:
            return sinks.setdefault(role, QlogMemorySink()) if odcid else None

        return make

    config = H3Configuration(enable_datagrams=True)
    quic = {"max_datagram_frame_size": 1200}
    p = lean_pair(
        config,
        config,
        client_quic={**quic, "qlog_factory": factory("client")},
        server_quic={**quic, "qlog_factory": factory("server")},
    )
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, REQUEST)
    p.client.send_datagram(sid, b"x" * 40)
    p.settle(0.2)
    client, server = sinks["client"].events, sinks["server"].events
    assert not check_events(client) and not check_events(server)
    expected = [{"quarter_stream_id": sid // 4, "raw": {"length": 40}}]
    assert _data(client, "http:datagram_created") == expected
    assert _data(server, "http:datagram_parsed") == expected
