"""HTTP/3 SETTINGS remembered with the session ticket (RFC 9114 §7.2.4.2), in memory on
the fake clock with a resumed pair (tests/h3/early_pair.py): the client stores the
server's SETTINGS with its ticket and uses them in 0-RTT; the server seals its own into
the ticket and refuses 0-RTT when its current ones are not compatible."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from h3.connection import H3Configuration
from h3.errors import H3ErrorCode
from h3.remembered import (
    decode_remembered,
    encode_remembered,
    incompatibility,
    local_settings,
    server_accepts,
)
from h3.settings import SettingId
from quic.conn_early import MAX_HELD_TICKETS, EarlyData
from quic.qlog import QlogMemorySink
from quic.tls.tickets import TicketState
from tests.h3.early_pair import EarlyH3, early_h3
from tests.support.qlog_schema import check_events

CAP = SettingId.QPACK_MAX_TABLE_CAPACITY
BLOCKED = SettingId.QPACK_BLOCKED_STREAMS
MFS = SettingId.MAX_FIELD_SECTION_SIZE
DATAGRAM = SettingId.H3_DATAGRAM
EXTENDED = SettingId.ENABLE_CONNECT_PROTOCOL


def _ticket_settings(env: EarlyH3) -> dict[int, int] | None:
    (ticket,) = env.store._tickets["localhost"]
    return decode_remembered(ticket.application_data)


def test_client_stores_the_server_settings_with_the_ticket() -> None:
    server = H3Configuration(qpack_max_table_capacity=2048, enable_datagrams=True)
    env = early_h3(server)
    assert _ticket_settings(env) == {CAP: 2048, BLOCKED: 16, MFS: 65536, DATAGRAM: 1}


def test_zero_rtt_uses_the_remembered_settings() -> None:
    """RFC 9114 §7.2.4.2: in 0-RTT the server's settings are the remembered ones: the
    QPACK encoder writes with the remembered dynamic table, HTTP datagrams may be sent;
    the server accepts the 0-RTT and decodes the request."""
    server = H3Configuration(qpack_max_table_capacity=2048, enable_datagrams=True)
    env = early_h3(server, max_datagram_frame_size=1200)
    env.requests.clear()
    client = env.resume(max_datagram_frame_size=1200)
    assert client.quic.early_data_possible and client.peer_settings is None
    assert client.encoder.max_table_capacity == 2048  # not the default 0
    headers = [(b"x-custom-%d" % i, b"value %d" % i) for i in range(8)]
    sid = env.request("GET", headers=headers)
    client.send_datagram(sid, b"early datagram")  # RFC 9297: needs SETTINGS_H3_DATAGRAM
    assert client.encoder.pending_encoder_stream_data() == b""  # flushed to the stream
    env.run(lambda: sid in env.responses and len(env.store) == 1)
    assert env.responses == {sid: 200}
    assert client.quic.tls.early_data_accepted
    assert [(s.method, s.early_data) for s in env.requests] == [(b"GET", True)]
    assert _ticket_settings(env) == {CAP: 2048, BLOCKED: 16, MFS: 65536, DATAGRAM: 1}


def test_without_remembered_settings_the_defaults_apply() -> None:
    """A ticket stored with no settings (RFC 9114 §7.2.4.2 allows not storing them): the
    client uses the defaults (static QPACK table, no datagrams); the server decides on
    its own sealed copy, accepts the 0-RTT, and answers."""
    env = early_h3()
    (ticket,) = env.store._tickets["localhost"]
    env.store._tickets["localhost"][0] = dataclasses.replace(ticket, application_data=b"")
    env.requests.clear()
    client = env.resume()
    assert client.quic.early_data_possible
    assert client.encoder.max_table_capacity == 0
    sid = env.request("GET")
    with pytest.raises(ValueError, match="datagrams"):
        client.send_datagram(sid, b"x")
    env.run(lambda: sid in env.responses)
    assert env.responses == {sid: 200}
    assert client.quic.tls.session_resumed and client.quic.tls.early_data_accepted


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ({}, True),
        ({"qpack_max_table_capacity": 8192}, True),  # larger limits are compatible
        ({"max_field_section_size": 1 << 20}, True),
        ({"max_field_section_size": None}, False),  # omitted: altered (§7.2.4.2)
        ({"max_field_section_size": 1024}, False),
        ({"enable_datagrams": False}, False),
        ({"extra_settings": {SettingId.WT_INITIAL_MAX_DATA: 10}}, True),
        ({"extra_settings": {0x1234: 1}}, False),  # unknown: cannot be determined
    ],
)
def test_server_refuses_zero_rtt_when_settings_are_incompatible(
    change: dict[str, Any], accepted: bool
) -> None:
    """RFC 9114 §7.2.4.2: the server uses the settings sealed in the ticket to decide:
    0-RTT only if a client complying with them would not violate the current ones. The
    handshake resumes either way, and the request is answered (sent again in 1-RTT)."""
    base = H3Configuration(enable_datagrams=True)
    env = early_h3(base)
    env.set_server_settings(dataclasses.replace(base, **change))
    env.requests.clear()
    client = env.resume()
    assert client.quic.early_data_possible
    sid = env.request("GET")
    env.run(lambda: sid in env.responses)
    assert env.responses == {sid: 200}
    assert client.quic.tls.session_resumed
    assert client.quic.tls.early_data_accepted is accepted
    assert client.quic.state.name == "CONNECTED"


def test_rejected_zero_rtt_with_a_smaller_qpack_table_closes() -> None:
    """The client wrote with the remembered dynamic table in 0-RTT; the server now has a
    smaller one, refuses 0-RTT, and QUIC sends the 0-RTT data again as it was: the
    client cannot comply with the new SETTINGS, and the connection closes (the server
    may notice first: QPACK_ENCODER_STREAM_ERROR)."""
    base = H3Configuration()
    env = early_h3(base)
    env.set_server_settings(dataclasses.replace(base, qpack_max_table_capacity=1024))
    client = env.resume()
    env.request("GET", headers=[(b"x-a", b"b")])
    env.run(lambda: client.quic in env.terminated)
    assert not client.quic.tls.early_data_accepted
    assert env.terminated[client.quic].error_code in (
        H3ErrorCode.H3_SETTINGS_ERROR,
        H3ErrorCode.QPACK_ENCODER_STREAM_ERROR,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"enable_datagrams": False},
        {"max_field_section_size": 1024},
        {"max_field_section_size": None},
    ],
)
def test_client_checks_the_server_settings_after_accepted_zero_rtt(change: dict[str, Any]) -> None:
    """RFC 9114 §7.2.4.2: a server that accepted 0-RTT and then sends SETTINGS reducing
    a remembered limit, or omitting a non-default one the client understands, is
    H3_SETTINGS_ERROR (the server's check did not apply: it was told nothing)."""
    base = H3Configuration(enable_datagrams=True, max_field_section_size=4096)
    env = early_h3(base)
    quic_config = env.pair.server_endpoint.server_configuration
    assert quic_config is not None
    quic_config.early_data_application_check = None  # a server that does not check
    env.server_cfg = dataclasses.replace(base, **change)
    client = env.resume()
    env.request("GET")
    env.run(lambda: client.quic in env.terminated)
    assert client.quic.tls.early_data_accepted
    assert env.terminated[client.quic].error_code == H3ErrorCode.H3_SETTINGS_ERROR


@pytest.mark.parametrize(
    ("remembered", "current", "strict", "problem"),
    [
        ({CAP: 4096, MFS: 100}, {CAP: 4096, MFS: 100}, True, None),
        ({CAP: 4096}, {CAP: 4095}, False, "reduced"),
        ({MFS: 100}, {}, True, "omitted"),  # §7.2.4.2: omitted, even if unlimited
        ({MFS: 100}, {MFS: 200}, False, None),
        ({}, {MFS: 100}, True, "reduced"),  # from unlimited
        ({EXTENDED: 1}, {EXTENDED: 0}, True, "turned off"),
        # draft-ietf-webtrans-http3-16 §3.2: WebTransport flow control not reduced
        (
            {SettingId.WT_INITIAL_MAX_DATA: 100},
            {SettingId.WT_INITIAL_MAX_DATA: 10},
            False,
            "reduced",
        ),
        ({EXTENDED: 0}, {EXTENDED: 1}, True, None),
        ({0x21: 5}, {0x21: 6}, True, None),  # reserved (grease) identifiers: ignored
        ({0x1234: 5}, {0x1234: 6}, True, "changed"),
        ({0x1234: 5}, {0x1234: 6}, False, None),
    ],
)
def test_incompatibility_rules(
    remembered: dict[int, int], current: dict[int, int], strict: bool, problem: str | None
) -> None:
    found = incompatibility(remembered, current, strict=strict)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_server_accepts_needs_readable_settings() -> None:
    current = local_settings(H3Configuration())
    assert server_accepts(current, encode_remembered(current))
    assert not server_accepts(current, b"")
    assert not server_accepts(current, b"\x01")  # truncated


def test_ticket_state_carries_application_data() -> None:
    state = TicketState(
        ticket_id=bytes(16),
        issued_at_ms=1,
        lifetime=2,
        ticket_age_add=3,
        cipher_suite=0x1301,
        early_data=True,
        psk=b"k" * 32,
        alpn_protocol=b"h3",
        server_name=b"",
        transport_parameters=b"tp",
        application_data=b"\x01\x02",
    )
    assert TicketState.decode(state.encode()) == state
    assert TicketState.decode(state.encode()[:-1]) is None


def test_held_tickets_are_bounded() -> None:
    """Tickets waiting for the application's data: at most MAX_HELD_TICKETS, whatever
    the number the server sends (N vs 4N); released with the data."""
    from quic.tls.tickets import SessionTicket

    got: list[SessionTicket] = []
    held = []
    for n in (8, 32):
        early = EarlyData(None)
        handler = early.ticket_handler(got.append)
        assert handler is not None
        early.hold_tickets()
        for i in range(n):
            handler(_ticket(i))
        held.append(early.held_tickets)
        early.set_application_data(b"settings")
        handler(_ticket(n))
    assert held == [MAX_HELD_TICKETS, MAX_HELD_TICKETS]
    assert len(got) == 2 * (MAX_HELD_TICKETS + 1)
    assert {t.application_data for t in got} == {b"settings"}
    assert [t.ticket for t in got[: MAX_HELD_TICKETS + 1]] == [b"%d" % i for i in (4, 5, 6, 7, 8)]


def _ticket(i: int) -> Any:
    from datetime import UTC, datetime

    from quic.tls.suites import CipherSuite
    from quic.tls.tickets import SessionTicket

    return SessionTicket(
        server_name="s",
        ticket=b"%d" % i,
        psk=b"",
        cipher_suite=CipherSuite.TLS_AES_128_GCM_SHA256,
        alpn_protocol="h3",
        ticket_age_add=0,
        lifetime=10,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        max_early_data_size=None,
        transport_parameters=b"",
    )


def test_restored_settings_are_in_the_client_qlog() -> None:
    """h3-events §"parameters_restored": the client logs the SETTINGS it uses in 0-RTT."""
    sink = QlogMemorySink()
    server = H3Configuration(qpack_max_table_capacity=2048, enable_datagrams=True)
    env = early_h3(server, max_datagram_frame_size=1200)
    client = env.resume(
        max_datagram_frame_size=1200, qlog_factory=lambda _c, odcid: sink if odcid else None
    )
    assert client.quic.early_data_possible
    restored = [e["data"] for e in sink.events if e["name"] == "http:parameters_restored"]
    assert restored == [
        {
            "max_table_capacity": 2048,
            "blocked_streams_count": 16,
            "max_header_list_size": 65536,  # qlog 0.3's name, as parameters_set
            "h3_datagram": 1,
        }
    ]
    assert not check_events(sink.events)
