"""qlog of what belongs to no connection (quic.endpoint's trace): Stateless Resets sent,
datagrams dropped or refused with a trigger; closing the endpoint trace (and those of the
connections still held) through ``QuicEndpoint.close()`` and the asyncio pump; stream
state changes of both sides of a stream (RFC 9000 §3)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from quic.aio import QuicSession, connect, serve
from quic.connection import ConnectionState
from quic.qlog import QlogMemorySink, parse_json_seq
from quic.qlog_endpoint import MAX_EVENTS_PER_SECOND
from tests.quic.test_aio import client_config as aio_client_config
from tests.quic.test_aio import server_config as aio_server_config
from tests.support.qlog_schema import check_events, check_trace
from tests.support.quicpair import CLIENT_ADDR, make_pair

SINKS = dict[str, QlogMemorySink]


def _factory(sinks: SINKS, role: str) -> Any:
    def make(is_client: bool, odcid: bytes) -> QlogMemorySink:
        sink = QlogMemorySink()
        sinks[role if odcid else f"{role}-endpoint"] = sink
        return sink

    return make


def _pair(**server: Any) -> tuple[Any, SINKS]:
    sinks: SINKS = {}
    pair = make_pair(
        client_kwargs={"qlog_factory": _factory(sinks, "client")},
        server_kwargs={"qlog_factory": _factory(sinks, "server"), **server},
    )
    return pair, sinks


def _data(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["name"] == name]


def test_stateless_reset_sent_is_logged_with_its_token() -> None:
    pair, sinks = _pair()
    server = pair.server_endpoint
    dcid = bytes(range(8))
    datagram = bytes((0x40,)) + dcid + os.urandom(60)  # a short header, unknown CID
    server.receive_datagram(datagram, ("10.0.0.9", 5555), pair.net.now)
    (reset, _), *_ = server.datagrams_to_send(pair.net.now)
    assert server.resets_sent == 1
    events = sinks["server-endpoint"].events
    assert not check_events(events)
    (sent,) = _data(events, "transport:packet_sent")
    assert sent == {
        "header": {"packet_type": "stateless_reset"},
        "stateless_reset_token": server.reset_token(dcid).hex(),
        "raw": {"length": len(reset)},
    }
    assert reset.endswith(server.reset_token(dcid))


def test_datagrams_dropped_without_a_connection_are_logged_with_a_trigger() -> None:
    pair, sinks = _pair(max_connections_per_address=0)
    server = pair.server_endpoint
    now = pair.net.now
    addr = ("10.0.0.9", 5555)
    unknown = 0x0A0A0A0A
    cases: list[tuple[bytes, str, str]] = [
        (b"", "invalid", "unknown"),  # no connection ID at all
        # a Version Negotiation packet for nobody (RFC 9000 §6.1)
        (
            b"\xc0" + bytes(4) + b"\x08" + bytes(8) + b"\x08" + bytes(8),
            "connection_unknown",
            "version_negotiation",
        ),
        # an unknown version, too small for a VN reply (RFC 9000 §14.1)
        (
            b"\xc0" + unknown.to_bytes(4, "big") + b"\x08" + bytes(8) + b"\x00" + bytes(50),
            "unsupported",
            "unknown",
        ),
        (b"\x40" + bytes(20), "connection_unknown", "1RTT"),  # too small for a reset
    ]
    for datagram, _, _ in cases:
        server.receive_datagram(datagram, addr, now)
    # an Initial refused by the admission limit (max_connections_per_address=0)
    (initial, _), *_ = pair.client.datagrams_to_send(now)
    server.receive_datagram(initial, CLIENT_ADDR, now)
    assert server.dropped == len(cases) and server.refused == 1
    events = sinks["server-endpoint"].events
    assert not check_events(events)
    dropped = _data(events, "transport:packet_dropped")
    expected = [(trigger, kind, len(d)) for d, trigger, kind in cases]
    expected.append(("rejected", "initial", len(initial)))
    assert [(d["trigger"], d["header"]["packet_type"], d["raw"]["length"]) for d in dropped] == (
        expected
    )
    assert dropped[-1]["details"] == {"reason": "admission limit"}


def test_retry_and_version_negotiation_sent_are_in_the_endpoint_trace() -> None:
    pair, sinks = _pair(retry="always")
    pair.handshake()  # through a Retry (RFC 9000 §8.1.2)
    server = pair.server_endpoint
    unknown = 0x0A0A0A0A
    probe = b"\xc0" + unknown.to_bytes(4, "big") + b"\x08" + bytes(8) + b"\x08" + bytes(8)
    server.receive_datagram(probe + bytes(1200), ("10.0.0.9", 5555), pair.net.now)
    events = sinks["server-endpoint"].events
    assert not check_events(events)
    sent = [d["header"]["packet_type"] for d in _data(events, "transport:packet_sent")]
    # a Retry per Initial without a token (the client may resend one before it hears)
    assert set(sent[:-1]) == {"retry"} and sent[-1] == "version_negotiation"
    retry = _data(events, "transport:packet_sent")[0]
    assert retry["header"]["dcid"] == pair.client.host_cid.hex()
    assert retry["header"]["token"]["raw"]["length"] > 0


def test_undecryptable_initial_is_logged_by_the_endpoint() -> None:
    pair, sinks = _pair()
    (initial, _), *_ = pair.client.datagrams_to_send(pair.net.now)
    damaged = bytearray(initial)
    damaged[-1] ^= 0xFF
    pair.server_endpoint.receive_datagram(bytes(damaged), CLIENT_ADDR, pair.net.now)
    (dropped,) = _data(sinks["server-endpoint"].events, "transport:packet_dropped")
    assert dropped["trigger"] == "decryption_failure"
    assert dropped["header"] == {"packet_type": "initial"}


def test_endpoint_close_ends_every_trace_in_memory() -> None:
    pair, sinks = _pair()
    pair.handshake()
    server = pair.server_endpoint
    assert not sinks["server"].closed and not sinks["server-endpoint"].closed
    server.close()
    assert sinks["server"].closed and sinks["server-endpoint"].closed
    server.close()  # idempotent
    # datagrams fed afterwards are handled, but not traced
    before = len(sinks["server-endpoint"].records)
    server.receive_datagram(b"", CLIENT_ADDR, pair.net.now)
    assert server.dropped == 1 and len(sinks["server-endpoint"].records) == before


def test_endpoint_close_flushes_and_closes_the_files(tmp_path: Path) -> None:
    pair = make_pair(server_kwargs={"qlog_dir": str(tmp_path)})
    pair.handshake()
    server = pair.server_endpoint
    server.receive_datagram(b"\x40" + bytes(20), CLIENT_ADDR, pair.net.now)  # one drop
    assert pair.server.state is ConnectionState.CONNECTED  # its trace is still open
    assert len(_open_files(tmp_path)) == 2
    server.close()
    assert _open_files(tmp_path) == []
    (endpoint_trace,) = tmp_path.glob("endpoint-*.sqlog")
    events = check_trace(endpoint_trace.read_bytes(), "server")  # every record parses
    assert [e["data"]["trigger"] for e in events] == ["connection_unknown"]
    (conn_trace,) = tmp_path.glob(f"{pair.server.original_dcid.hex()}_server.sqlog")
    assert check_trace(conn_trace.read_bytes(), "server")[-1]["name"] == (
        "connectivity:connection_closed"
    )


def _open_files(directory: Path) -> list[str]:
    """The files under ``directory`` this process holds open (Linux /proc)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            held.append(target)
    return held


