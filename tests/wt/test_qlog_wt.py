"""qlog of a whole WebTransport session (tests/wt/wtpair.py): every event of both traces
has what qvis needs and the fields of its definition (tests/support/qlog_schema.py),
the capsules (RFC 9297 §3.2; h3-events ``http:capsule_created`` / ``capsule_parsed``)
each side writes are the ones the other parses, and the WebTransport streams go
through their QUIC stream states."""

from __future__ import annotations

from typing import Any

import pytest

from h3.qlog import H3Logger
from pywebtransport.protocol import Draft, SessionClosed, StreamOpened
from pywebtransport.protocol.streams import FlowControlBlocked
from quic.qlog import QlogMemorySink
from tests.support.qlog_schema import check_events, check_header
from tests.wt.wtpair import WtPair, config, establish, wt_pair

SINKS = dict[str, QlogMemorySink]


def _factory(sinks: SINKS, role: str) -> Any:
    def make(is_client: bool, odcid: bytes) -> QlogMemorySink:
        return sinks.setdefault(role if odcid else f"{role}-endpoint", QlogMemorySink())

    return make


def _capsules(events: list[dict[str, Any]], name: str) -> list[tuple[int, dict[str, Any]]]:
    return [(e["data"]["stream_id"], e["data"]["capsule"]) for e in events if e["name"] == name]


def _can_open(p: WtPair, sid: int) -> bool:
    flow = p.client._sessions[sid].flow  # what the session may open
    return flow is not None and flow.can_open(False)


def _session(sinks: SINKS, traced: bool = True) -> tuple[WtPair, int, int, int]:
    """A draft-16 session with tight flow control: blocked and credit capsules both
    ways, streams, datagrams, a drain and a close with a code and a reason."""
    p = wt_pair(
        config(Draft.DRAFT16),
        config(Draft.DRAFT16, initial_max_data=1000, initial_max_streams_uni=1),
        client_quic={"qlog_factory": _factory(sinks, "client")} if traced else {},
        server_quic={"qlog_factory": _factory(sinks, "server")} if traced else {},
    )
    sid = establish(p)
    first = p.client.open_stream(sid, False)
    with pytest.raises(FlowControlBlocked):  # WT_STREAMS_BLOCKED_UNI goes out
        p.client.open_stream(sid, False)
    payload, sent = b"a" * 2500, 0
    while sent < len(payload):  # 1000 bytes of credit: blocked, then credit comes
        sent += p.client.send_stream_data(first, payload[sent:], end_stream=True)
        p.settle(0.2)
    p.run(lambda: _can_open(p, sid))  # the server grants a stream once the first ended
    second = p.client.open_stream(sid, False)
    p.client.send_stream_data(second, b"b" * 10, end_stream=True)
    p.client.send_datagram(sid, b"dgram")
    p.run(lambda: len(p.of(StreamOpened)) == 2)
    assert p.server.drain_session(sid)
    p.settle()
    p.server.close_session(sid, 0xBEEF, "bye ✓")
    p.run(lambda: bool(p.of(SessionClosed, "client")))
    p.settle()
    return p, sid, first, second


def test_full_wt_session_trace_is_schema_valid_and_capsules_match() -> None:
    sinks: SINKS = {}
    p, sid, first, second = _session(sinks)
    p.pair.client.close(0, "done")
    p.run(lambda: p.pair.client.is_closed and p.pair.server.is_closed)
    for role in ("client", "server"):
        sink = sinks[role]
        assert sink.closed
        assert not check_header(sink.records[0], role)
        assert not check_events(sink.events), check_events(sink.events)[:5]
        assert sink.events[-1]["name"] == "connectivity:connection_closed"
    client, server = sinks["client"].events, sinks["server"].events
    # what one side writes on the CONNECT stream is what the other parses, in order
    sent_c = _capsules(client, "http:capsule_created")
    sent_s = _capsules(server, "http:capsule_created")
    assert sent_c == _capsules(server, "http:capsule_parsed")
    assert sent_s == _capsules(client, "http:capsule_parsed")
    assert {stream for stream, _ in sent_c + sent_s} == {sid}
    kinds_c = [c["capsule_type"] for _, c in sent_c]
    kinds_s = [c["capsule_type"] for _, c in sent_s]
    assert "wt_data_blocked" in kinds_c and "wt_streams_blocked_uni" in kinds_c
    assert "wt_max_data" in kinds_s and "wt_max_streams_uni" in kinds_s
    assert kinds_s[-2:] == ["wt_drain_session", "wt_close_session"]
    assert sent_s[-1][1] == {
        "capsule_type": "wt_close_session",
        "application_error_code": 0xBEEF,
        "reason": "bye ✓",
        "raw": {"length": 4 + len("bye ✓".encode())},
    }
    blocked = next(c for _, c in sent_c if c["capsule_type"] == "wt_streams_blocked_uni")
    assert blocked["value"] == 1
    # the WebTransport streams' QUIC states, on the sending and the receiving end
    for stream in (first, second):
        sending = [
            e["data"]["new"]
            for e in client
            if e["name"] == "transport:stream_state_updated" and e["data"]["stream_id"] == stream
        ]
        assert sending[0] == "ready" and "data_sent" in sending
        receiving = [
            e["data"]["new"]
            for e in server
            if e["name"] == "transport:stream_state_updated" and e["data"]["stream_id"] == stream
        ]
        assert receiving[0] == "receive" and "data_read" in receiving
    types = {
        (e["data"]["stream_id"], e["data"]["new"])
        for e in server
        if e["name"] == "http:stream_type_set"
    }
    assert {(first, "webtransport"), (second, "webtransport")} <= types


def test_untraced_session_builds_no_capsule_event(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("capsules_created", "capsule_parsed", "_frame", "watch_qpack"):
        monkeypatch.setattr(H3Logger, name, lambda *a, _n=name, **k: calls.append(_n))
    p, *_ = _session({}, traced=False)
    assert p.client.h3.qlog is None and p.server.h3.qlog is None
    assert calls == []
