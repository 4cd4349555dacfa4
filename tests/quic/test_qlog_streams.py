"""qlog ``transport:stream_state_updated`` through resets (RFC 9000 §3.1, §3.2, §3.5):
every state change of each side, with the side and who triggered a reset."""

from __future__ import annotations

from typing import Any

from quic.events import StreamReset
from quic.qlog import QlogMemorySink
from tests.support.qlog_schema import check_events
from tests.support.quicpair import make_pair


def _states(sink: QlogMemorySink, stream_id: int) -> list[tuple[str, str | None, str, Any]]:
    return [
        (e["data"]["stream_side"], e["data"].get("old"), e["data"]["new"], e["data"].get("trigger"))
        for e in sink.events
        if e["name"] == "transport:stream_state_updated" and e["data"]["stream_id"] == stream_id
    ]


def test_reset_states_on_both_sides_and_uni_streams() -> None:
    sinks: dict[str, QlogMemorySink] = {}

    def factory(role: str) -> Any:
        return lambda is_client, odcid: sinks.setdefault(
            role if odcid else role + "-ep", QlogMemorySink()
        )

    pair = make_pair(
        client_kwargs={"qlog_factory": factory("client")},
        server_kwargs={"qlog_factory": factory("server")},
    )
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"x" * 100)
    pair.run(lambda: sid in pair.data["server"])
    pair.client.reset_stream(sid, 5)  # our sending side: Reset Sent, then Reset Recvd
    pair.run(lambda: bool(pair.events_of(StreamReset)))
    pair.net.settle(0.5)  # the RESET_STREAM's acknowledgment
    client, server = sinks["client"], sinks["server"]
    assert not check_events(client.events) and not check_events(server.events)
    sending = [s for s in _states(client, sid) if s[0] == "sending"]
    assert sending == [
        ("sending", None, "ready", None),
        ("sending", "ready", "send", None),
        ("sending", "send", "reset_sent", "local"),
        ("sending", "reset_sent", "reset_received", None),
    ]
    receiving = [s for s in _states(server, sid) if s[0] == "receiving"]
    assert receiving == [  # RESET_STREAM carries the final size (RFC 9000 §4.5)
        ("receiving", None, "receive", None),
        ("receiving", "receive", "size_known", None),
        ("receiving", "size_known", "reset_received", "remote"),
        ("receiving", "reset_received", "reset_read", None),
    ]
    # a unidirectional stream has one side on each end
    uni = pair.client.create_stream(bidirectional=False)
    pair.client.send_stream_data(uni, b"u", end_stream=True)
    pair.run(lambda: pair.stream_done(uni))
    pair.net.settle(0.5)
    assert {s[0] for s in _states(client, uni)} == {"sending"}
    assert {s[0] for s in _states(server, uni)} == {"receiving"}
    assert _states(server, uni)[-1][2] == "destroyed"