async def _serve_connections(directory: Path, n: int) -> tuple[int, int, list[Path]]:
    """``n`` connections one after the other to a server tracing into ``directory``;
    returns the qlog files held open while the server still runs, after it shut down,
    and the files written."""
    config = aio_server_config()
    config.qlog_dir = str(directory)

    async def handler(session: QuicSession) -> None:
        await session.wait_closed()

    server = await serve("127.0.0.1", 0, config, handler)
    async with server:
        for _ in range(n):
            async with connect("127.0.0.1", server.port, aio_client_config()) as session:
                await session.aclose()
            for _ in range(200):  # the server learns of the close within a round trip
                if not server.sessions:
                    break
                await asyncio.sleep(0.01)
        assert not server.sessions
        during = len(_open_files(directory))
    await server.wait_closed()
    return during, len(_open_files(directory)), sorted(directory.glob("*.sqlog"))


async def test_server_shutdown_closes_every_trace_n_vs_4n(tmp_path: Path) -> None:
    n = 3
    results = {}
    for count in (n, 4 * n):
        directory = tmp_path / str(count)
        results[count] = await _serve_connections(directory, count)
        during, after, files = results[count]
        # ended connections' traces are closed: only the endpoint trace is held...
        assert during == 1, (count, during)
        assert after == 0  # ...until the server shuts down
        assert len(files) == count + 1
        for path in files:  # complete: every record parses, each trace ends properly
            vantage = "server"
            events = check_trace(path.read_bytes(), vantage)
            if not path.name.startswith("endpoint-"):
                assert events[-1]["name"] == "connectivity:connection_closed"
            else:
                assert len(parse_json_seq(path.read_bytes())) == len(events) + 1
    # what is held open does not grow with the number of connections
    assert results[n][0] == results[4 * n][0]


def _garbage_flood(n: int, seconds: int) -> tuple[int, int, int, list[dict[str, Any]]]:
    """``n`` garbage datagrams spread over ``seconds`` of the endpoint's clock: (dropped,
    events logged, events left out, the trace)."""
    pair, sinks = _pair()
    server = pair.server_endpoint
    start = pair.net.now
    for i in range(n):
        server.receive_datagram(b"\x40" + bytes(20), ("10.0.0.9", 5555), start + i * seconds / n)
    events = sinks["server-endpoint"].events
    logged = len(_data(events, "transport:packet_dropped"))
    assert server.qlog is not None
    return server.dropped, logged, server.qlog.suppressed, events


def test_a_flood_grows_the_endpoint_trace_by_a_bounded_rate_n_vs_4n() -> None:
    # every dropped datagram is counted, but the trace takes at most
    # MAX_EVENTS_PER_SECOND of them per second: a flood cannot fill the disk
    rate = MAX_EVENTS_PER_SECOND
    dropped, logged, left_out, events = _garbage_flood(2 * rate, 1)
    dropped4, logged4, left_out4, events4 = _garbage_flood(8 * rate, 1)
    assert (dropped, dropped4) == (2 * rate, 8 * rate)
    assert logged <= rate + 1 and logged4 <= rate + 1  # the same, 4x the flood
    assert logged + left_out == dropped and logged4 + left_out4 == dropped4
    assert not check_events(events4)
    # over several seconds the budget comes back each second, and the first event of a
    # new second says how many were left out before it
    dropped, logged, left_out, events = _garbage_flood(8 * rate, 4)
    assert logged <= 5 * rate and logged + left_out == dropped
    told = sum(d.get("suppressed_before", 0) for d in _data(events, "transport:packet_dropped"))
    assert 0 < told <= left_out


def test_a_trickle_is_logged_in_full() -> None:
    dropped, logged, left_out, _ = _garbage_flood(MAX_EVENTS_PER_SECOND // 2, 2)
    assert logged == dropped and left_out == 0
